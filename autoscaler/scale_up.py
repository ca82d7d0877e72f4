"""Scale up: pending pods -> fit on live nodes -> bin-pack the rest per group -> actions.

Pure (behaviour.md §3). Cost grows with pods + nodes, not pods x nodes (defect 11 of the
original): identical pending pods are grouped into shapes and placed by count, nodes are matched
once per constraint set through an index of the labels the pods ask about, and bins are packed
per shape with multiplicities. Pods are still reported one by one where an operator needs them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Optional

from .config import Settings
from .model import Group, InstanceShape, Node, Placement, Pod, Resources, Snapshot
from .plan import Notify, SetDesiredCapacity, Uncordon
from .scheduling import (
    anti_affinity_conflict,
    group_capacity_for,
    largest_shape,
    placement_matches,
    shapes_smallest_first,
)

MAX_PODS_IN_ACTION = 20  # pod keys an action carries; the count says the rest
MAX_PODS_NAMED = 5  # pod keys a notification names


@dataclass(frozen=True)
class ScaleUpResult:
    actions: tuple = ()  # Uncordon..., SetDesiredCapacity..., Notify...
    placed_on_nodes: int = 0  # pending pods that fit existing nodes (uncordoned ones included)
    pods_for_new_instances: int = 0  # pending pods accounted for by raised or booting capacity
    unaccounted: tuple = ()  # tuple[Pod, ...]: no candidate group could take them
    infeasible: tuple = ()  # tuple[(Pod, Resources), ...]: largest capacity each could get
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
    """Identical pending pods: same requests, placement, anti-affinity, namespace and the labels
    anti-affinity selectors look at. Placed by count; members handed out in key order."""

    __slots__ = ("pods", "taken", "requests", "request_items", "representative", "has_terms", "self_conflict", "sort_key")

    def __init__(self, pods: list[Pod], relevant_label_values: tuple):
        first = pods[0]
        self.pods = pods
        self.taken = 0
        self.requests = first.requests
        self.request_items = tuple(first.requests.items())
        self.representative = first
        self.has_terms = bool(first.anti_affinity)
        self.self_conflict = anti_affinity_conflict(first, (first,))
        size = _size_key(first.requests)
        self.sort_key = (tuple(-part for part in size), repr((first.placement, first.anti_affinity, first.namespace)),
                         sorted(first.requests.items()), repr(relevant_label_values))

    @property
    def remaining(self) -> int:
        return len(self.pods) - self.taken

    def take(self, count: int) -> list[Pod]:
        start = self.taken
        self.taken += count
        return self.pods[start:self.taken]


class _Room:
    """Free room on one existing node, and what runs there (for anti-affinity)."""

    __slots__ = ("node", "free", "pods", "aa_pods")

    def __init__(self, node: Node, free: dict, pods: list[Pod]):
        self.node = node
        self.free = free
        self.pods = pods
        self.aa_pods = [pod for pod in pods if pod.anti_affinity]

    def add(self, pod: Pod) -> None:
        self.pods.append(pod)
        if pod.anti_affinity:
            self.aa_pods.append(pod)


class _Bin:
    """``count`` identical new instances, each with ``free`` room and ``contents`` pods per shape."""

    __slots__ = ("free", "count", "contents", "has_terms")

    def __init__(self, free: dict, count: int, contents: dict, has_terms: bool):
        self.free, self.count, self.contents, self.has_terms = free, count, contents, has_terms

    def split(self, count: int) -> "_Bin":
        return _Bin(dict(self.free), count, dict(self.contents), self.has_terms)


class _GroupDemand:
    __slots__ = ("new_instances", "over_provisioned", "pod_count", "pod_keys", "reasons")

    def __init__(self):
        self.new_instances = 0
        self.over_provisioned = False
        self.pod_count = 0
        self.pod_keys: list[str] = []
        self.reasons: list[str] = []


def _size_key(requests: Resources) -> tuple:
    rest = sum(value for name, value in requests.items() if name not in ("cpu", "memory", "pods"))
    return (rest, requests.get("cpu"), requests.get("memory"))


def _copies_fitting(request_items: tuple, free: dict) -> int:
    best = 1 << 30
    for name, value in request_items:
        if value > 0:
            copies = free.get(name, 0) // value
            if copies < best:
                if copies <= 0:
                    return 0
                best = copies
    return best


def _consume(request_items: tuple, free: dict, copies: int) -> None:
    for name, value in request_items:
        free[name] = free.get(name, 0) - value * copies


def _room_for(shape: _PodShape, free: dict, pods_there: list[Pod], pods_with_terms: list[Pod]) -> int:
    """How many of the shape's pods fit this room, anti-affinity included."""
    copies = _copies_fitting(shape.request_items, free)
    if copies and (shape.has_terms or pods_with_terms):
        if anti_affinity_conflict(shape.representative, pods_there if shape.has_terms else pods_with_terms):
            return 0
        if shape.self_conflict:
            return 1
    return copies


