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
from typing import Any, Callable, Iterator, Optional

from kubernetes import client as kube_client

from ..clients.http_summary import describe_answer
from ..clients.kube_connect import REQUEST_TIMEOUT
from ..clients.kube_errors import KubeConfigurationError, kube_call
from ..model.objects import (
    HOSTNAME_LABEL,
    LAST_BUSY_ANNOTATION,
    SAFE_TO_EVICT_ANNOTATION,
    PodAffinityTerm,
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
from .resources import parse_resources, to_milli

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
        lister: Callable[..., Any]
        if namespace := self.namespace:
            lister = lambda **kw: self.core.list_namespaced_pod(namespace, **kw)  # noqa: E731
        else:
            lister = self.core.list_pod_for_all_namespaces
        # Finished pods occupy nothing and are never pending: leave them on the server.
        selector = "status.phase!=Succeeded,status.phase!=Failed"
        return _convert_all(self._pages(lister, "pods", field_selector=selector), pod_from_api, "pod")

    def read_budgets(self) -> tuple[DisruptionBudget, ...]:
        lister: Callable[..., Any]
        if namespace := self.namespace:
            lister = lambda **kw: self.policy.list_namespaced_pod_disruption_budget(namespace, **kw)  # noqa: E731
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
        except Exception as error:  # noqa: BLE001 - any malformed field of one object: skip that object
            log.warning("skipping %s %s: cannot read it (%s: %s)", kind, _name_of(item), type(error).__name__,
                        " ".join(str(error).split())[:200])
    return tuple(converted)


def _name_of(item) -> str:
    """namespace/name of a raw object, as far as it can be read; "?" when it cannot."""
    meta = item.get("metadata") if isinstance(item, dict) else None
    if not isinstance(meta, dict):
        return "?"
    parts = [meta.get("namespace"), meta.get("name")]
    return "/".join(part for part in parts if isinstance(part, str) and part) or "?"


# Typed reads of a raw object's fields: a field that is missing or null takes its empty value; one
# of the wrong type raises TypeError, and the object is skipped (_convert_all) rather than let a
# list where a name belongs reach the decisions.

def _mapping(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{what} is {type(value).__name__}, not a mapping")
    return value


def _sequence(value, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{what} is {type(value).__name__}, not a list")
    return value


def _text(value, what: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise TypeError(f"{what} is {type(value).__name__}, not a string")
    return value


def _text_map(value, what: str) -> dict:
    """labels, annotations, selectors: strings to strings."""
    mapping = _mapping(value, what)
    for key, item in mapping.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"{what} has {key!r}: {item!r}, not a string to a string")
    return mapping


def _name(meta: dict) -> str:
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("metadata.name is missing or not a name")
    return name


def _metadata(item) -> dict:
    if not isinstance(item, dict):
        raise TypeError(f"the object is {type(item).__name__}, not a mapping")
    return _mapping(item.get("metadata"), "metadata")


def parse_time(text: Optional[str]) -> Optional[datetime]:
    if not text:
        return None
    if not isinstance(text, str):
        raise TypeError(f"time {text!r} is not a string")
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
    meta = _metadata(item)
    name = _name(meta)
    spec = _mapping(item.get("spec"), "spec")
    status = _mapping(item.get("status"), "status")
    labels = _text_map(meta.get("labels"), "metadata.labels")
    annotations = _text_map(meta.get("annotations"), "metadata.annotations")
    instance_id, zone = parse_provider_id(_text(spec.get("providerID"), "spec.providerID"))
    if instance_id is None and labels.get("aws/id"):
        instance_id, zone = labels["aws/id"], labels.get("aws/az")
    ready, heartbeat = False, None
    for condition in _sequence(status.get("conditions"), "status.conditions"):
        condition = _mapping(condition, "a condition")
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
    for raw in _sequence(spec.get("taints"), "spec.taints"):
        raw = _mapping(raw, "a taint")
        taints.append(Taint(_text(raw.get("key"), "a taint's key"), _text(raw.get("value"), "a taint's value"),
                            _text(raw.get("effect"), "a taint's effect") or "NoSchedule"))
    return Node(
        name=name,
        labels=labels,
        allocatable=parse_resources(_mapping(status.get("allocatable"), "status.allocatable")
                                    or _mapping(status.get("capacity"), "status.capacity")),
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
    """What the scheduler reserves for a pod: sum of containers, or the largest init container if
    larger (per resource), plus overhead, plus one pod slot. Summed as plain integers and built
    into one Resources at the end: 15,000 pods are read every loop."""
    total: dict[str, int] = {}
    for container in _sequence(spec.get("containers"), "spec.containers"):
        for name, milli in _container_requests(container).items():
            total[name] = total.get(name, 0) + milli
    for container in _sequence(spec.get("initContainers"), "spec.initContainers"):
        for name, milli in _container_requests(container).items():
            total[name] = max(total.get(name, 0), milli)
    for name, quantity in _mapping(spec.get("overhead"), "spec.overhead").items():
        total[name] = total.get(name, 0) + quantity_milli(name, quantity)
    total["pods"] = total.get("pods", 0) + ONE_POD_MILLI
    return Resources(total)


def _container_requests(container: dict) -> dict[str, int]:
    resources = _mapping(_mapping(container, "a container").get("resources"), "a container's resources")
    # The API server defaults a missing request to the limit; servers we read may not have done it.
    merged = dict(_mapping(resources.get("limits"), "limits"))
    merged.update(_mapping(resources.get("requests"), "requests"))
    return {name: quantity_milli(name, quantity) for name, quantity in merged.items()}


def quantity_milli(name: str, quantity) -> int:
    """to_milli, remembered: a cluster's pods ask for a few distinct quantities ("500m", "2Gi")
    many thousands of times, and parse_quantity goes through Decimal. Errors are not cached."""
    if isinstance(quantity, (str, int, float)):
        return _remembered_milli(name, quantity)
    return to_milli(name, quantity)  # not hashable: let to_milli say what is wrong with it


_remembered_milli = functools.lru_cache(maxsize=4096)(to_milli)


def pod_from_api(item: dict) -> Pod:
    meta = _metadata(item)
    name = _name(meta)
    spec = _mapping(item.get("spec"), "spec")
    status = _mapping(item.get("status"), "status")
    namespace = _text(meta.get("namespace"), "metadata.namespace") or "default"
    annotations = _text_map(meta.get("annotations"), "metadata.annotations")
    safe = annotations.get(SAFE_TO_EVICT_ANNOTATION)
    scheduled_at = None
    for condition in _sequence(status.get("conditions"), "status.conditions"):
        condition = _mapping(condition, "a condition")
        if condition.get("type") == "PodScheduled" and condition.get("status") == "True":
            scheduled_at = parse_time(condition.get("lastTransitionTime"))
    affinity = _mapping(spec.get("affinity"), "spec.affinity")
    try:
        phase = PodPhase(_text(status.get("phase"), "status.phase") or "Pending")
    except ValueError:
        phase = PodPhase.UNKNOWN
    owners = [_mapping(ref, "an ownerReference") for ref in _sequence(meta.get("ownerReferences"), "ownerReferences")]
    return Pod(
        namespace=namespace,
        name=name,
        uid=_text(meta.get("uid"), "metadata.uid"),
        phase=phase,
        requests=pod_requests(spec),
        node_name=_text(spec.get("nodeName"), "spec.nodeName") or None,
        placement=Placement(
            node_selector=tuple(sorted(_text_map(spec.get("nodeSelector"), "spec.nodeSelector").items())),
            tolerations=tuple(_toleration(t) for t in _sequence(spec.get("tolerations"), "spec.tolerations")),
            node_affinity=_node_affinity(_mapping(affinity.get("nodeAffinity"), "nodeAffinity")),
        ),
        anti_affinity=_anti_affinity(_mapping(affinity.get("podAntiAffinity"), "podAntiAffinity"), namespace),
        labels=_text_map(meta.get("labels"), "metadata.labels"),
        owner_kinds=tuple(_text(ref.get("kind"), "an ownerReference's kind") for ref in owners),
        is_mirror=MIRROR_ANNOTATION in annotations,
        safe_to_evict=None if safe is None else safe.strip().lower() == "true",
        created=parse_time(meta.get("creationTimestamp")),
        scheduled_at=scheduled_at or parse_time(status.get("startTime")),
    )


def _toleration(raw: dict) -> Toleration:
    raw = _mapping(raw, "a toleration")
    return Toleration(
        key=_text(raw.get("key"), "a toleration's key"),
        operator=_text(raw.get("operator"), "a toleration's operator") or "Equal",
        value=_text(raw.get("value"), "a toleration's value"),
        effect=_text(raw.get("effect"), "a toleration's effect"),
    )


def _requirements(expressions) -> tuple[Requirement, ...]:
    requirements = []
    for expression in _sequence(expressions, "matchExpressions"):
        expression = _mapping(expression, "a match expression")
        values = _sequence(expression.get("values"), "a match expression's values")
        requirements.append(Requirement(_name_text(expression.get("key"), "a match expression's key"),
                                        _name_text(expression.get("operator"), "a match expression's operator"),
                                        tuple(_scalar_text(v) for v in values)))
    return tuple(requirements)


def _name_text(value, what: str) -> str:
    text = _text(value, what)
    if not text:
        raise ValueError(f"{what} is missing")
    return text


def _scalar_text(value) -> str:
    if isinstance(value, (dict, list)) or value is None:
        raise TypeError(f"value {value!r} is not a string")
    return str(value)


def _field_requirements(fields) -> tuple[Requirement, ...]:
    """A term's ``matchFields``. The API server accepts only ``metadata.name``; it becomes a
    requirement on the node's ``kubernetes.io/hostname`` label, which the kubelet sets to the node
    name (on EC2 both are the private DNS name), so the model needs no field selectors of its own.
    Without this, a term with only ``matchFields`` (what the DaemonSet controller writes) would be
    an empty term, which matches no node."""
    requirements = []
    for field in _sequence(fields, "matchFields"):
        field = _mapping(field, "a match field")
        if field.get("key") == "metadata.name":
            values = _sequence(field.get("values"), "a match field's values")
            requirements.append(Requirement(HOSTNAME_LABEL, _name_text(field.get("operator"), "a match field's operator"),
                                            tuple(_scalar_text(v) for v in values)))
    return tuple(requirements)


def _node_affinity(node_affinity: dict) -> tuple[tuple[Requirement, ...], ...]:
    required = _mapping(node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution"), "required node affinity")
    terms = [_mapping(term, "a node selector term") for term in _sequence(required.get("nodeSelectorTerms"),
                                                                          "nodeSelectorTerms")]
    return tuple(_requirements(term.get("matchExpressions")) + _field_requirements(term.get("matchFields"))
                 for term in terms)


def label_selector(raw: Optional[dict]) -> LabelSelector:
    raw = _mapping(raw, "a label selector")
    return LabelSelector(
        match_labels=tuple(sorted(_text_map(raw.get("matchLabels"), "matchLabels").items())),
        match_expressions=_requirements(raw.get("matchExpressions")),
    )


def _anti_affinity(anti: dict, namespace: str) -> tuple[PodAffinityTerm, ...]:
    terms = []
    for term in _sequence(anti.get("requiredDuringSchedulingIgnoredDuringExecution"), "required pod anti-affinity"):
        term = _mapping(term, "an anti-affinity term")
        if term.get("topologyKey") != HOSTNAME_LABEL:
            continue  # only hostname spreading changes how many nodes a set of pods needs
        namespaces = tuple(sorted(_text(n, "a namespace") for n in _sequence(term.get("namespaces"), "namespaces")))
        terms.append(PodAffinityTerm(label_selector(term.get("labelSelector")), namespaces or (namespace,)))
    return tuple(terms)


def budget_from_api(item: dict) -> DisruptionBudget:
    meta = _metadata(item)
    allowed = _mapping(item.get("status"), "status").get("disruptionsAllowed") or 0
    if isinstance(allowed, bool) or not isinstance(allowed, int):
        raise TypeError(f"status.disruptionsAllowed {allowed!r} is not a whole number")
    return DisruptionBudget(
        namespace=_text(meta.get("namespace"), "metadata.namespace") or "default",
        name=_name(meta),
        selector=label_selector(_mapping(item.get("spec"), "spec").get("selector")),
        disruptions_allowed=allowed,
    )
