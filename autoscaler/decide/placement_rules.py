"""The placement rules, one predicate each, as the scheduler's filter plugins have them.

Pure and stateless: each rule answers for one pod and one place (a live node, or a new instance
of a group) from plain facts about that place: its labels and taints, its free room, the host
ports held there, and, for the inter-pod rules, how many matching pods its topology domain holds.
Counting pods per domain is topology.py's concern; packing, fit on live nodes, infeasibility and
scale in all ask these same predicates (docs/decisions.md#scale-up).

- resources (NodeResourcesFit): ``resources_fit``; packing places by count with the same rule
  over per-dimension free room (packing.copies_fitting).
- node affinity (NodeAffinity, incl. the bound PersistentVolumes' node affinity of VolumeBinding):
  ``requirement_matches``, ``node_affinity_matches``, ``volume_affinity_matches``.
- taints (TaintToleration): ``tolerates``.
- ``placement_matches``: node selector AND node affinity AND every volume's affinity AND taints.
- host ports (NodePorts): ``ports_free``; packing treats each port as a dimension of capacity 1.
- inter-pod affinity and anti-affinity (InterPodAffinity): ``term_selects``,
  ``anti_affinity_copies``, ``affinity_copies``, ``anti_affinity_conflict`` (one node).
- topology spread, DoNotSchedule (PodTopologySpread): ``spread_copies``.

The ``*_copies`` rules say how many more pods alike a place admits (0: filtered out), so packing
can place identical pods by count.
"""
from __future__ import annotations

from typing import Collection, Iterable, Mapping, Optional, Sequence

from ..model.objects import (
    HOSTNAME_LABEL,
    ZONE_LABEL,
    Group,
    LabelSelector,
    Placement,
    Pod,
    PodAffinityTerm,
    Requirement,
    Resources,
    Taint,
    Toleration,
)

UNBOUNDED = 1 << 30  # "as many as you like" for the *_copies rules

# ---------------------------------------------------------------- resources


def resources_fit(requests: Resources, free: Resources) -> bool:
    """Every resource asked for is free (NodeResourcesFit)."""
    return requests.fits_in(free)


# ---------------------------------------------------------------- taints

# Only these effects keep a pod off a node; PreferNoSchedule is a hint the scheduler may ignore.
SCHEDULING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


def toleration_tolerates(toleration: Toleration, taint: Taint) -> bool:
    if toleration.effect and toleration.effect != taint.effect:
        return False
    if toleration.operator == "Exists":
        return not toleration.key or toleration.key == taint.key
    return toleration.key == taint.key and toleration.value == taint.value


def tolerates(tolerations: Sequence[Toleration], taints: Iterable[Taint]) -> bool:
    """True when every NoSchedule/NoExecute taint is tolerated by at least one toleration."""
    for taint in taints:
        if taint.effect not in SCHEDULING_EFFECTS:
            continue
        if not any(toleration_tolerates(toleration, taint) for toleration in tolerations):
            return False
    return True


# ---------------------------------------------------------------- node affinity


def _as_int(text: str) -> Optional[int]:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def requirement_matches(requirement: Requirement, labels: Mapping[str, str]) -> bool:
    """One match expression against a label map, with Kubernetes' rules for absent labels:
    NotIn and DoesNotExist match a node without the label; In, Exists, Gt and Lt do not."""
    operator = requirement.operator
    value = labels.get(requirement.key)
    if operator == "In":
        return value is not None and value in requirement.values
    if operator == "NotIn":
        return value is None or value not in requirement.values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt"):
        if value is None or len(requirement.values) != 1:
            return False
        have, bound = _as_int(value), _as_int(requirement.values[0])
        if have is None or bound is None:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False  # an operator Kubernetes does not know selects nothing


def node_affinity_matches(terms: Sequence[Sequence[Requirement]], labels: Mapping[str, str]) -> bool:
    """Required node affinity: terms are ORed, requirements inside a term ANDed; a term without
    requirements matches nothing (as in Kubernetes)."""
    return any(term and all(requirement_matches(r, labels) for r in term) for term in terms)


def volume_affinity_matches(placement: Placement, labels: Mapping[str, str]) -> bool:
    """Every bound PersistentVolume's required node affinity holds (VolumeBinding)."""
    return all(node_affinity_matches(terms, labels) for terms in placement.volume_affinity)


def node_labels_match(placement: Placement, labels: Mapping[str, str]) -> bool:
    """Node selector, required node affinity and the volumes' node affinity, taints aside (what
    topology spread counts as an eligible node)."""
    for key, value in placement.node_selector:
        if labels.get(key) != value:
            return False
    if placement.node_affinity and not node_affinity_matches(placement.node_affinity, labels):
        return False
    return not placement.volume_affinity or volume_affinity_matches(placement, labels)


def placement_matches(placement: Placement, labels: Mapping[str, str], taints: Iterable[Taint]) -> bool:
    """Node selector, required node affinity, the volumes' node affinity and taints of a node (or
    of a group's future nodes)."""
    return node_labels_match(placement, labels) and tolerates(placement.tolerations, taints)


