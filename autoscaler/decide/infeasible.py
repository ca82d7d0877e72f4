"""Stage 3 of scale up: pods nothing could ever run, set apart before choosing groups.

Pure. A pod is infeasible when it fits no instance type (any override of a mixed-instances
group) of any group its placement allows, whatever their state, and no live node it matches,
whatever that node's room is now: a pod waiting for a busy node is not infeasible. A candidate
group whose launch settings could not be read leaves the question open (docs/decisions.md#scale-up).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ..model.objects import Group, Placement, Pod, Resources, extreme_sizes
from .ledger import Waiting, waiting_of
from .packing import NodeIndex
from .pending_shapes import PodShape
from .placement_rules import placement_matches, unpromised_zone
from .scheduling import largest_shape


@dataclass(frozen=True)
class SetApart:
    pods: tuple[tuple[Pod, Resources], ...]  # in key order, each with the largest capacity it could get
    left: Waiting  # the pods still waiting, in the order they were


def set_apart(waiting: Waiting, groups: Sequence[Group], live_nodes: NodeIndex) -> SetApart:
    """The infeasible pods, each with the largest capacity its placement could get (empty when
    no group matches), and what is left waiting."""
    infeasible: list[tuple[Pod, Resources]] = []
    left = dict(waiting)
    by_placement: dict[Placement, list[PodShape]] = {}
    for shape in waiting:
        by_placement.setdefault(shape.placement, []).append(shape)
    for placement in sorted(by_placement, key=repr):
        # A group spanning zones that would match in one of them is no promise, but neither is the
        # pod infeasible: stage 4 says why that group does not take it.
        candidates = [group for group in groups if placement_matches(placement, group.labels, group.taints)
                      or unpromised_zone(placement, group)]
        if not all(group.shapes for group in candidates):
            continue
        allowed = [option for group in candidates for option in group.shapes]
        largest = largest_shape(allowed)
        largest_capacity = largest.capacity if largest else Resources()
        allowed_sizes = extreme_sizes((option.capacity for option in allowed), largest=True)
        node_sizes: Optional[tuple[Resources, ...]] = None
        for shape in by_placement[placement]:
            if any(shape.requests.fits_in(size) for size in allowed_sizes):
                continue
            if node_sizes is None:
                node_sizes = extreme_sizes((room.node.allocatable for room in live_nodes.matching(placement)), largest=True)
            if not any(shape.requests.fits_in(size) for size in node_sizes):
                # A shape of similar requests placed as the largest of them (at scale): only the
                # pods whose own request fits nowhere are infeasible; the others keep waiting.
                sizes = allowed_sizes + node_sizes
                fitting = [pod for pod in waiting[shape] if pod.requests != shape.requests
                           and any(pod.requests.fits_in(size) for size in sizes)]
                kept = set(map(id, fitting))
                infeasible.extend((pod, largest_capacity) for pod in waiting[shape] if id(pod) not in kept)
                if fitting:
                    left[shape] = fitting
                else:
                    del left[shape]
    infeasible.sort(key=lambda item: (item[0].namespace, item[0].name))
    return SetApart(tuple(infeasible), left)


def set_apart_infeasible(shapes: Sequence[PodShape], groups: Sequence[Group],
                         live_nodes: NodeIndex) -> list[tuple[Pod, Resources]]:
    """Stage 3 on shapes held by the caller: the infeasible pods are taken out of them (each
    shape's waiting pods reordered, the infeasible first, and ``take``n)."""
    waiting = waiting_of(shapes)
    result = set_apart(waiting, groups, live_nodes)
    for shape, pods in waiting.items():
        rest = result.left.get(shape, ())
        if len(rest) < len(pods):
            kept = set(map(id, rest))
            shape.pods[shape.taken:] = [pod for pod in pods if id(pod) not in kept] + list(rest)
            shape.take(len(pods) - len(rest))
    return list(result.pods)