def group_priority_key(group: Group, settings: Settings) -> tuple:
    """Candidate order: priority tag, region position, single-AZ, spot, name."""
    return (-group.priority, settings.region_rank(group.region), 0 if len(group.zones) <= 1 else 1,
            0 if group.is_spot else 1, group.name, group.region)


def _is_live(node: Node, snapshot: Snapshot) -> bool:
    if not node.is_managed:
        return True
    instance = snapshot.instances.get(node.instance_id)
    return instance is not None and instance.is_running


def _group_shapes(pending: list[Pod], snapshot: Snapshot) -> list[_PodShape]:
    label_keys = sorted({key for pod in snapshot.pods for term in pod.anti_affinity
                         for key in [k for k, _ in term.selector.match_labels]
                         + [r.key for r in term.selector.match_expressions]})
    members: dict[tuple, list[Pod]] = {}
    for pod in pending:
        label_values = tuple(pod.labels.get(key) for key in label_keys) if label_keys else ()
        key = (pod.requests, pod.placement, pod.anti_affinity, pod.namespace, label_values)
        members.setdefault(key, []).append(pod)
    shapes = [_PodShape(pods, key[4]) for key, pods in members.items()]
    shapes.sort(key=lambda shape: shape.sort_key)
    return shapes


def _smallest_request(shapes: list[_PodShape]) -> tuple:
    """Per resource, the least any pending shape asks (a resource some shape does not ask for
    drops out): what a node must at least have free to be worth looking at."""
    names = set.intersection(*(set(name for name, _ in shape.request_items) for shape in shapes))
    return tuple((name, min(shape.requests.get(name) for shape in shapes)) for name in sorted(names))


def _build_rooms(snapshot: Snapshot) -> tuple[list[_Room], dict[tuple, list[_Room]]]:
    """Schedulable live nodes, and per group its live nodes cordoned by the autoscaler."""
    used: dict[str, dict[str, int]] = {}
    running: dict[str, list[Pod]] = {}
    for pod in snapshot.pods:
        if pod.occupies_node:
            running.setdefault(pod.node_name, []).append(pod)
            totals = used.setdefault(pod.node_name, {})
            for name, value in pod.requests.items():
                totals[name] = totals.get(name, 0) + value
    group_of_instance = {instance_id: group.key for group in snapshot.groups for instance_id in group.instance_ids}
    schedulable: list[_Room] = []
    cordoned: dict[tuple, list[_Room]] = {}
    for node in sorted(snapshot.nodes, key=lambda n: n.name):
        if not _is_live(node, snapshot):
            continue
        if node.unschedulable and not (node.cordoned_by_autoscaler and node.instance_id in group_of_instance):
            continue
        free = dict(node.allocatable.items())
        for name, value in used.get(node.name, {}).items():
            free[name] = free.get(name, 0) - value
        room = _Room(node, free, list(running.get(node.name, ())))
        if node.unschedulable:
            cordoned.setdefault(group_of_instance[node.instance_id], []).append(room)
        else:
            schedulable.append(room)
    return schedulable, cordoned


class _NodeIndex:
    """Matches placements against nodes once per distinct (labels asked about, taints)."""

    def __init__(self, rooms: list[_Room], placements: Iterable[Placement], smallest_request: tuple = ()):
        keys = set()
        for placement in placements:
            keys.update(key for key, _ in placement.node_selector)
            keys.update(r.key for term in placement.node_affinity for r in term)
        self._keys = sorted(keys)
        self._by_signature: dict[tuple, list[_Room]] = {}
        for room in rooms:
            # A node without room for even the smallest pending request (most of a busy
            # cluster) is never looked at again.
            if smallest_request and not _copies_fitting(smallest_request, room.free):
                continue
            labels = room.node.labels
            signature = (tuple(labels.get(key) for key in self._keys), room.node.taints)
            self._by_signature.setdefault(signature, []).append(room)
        self._cache: dict[Placement, list[_Room]] = {}

    def matching(self, placement: Placement) -> list[_Room]:
        rooms = self._cache.get(placement)
        if rooms is None:
            rooms = []
            for (values, taints), members in self._by_signature.items():
                labels = {key: value for key, value in zip(self._keys, values) if value is not None}
                if placement_matches(placement, labels, taints):
                    rooms.extend(members)
            rooms.sort(key=lambda room: room.node.name)
            self._cache[placement] = rooms
        return rooms


def _fit_on_rooms(shape: _PodShape, rooms: list[_Room]) -> list[_Room]:
    """Place as many of the shape's pods as fit, first fit in node-name order; the rooms used."""
    used = []
    for room in rooms:
        wanted = shape.remaining
        if not wanted:
            break
        copies = min(wanted, _room_for(shape, room.free, room.pods, room.aa_pods))
        if copies:
            _consume(shape.request_items, room.free, copies)
            room.add(shape.representative)
            shape.take(copies)
            used.append(room)
    return used


