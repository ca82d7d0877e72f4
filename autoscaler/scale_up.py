"""Scale up: pending pods -> fit on live nodes -> bin-pack the rest per group -> actions.

Pure (behaviour.md §3). Cost grows with pods + nodes, not pods x nodes (defect 11 of the
original): identical pending pods are grouped into shapes and placed by count, nodes are matched
once per constraint set through an index of the labels the pods ask about, and first fit over
nodes and over new instances finds the first one with room through a tree of free-room maxima
(packing.FirstFit), so full ones are skipped wholesale even when every pod asks for something
of its own. Pods are still reported one by one where an operator needs them.

Rules settled here (README "Scale up"):
- A node younger than --instance-init-time offers its room even while it carries the start-up
  taints (not-ready, network-unavailable, uninitialized): it is already in its group's node count.
  An older node that is not Ready offers none (node_state.is_broken).
- Pods that fit no schedulable node go next onto idle nodes the autoscaler cordoned, by the
  node's own labels, taints and room, and each node that gets one is uncordoned: cheaper than
  launching. Scale in keeps such a node by the same rule (node_state.can_be_taken_back).
- Pending DaemonSet pods are no demand: their controller binds each to its node, and a new
  instance gets its own DaemonSet pod.
- A pod is infeasible when it fits no instance shape its placement allows and no live node it
  matches (whatever that node's room is now): a pod waiting for a busy node is not infeasible.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Optional

from .config import Settings
from .model import AntiAffinityTerm, Group, InstanceShape, Node, Placement, Pod, Resources, Snapshot
from .node_state import can_be_taken_back, is_broken, taints_for_pending_pods
from .packing import Needs, NodeIndex, Room, copies_fitting, fit_on_rooms, granted_counts, pack
from .plan import Action, Notify, SetDesiredCapacity, Uncordon
from .scheduling import (
    anti_affinity_conflict,
    group_capacity_for,
    largest_shape,
    placement_matches,
    shapes_smallest_first,
)

MAX_PODS_IN_ACTION = 20  # pod keys an action carries; the count says the rest
MAX_PODS_NAMED = 5  # pod keys a notification names

GroupKey = tuple[str, str]
Terms = tuple[AntiAffinityTerm, ...]
# What makes pending pods one shape: requests, placement, anti-affinity, namespace, selected labels.
ShapeKey = tuple[Resources, Placement, Terms, str, tuple[Optional[str], ...]]


@dataclass(frozen=True)
class ScaleUpResult:
    actions: tuple[Action, ...] = ()  # Uncordon..., SetDesiredCapacity..., Notify...
    placed_on_nodes: int = 0  # pending pods that fit existing nodes (uncordoned ones included)
    pods_for_new_instances: int = 0  # pending pods accounted for by raised or booting capacity
    unaccounted: tuple[Pod, ...] = ()  # no candidate group could take them
    infeasible: tuple[tuple[Pod, Resources], ...] = ()  # with the largest capacity each could get
    pending: int = 0
    constraint_sets: int = 0
    new_instances: int = 0  # sum of the desired-capacity increases
    uncordoned: int = 0

    def summary(self) -> str:
        return (
            f"scale up: {self.pending} pending pods in {self.constraint_sets} constraint sets, "
            f"{self.placed_on_nodes} fit existing nodes ({self.uncordoned} uncordoned), "
            f"{self.pods_for_new_instances} need new instances (+{self.new_instances} desired), "
            f"{len(self.unaccounted)} unaccounted, {len(self.infeasible)} infeasible"
        )


class _PodShape:
    """Identical pending pods: same requests, placement and anti-affinity, and, when anti-affinity
    exists in the cluster, the same namespace and labels its selectors look at. Placed by count;
    members handed out in key order. ``needs``: (dimension, amount) of each resource asked for."""

    __slots__ = ("pods", "taken", "requests", "needs", "representative", "has_terms", "self_conflict", "sort_key")

    def __init__(self, pods: list[Pod], dimension_of: dict[str, int], order_text: str, labels_text: str):
        first = pods[0]
        self.pods = pods
        self.taken = 0
        self.requests = first.requests
        self.needs: Needs = tuple(sorted((dimension_of[name], value) for name, value in first.requests.items() if value > 0))
        self.representative = first
        self.has_terms = bool(first.anti_affinity)
        self.self_conflict = self.has_terms and anti_affinity_conflict(first, (first,))
        size = _size_key(first.requests)
        self.sort_key = (tuple(-part for part in size), order_text, sorted(first.requests.items()), labels_text)

    @property
    def remaining(self) -> int:
        return len(self.pods) - self.taken

    def take(self, count: int) -> list[Pod]:
        start = self.taken
        self.taken += count
        return self.pods[start:self.taken]


class _GroupDemand:
    __slots__ = ("new_instances", "over_provisioned", "pod_count", "pod_keys", "reasons")

    def __init__(self) -> None:
        self.new_instances = 0
        self.over_provisioned = False
        self.pod_count = 0
        self.pod_keys: list[str] = []
        self.reasons: list[str] = []


def _size_key(requests: Resources) -> tuple[int, int, int]:
    rest = sum(value for name, value in requests.items() if name not in ("cpu", "memory", "pods"))
    return (rest, requests.get("cpu"), requests.get("memory"))


def group_priority_key(group: Group, settings: Settings) -> tuple[int, int, int, int, str, str]:
    """Candidate order: priority tag, region position, single-AZ, spot, name."""
    return (-group.priority, settings.region_rank(group.region), 0 if len(group.zones) <= 1 else 1,
            0 if group.is_spot else 1, group.name, group.region)


def _is_live(node: Node, snapshot: Snapshot) -> bool:
    if not node.is_managed or node.instance_id is None:
        return True
    instance = snapshot.instances.get(node.instance_id)
    return instance is not None and instance.is_running


def _group_shapes(pending: list[Pod], snapshot: Snapshot) -> tuple[list[_PodShape], tuple[str, ...]]:
    """The shapes, in placing order (largest first), and the resource dimensions they ask for."""
    with_terms = [pod for pod in snapshot.pods if pod.anti_affinity]
    label_keys = sorted({key for pod in with_terms for term in pod.anti_affinity
                         for key in [k for k, _ in term.selector.match_labels]
                         + [r.key for r in term.selector.match_expressions]})
    members: dict[ShapeKey, list[Pod]] = {}
    for pod in pending:
        # A namespace and labels only change where a pod fits through anti-affinity terms (they
        # select pods by both): without any, identical pods of many namespaces are one shape.
        namespace = pod.namespace if with_terms else ""
        label_values = tuple(pod.labels.get(key) for key in label_keys) if label_keys else ()
        key: ShapeKey = (pod.requests, pod.placement, pod.anti_affinity, namespace, label_values)
        members.setdefault(key, []).append(pod)
    dimensions = tuple(sorted({name for requests in {key[0] for key in members} for name in requests.names()}))
    dimension_of = {name: index for index, name in enumerate(dimensions)}
    order_texts: dict[tuple[Placement, Terms, str], str] = {}  # repr is costly; pods share few placements
    shapes = []
    for key, pods in members.items():
        order = key[1:4]
        if order not in order_texts:
            order_texts[order] = repr(order)
        shapes.append(_PodShape(pods, dimension_of, order_texts[order], repr(key[4]) if label_keys else ""))
    shapes.sort(key=lambda shape: shape.sort_key)
    return shapes, dimensions


def _smallest_needs(shapes: list[_PodShape], width: int) -> Needs:
    """Per dimension, the least any pending shape asks (a dimension some shape does not ask for
    drops out): what a node must at least have free to be worth looking at."""
    least: list[Optional[int]] = [None] * width
    asked = [0] * width
    for shape in shapes:
        for dimension, amount in shape.needs:
            asked[dimension] += 1
            current = least[dimension]
            least[dimension] = amount if current is None else min(current, amount)
    needs = []
    for dimension, amount_or_none in enumerate(least):
        if asked[dimension] == len(shapes) and amount_or_none is not None:
            needs.append((dimension, amount_or_none))
    return tuple(needs)


def _build_rooms(snapshot: Snapshot, settings: Settings, now: datetime,
                 dimensions: tuple[str, ...]) -> tuple[list[Room], list[Room]]:
    """Live nodes that are not broken: the schedulable ones, and the idle ones the autoscaler
    cordoned (which scale up may take back)."""
    used: dict[str, dict[str, int]] = {}
    running: dict[str, list[Pod]] = {}
    for pod in snapshot.pods:
        if pod.occupies_node and pod.node_name is not None:
            running.setdefault(pod.node_name, []).append(pod)
            totals = used.setdefault(pod.node_name, {})
            for name, value in pod.requests.items():
                totals[name] = totals.get(name, 0) + value
    schedulable: list[Room] = []
    cordoned: list[Room] = []
    for order, node in enumerate(sorted(snapshot.nodes, key=lambda n: n.name)):
        if not _is_live(node, snapshot) or is_broken(node, settings, now):
            continue
        on_node = running.get(node.name, [])
        if node.unschedulable and not can_be_taken_back(node, on_node, settings, now):
            continue
        taken = used.get(node.name, {})
        free = [node.allocatable.get(name) - taken.get(name, 0) for name in dimensions]
        room = Room(node, order, taints_for_pending_pods(node, settings, now), free, list(on_node))
        (cordoned if node.unschedulable else schedulable).append(room)
    return schedulable, cordoned


def _capacity_for(group: Group, shapes: list[_PodShape]) -> Optional[InstanceShape]:
    """The smallest shape every waiting pod fits; when no single shape takes them all (say a GPU
    pod and a big-memory pod), the smallest shape that takes the most pods."""
    if not shapes:
        return None
    chosen = group_capacity_for(group, [shape.representative for shape in shapes])
    if chosen is not None:
        return chosen
    return max(shapes_smallest_first(group),
               key=lambda option: sum(s.remaining for s in shapes if s.requests.fits_in(option.capacity)))


def _describe_set(placement: Placement, terms: Terms) -> str:
    described = placement.describe()
    return f"{described} with {len(terms)} anti-affinity term(s)" if terms else described


def _largest_sizes(capacities: Iterable[Resources]) -> list[Resources]:
    """The distinct sizes among some capacities, minus those another one covers: requests that
    fit none of these fit none of the capacities."""
    sizes = sorted(set(capacities), key=lambda r: (-sum(v for _, v in r.items()), sorted(r.items())))
    kept: list[Resources] = []
    for size in sizes:
        if not any(size.fits_in(larger) for larger in kept):
            kept.append(size)
    return kept


def _named(pods: list[Pod], limit: int = MAX_PODS_NAMED) -> str:
    names = ", ".join(pod.key for pod in pods[:limit])
    return names + (f" and {len(pods) - limit} more" if len(pods) > limit else "")


def plan_scale_up(snapshot: Snapshot, settings: Settings, now: datetime,
                  timed_out: frozenset[GroupKey] = frozenset()) -> ScaleUpResult:
    """Decide the scale up of one loop. ``timed_out`` holds the ``Group.key`` of groups that
    scale up skips (launch failures, behaviour.md §4), so their pods overflow to the next
    candidate. ``now`` tells starting nodes from broken ones."""
    pending = sorted((pod for pod in snapshot.pods if pod.is_pending_unassigned and not pod.is_daemonset),
                     key=lambda p: (p.namespace, p.name))
    if not pending:
        return ScaleUpResult()
    shapes, dimensions = _group_shapes(pending, snapshot)
    width = len(dimensions)
    schedulable, cordoned = _build_rooms(snapshot, settings, now, dimensions)
    placements = {shape.representative.placement for shape in shapes}
    # A node without room for even the smallest pending request (most of a busy cluster) is
    # never looked at for placing; it still counts for infeasibility.
    smallest = _smallest_needs(shapes, width)
    open_nodes = NodeIndex([room for room in schedulable if copies_fitting(smallest, room.free)], placements, width)
    taken_back = NodeIndex([room for room in cordoned if copies_fitting(smallest, room.free)], placements, width)

    # 1. Existing live, schedulable nodes first; room is consumed as pods are placed.
    for shape in shapes:
        fit_on_rooms(shape, open_nodes.first_fit(shape.representative.placement))
    placed = sum(shape.taken for shape in shapes)

    # 1b. Then idle nodes the autoscaler cordoned, by their own labels, taints and room: one
    # uncordon is cheaper and faster than a launch.
    uncordons: dict[str, Uncordon] = {}
    for shape in shapes:
        if shape.remaining:
            placement = shape.representative.placement
            for room in fit_on_rooms(shape, taken_back.first_fit(placement)):
                uncordons.setdefault(room.node.name, Uncordon(
                    room.node.name, f"pending pods {placement.describe()} fit on it; the autoscaler cordoned it, "
                                    "so it is taken back before launching"))
    placed_on_uncordoned = sum(shape.taken for shape in shapes) - placed

    # 2. The rest by constraint set, served in an order that does not depend on hash seeds.
    sets: dict[tuple[Placement, Terms], list[_PodShape]] = {}
    for shape in shapes:
        if shape.remaining:
            rep = shape.representative
            sets.setdefault((rep.placement, rep.anti_affinity), []).append(shape)
    ordered_sets = sorted(sets.items(), key=lambda item: repr(item[0]))
    every_node = NodeIndex(schedulable + cordoned, (placement for placement, _ in sets))

    groups = sorted(snapshot.groups, key=lambda group: group_priority_key(group, settings))
    group_of_instance = {instance_id: group.key for group in groups for instance_id in group.instance_ids}
    node_count: dict[GroupKey, int] = {}
    for node in snapshot.nodes:
        key = group_of_instance.get(node.instance_id) if node.instance_id else None
        if key is not None:
            node_count[key] = node_count.get(key, 0) + 1

    demands: dict[GroupKey, _GroupDemand] = {}
    infeasible: list[tuple[Pod, Resources]] = []
    unaccounted: list[Pod] = []
    failures: list[Notify] = []

    for (placement, terms), set_shapes in ordered_sets:
        label = _describe_set(placement, terms)
        candidates = [group for group in groups if placement_matches(placement, group.labels, group.taints)]
        # Infeasible: fits no shape of any group its placement allows, whatever their state, and
        # no live node it matches, however busy. A candidate whose launch settings could not be
        # read leaves the question open.
        if all(group.shapes for group in candidates):
            allowed = [option for group in candidates for option in group.shapes]
            largest = largest_shape(allowed)
            largest_capacity = largest.capacity if largest else Resources()
            allowed_sizes = _largest_sizes(option.capacity for option in allowed)
            node_sizes = None
            for shape in set_shapes:
                if any(shape.requests.fits_in(size) for size in allowed_sizes):
                    continue
                if node_sizes is None:
                    node_sizes = _largest_sizes(room.node.allocatable for room in every_node.matching(placement))
                if not any(shape.requests.fits_in(size) for size in node_sizes):
                    infeasible.extend((pod, largest_capacity) for pod in shape.take(shape.remaining))

        for group in candidates:
            waiting = [shape for shape in set_shapes if shape.remaining]
            if not waiting:
                break
            if group.key in timed_out or not group.shapes:
                continue
            demand = demands.setdefault(group.key, _GroupDemand())
            room_left = group.max_size - node_count.get(group.key, 0) - demand.new_instances
            if room_left <= 0:
                continue
            fitting = [shape for shape in waiting if any(shape.requests.fits_in(option.capacity) for option in group.shapes)]
            capacity = _capacity_for(group, fitting)
            if capacity is None:
                continue
            bins = pack([shape for shape in fitting if shape.requests.fits_in(capacity.capacity)], capacity.capacity,
                         dimensions)
            if not bins:
                continue
            granted = min(len(bins), room_left)
            # Over-provision once per group and loop, however many sets share the group.
            extra = 0 if demand.over_provisioned else settings.over_provision
            demand.over_provisioned = True
            new_instances = min(granted + extra, room_left)
            accounted: list[Pod] = []
            for packed, count in granted_counts(bins, granted).items():
                accounted.extend(packed.take(count))
            accounted.sort(key=lambda pod: (pod.namespace, pod.name))
            demand.new_instances += new_instances
            demand.pod_count += len(accounted)
            demand.pod_keys.extend(pod.key for pod in accounted[:MAX_PODS_IN_ACTION - len(demand.pod_keys)])
            over_note = f" (+{new_instances - granted} over-provision)" if new_instances > granted else ""
            capped_note = f", capped at max size {group.max_size}" if granted < len(bins) else ""
            demand.reasons.append(f"{len(accounted)} pending pods {label} need {granted} new "
                                  f"{capacity.instance_type} instances{over_note}{capped_note}")

        left = [pod for shape in set_shapes for pod in shape.take(shape.remaining)]
        if left:
            unaccounted.extend(left)
            failures.append(Notify("scale-up-failed", (
                f"failed to scale up for {len(left)} pending pods {label}: none of the {len(candidates)} matching "
                f"groups could take them (timed out, at max size, too small or without launch settings): {_named(left)}")))

    actions: list[Action] = [uncordons[name] for name in sorted(uncordons)]
    new_total = 0
    for group in groups:
        wanted = demands.get(group.key)
        if wanted is None or not wanted.new_instances:
            continue
        current = node_count.get(group.key, 0)
        target = max(group.desired, min(group.max_size, current + wanted.new_instances))
        if target <= group.desired:
            continue  # instances still booting already cover the demand
        booting = group.desired - current
        booting_note = f"; {booting} booting instance(s) count as spare" if booting > 0 else ""
        new_total += target - group.desired
        actions.append(SetDesiredCapacity(group.name, group.region, target, group.desired,
                                          "; ".join(wanted.reasons) + booting_note, tuple(wanted.pod_keys),
                                          wanted.pod_count))
    if infeasible:
        pods = [pod for pod, _ in infeasible]
        detail = "; ".join(f"{pod.key} requests {pod.requests.describe()}, largest {capacity.describe() or 'nothing: no group matches'}"
                           for pod, capacity in infeasible[:MAX_PODS_NAMED])
        more = f"; and {len(pods) - MAX_PODS_NAMED} more" if len(pods) > MAX_PODS_NAMED else ""
        actions.append(Notify("infeasible-pods", f"{len(pods)} pending pods fit no instance type their placement allows and no node they match: {detail}{more}"))
    actions.extend(failures)

    return ScaleUpResult(
        actions=tuple(actions),
        placed_on_nodes=placed + placed_on_uncordoned,
        pods_for_new_instances=sum(demand.pod_count for demand in demands.values()),
        unaccounted=tuple(unaccounted),
        infeasible=tuple(infeasible),
        pending=len(pending),
        constraint_sets=len(ordered_sets),
        new_instances=new_total,
        uncordoned=len(uncordons),
    )
