"""READ: nodes, pods, disruption budgets and DaemonSets from the Kubernetes API -> immutable model.

Lists are read page by page as raw JSON (``_preload_content=False``): the official client's model
objects cost several times the memory and time of the dicts at 15,000 pods, and we convert every
object into our own model at once anyway. A pod or node that cannot be converted is logged and
skipped; it never fails the loop.
"""
from __future__ import annotations

import functools
import json
import logging
from typing import Any, Callable, Iterator, Optional

from kubernetes import client as kube_client
from kubernetes.client.exceptions import ApiException

from ..clients.http_summary import describe_answer
from ..clients.kube_connect import REQUEST_TIMEOUT
from ..clients.kube_errors import KubeConfigurationError, KubeError, kube_call
from ..model.objects import (
    ALL_NAMESPACES,
    LAST_BUSY_ANNOTATION,
    DaemonSet,
    SAFE_TO_EVICT_ANNOTATION,
    DisruptionBudget,
    LabelSelector,
    Node,
    Placement,
    Pod,
    PodAffinityTerm,
    PodPhase,
    Requirement,
    Resources,
    SpreadConstraint,
    Taint,
    Toleration,
)
from .kube_fields import (
    convert_all,
    label_selector,
    mapping,
    metadata_of,
    name_text,
    node_selector_terms,
    object_name,
    parse_time,
    sequence,
    text,
    text_map,
    toleration,
    whole,
)
from .kube_volumes import Volumes, claim_names, read_claims, read_classes, read_volumes, with_claims
from .resources import parse_resources, to_milli

log = logging.getLogger(__name__)

PAGE_SIZE = 500
# (connect, read) seconds for one page: the client's default (kube_connect.REQUEST_TIMEOUT), so a
# stalled server fails the loop instead of holding it; a page of 500 pods takes well under a second.
LIST_REQUEST_TIMEOUT = REQUEST_TIMEOUT
ONE_POD_MILLI = 1000
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
# What the DaemonSet controller adds to every pod it makes (util.AddOrUpdateDaemonPodTolerations),
# and for a pod on the host network the one after.
DAEMON_TOLERATIONS = (
    Toleration("node.kubernetes.io/not-ready", "Exists", "", "NoExecute"),
    Toleration("node.kubernetes.io/unreachable", "Exists", "", "NoExecute"),
    Toleration("node.kubernetes.io/disk-pressure", "Exists", "", "NoSchedule"),
    Toleration("node.kubernetes.io/memory-pressure", "Exists", "", "NoSchedule"),
    Toleration("node.kubernetes.io/pid-pressure", "Exists", "", "NoSchedule"),
    Toleration("node.kubernetes.io/unschedulable", "Exists", "", "NoSchedule"),
)
HOST_NETWORK_DAEMON_TOLERATION = Toleration("node.kubernetes.io/network-unavailable", "Exists", "", "NoSchedule")


