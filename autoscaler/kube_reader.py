"""READ: nodes, pods and disruption budgets from the Kubernetes API -> immutable model.

Lists are read page by page as raw JSON (``_preload_content=False``): the official client's model
objects cost several times the memory and time of the dicts at 15,000 pods, and we convert every
object into our own model at once anyway. A pod or node that cannot be converted is logged and
skipped; it never fails the loop.
"""
from __future__ import annotations

import functools
import json
import logging
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional

from kubernetes import client as kube_client

from .http_summary import describe_answer
from .kube_connect import REQUEST_TIMEOUT
from .kube_errors import KubeConfigurationError, kube_call
from .model import (
    HOSTNAME_LABEL,
    LAST_BUSY_ANNOTATION,
    SAFE_TO_EVICT_ANNOTATION,
    AntiAffinityTerm,
    DisruptionBudget,
    LabelSelector,
    Node,
    Placement,
    Pod,
    PodPhase,
    Requirement,
    Resources,
    Taint,
    Toleration,
)
from .resources import QuantityError, parse_resources, to_milli

log = logging.getLogger(__name__)

PAGE_SIZE = 500
# (connect, read) seconds for one page: the client's default (kube_connect.REQUEST_TIMEOUT), so a
# stalled server fails the loop instead of holding it; a page of 500 pods takes well under a second.
LIST_REQUEST_TIMEOUT = REQUEST_TIMEOUT
ONE_POD_MILLI = 1000
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


class KubeReader:
    def __init__(self, api_client: kube_client.ApiClient, namespace: Optional[str] = None):
        self.core = kube_client.CoreV1Api(api_client)
        self.policy = kube_client.PolicyV1Api(api_client)
        self.namespace = namespace

    def read_nodes(self) -> tuple[Node, ...]:
        return _convert_all(self._pages(self.core.list_node, "nodes"), node_from_api, "node")

    def read_pods(self) -> tuple[Pod, ...]:
        if self.namespace:
            lister = lambda **kw: self.core.list_namespaced_pod(self.namespace, **kw)  # noqa: E731
        else:
            lister = self.core.list_pod_for_all_namespaces
        # Finished pods occupy nothing and are never pending: leave them on the server.
        selector = "status.phase!=Succeeded,status.phase!=Failed"
        return _convert_all(self._pages(lister, "pods", field_selector=selector), pod_from_api, "pod")

    def read_budgets(self) -> tuple[DisruptionBudget, ...]:
        if self.namespace:
            lister = lambda **kw: self.policy.list_namespaced_pod_disruption_budget(self.namespace, **kw)  # noqa: E731
        else:
            lister = self.policy.list_pod_disruption_budget_for_all_namespaces
        return _convert_all(self._pages(lister, "pod disruption budgets"), budget_from_api, "poddisruptionbudget")

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


def _convert_all(items, convert, kind: str) -> tuple:
    converted = []
    for item in items:
        try:
            converted.append(convert(item))
        except (QuantityError, ValueError, TypeError, KeyError, AttributeError) as error:
            meta = item.get("metadata") or {} if isinstance(item, dict) else {}
            name = "/".join(filter(None, (meta.get("namespace"), meta.get("name")))) or "?"
            log.warning("skipping %s %s: %s", kind, name, error)
    return tuple(converted)


def parse_time(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


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
    meta = item["metadata"]
    spec = item.get("spec") or {}
    status = item.get("status") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    instance_id, zone = parse_provider_id(spec.get("providerID") or "")
    if instance_id is None and labels.get("aws/id"):
        instance_id, zone = labels["aws/id"], labels.get("aws/az")
    ready, heartbeat = False, None
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Ready":
            ready = condition.get("status") == "True"
            heartbeat = parse_time(condition.get("lastHeartbeatTime"))
    last_busy = None
    if annotations.get(LAST_BUSY_ANNOTATION):
        try:
            last_busy = parse_time(annotations[LAST_BUSY_ANNOTATION])
        except ValueError:
            log.warning("node %s: ignoring unreadable %s annotation", meta["name"], LAST_BUSY_ANNOTATION)
    return Node(
        name=meta["name"],
        labels=labels,
        allocatable=parse_resources(status.get("allocatable") or status.get("capacity")),
        taints=tuple(
            Taint(t["key"], t.get("value") or "", t.get("effect") or "NoSchedule") for t in spec.get("taints") or ()
        ),
        unschedulable=bool(spec.get("unschedulable")),
        instance_id=instance_id,
        zone=zone,
        region=region_of_zone(zone),
        ready=ready,
        last_heartbeat=heartbeat,
        created=parse_time(meta.get("creationTimestamp")),
        last_busy=last_busy,
    )


def pod_requests(spec: dict) -> Resources:
    """What the scheduler reserves for a pod: sum of containers, or the largest init container if
    larger (per resource), plus overhead, plus one pod slot. Summed as plain integers and built
    into one Resources at the end: 15,000 pods are read every loop."""
    total: dict[str, int] = {}
    for container in spec.get("containers") or ():
        for name, milli in _container_requests(container).items():
            total[name] = total.get(name, 0) + milli
    for container in spec.get("initContainers") or ():
        for name, milli in _container_requests(container).items():
            total[name] = max(total.get(name, 0), milli)
    for name, quantity in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, 0) + quantity_milli(name, quantity)
    total["pods"] = total.get("pods", 0) + ONE_POD_MILLI
    return Resources(total)


