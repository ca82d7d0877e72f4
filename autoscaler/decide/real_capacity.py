"""PURE: each group's instance shapes corrected by what its live nodes really offer.

The estimate of an instance type's allocatable (the capacity catalog's) stands in until a Ready
node of that type exists; from then on the kubelet's own figure is the truth. This is a decision
about the read snapshot, so it is made here, at the start of each loop's decisions, not while
reading.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from ..model.group_labels import node_instance_type
from ..model.objects import Group, InstanceShape, Node, Resources, Snapshot, sort_shapes


def with_real_capacity(snapshot: Snapshot) -> Snapshot:
    """The snapshot with each group's shapes corrected by the nodes of the group's instances."""
    node_of_instance = {node.instance_id: node for node in snapshot.nodes if node.instance_id}
    groups: list[Group] = []
    for group in snapshot.groups:
        own = [node_of_instance[i] for i in group.instance_ids if i in node_of_instance]
        groups.append(replace(group, shapes=effective_shapes(group, own)) if own else group)
    if all(new is old for new, old in zip(groups, snapshot.groups, strict=True)):
        return snapshot
    return replace(snapshot, groups=tuple(groups))


def effective_shapes(group: Group, nodes_of_group: Iterable[Node]) -> tuple[InstanceShape, ...]:
    """The group's shapes, with real nodes' allocatable in place of the estimate for their type.

    The kubelet's allocatable is the truth; the estimate only stands in until a Ready node exists.
    Per resource, the smallest amount any Ready node of the type reports is used, so a pod is never
    promised room that one of them lacks (say, a daemon reserve changed). A resource the estimate
    has but a node does not report at all (a GPU node whose device plugin has not registered, or
    has failed) keeps the estimate: one such node must not make every GPU pod infeasible. A node
    without a type label stands for the group's only type, if it has just one.
    """
    single_type = group.shapes[0].instance_type if len(group.shapes) == 1 else None
    reported: dict[str, list[Resources]] = {}
    for node in sorted(nodes_of_group, key=lambda n: n.name):
        instance_type = node_instance_type(node) or single_type
        if instance_type is None or not node.allocatable or not node.ready:
            continue
        reported.setdefault(instance_type, []).append(node.allocatable)
    if not reported:
        return group.shapes
    estimates = {shape.instance_type: shape.capacity for shape in group.shapes}
    real = {}
    for instance_type, allocatables in reported.items():
        estimate = estimates.get(instance_type, Resources())
        names = set(estimate.names()).union(*(a.names() for a in allocatables))
        amounts = {}
        for name in names:
            present = [a.get(name) for a in allocatables if a.get(name) > 0]
            amounts[name] = min(present) if present else estimate.get(name)
        real[instance_type] = Resources(amounts)
    # Only the capacity is replaced: the shape keeps its type's price.
    return sort_shapes(replace(shape, capacity=real[shape.instance_type]) if shape.instance_type in real else shape
                       for shape in group.shapes)