class KubeReader:
    def __init__(self, api_client: kube_client.ApiClient, namespace: Optional[str] = None):
        self.core = kube_client.CoreV1Api(api_client)
        self.policy = kube_client.PolicyV1Api(api_client)
        # DaemonSets and storage classes are listed through the client's lower layer, as its generated
        # methods do: importing AppsV1Api and StorageV1Api for one call each costs ~7 MiB.
        self.list_daemonsets = list_through(api_client, "/apis/apps/v1/daemonsets")
        self.list_storage_classes = list_through(api_client, "/apis/storage.k8s.io/v1/storageclasses")
        self.namespace = namespace
        self._missing: set[str] = set()  # the optional reads refused now, each warned about once

    def read_nodes(self) -> tuple[Node, ...]:
        return convert_all(self._pages(self.core.list_node, "nodes"), node_from_api, "node")

    def read_pods(self) -> tuple[Pod, ...]:
        """The pods not finished; a pending pod without a node with claims gets what its volumes
        ask (kube_volumes.py). Claims, volumes and classes are read only for those pods, and
        only the kinds they need: most loops read none."""
        lister: Callable[..., Any]
        if namespace := self.namespace:
            lister = lambda **kw: self.core.list_namespaced_pod(namespace, **kw)  # noqa: E731
        else:
            lister = self.core.list_pod_for_all_namespaces
        with_claims_read: list[tuple[Pod, tuple[str, ...]]] = []

        def convert(item: dict) -> Pod:
            pod, names = pod_and_claims_from_api(item)
            if names:
                with_claims_read.append((pod, names))
            return pod

        # Finished pods occupy nothing and are never pending: leave them on the server.
        selector = "status.phase!=Succeeded,status.phase!=Failed"
        pods = convert_all(self._pages(lister, "pods", field_selector=selector), convert, "pod")
        if not with_claims_read:
            return pods
        volumes = self._read_volumes([(pod.namespace, name) for pod, names in with_claims_read for name in names])
        resolved = {id(pod): with_claims(pod, names, volumes) for pod, names in with_claims_read}
        return tuple(resolved.get(id(pod), pod) for pod in pods)

    def _read_volumes(self, wanted: list[tuple[str, str]]) -> Volumes:
        volumes = Volumes()
        lister: Callable[..., Any]
        if namespace := self.namespace:
            lister = lambda **kw: self.core.list_namespaced_persistent_volume_claim(namespace, **kw)  # noqa: E731
        else:
            lister = self.core.list_persistent_volume_claim_for_all_namespaces
        items = self._optional_list(lister, "persistentvolumeclaims", "", "claims are read as if bound and asking nothing")
        volumes.claims = None if items is None else read_claims(items, volumes)
        needed = [claim for claim in map((volumes.claims or {}).get, wanted) if claim is not None]
        unbound_classes = {claim.storage_class for claim in needed if not claim.volume_name and claim.storage_class}
        if unbound_classes:
            items = self._optional_list(self.list_storage_classes, "storageclasses", "storage.k8s.io",
                                        "unbound claims of a class are read as binding when the pod is scheduled")
            volumes.classes = None if items is None else read_classes(items, volumes)
        # Volumes: those bound claims name, and those an unbound claim of a static class may bind to.
        static = any(known.static for name, known in (volumes.classes or {}).items() if name in unbound_classes)
        if static or any(claim.volume_name for claim in needed):
            items = self._optional_list(self.core.list_persistent_volume, "persistentvolumes", "",
                                        "claims are read as asking nothing of the node")
            volumes.volumes = None if items is None else read_volumes(items, volumes)
        return volumes

    def read_budgets(self) -> tuple[DisruptionBudget, ...]:
        lister: Callable[..., Any]
        if namespace := self.namespace:
            lister = lambda **kw: self.policy.list_namespaced_pod_disruption_budget(namespace, **kw)  # noqa: E731
        else:
            lister = self.policy.list_pod_disruption_budget_for_all_namespaces
        return convert_all(self._pages(lister, "pod disruption budgets"), budget_from_api, "poddisruptionbudget")

    def read_daemonsets(self) -> tuple[DaemonSet, ...]:
        """Every namespace's DaemonSets, whatever --pod-namespace says: each puts a pod on every new
        node it admits."""
        items = self._optional_list(self.list_daemonsets, "daemonsets", "apps",
                                    "new nodes are planned without room for DaemonSet pods")
        return tuple(sorted(convert_all(items or (), daemonset_from_api, "daemonset"), key=lambda d: d.key))

    def _optional_list(self, lister: Callable, resource: str, group: str, meanwhile: str) -> Optional[list[dict]]:
        """Every item of a list the loop can do without: None when the server refuses it (403:
        the RBAC of an older release; 404: not served), with one warning until it is read again.
        Any other failure fails the loop, as a failed read of pods does."""
        try:
            items = list(self._pages(lister, resource))
            self._missing.discard(resource)
            return items
        except KubeError as error:
            if error.status not in (403, 404):
                raise
            if resource not in self._missing:
                self._missing.add(resource)
                where = f'API group "{group}"' if group else "the core API group"
                log.warning("cannot list %s (HTTP %s): the autoscaler's service account needs \"list\" on %s in %s "
                            "(deploy/base/rbac.yaml); going on without them, %s", resource, error.status, resource,
                            where, meanwhile)
            return None

    def _pages(self, lister: Callable, what: str, **query) -> Iterator[dict]:
        token = None
        while True:
            kwargs = dict(query, limit=PAGE_SIZE, _preload_content=False, _request_timeout=LIST_REQUEST_TIMEOUT)
            if token:
                kwargs["_continue"] = token
            response = kube_call(f"list {what}", lister, **kwargs)
            try:
                page = json.loads(response.data)
            except ValueError:
                # A web server or a proxy at the kubeconfig's address answers 200 with a page.
                raise KubeConfigurationError(
                    f"list {what}: the server answered with something that is not a Kubernetes list ("
                    f"{describe_answer(response.status, response.data)}); check the server address in the kubeconfig"
                ) from None
            if not isinstance(page, dict) or not isinstance(page.get("items") or [], list):
                raise KubeConfigurationError(f"list {what}: the server answered JSON that is not a Kubernetes list; "
                                             "check the server address in the kubeconfig")
            yield from page.get("items") or ()
            token = (page.get("metadata") or {}).get("continue") if isinstance(page.get("metadata"), dict) else None
            if not token:
                return


