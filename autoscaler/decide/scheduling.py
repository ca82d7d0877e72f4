"""Can this pod run on this node, or on a node this group would launch?

Pure predicates over the model (docs/decisions.md#which-pods-count): node selectors, required node affinity, taints
against tolerations, required pod anti-affinity on ``kubernetes.io/hostname``, and which instance
shape of a group a set of pods fits. Resources and schedulability of a node are the caller's
concern. These run many times per loop, so they stay allocation-free where they can.
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

from ..model.objects import (
    AntiAffinityTerm,
    Group,
    InstanceShape,
    LabelSelector,
    Node,
    Placement,
    Pod,
    Requirement,
    shape_size,
    sort_shapes,
    Taint,
    Toleration,
)

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


def _node_affinity_matches(terms: Sequence[Sequence[Requirement]], labels: Mapping[str, str]) -> bool:
    # Terms are ORed, requirements inside a term ANDed; a term without requirements matches
    # nothing (as in Kubernetes).
    return any(terms_requirements and all(requirement_matches(r, labels) for r in terms_requirements)
               for terms_requirements in terms)


def placement_matches(placement: Placement, labels: Mapping[str, str], taints: Iterable[Taint]) -> bool:
    """Node selector, required node affinity and taints of a node (or of a group's future nodes)."""
    for key, value in placement.node_selector:
        if labels.get(key) != value:
            return False
    if placement.node_affinity and not _node_affinity_matches(placement.node_affinity, labels):
        return False
    return tolerates(placement.tolerations, taints)


def pod_matches_node(pod: Pod, node: Node) -> bool:
    """Placement only: not free room, not whether the node is cordoned."""
    return placement_matches(pod.placement, node.labels, node.taints)


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """A label selector (matchLabels ANDed with matchExpressions); an empty one matches all."""
    for key, value in selector.match_labels:
        if labels.get(key) != value:
            return False
    return all(requirement_matches(r, labels) for r in selector.match_expressions)


def _term_selects(term: AntiAffinityTerm, owner_namespace: str, pod: Pod) -> bool:
    namespaces = term.namespaces or (owner_namespace,)
    return pod.namespace in namespaces and selector_matches(term.selector, pod.labels)


def anti_affinity_conflict(pod: Pod, other_pods_on_node: Iterable[Pod]) -> bool:
    """Would placing ``pod`` beside these pods break a required hostname anti-affinity term,
    either the pod's own terms against them or their terms against the pod?"""
    own_terms = pod.anti_affinity
    for other in other_pods_on_node:
        for term in own_terms:
            if _term_selects(term, pod.namespace, other):
                return True
        for term in other.anti_affinity:
            if _term_selects(term, other.namespace, pod):
                return True
    return False


def group_capacity_for(group: Group, pods: Iterable[Pod]) -> Optional[InstanceShape]:
    """The smallest shape of the group that every given pod fits on its own; None if none does."""
    requests = {pod.requests for pod in pods}
    for shape in sort_shapes(group.shapes):  # by size, not by the order of the launch settings' overrides
        if all(request.fits_in(shape.capacity) for request in requests):
            return shape
    return None


def largest_shape(shapes: Iterable[InstanceShape]) -> Optional[InstanceShape]:
    """The biggest of some shapes (cpu, then memory, then GPUs), for telling an operator what the
    most a pod could get was."""
    return max(shapes, key=shape_size, default=None)
