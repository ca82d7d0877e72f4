"""Stages 1 and 2 of scale up: pending pods onto live nodes, then onto nodes the autoscaler
cordoned (taken back before anything is launched).

Pure. Rules (docs/decisions.md#scale-up):
- A node of a group offers its room only once initialized (decide/initialized.py: Ready, no taint
  its group's template lacks, every device of its type advertised); until then it is booting
  capacity of its group (offers.py), planned with the template's room. A node of no group younger
  than --instance-init-time offers its room even while it carries the start-up taints. An older
  node that is not Ready offers none (node_state.is_broken).
- Pods that fit no schedulable node go next onto idle nodes the autoscaler cordoned, by the
  node's own labels, taints and room, and each node that gets one is uncordoned: cheaper than
  launching. Scale in keeps such a node by the same rule (node_state.can_be_taken_back).
- Nodes are matched once per distinct (labels asked about, taints) and first fit finds a node
  with room through a tree of free-room maxima (packing.NodeIndex, packing.FirstFit): the cost
  grows with pods + nodes, not their product.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Mapping, Optional, Sequence

from ..model.config import Settings
from ..model.objects import Node, Pod, Snapshot
from ..model.plan import Uncordon
from .initialized import Readiness
from .ledger import Placed, Waiting, commit, forks, placed_by, waiting_of
from .node_state import can_be_taken_back, is_broken, taints_for_pending_pods
from .packing import LiveRules, NodeIndex, Room, copies_fitting, fit_on_rooms
from .pending_shapes import PodShape, smallest_needs
from .placement_rules import dimension_capacity, port_dimension


@dataclass(frozen=True)
class LiveRooms:
    """Live nodes that are not broken: the schedulable ones and the idle ones the autoscaler
    cordoned (which scale up may take back), each with its free room over the plan's dimensions."""

    schedulable: tuple[Room, ...]
    cordoned: tuple[Room, ...]


def _is_live(node: Node, snapshot: Snapshot) -> bool:
    if not node.is_managed:
        return True
    instance = snapshot.instances.get(node.instance_id or "")
    return instance is not None and instance.is_running


def build_rooms(snapshot: Snapshot, settings: Settings, now: datetime, dimensions: tuple[str, ...],
                booting: frozenset[str] = frozenset()) -> LiveRooms:
    """``booting``: names of nodes of groups that are not initialized yet; they offer no room here
    (their group plans them as booting instances)."""
    used: dict[str, dict[str, int]] = {}
    running: dict[str, list[Pod]] = {}
    for pod in snapshot.pods:
        if pod.occupies_node and pod.node_name:
            running.setdefault(pod.node_name, []).append(pod)
            totals = used.setdefault(pod.node_name, {})
            for name, value in pod.requests.items():
                totals[name] = totals.get(name, 0) + value
            for port in pod.host_ports:  # a host port held on the node: its dimension is used up
                totals[port_dimension(port)] = totals.get(port_dimension(port), 0) + 1
    schedulable: list[Room] = []
    cordoned: list[Room] = []
    for order, node in enumerate(sorted(snapshot.nodes, key=lambda n: n.name)):
        if node.name in booting or not _is_live(node, snapshot) or is_broken(node, settings, now):
            continue
        on_node = running.get(node.name, [])
        if node.unschedulable and not can_be_taken_back(node, on_node, settings, now):
            continue
        taken = used.get(node.name, {})
        free = [dimension_capacity(name, node.allocatable) - taken.get(name, 0) for name in dimensions]
        room = Room(node, order, taints_for_pending_pods(node, settings, now), free, list(on_node))
        (cordoned if node.unschedulable else schedulable).append(room)
    return LiveRooms(tuple(schedulable), tuple(cordoned))


def place_on_live_nodes(waiting: Waiting, rooms: LiveRooms, width: int, rules: Optional[LiveRules] = None) -> Placed:
    """Stage 1: each shape's pods onto schedulable matching nodes with room, first fit in
    node-name order, largest shapes first; room is used up as pods are placed."""
    shapes = forks(waiting)
    # A node without room for even the smallest pending request (most of a busy cluster) is
    # never looked at for placing; it still counts for infeasibility.
    smallest = smallest_needs(shapes, width)
    index = NodeIndex([room for room in rooms.schedulable if copies_fitting(smallest, room.free)],
                      {shape.placement for shape in shapes}, width)
    for shape in shapes:
        fit_on_rooms(shape, index.first_fit(shape.placement), rules)
    return placed_by(shapes)


@dataclass(frozen=True)
class TakenBack:
    placed: Placed
    uncordons: tuple[Uncordon, ...] = ()  # in node-name order


def take_back(waiting: Waiting, rooms: LiveRooms, width: int, rules: Optional[LiveRules] = None) -> TakenBack:
    """Stage 2: pods left over onto idle nodes the autoscaler cordoned, by the node's own labels,
    taints and room; each node that gets one is uncordoned."""
    if not waiting or not rooms.cordoned:
        return TakenBack(Placed())
    shapes = forks(waiting)
    smallest = smallest_needs(shapes, width)
    index = NodeIndex([room for room in rooms.cordoned if copies_fitting(smallest, room.free)],
                      {shape.placement for shape in shapes}, width)
    uncordons: dict[str, Uncordon] = {}
    for shape in shapes:
        for room in fit_on_rooms(shape, index.first_fit(shape.placement), rules):
            uncordons.setdefault(room.node.name, Uncordon(
                room.node.name, f"pending pods {shape.placement.describe()} fit on it; the autoscaler cordoned it, "
                                "so it is taken back before launching"))
    return TakenBack(placed_by(shapes), tuple(uncordons[name] for name in sorted(uncordons)))


def fit_on_live_nodes(shapes: Sequence[PodShape], rooms: LiveRooms, width: int, rules: Optional[LiveRules] = None) -> int:
    """Stage 1 on shapes held by the caller: counted on them; how many were placed."""
    placed = place_on_live_nodes(waiting_of(shapes), rooms, width, rules)
    commit(placed)
    return placed.total


def take_back_cordoned(shapes: Sequence[PodShape], rooms: LiveRooms, width: int,
                       rules: Optional[LiveRules] = None) -> tuple[int, tuple[Uncordon, ...]]:
    """Stage 2 on shapes held by the caller: counted on them; how many were placed, the uncordons."""
    result = take_back(waiting_of(shapes), rooms, width, rules)
    commit(result.placed)
    return result.placed.total, result.uncordons


def booting_nodes(snapshot: Snapshot, readiness: Mapping[str, Readiness]) -> frozenset[str]:
    """Nodes of a managed group that are still booting (not initialized, within the init time)."""
    in_groups = {instance_id for group in snapshot.groups for instance_id in group.instance_ids}
    return frozenset(node.name for node in snapshot.nodes
                     if readiness.get(node.name) is Readiness.BOOTING and node.instance_id in in_groups)