def list_through(api_client: kube_client.ApiClient, path: str) -> Callable[..., Any]:
    """A list call of ``path`` made as the generated list methods make it (``param_serialize``, then
    ``call_api``, a non-2xx answer raised as ApiException), answering the raw response: the reader
    only ever asks for raw pages (``_preload_content=False``)."""

    def list_page(*, limit: Optional[int] = None, _continue: Optional[str] = None,
                  _request_timeout: Any = None, _preload_content: bool = False) -> Any:
        assert not _preload_content, "only raw pages are read through the lower layer"
        query = [(name, value) for name, value in (("continue", _continue), ("limit", limit)) if value is not None]
        # The stubs (kubernetes-stubs-elephant-fork) describe the older generated client: they lack
        # param_serialize, call_api's new signature and ApiException.from_response.
        request = api_client.param_serialize(  # type: ignore[attr-defined]
            method="GET", resource_path=path, query_params=query, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"])
        response = api_client.call_api(*request, _request_timeout=_request_timeout)  # type: ignore[attr-defined]
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)  # type: ignore[attr-defined]
        return response.response

    return list_page


def parse_provider_id(provider_id: str) -> tuple[Optional[str], Optional[str]]:
    """``aws:///us-west-2a/i-0abc`` -> (``i-0abc``, ``us-west-2a``); anything else -> (None, None)."""
    if not provider_id.startswith("aws://"):
        return None, None
    parts = [part for part in provider_id[len("aws://"):].split("/") if part]
    if len(parts) == 2 and parts[1].startswith("i-"):
        return parts[1], parts[0]
    if len(parts) == 1 and parts[0].startswith("i-"):
        return parts[0], None
    return None, None


def region_of_zone(zone: Optional[str]) -> Optional[str]:
    # us-west-2a -> us-west-2; local zones such as us-west-2-lax-1a are not managed groups' zones.
    return zone[:-1] if zone and zone[-1].isalpha() else None


def node_from_api(item: dict) -> Node:
    meta = metadata_of(item)
    name = object_name(meta)
    spec = mapping(item.get("spec"), "spec")
    status = mapping(item.get("status"), "status")
    labels = text_map(meta.get("labels"), "metadata.labels")
    annotations = text_map(meta.get("annotations"), "metadata.annotations")
    instance_id, zone = parse_provider_id(text(spec.get("providerID"), "spec.providerID"))
    if instance_id is None and labels.get("aws/id"):
        instance_id, zone = labels["aws/id"], labels.get("aws/az")
    ready, heartbeat = False, None
    for condition in sequence(status.get("conditions"), "status.conditions"):
        condition = mapping(condition, "a condition")
        if condition.get("type") == "Ready":
            ready = condition.get("status") == "True"
            heartbeat = parse_time(condition.get("lastHeartbeatTime"))
    last_busy = None
    if annotations.get(LAST_BUSY_ANNOTATION):
        try:
            last_busy = parse_time(annotations[LAST_BUSY_ANNOTATION])
        except ValueError:
            log.warning("node %s: ignoring unreadable %s annotation", name, LAST_BUSY_ANNOTATION)
    taints = []
    for raw in sequence(spec.get("taints"), "spec.taints"):
        raw = mapping(raw, "a taint")
        taints.append(Taint(text(raw.get("key"), "a taint's key"), text(raw.get("value"), "a taint's value"),
                            text(raw.get("effect"), "a taint's effect") or "NoSchedule"))
    return Node(
        name=name,
        labels=labels,
        allocatable=parse_resources(mapping(status.get("allocatable"), "status.allocatable")
                                    or mapping(status.get("capacity"), "status.capacity")),
        taints=tuple(taints),
        unschedulable=spec.get("unschedulable") is True,
        instance_id=instance_id,
        zone=zone,
        region=region_of_zone(zone),
        ready=ready,
        last_heartbeat=heartbeat,
        created=parse_time(meta.get("creationTimestamp")),
        last_busy=last_busy,
    )


