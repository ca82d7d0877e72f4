"""Can this pod run on this node, or on a node this group would launch?

Which instance shape of a group a set of pods fits. The placement rules themselves (node
selectors, node and volume affinity, taints, host ports, inter-pod affinity, topology spread)
are in placement_rules.py, one predicate each, and are re-exported here.
"""
from __future__ import annotations

from typing import Iterable, Optional

from ..model.objects import Group, InstanceShape, Node, Pod, shape_size, sort_shapes
# The rules live in placement_rules.py, one predicate each; re-exported here for older callers.
from .placement_rules import (
    SCHEDULING_EFFECTS,
    anti_affinity_conflict,
    node_affinity_matches,
    placement_matches,
    requirement_matches,
    selector_matches,
    term_selects,
    toleration_tolerates,
    tolerates,
)

__all__ = [
    "SCHEDULING_EFFECTS", "anti_affinity_conflict", "group_capacity_for", "largest_shape", "node_affinity_matches",
    "placement_matches", "pod_matches_node", "requirement_matches", "selector_matches", "term_selects",
    "toleration_tolerates", "tolerates",
]


def pod_matches_node(pod: Pod, node: Node) -> bool:
    """Placement only: not free room, not whether the node is cordoned."""
    return placement_matches(pod.placement, node.labels, node.taints)


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
