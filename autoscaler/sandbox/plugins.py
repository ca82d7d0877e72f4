"""The sandbox scheduler's filters, written from the Kubernetes scheduler's filter plugins and
working on the raw API objects (the JSON dicts of the fake API server).

This is a check on the autoscaler, not a copy of it: nothing here imports the reader's request
arithmetic (autoscaler/read/) or the planner's placement rules (autoscaler/decide/), so when the
two disagree the sandbox shows it (a pod the autoscaler bought room for that does not run, or an
instance no pod uses). Quantities go through ``kubernetes.utils.parse_quantity``, a library.

Each filter takes the pod, the node and the cluster, and returns None when the node passes, else
the reason, as the scheduler's plugins do: NodeName, NodeUnschedulable, TaintToleration,
NodeAffinity, NodeResourcesFit, NodePorts, VolumeBinding (with VolumeZone), InterPodAffinity and
PodTopologySpread. Scheduling gates and node readiness are checked as the scheduler does too: a
gated pod never reaches the filters (SchedulingGates' PreEnqueue), and a node whose Ready
condition is not True carries the ``node.kubernetes.io/not-ready:NoSchedule`` taint the node
lifecycle controller adds.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable, Iterable, Mapping, Optional

from kubernetes.utils import parse_quantity

Quantities = dict  # resource name -> Decimal
NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
HOSTNAME = "kubernetes.io/hostname"


# ---- what a pod requests, as Kubernetes computes it (k8s.io/component-helpers resource.PodRequests)

def _requests(container: Mapping) -> Quantities:
    raw = (container.get("resources") or {}).get("requests") or {}
    return {name: parse_quantity(value) for name, value in raw.items()}


def _add(into: Quantities, more: Mapping) -> None:
    for name, value in more.items():
        into[name] = into.get(name, Decimal(0)) + value


def _max_into(into: Quantities, other: Mapping) -> None:
    for name, value in other.items():
        into[name] = max(into.get(name, Decimal(0)), value)


def pod_requests(pod: Mapping) -> Quantities:
    """The app containers' sum; each init container on top of the sidecars (init containers with
    restartPolicy Always, KEP-753) started before it, the largest of those winning; the sidecars
    run for the pod's whole life, so they add to the app containers; pod-level requests, where set,
    replace the containers' for their resources; then the RuntimeClass overhead; and pods=1."""
    spec = pod["spec"]
    total: Quantities = {}
    for container in spec.get("containers") or ():
        _add(total, _requests(container))
    init_peak: Quantities = {}
    sidecars: Quantities = {}
    for container in spec.get("initContainers") or ():
        requests = _requests(container)
        if container.get("restartPolicy") == "Always":
            _add(total, requests)
            _add(sidecars, requests)
            running = dict(sidecars)
        else:
            running = dict(requests)
            _add(running, sidecars)
        _max_into(init_peak, running)
    _max_into(total, init_peak)
    pod_level = ((spec.get("resources") or {}).get("requests")) or {}
    total.update({name: parse_quantity(value) for name, value in pod_level.items()})
    _add(total, {name: parse_quantity(value) for name, value in (spec.get("overhead") or {}).items()})
    total["pods"] = Decimal(1)
    return total


def allocatable(node: Mapping) -> Quantities:
    raw = (node.get("status") or {}).get("allocatable") or {}
    return {name: parse_quantity(value) for name, value in raw.items()}


# ---- labels, selectors, tolerations ---------------------------------------------------------------

def labels_of(obj: Mapping) -> Mapping[str, str]:
    return obj["metadata"].get("labels") or {}