def pod_requests(spec: dict) -> Resources:
    """What the scheduler reserves for a pod (its PodRequests), per resource: the app containers
    plus every sidecar (an init container with ``restartPolicy: Always``, KEP-753), or, when
    larger, the largest init container plus the sidecars declared before it (a sidecar counts
    itself and those before it); a pod-level request (``spec.resources``) replaces that for the
    resources it names; then overhead, and one pod slot. Summed as plain integers and built into
    one Resources at the end: 15,000 pods are read every loop."""
    total: dict[str, int] = {}
    for container in sequence(spec.get("containers"), "spec.containers"):
        for name, milli in _container_requests(container).items():
            total[name] = total.get(name, 0) + milli
    init_containers = sequence(spec.get("initContainers"), "spec.initContainers")
    if init_containers:
        sidecars: dict[str, int] = {}  # the sidecars declared so far, summed
        largest_init: dict[str, int] = {}
        for container in init_containers:
            requests = _container_requests(container)
            if _is_sidecar(container):
                for name, milli in requests.items():
                    total[name] = total.get(name, 0) + milli
                    sidecars[name] = sidecars.get(name, 0) + milli
                term = sidecars
            else:
                term = dict(sidecars)
                for name, milli in requests.items():
                    term[name] = term.get(name, 0) + milli
            for name, milli in term.items():
                largest_init[name] = max(largest_init.get(name, 0), milli)
        for name, milli in largest_init.items():
            total[name] = max(total.get(name, 0), milli)
    pod_level = mapping(spec.get("resources"), "spec.resources")
    if pod_level:
        # PodLevelResources: the pod's own requests win for the resources they name (defaulted
        # from its limits, as the API server does, where a server we read has not).
        total.update(_requests_of(pod_level, "spec.resources"))
    for name, quantity in mapping(spec.get("overhead"), "spec.overhead").items():
        total[name] = total.get(name, 0) + quantity_milli(name, quantity)
    total["pods"] = total.get("pods", 0) + ONE_POD_MILLI
    return Resources(total)


def _is_sidecar(container) -> bool:
    return mapping(container, "an init container").get("restartPolicy") == "Always"


def _container_requests(container: dict) -> dict[str, int]:
    return _requests_of(mapping(mapping(container, "a container").get("resources"), "a container's resources"),
                        "a container's resources")


def _requests_of(resources: dict, what: str) -> dict[str, int]:
    # The API server defaults a missing request to the limit; servers we read may not have done it.
    merged = dict(mapping(resources.get("limits"), f"{what}.limits"))
    merged.update(mapping(resources.get("requests"), f"{what}.requests"))
    return {name: quantity_milli(name, quantity) for name, quantity in merged.items()}


def quantity_milli(name: str, quantity) -> int:
    """to_milli, remembered: a cluster's pods ask for a few distinct quantities ("500m", "2Gi")
    many thousands of times, and parse_quantity goes through Decimal. Errors are not cached."""
    if isinstance(quantity, (str, int, float)):
        return _remembered_milli(name, quantity)
    return to_milli(name, quantity)  # not hashable: let to_milli say what is wrong with it


_remembered_milli = functools.lru_cache(maxsize=4096)(to_milli)