def _fill(target: _Bin, shape: _PodShape, copies: int) -> None:
    _consume(shape.request_items, target.free, copies)
    target.contents[shape] = target.contents.get(shape, 0) + copies
    target.has_terms = target.has_terms or shape.has_terms


def _pack(shapes: list[_PodShape], capacity: Resources) -> list[_Bin]:
    """First-fit decreasing of the shapes' remaining pods into new instances of one capacity.

    Identical bins are kept as one entry with a count; an entry is split only where one-by-one
    first fit would leave its bins different, so the entries stay few."""
    bins: list[_Bin] = []
    for shape in shapes:
        left = shape.remaining
        index = 0
        while left and index < len(bins):
            current = bins[index]
            reps = [s.representative for s in current.contents]
            per_bin = min(left, _room_for(shape, current.free, reps, reps if current.has_terms else []))
            if not per_bin:
                index += 1
                continue
            full = min(current.count, left // per_bin)
            if full == current.count:
                _fill(current, shape, per_bin)
                left -= per_bin * full
                index += 1
                continue
            remainder = left - full * per_bin
            untouched = current.count - full - (1 if remainder else 0)
            pieces = []
            for count, copies in ((full, per_bin), (1 if remainder else 0, remainder)):
                if count:
                    piece = current.split(count)
                    _fill(piece, shape, copies)
                    pieces.append(piece)
            if untouched:
                pieces.append(current.split(untouched))
            bins[index:index + 1] = pieces
            left = 0
        if left:
            per_bin = _room_for(shape, dict(capacity.items()), [], [])
            if not per_bin:
                continue
            full, partial = divmod(left, per_bin)
            for count, copies in ((full, per_bin), (1 if partial else 0, partial)):
                if count:
                    new_bin = _Bin(dict(capacity.items()), count, {}, False)
                    _fill(new_bin, shape, copies)
                    bins.append(new_bin)
    return bins


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


def _describe_set(placement: Placement, terms: tuple) -> str:
    described = placement.describe()
    return f"{described} with {len(terms)} anti-affinity term(s)" if terms else described


def _granted_counts(bins: list[_Bin], granted: int) -> dict:
    counts: dict[_PodShape, int] = {}
    for packed in bins:
        if granted <= 0:
            break
        used = min(packed.count, granted)
        granted -= used
        for shape, copies in packed.contents.items():
            counts[shape] = counts.get(shape, 0) + copies * used
    return counts


def _named(pods: list[Pod], limit: int = MAX_PODS_NAMED) -> str:
    names = ", ".join(pod.key for pod in pods[:limit])
    return names + (f" and {len(pods) - limit} more" if len(pods) > limit else "")


def plan_scale_up(snapshot: Snapshot, settings: Settings, now: datetime, timed_out: frozenset = frozenset()) -> ScaleUpResult:
    """Decide the scale up of one loop. ``timed_out`` holds the ``Group.key`` of groups that
    scale up skips (launch failures, behaviour.md §4), so their pods overflow to the next
    candidate. ``now`` is taken for symmetry with the other decisions; nothing here ages."""
    pending = sorted((pod for pod in snapshot.pods if pod.is_pending_unassigned), key=lambda p: (p.namespace, p.name))
    if not pending:
        return ScaleUpResult()
    shapes = _group_shapes(pending, snapshot)
    schedulable, cordoned = _build_rooms(snapshot)
    index = _NodeIndex(schedulable, {shape.representative.placement for shape in shapes}, _smallest_request(shapes))

    # 1. Existing live, schedulable nodes first; room is consumed as pods are placed.
    for shape in shapes:
        _fit_on_rooms(shape, index.matching(shape.representative.placement))
    placed = sum(shape.taken for shape in shapes)

    # 2. The rest by constraint set, served in an order that does not depend on hash seeds.
    sets: dict[tuple, list[_PodShape]] = {}
    for shape in shapes:
        if shape.remaining:
            rep = shape.representative
            sets.setdefault((rep.placement, rep.anti_affinity), []).append(shape)
    ordered_sets = sorted(sets.items(), key=lambda item: repr(item[0]))

    groups = sorted(snapshot.groups, key=lambda group: group_priority_key(group, settings))
    group_of_instance = {instance_id: group.key for group in groups for instance_id in group.instance_ids}
    node_count: dict[tuple, int] = {}
    for node in snapshot.nodes:
        key = group_of_instance.get(node.instance_id)
        if key is not None:
            node_count[key] = node_count.get(key, 0) + 1

    demands: dict[tuple, _GroupDemand] = {}
    uncordons: dict[str, Uncordon] = {}
    infeasible: list[tuple[Pod, Resources]] = []
    unaccounted: list[Pod] = []
    failures: list[Notify] = []
    placed_on_uncordoned = 0

    for (placement, terms), set_shapes in ordered_sets:
        label = _describe_set(placement, terms)
        candidates = [group for group in groups if placement_matches(placement, group.labels, group.taints)]
        # Infeasible: fits no shape of any group its placement allows, whatever their state.
        # A candidate whose launch settings could not be read leaves the question open.
        if all(group.shapes for group in candidates):
            allowed = [option for group in candidates for option in group.shapes]
            largest = largest_shape(allowed)
            largest_capacity = largest.capacity if largest else Resources()
            for shape in set_shapes:
                if not any(shape.requests.fits_in(option.capacity) for option in allowed):
                    infeasible.extend((pod, largest_capacity) for pod in shape.take(shape.remaining))

        for group in candidates:
            waiting = [shape for shape in set_shapes if shape.remaining]
            if not waiting:
                break
            taken_back = [room for room in cordoned.get(group.key, ())
                          if placement_matches(placement, room.node.labels, room.node.taints)]
            for shape in waiting if taken_back else ():
                before = shape.remaining
                for room in _fit_on_rooms(shape, taken_back):
                    uncordons.setdefault(room.node.name, Uncordon(
                        room.node.name, f"pending pods {label} fit on it; the autoscaler cordoned it, so it is taken back before launching"))
                placed_on_uncordoned += before - shape.remaining
            if group.key in timed_out or not group.shapes:
                continue
            demand = demands.setdefault(group.key, _GroupDemand())
            room_left = group.max_size - node_count.get(group.key, 0) - demand.new_instances
            if room_left <= 0:
                continue
            fitting = [shape for shape in waiting
                       if shape.remaining and any(shape.requests.fits_in(option.capacity) for option in group.shapes)]
            capacity = _capacity_for(group, fitting)
            if capacity is None:
                continue
            bins = _pack([shape for shape in fitting if shape.requests.fits_in(capacity.capacity)], capacity.capacity)
            bin_count = sum(packed.count for packed in bins)
            if not bin_count:
                continue
            granted = min(bin_count, room_left)
            # Over-provision once per group and loop, however many sets share the group.
            extra = 0 if demand.over_provisioned else settings.over_provision
            demand.over_provisioned = True
            new_instances = min(granted + extra, room_left)
            accounted: list[Pod] = []
            for shape, count in _granted_counts(bins, granted).items():
                accounted.extend(shape.take(count))
            accounted.sort(key=lambda pod: (pod.namespace, pod.name))
            demand.new_instances += new_instances
            demand.pod_count += len(accounted)
            demand.pod_keys.extend(pod.key for pod in accounted[:MAX_PODS_IN_ACTION - len(demand.pod_keys)])
            over_note = f" (+{new_instances - granted} over-provision)" if new_instances > granted else ""
            capped_note = f", capped at max size {group.max_size}" if granted < bin_count else ""
            demand.reasons.append(f"{len(accounted)} pending pods {label} need {granted} new "
                                  f"{capacity.instance_type} instances{over_note}{capped_note}")

        left = [pod for shape in set_shapes for pod in shape.take(shape.remaining)]
        if left:
            unaccounted.extend(left)
            failures.append(Notify("scale-up-failed", (
                f"failed to scale up for {len(left)} pending pods {label}: none of the {len(candidates)} matching "
                f"groups could take them (timed out, at max size, too small or without launch settings): {_named(left)}")))

    actions: list = list(uncordons.values())
    new_total = 0
    for group in groups:
        demand = demands.get(group.key)
        if demand is None or not demand.new_instances:
            continue
        current = node_count.get(group.key, 0)
        target = max(group.desired, min(group.max_size, current + demand.new_instances))
        if target <= group.desired:
            continue  # instances still booting already cover the demand
        booting = group.desired - current
        booting_note = f"; {booting} booting instance(s) count as spare" if booting > 0 else ""
        new_total += target - group.desired
        actions.append(SetDesiredCapacity(group.name, group.region, target, group.desired,
                                          "; ".join(demand.reasons) + booting_note, tuple(demand.pod_keys)))
    if infeasible:
        pods = [pod for pod, _ in infeasible]
        detail = "; ".join(f"{pod.key} requests {pod.requests.describe()}, largest {capacity.describe() or 'nothing: no group matches'}"
                           for pod, capacity in infeasible[:MAX_PODS_NAMED])
        more = f"; and {len(pods) - MAX_PODS_NAMED} more" if len(pods) > MAX_PODS_NAMED else ""
        actions.append(Notify("infeasible-pods", f"{len(pods)} pending pods fit no instance type their placement allows: {detail}{more}"))
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