def selector_matches(selector: Optional[Mapping], labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector: None matches nothing, {} everything."""
    if selector is None:
        return False
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or ():
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or ()
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def node_requirement_holds(expression: Mapping, labels: Mapping[str, str]) -> bool:
    """One NodeSelectorRequirement: In, NotIn, Exists, DoesNotExist, Gt, Lt."""
    key, operator = expression["key"], expression["operator"]
    values: list = list(expression.get("values") or ())
    value = labels.get(key)
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt"):
        try:
            have, bound = int(value or ""), int(values[0])
        except (ValueError, IndexError):
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def node_selector_terms_match(terms: Iterable[Mapping], node: Mapping) -> bool:
    """NodeSelectorTerms are ORed; inside a term, matchExpressions (labels) and matchFields
    (metadata.name) are ANDed; an empty term matches nothing."""
    labels, fields = labels_of(node), {"metadata.name": node["metadata"]["name"]}
    for term in terms:
        expressions, field_expressions = term.get("matchExpressions") or (), term.get("matchFields") or ()
        if not expressions and not field_expressions:
            continue
        if all(node_requirement_holds(e, labels) for e in expressions) and \
                all(node_requirement_holds(e, fields) for e in field_expressions):
            return True
    return False


def tolerates(tolerations: Iterable[Mapping], taint: Mapping) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        operator = toleration.get("operator") or "Equal"
        if not toleration.get("key"):
            if operator == "Exists":
                return True
            continue
        if toleration["key"] != taint["key"]:
            continue
        if operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def node_ready(node: Mapping) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or ()
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def effective_taints(node: Mapping) -> list:
    """The node's taints, with the not-ready one the node lifecycle controller adds while the
    kubelet does not report Ready."""
    taints = list(node["spec"].get("taints") or ())
    if not node_ready(node):
        taints.append(NOT_READY_TAINT)
    return taints


# ---- the cluster a filter looks at ----------------------------------------------------------------

@dataclass
class Cluster:
    """Nodes by name, the pods bound to each (running or not yet), claims and volumes by name,
    namespaces' labels; kept up to date as the scheduler binds within a step."""

    nodes: dict  # name -> node dict
    pods_on: dict = field(default_factory=lambda: defaultdict(list))  # node name -> bound pod dicts
    claims: dict = field(default_factory=dict)  # (namespace, name) -> PersistentVolumeClaim
    volumes: dict = field(default_factory=dict)  # name -> PersistentVolume
    storage_classes: dict = field(default_factory=dict)  # name -> StorageClass
    namespace_labels: dict = field(default_factory=dict)  # name -> labels
    _requests: dict = field(default_factory=dict)  # id(pod) -> its requests, parsed once a step

    def requests_of(self, pod: Mapping) -> Quantities:
        key = id(pod)
        if key not in self._requests:
            self._requests[key] = (pod, pod_requests(pod))  # the pod kept alive: its id stays its own
        return self._requests[key][1]

    def bound_pods(self) -> Iterable[tuple[Mapping, Mapping]]:
        """(pod, its node) for every bound pod."""
        for name, pods in self.pods_on.items():
            for pod in pods:
                yield pod, self.nodes[name]


Filter = Callable[[Mapping, Mapping, Cluster], Optional[str]]


def node_name(pod: Mapping, node: Mapping, cluster: Cluster) -> Optional[str]:
    wanted = pod["spec"].get("nodeName")
    return None if not wanted or wanted == node["metadata"]["name"] else "node(s) didn't match the requested node name"


def node_unschedulable(pod: Mapping, node: Mapping, cluster: Cluster) -> Optional[str]:
    if node["spec"].get("unschedulable") and not tolerates(pod["spec"].get("tolerations") or (), UNSCHEDULABLE_TAINT):
        return "node(s) were unschedulable"
    return None


def taint_toleration(pod: Mapping, node: Mapping, cluster: Cluster) -> Optional[str]:
    tolerations = pod["spec"].get("tolerations") or ()
    for taint in effective_taints(node):
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(tolerations, taint):
            return f"node(s) had untolerated taint {{{taint['key']}: {taint.get('value', '')}}}"
    return None


def node_affinity(pod: Mapping, node: Mapping, cluster: Cluster) -> Optional[str]:
    labels = labels_of(node)
    if any(labels.get(key) != value for key, value in (pod["spec"].get("nodeSelector") or {}).items()):
        return "node(s) didn't match Pod's node affinity/selector"
    required = (((pod["spec"].get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is not None and not node_selector_terms_match(required.get("nodeSelectorTerms") or (), node):
        return "node(s) didn't match Pod's node affinity/selector"
    return None


def node_resources_fit(pod: Mapping, node: Mapping, cluster: Cluster) -> Optional[str]:
    free = allocatable(node)
    for other in cluster.pods_on[node["metadata"]["name"]]:
        for name, value in cluster.requests_of(other).items():
            free[name] = free.get(name, Decimal(0)) - value
    short = sorted(name for name, value in cluster.requests_of(pod).items() if value > 0 and value > free.get(name, Decimal(0)))
    return f"Insufficient {', '.join(short)}" if short else None


def host_ports(pod: Mapping) -> set:
    """(protocol, hostIP, hostPort) the pod's containers hold on their node (with hostNetwork,
    every container port is a host port)."""
    spec, ports = pod["spec"], set()
    for container in [*(spec.get("initContainers") or ()), *(spec.get("containers") or ())]:
        for port in container.get("ports") or ():
            number = port.get("hostPort") or (port.get("containerPort") if spec.get("hostNetwork") else 0)
            if number:
                ports.add((port.get("protocol") or "TCP", port.get("hostIP") or "0.0.0.0", int(number)))
    return ports


def node_ports(pod: Mapping, node: Mapping, cluster: Cluster) -> Optional[str]:
    wanted = host_ports(pod)
    if not wanted:
        return None
    for other in cluster.pods_on[node["metadata"]["name"]]:
        for protocol, ip, number in host_ports(other):
            for want_protocol, want_ip, want_number in wanted:
                if (protocol, number) == (want_protocol, want_number) and (ip == want_ip or "0.0.0.0" in (ip, want_ip)):
                    return "node(s) didn't have free ports for the requested pod ports"
    return None


def volume_binding(pod: Mapping, node: Mapping, cluster: Cluster) -> Optional[str]:
    """A bound claim's volume must admit the node (its required node affinity, and VolumeZone's
    zone label); an unbound claim waits for its binding unless its class binds on first consumer."""
    namespace = pod["metadata"]["namespace"]
    zone = labels_of(node).get("topology.kubernetes.io/zone")
    for volume in pod["spec"].get("volumes") or ():
        source = volume.get("persistentVolumeClaim")
        if not source:
            continue
        claim = cluster.claims.get((namespace, source["claimName"]))
        if claim is None:
            return f'persistentvolumeclaim "{source["claimName"]}" not found'
        bound_to = claim["spec"].get("volumeName")
        if not bound_to:
            storage_class = cluster.storage_classes.get(claim["spec"].get("storageClassName") or "")
            if (storage_class or {}).get("volumeBindingMode") != "WaitForFirstConsumer":
                return "pod has unbound immediate PersistentVolumeClaims"
            continue
        pv = cluster.volumes.get(bound_to)
        if pv is None:
            return f'persistentvolume "{bound_to}" not found'
        required = ((pv["spec"].get("nodeAffinity") or {}).get("required"))
        if required is not None and not node_selector_terms_match(required.get("nodeSelectorTerms") or (), node):
            return "node(s) had volume node affinity conflict"
        pv_zone = labels_of(pv).get("topology.kubernetes.io/zone")
        if pv_zone and zone not in pv_zone.split("__"):
            return "node(s) had no available volume zone"
    return None


def _term_namespaces(term: Mapping, pod: Mapping, cluster: Cluster) -> Optional[set]:
    """The namespaces a pod affinity term looks in; None for all."""
    names = set(term.get("namespaces") or ())
    selector = term.get("namespaceSelector")
    if selector is not None:
        if not selector.get("matchLabels") and not selector.get("matchExpressions"):
            return None
        names |= {name for name, labels in cluster.namespace_labels.items() if selector_matches(selector, labels)}
    return names or {pod["metadata"]["namespace"]}


def term_matches(term: Mapping, owner: Mapping, other: Mapping, cluster: Cluster) -> bool:
    """Does ``other`` match ``owner``'s affinity term (its selector, in its namespaces)?"""
    namespaces = _term_namespaces(term, owner, cluster)
    return (namespaces is None or other["metadata"]["namespace"] in namespaces) and \
        selector_matches(term.get("labelSelector"), labels_of(other))


def _required(pod: Mapping, kind: str) -> list:
    return list((((pod["spec"].get("affinity") or {}).get(kind) or {})
                 .get("requiredDuringSchedulingIgnoredDuringExecution")) or ())


def inter_pod_affinity(pod: Mapping, node: Mapping, cluster: Cluster) -> Optional[str]:
    node_labels = labels_of(node)

    def same_domain(key: str, other_node: Mapping) -> bool:
        return key in node_labels and labels_of(other_node).get(key) == node_labels[key]

    bound = [(other, other_node) for other, other_node in cluster.bound_pods() if other is not pod]
    # Existing pods' anti-affinity against the incoming pod.
    for other, other_node in bound:
        for term in _required(other, "podAntiAffinity"):
            if term_matches(term, other, pod, cluster) and same_domain(term["topologyKey"], other_node):
                return "node(s) didn't satisfy existing pods anti-affinity rules"
    for term in _required(pod, "podAntiAffinity"):
        if any(term_matches(term, pod, other, cluster) and same_domain(term["topologyKey"], other_node)
               for other, other_node in bound):
            return "node(s) didn't match pod anti-affinity rules"
    terms = _required(pod, "podAffinity")
    if not terms:
        return None
    if any(term["topologyKey"] not in node_labels for term in terms):
        return "node(s) didn't match pod affinity rules"
    matching = [(other, other_node) for other, other_node in bound
                if all(term_matches(term, pod, other, cluster) for term in terms)]
    if all(any(same_domain(term["topologyKey"], other_node) for _, other_node in matching) for term in terms):
        return None
    # The first of a series of pods with affinity to each other: allowed when no pod anywhere
    # matches and the pod matches its own terms.
    if not matching and all(term_matches(term, pod, pod, cluster) for term in terms):
        return None
    return "node(s) didn't match pod affinity rules"


def pod_topology_spread(pod: Mapping, node: Mapping, cluster: Cluster) -> Optional[str]:
    constraints = [c for c in pod["spec"].get("topologySpreadConstraints") or ()
                   if (c.get("whenUnsatisfiable") or "DoNotSchedule") == "DoNotSchedule"]
    if not constraints:
        return None
    keys = [c["topologyKey"] for c in constraints]
    node_labels = labels_of(node)
    if any(key not in node_labels for key in keys):
        return "node(s) didn't match pod topology spread constraints (missing required label)"
    # Eligible nodes: those the pod's node selector and required node affinity admit (the default
    # nodeAffinityPolicy Honor; taints are ignored by default) and that carry every key.
    eligible = [other for other in cluster.nodes.values()
                if node_affinity(pod, other, cluster) is None and all(key in labels_of(other) for key in keys)]
    namespace = pod["metadata"]["namespace"]
    for constraint in constraints:
        key, selector = constraint["topologyKey"], constraint.get("labelSelector")
        counts = {labels_of(other)[key]: 0 for other in eligible}
        for other in eligible:
            counts[labels_of(other)[key]] += sum(
                1 for bound in cluster.pods_on[other["metadata"]["name"]]
                if bound["metadata"]["namespace"] == namespace and not bound["metadata"].get("deletionTimestamp")
                and selector_matches(selector, labels_of(bound)))
        minimum = min(counts.values()) if counts else 0
        if len(counts) < int(constraint.get("minDomains") or 1):
            minimum = 0
        own = 1 if selector_matches(selector, labels_of(pod)) else 0
        if counts.get(node_labels[key], 0) + own - minimum > int(constraint["maxSkew"]):
            return "node(s) didn't match pod topology spread constraints"
    return None


# In the order the scheduler's default profile runs them.
FILTERS: tuple[Filter, ...] = (
    node_unschedulable, node_name, taint_toleration, node_affinity, node_ports, node_resources_fit,
    volume_binding, pod_topology_spread, inter_pod_affinity,
)


def scheduling_gated(pod: Mapping) -> bool:
    return bool(pod["spec"].get("schedulingGates"))


def unfit_reason(pod: Mapping, node: Mapping, cluster: Cluster) -> Optional[str]:
    """None when every filter passes the node for the pod, else the first filter's reason."""
    for check in FILTERS:
        reason = check(pod, node, cluster)
        if reason is not None:
            return reason
    return None