def _container_requests(container: dict) -> dict[str, int]:
    resources = container.get("resources") or {}
    # The API server defaults a missing request to the limit; servers we read may not have done it.
    merged = dict(resources.get("limits") or {})
    merged.update(resources.get("requests") or {})
    return {name: quantity_milli(name, quantity) for name, quantity in merged.items()}


def quantity_milli(name: str, quantity) -> int:
    """to_milli, remembered: a cluster's pods ask for a few distinct quantities ("500m", "2Gi")
    many thousands of times, and parse_quantity goes through Decimal. Errors are not cached."""
    if isinstance(quantity, (str, int, float)):
        return _remembered_milli(name, quantity)
    return to_milli(name, quantity)  # not hashable: let to_milli say what is wrong with it


_remembered_milli = functools.lru_cache(maxsize=4096)(to_milli)


def pod_from_api(item: dict) -> Pod:
    meta = item["metadata"]
    spec = item.get("spec") or {}
    status = item.get("status") or {}
    namespace = meta.get("namespace") or "default"
    annotations = meta.get("annotations") or {}
    safe = annotations.get(SAFE_TO_EVICT_ANNOTATION)
    scheduled_at = None
    for condition in status.get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("status") == "True":
            scheduled_at = parse_time(condition.get("lastTransitionTime"))
    affinity = spec.get("affinity") or {}
    try:
        phase = PodPhase(status.get("phase") or "Pending")
    except ValueError:
        phase = PodPhase.UNKNOWN
    return Pod(
        namespace=namespace,
        name=meta["name"],
        uid=meta.get("uid") or "",
        phase=phase,
        requests=pod_requests(spec),
        node_name=spec.get("nodeName") or None,
        placement=Placement(
            node_selector=tuple(sorted((spec.get("nodeSelector") or {}).items())),
            tolerations=tuple(_toleration(t) for t in spec.get("tolerations") or ()),
            node_affinity=_node_affinity(affinity.get("nodeAffinity") or {}),
        ),
        anti_affinity=_anti_affinity(affinity.get("podAntiAffinity") or {}, namespace),
        labels=meta.get("labels") or {},
        owner_kinds=tuple(ref.get("kind", "") for ref in meta.get("ownerReferences") or ()),
        is_mirror=MIRROR_ANNOTATION in annotations,
        safe_to_evict=None if safe is None else safe.strip().lower() == "true",
        created=parse_time(meta.get("creationTimestamp")),
        scheduled_at=scheduled_at or parse_time(status.get("startTime")),
    )


def _toleration(raw: dict) -> Toleration:
    return Toleration(
        key=raw.get("key") or "",
        operator=raw.get("operator") or "Equal",
        value=raw.get("value") or "",
        effect=raw.get("effect") or "",
    )


def _requirements(expressions) -> tuple[Requirement, ...]:
    return tuple(
        Requirement(e["key"], e["operator"], tuple(str(v) for v in e.get("values") or ())) for e in expressions or ()
    )


def _field_requirements(fields) -> tuple[Requirement, ...]:
    """A term's ``matchFields``. The API server accepts only ``metadata.name``; it becomes a
    requirement on the node's ``kubernetes.io/hostname`` label, which the kubelet sets to the node
    name (on EC2 both are the private DNS name), so the model needs no field selectors of its own.
    Without this, a term with only ``matchFields`` (what the DaemonSet controller writes) would be
    an empty term, which matches no node."""
    return tuple(
        Requirement(HOSTNAME_LABEL, f["operator"], tuple(str(v) for v in f.get("values") or ()))
        for f in fields or () if f.get("key") == "metadata.name"
    )


def _node_affinity(node_affinity: dict) -> tuple[tuple[Requirement, ...], ...]:
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    return tuple(
        _requirements(term.get("matchExpressions")) + _field_requirements(term.get("matchFields"))
        for term in required.get("nodeSelectorTerms") or ()
    )


def label_selector(raw: Optional[dict]) -> LabelSelector:
    raw = raw or {}
    return LabelSelector(
        match_labels=tuple(sorted((raw.get("matchLabels") or {}).items())),
        match_expressions=_requirements(raw.get("matchExpressions")),
    )


def _anti_affinity(anti: dict, namespace: str) -> tuple[AntiAffinityTerm, ...]:
    terms = []
    for term in anti.get("requiredDuringSchedulingIgnoredDuringExecution") or ():
        if term.get("topologyKey") != HOSTNAME_LABEL:
            continue  # only hostname spreading changes how many nodes a set of pods needs
        namespaces = tuple(sorted(term.get("namespaces") or ())) or (namespace,)
        terms.append(AntiAffinityTerm(label_selector(term.get("labelSelector")), namespaces))
    return tuple(terms)


def budget_from_api(item: dict) -> DisruptionBudget:
    meta = item["metadata"]
    return DisruptionBudget(
        namespace=meta.get("namespace") or "default",
        name=meta["name"],
        selector=label_selector((item.get("spec") or {}).get("selector")),
        disruptions_allowed=int((item.get("status") or {}).get("disruptionsAllowed") or 0),
    )