def pod_from_api(item: dict) -> Pod:
    meta = metadata_of(item)
    name = object_name(meta)
    spec = mapping(item.get("spec"), "spec")
    status = mapping(item.get("status"), "status")
    namespace = text(meta.get("namespace"), "metadata.namespace") or "default"
    annotations = text_map(meta.get("annotations"), "metadata.annotations")
    labels = text_map(meta.get("labels"), "metadata.labels")
    safe = annotations.get(SAFE_TO_EVICT_ANNOTATION)
    scheduled_at = None
    unschedulable_message = ""
    for condition in sequence(status.get("conditions"), "status.conditions"):
        condition = mapping(condition, "a condition")
        if condition.get("type") == "PodScheduled":
            if condition.get("status") == "True":
                scheduled_at = parse_time(condition.get("lastTransitionTime"))
            elif condition.get("status") == "False" and condition.get("reason") == "Unschedulable":
                unschedulable_message = text(condition.get("message"), "the PodScheduled condition's message")
    affinity = mapping(spec.get("affinity"), "spec.affinity")
    try:
        phase = PodPhase(text(status.get("phase"), "status.phase") or "Pending")
    except ValueError:
        phase = PodPhase.UNKNOWN
    owners = [mapping(ref, "an ownerReference") for ref in sequence(meta.get("ownerReferences"), "ownerReferences")]
    return Pod(
        namespace=namespace,
        name=name,
        uid=text(meta.get("uid"), "metadata.uid"),
        phase=phase,
        requests=pod_requests(spec),
        node_name=text(spec.get("nodeName"), "spec.nodeName") or None,
        placement=pod_placement(spec),
        anti_affinity=_pod_affinity_terms(mapping(affinity.get("podAntiAffinity"), "podAntiAffinity"), namespace,
                                          labels, "pod anti-affinity"),
        affinity=_pod_affinity_terms(mapping(affinity.get("podAffinity"), "podAffinity"), namespace, labels,
                                     "pod affinity"),
        spread=_spread_constraints(spec.get("topologySpreadConstraints"), labels),
        host_ports=host_ports(spec),
        scheduling_gates=tuple(name_text(mapping(gate, "a scheduling gate").get("name"), "a scheduling gate's name")
                               for gate in sequence(spec.get("schedulingGates"), "spec.schedulingGates")),
        unschedulable_message=unschedulable_message,
        labels=labels,
        owner_kinds=tuple(text(ref.get("kind"), "an ownerReference's kind") for ref in owners),
        is_mirror=MIRROR_ANNOTATION in annotations,
        safe_to_evict=None if safe is None else safe.strip().lower() == "true",
        created=parse_time(meta.get("creationTimestamp")),
        scheduled_at=scheduled_at or parse_time(status.get("startTime")),
    )


def pod_and_claims_from_api(item: dict) -> tuple[Pod, tuple[str, ...]]:
    """The pod, and for a pending pod without a node the claims its volumes use (kube_volumes.py);
    the claims of a pod on a node are not read: its volumes are where they are."""
    pod = pod_from_api(item)
    if not pod.is_pending_unassigned:
        return pod, ()
    return pod, claim_names(mapping(item.get("spec"), "spec"), pod.name)


def pod_placement(spec: dict, extra_tolerations: tuple[Toleration, ...] = ()) -> Placement:
    """A pod spec's node selector, tolerations and required node affinity."""
    affinity = mapping(spec.get("affinity"), "spec.affinity")
    tolerations = tuple(toleration(t) for t in sequence(spec.get("tolerations"), "spec.tolerations"))
    return Placement(
        node_selector=tuple(sorted(text_map(spec.get("nodeSelector"), "spec.nodeSelector").items())),
        tolerations=tolerations + tuple(t for t in extra_tolerations if t not in tolerations),
        node_affinity=node_selector_terms(mapping(affinity.get("nodeAffinity"), "nodeAffinity").get(
            "requiredDuringSchedulingIgnoredDuringExecution")),
    )


def host_ports(spec: dict) -> tuple[str, ...]:
    """``"TCP/9000"`` for each port the pod holds on its node: every container's (sidecars'
    included) ``hostPort``, and on the host network every ``containerPort`` (the API server sets
    the host port to it there)."""
    host_network = spec.get("hostNetwork") is True
    containers = sequence(spec.get("containers"), "spec.containers")
    sidecars = [c for c in sequence(spec.get("initContainers"), "spec.initContainers") if _is_sidecar(c)]
    ports = set()
    for container in (*containers, *sidecars):
        for port in sequence(mapping(container, "a container").get("ports"), "a container's ports"):
            port = mapping(port, "a container port")
            number = port.get("hostPort")
            if number is None or number == 0:
                if not host_network:
                    continue
                number = port.get("containerPort")
            if isinstance(number, bool) or not isinstance(number, int) or not 0 < number < 65536:
                raise ValueError(f"port {number!r} is not a port number")
            ports.add(f"{text(port.get('protocol'), 'a port protocol') or 'TCP'}/{number}")
    return tuple(sorted(ports))