def placement_label_keys(placement: Placement) -> set[str]:
    """The node labels a placement looks at."""
    keys = {key for key, _ in placement.node_selector}
    keys.update(r.key for term in placement.node_affinity for r in term)
    keys.update(r.key for terms in placement.volume_affinity for term in terms for r in term)
    return keys


def unpromised_zone(placement: Placement, group: Group) -> bool:
    """A group spanning several zones whose nodes would match the placement in one of its zones,
    but which cannot promise that zone for a new instance (AWS picks it): the placement needs a
    zone (a zonal volume, a zone in its node affinity) that the group does not carry as a label."""
    if len(set(group.zones)) <= 1 or ZONE_LABEL in group.labels:
        return False
    if placement_matches(placement, group.labels, group.taints):
        return False
    return any(placement_matches(placement, {**group.labels, ZONE_LABEL: zone}, group.taints) for zone in group.zones)


# ---------------------------------------------------------------- host ports

PORT_PREFIX = "hostport:"  # a host port as a packing dimension: capacity 1 per node or instance


def port_dimension(port: str) -> str:
    return PORT_PREFIX + port


def is_port_dimension(name: str) -> bool:
    return name.startswith(PORT_PREFIX)


def dimension_capacity(name: str, capacity: Resources, held_ports: Collection[str] = frozenset()) -> int:
    """What one empty node offers in a packing dimension: a host port once (never when a DaemonSet
    pod holds it there: ``held_ports``), else its capacity."""
    if name.startswith(PORT_PREFIX):
        return 0 if name[len(PORT_PREFIX):] in held_ports else 1
    return capacity.get(name)


def ports_free(wanted: Iterable[str], held: Collection[str]) -> bool:
    """No port the pod asks for ("TCP/9000") is held by a pod already on the node (NodePorts)."""
    return not any(port in held for port in wanted)


# ---------------------------------------------------------------- inter-pod affinity


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels ANDed with matchExpressions); an empty one matches all."""
    for key, value in selector.match_labels:
        if labels.get(key) != value:
            return False
    return all(requirement_matches(r, labels) for r in selector.match_expressions)


def namespace_selected(namespaces: Sequence[str], namespace: str) -> bool:
    """A term's namespaces ("*": every namespace, as the reader writes an empty namespaceSelector)."""
    return namespace in namespaces or "*" in namespaces


def term_selects(term: PodAffinityTerm, pod: Pod) -> bool:
    """The term selects this pod: its namespace and labels."""
    return namespace_selected(term.namespaces, pod.namespace) and selector_matches(term.selector, pod.labels)


def anti_affinity_copies(matching_in_domain: int, self_match: bool) -> int:
    """The pod's own required anti-affinity term, in the domain (by its topology key) of a place:
    no pod the term selects may be there; pods alike that the term selects exclude each other,
    so such a domain takes one."""
    if matching_in_domain:
        return 0
    return 1 if self_match else UNBOUNDED


def affinity_copies(matching_in_domain: Sequence[int], matching_anywhere: int, self_match: bool) -> int:
    """Required pod affinity, every term of the pod at once (``matching_in_domain``: per term,
    the pods it selects in the place's domain by the term's topology key). Every term needs one
    there; except that when no pod anywhere matches any term and the pod matches all its own
    terms, the first such pod may go anywhere, and its peers then follow it (the same domain)."""
    if all(matching_in_domain):
        return UNBOUNDED
    if matching_anywhere == 0 and self_match:
        return UNBOUNDED
    return 0


def spread_copies(max_skew: int, matching_in_domain: int, global_min: int, self_match: bool) -> int:
    """A DoNotSchedule topology spread constraint: placing the pod must keep its domain's
    matching pods (itself included when it matches) at most ``max_skew`` above the least any
    eligible domain has. ``global_min`` is taken as it is now; the caller passes the least it
    can be (a new instance: a domain with 0), so the count is never too generous."""
    if not self_match:
        return UNBOUNDED if matching_in_domain - global_min <= max_skew else 0
    return max(0, global_min + max_skew - matching_in_domain)


def anti_affinity_conflict(pod: Pod, other_pods_on_node: Iterable[Pod]) -> bool:
    """Would placing ``pod`` on one node beside these pods break a required anti-affinity term,
    either the pod's own terms against them or their terms against the pod? (On one node every
    topology domain is shared, so any topology key conflicts.)"""
    own_terms = pod.anti_affinity
    for other in other_pods_on_node:
        for term in own_terms:
            if term_selects(term, other):
                return True
        for term in other.anti_affinity:
            if term_selects(term, pod):
                return True
    return False


def has_topology_rules(pod: Pod) -> bool:
    """The pod carries inter-pod affinity, anti-affinity or topology spread: where it may go
    depends on other pods, per domain."""
    return bool(pod.anti_affinity or pod.affinity or pod.spread)


def topology_keys(pod: Pod) -> set[str]:
    return ({term.topology_key for term in pod.anti_affinity} | {term.topology_key for term in pod.affinity}
            | {constraint.topology_key for constraint in pod.spread})


def needs_zone(pod: Pod) -> bool:
    """A rule of the pod counts per zone: a new instance of a group spanning zones cannot promise one."""
    return any(key != HOSTNAME_LABEL for key in topology_keys(pod))