def _pod_affinity_terms(affinity: dict, namespace: str, labels: dict, what: str) -> tuple[PodAffinityTerm, ...]:
    """Required pod affinity or anti-affinity terms, on any topology key. Namespaces: the term's
    list, else the pod's own; a ``namespaceSelector`` makes them every namespace (ALL_NAMESPACES):
    exactly so when it is empty ({}); a non-empty one would need the namespaces' labels, which are
    not read, so it is taken as every namespace too (safe for anti-affinity, which then keeps a pod
    away from more pods than it must; generous for affinity). ``matchLabelKeys`` and
    ``mismatchLabelKeys`` add the pod's own values to the selector (In and NotIn), as the API
    server does."""
    terms = []
    for term in sequence(affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), f"required {what}"):
        term = mapping(term, f"a {what} term")
        if term.get("namespaceSelector") is not None:
            mapping(term.get("namespaceSelector"), "a namespaceSelector")
            namespaces: tuple[str, ...] = ALL_NAMESPACES
        else:
            namespaces = tuple(sorted({text(n, "a namespace") for n in sequence(term.get("namespaces"), "namespaces")}))
        selector = label_selector(term.get("labelSelector"))
        extra = [Requirement(key, "In", (labels[key],))
                 for key in _label_keys(term.get("matchLabelKeys"), "matchLabelKeys") if key in labels]
        extra += [Requirement(key, "NotIn", (labels[key],))
                  for key in _label_keys(term.get("mismatchLabelKeys"), "mismatchLabelKeys") if key in labels]
        if extra:
            selector = LabelSelector(selector.match_labels, selector.match_expressions + tuple(extra))
        terms.append(PodAffinityTerm(selector, namespaces or (namespace,),
                                     name_text(term.get("topologyKey"), f"a {what} term's topologyKey")))
    return tuple(terms)


def _label_keys(keys, what: str) -> list[str]:
    return [text(key, f"a key of {what}") for key in sequence(keys, what)]


def _spread_constraints(constraints, labels: dict) -> tuple[SpreadConstraint, ...]:
    """``whenUnsatisfiable: DoNotSchedule`` topology spread constraints (ScheduleAnyway ones are
    hints). ``matchLabelKeys`` adds the pod's own values of those keys to the selector, as the
    scheduler does. One without a labelSelector matches no pod, so it spreads nothing and is left
    out (the scheduler would still want the topology label on the node)."""
    spread = []
    for raw in sequence(constraints, "spec.topologySpreadConstraints"):
        raw = mapping(raw, "a topology spread constraint")
        if raw.get("whenUnsatisfiable") != "DoNotSchedule":
            continue
        max_skew = whole(raw.get("maxSkew"), "maxSkew", 1)
        min_domains = whole(raw.get("minDomains"), "minDomains", 1) if raw.get("minDomains") is not None else 1
        key = name_text(raw.get("topologyKey"), "a spread constraint's topologyKey")
        if raw.get("labelSelector") is None:
            continue
        selector = label_selector(raw.get("labelSelector"))
        own = [(k, labels[k]) for k in _label_keys(raw.get("matchLabelKeys"), "matchLabelKeys") if k in labels]
        if own:
            selector = LabelSelector(tuple(sorted(set(selector.match_labels) | set(own))), selector.match_expressions)
        spread.append(SpreadConstraint(key, max_skew, selector, min_domains))
    return tuple(spread)


def budget_from_api(item: dict) -> DisruptionBudget:
    meta = metadata_of(item)
    allowed = mapping(item.get("status"), "status").get("disruptionsAllowed") or 0
    if isinstance(allowed, bool) or not isinstance(allowed, int):
        raise TypeError(f"status.disruptionsAllowed {allowed!r} is not a whole number")
    return DisruptionBudget(
        namespace=text(meta.get("namespace"), "metadata.namespace") or "default",
        name=object_name(meta),
        selector=label_selector(mapping(item.get("spec"), "spec").get("selector")),
        disruptions_allowed=allowed,
    )


def daemonset_from_api(item: dict) -> DaemonSet:
    """A DaemonSet's pod template as the controller stamps it on a node: requests as for a pod,
    placement with the controller's own tolerations added, host ports."""
    meta = metadata_of(item)
    template = mapping(mapping(item.get("spec"), "spec").get("template"), "spec.template")
    spec = mapping(template.get("spec"), "spec.template.spec")
    added = DAEMON_TOLERATIONS + ((HOST_NETWORK_DAEMON_TOLERATION,) if spec.get("hostNetwork") is True else ())
    return DaemonSet(
        namespace=text(meta.get("namespace"), "metadata.namespace") or "default",
        name=object_name(meta),
        requests=pod_requests(spec),
        placement=pod_placement(spec, added),
        host_ports=host_ports(spec),
    )
