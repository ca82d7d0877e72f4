"""Bin packing for scale up: where pending pods go, by count, on existing nodes' free room and on
new instances of one capacity.

Pure (docs/decisions.md#scale-up; kept fast for 10,000 pending pods). Rooms and new instances
hold a ``free`` list over the resource dimensions pending pods ask for; a shape (scale_up's group
of identical pending pods) is placed by count, never pod by pod, and ``FirstFit`` finds the first
node or new instance with room through a tree of free-room maxima, so full ones are skipped
wholesale. Which pods, nodes and groups take
part, and what the outcome means as actions, is scale_up's concern.
"""
from __future__ import annotations

from typing import Callable, Generic, Iterable, Optional, Protocol, TypeVar

from ..model.objects import Node, Placement, Pod, Taint
from .placement_rules import anti_affinity_conflict, placement_label_keys, placement_matches


# (dimension, amount) of each resource a pod asks for; dimensions index a ``free`` list.
Needs = tuple[tuple[int, int], ...]
Signature = tuple[tuple[Optional[str], ...], tuple[Taint, ...]]  # the labels asked about, the taints


class Shape(Protocol):
    """What packing needs of a shape of identical pending pods: ``needs`` is (dimension, amount)
    of each resource asked for; ``take`` hands out the next ``count`` members."""

    needs: Needs
    representative: Pod
    has_terms: bool
    self_conflict: bool
    rules: bool  # inter-pod rules decide where it goes (topology.py)

    @property
    def remaining(self) -> int: ...

    def take(self, count: int) -> list[Pod]: ...


class HasRoom(Protocol):
    free: list[int]


class LiveRules(Protocol):
    """The inter-pod rules on live nodes (topology.Topology): how many pods alike a node takes,
    and a placement to count from now on."""

    def node_copies(self, pod: Pod, node: Node, want: int, together: int = 0) -> int: ...

    def add(self, pod: Pod, node: Node, copies: int) -> None: ...


# How many of the wanted pods of a shape a bin takes by the inter-pod rules (GroupPlan.allow).
Allow = Callable[["Bin", int], int]


Entry = TypeVar("Entry", bound=HasRoom)


class FirstFit(Generic[Entry]):
    """Entries (nodes or new instances) in a fixed order, each with a ``free`` list over the
    resource dimensions. ``first`` finds the first entry from a position on with room for a
    request by walking a binary tree whose nodes hold the per-dimension maximum of their
    leaves: a subtree without room in some dimension is skipped whole, so full entries cost
    nothing and first fit is about log n per placement instead of n.

    An entry whose room shrank is only marked (``changed``); the tree catches up in one batch,
    each shared ancestor recomputed once, before a search that starts at or before a marked
    entry. Marked entries behind the start do not matter: a stale maximum is only ever too high,
    which costs a detour, never a wrong answer, as long as every leaf the search may return is
    current."""

    def __init__(self, width: int, entries: Iterable[Entry] = ()):
        self.entries: list[Entry] = list(entries)
        self._empty: tuple[int, ...] = (-1,) * width  # an unused leaf fits nothing
        self._tree: list[tuple[int, ...]] = []
        self._size = 1
        self._changed: set[int] = set()
        self._last_changed = -1
        self._build()

    def extend(self, entries: list[Entry]) -> None:
        """Add entries at the end."""
        low = len(self.entries)
        self.entries.extend(entries)
        if len(self.entries) >= self._size:
            self._build()
        else:
            self._changed.update(range(low, len(self.entries)))
            self._last_changed = len(self.entries) - 1

    def changed(self, index: int) -> None:
        """The entry's room shrank."""
        self._changed.add(index)
        self._last_changed = max(self._last_changed, index)

    def first(self, needs: Needs, start: int = 0) -> int:
        """Index of the first entry at or after ``start`` with room for ``needs``; -1 if none.

        Visits subtrees left to right: into one whose maxima have room (its left child first),
        past one without (climbing while it is a right child, then to its right sibling). Maxima
        of different dimensions may come from different leaves, hence the climbing back."""
        if self._last_changed >= start:
            self._catch_up()
        size, tree = self._size, self._tree
        if start >= size:
            return -1
        if start == 0:  # most searches of a packing find no room anywhere: ask the root first
            room = tree[1]
            for dimension, amount in needs:
                if room[dimension] < amount:
                    return -1
        node = start + size
        while node:
            room = tree[node]
            for dimension, amount in needs:
                if room[dimension] < amount:
                    break
            else:
                if node >= size:  # an unused leaf only "fits" a request for nothing
                    return node - size if node - size < len(self.entries) else -1
                node *= 2
                continue
            while node & 1:
                node //= 2
            if node:
                node += 1
        return -1

    def _catch_up(self) -> None:
        size, tree, entries = self._size, self._tree, self.entries
        level: set[int] = set()
        for index in self._changed:
            tree[size + index] = tuple(entries[index].free)
            level.add((size + index) // 2)
        self._changed, self._last_changed = set(), -1
        while level:
            above: set[int] = set()
            for node in level:
                merged = tuple(map(max, tree[2 * node], tree[2 * node + 1]))
                if merged != tree[node]:  # unchanged: nothing above changes through this node
                    tree[node] = merged
                    if node > 1:
                        above.add(node // 2)
            level = above

    def _build(self) -> None:
        while self._size <= len(self.entries):
            self._size *= 2
        size = self._size
        tree = self._tree = [self._empty] * (2 * size)
        for index, entry in enumerate(self.entries):
            tree[size + index] = tuple(entry.free)
        for node in range(size - 1, 0, -1):
            tree[node] = tuple(map(max, tree[2 * node], tree[2 * node + 1]))
        self._changed, self._last_changed = set(), -1


class Room:
    """Free room on one existing node, what runs there (for anti-affinity), the taints pending
    pods see, and the first-fit trees it is in (each updated when its room shrinks)."""

    __slots__ = ("node", "order", "taints", "free", "pods", "aa_pods", "trees")

    def __init__(self, node: Node, order: int, taints: tuple[Taint, ...], free: list[int], pods: list[Pod]):
        self.node = node
        self.order = order  # position in node-name order
        self.taints = taints
        self.free = free
        self.pods = pods
        self.aa_pods = [pod for pod in pods if pod.anti_affinity]
        self.trees: list[tuple[FirstFit[Room], int]] = []

    def add(self, pod: Pod) -> None:
        self.pods.append(pod)
        if pod.anti_affinity:
            self.aa_pods.append(pod)
        for tree, index in self.trees:
            tree.changed(index)


class Bin:
    """One new (or booting) instance of a group: its free room and how many pods of each shape
    it holds. A bin given up by the planner is ``closed``: it holds nothing and fits nothing."""

    __slots__ = ("free", "contents", "pods", "has_terms", "booting", "closed")

    def __init__(self, free: list[int], booting: bool = False):
        self.free = free
        self.contents: dict[Shape, int] = {}
        self.pods: list[Pod] = []  # one representative per shape, for anti-affinity
        self.has_terms = False
        self.booting = booting
        self.closed = False


def copies_fitting(needs: Needs, free: list[int]) -> int:
    best = 1 << 30
    for dimension, amount in needs:
        copies = free[dimension] // amount
        if copies < best:
            if copies <= 0:
                return 0
            best = copies
    return best


def _consume(needs: Needs, free: list[int], copies: int) -> None:
    for dimension, amount in needs:
        free[dimension] -= amount * copies


def _room_for(shape: Shape, free: list[int], pods_there: list[Pod], pods_with_terms: list[Pod]) -> int:
    """How many of the shape's pods fit this room, anti-affinity included."""
    copies = copies_fitting(shape.needs, free)
    if copies and (shape.has_terms or pods_with_terms):
        if anti_affinity_conflict(shape.representative, pods_there if shape.has_terms else pods_with_terms):
            return 0
        if shape.self_conflict:
            return 1
    return copies


class NodeIndex:
    """Matches placements against nodes once per distinct (labels asked about, taints)."""

    def __init__(self, rooms: list[Room], placements: Iterable[Placement], width: int = 0):
        keys: set[str] = set()
        for placement in placements:
            keys.update(placement_label_keys(placement))
        self._keys = sorted(keys)
        self._width = width
        self._by_signature: dict[Signature, list[Room]] = {}
        for room in rooms:
            labels = room.node.labels
            signature = (tuple(labels.get(key) for key in self._keys), room.taints)
            self._by_signature.setdefault(signature, []).append(room)
        self._rooms: dict[Placement, list[Room]] = {}
        self._trees: dict[Placement, FirstFit[Room]] = {}

    def matching(self, placement: Placement) -> list[Room]:
        """The rooms the placement matches, in node-name order."""
        rooms = self._rooms.get(placement)
        if rooms is None:
            rooms = []
            for (values, taints), members in self._by_signature.items():
                labels = {key: value for key, value in zip(self._keys, values, strict=True) if value is not None}
                if placement_matches(placement, labels, taints):
                    rooms.extend(members)
            rooms.sort(key=lambda room: room.order)
            self._rooms[placement] = rooms
        return rooms

    def first_fit(self, placement: Placement) -> FirstFit[Room]:
        """A first-fit tree over the matching rooms; every room keeps it up to date."""
        tree = self._trees.get(placement)
        if tree is None:
            rooms = self.matching(placement)
            tree = self._trees[placement] = FirstFit(self._width, rooms)
            for index, room in enumerate(rooms):
                room.trees.append((tree, index))
        return tree


def fit_on_rooms(shape: Shape, rooms: FirstFit[Room], rules: Optional[LiveRules] = None) -> list[Room]:
    """Place as many of the shape's pods as fit, first fit in node-name order; the rooms used.
    ``rules``: the inter-pod rules, when any pod of the loop has some (every placement is
    counted; only shapes with ``rules`` are asked)."""
    used: list[Room] = []
    refused = _fit_pass(shape, rooms, rules, used)
    # A node the rules held back (its zone at maxSkew above the least) may take more once later
    # nodes' domains have grown, as the scheduler, placing pod by pod, finds: look again at those
    # nodes only, while a look places pods.
    while refused and shape.remaining:
        before = shape.remaining
        refused = _fit_pass(shape, rooms, rules, used, refused)
        if shape.remaining == before:
            break
    return used


def _fit_pass(shape: Shape, rooms: FirstFit[Room], rules: Optional[LiveRules], used: list[Room],
              only: Optional[list[int]] = None) -> list[int]:
    """One first-fit pass over the rooms (or over ``only``, positions in ``rooms``), adding the
    rooms it places pods on to ``used``; returns the positions of the rooms the inter-pod rules
    gave fewer pods than their room fits."""
    held_back: list[int] = []
    positions = iter(only) if only is not None else None
    index = rooms.first(shape.needs) if positions is None else next(positions, -1)
    while index >= 0 and shape.remaining:
        room = rooms.entries[index]
        copies = min(shape.remaining, _room_for(shape, room.free, room.pods, room.aa_pods))
        if copies and rules is not None and shape.rules:
            fitting = copies
            copies = rules.node_copies(shape.representative, room.node, copies, shape.remaining)
            if copies < fitting:
                held_back.append(index)
        if copies:
            _consume(shape.needs, room.free, copies)
            if not room.pods or room.pods[-1] is not shape.representative:
                used.append(room)  # (a room placed on again in a later pass is listed once)
            room.add(shape.representative)
            shape.take(copies)
            if rules is not None:
                rules.add(shape.representative, room.node, copies)
        index = rooms.first(shape.needs, index + 1) if positions is None else next(positions, -1)
    return held_back


def _fill(target: Bin, shape: Shape, copies: int) -> None:
    _consume(shape.needs, target.free, copies)
    if shape not in target.contents:
        target.pods.append(shape.representative)
        target.has_terms = target.has_terms or shape.has_terms
    target.contents[shape] = target.contents.get(shape, 0) + copies


def put(target: Bin, shape: Shape, copies: int) -> None:
    """Place ``copies`` of a shape in a bin known to have room for them."""
    _fill(target, shape, copies)


def unfill(target: Bin, shape: Shape, copies: int) -> None:
    """Undo ``copies`` of a shape placed in a bin (the planner trying a move and taking it back)."""
    _consume(shape.needs, target.free, -copies)
    left = target.contents[shape] - copies
    if left:
        target.contents[shape] = left
        return
    del target.contents[shape]
    target.pods.remove(shape.representative)
    target.has_terms = any(other.has_terms for other in target.contents)


def fill_bins(shape: Shape, wanted: int, bins: FirstFit[Bin], allow: Optional[Allow] = None) -> list[tuple[Bin, int]]:
    """Up to ``wanted`` of the shape's pods into existing bins, first fit in bin order; returns
    (bin, copies) of each placement. ``allow``: the inter-pod rules, for a shape that has some."""
    placed: list[tuple[Bin, int]] = []
    index = bins.first(shape.needs) if wanted else -1
    while wanted and index >= 0:
        current = bins.entries[index]
        copies = min(wanted, _room_for(shape, current.free, current.pods, current.pods if current.has_terms else []))
        if copies and allow is not None:
            copies = allow(current, copies)
        if copies:
            _fill(current, shape, copies)
            bins.changed(index)
            wanted -= copies
            placed.append((current, copies))
        index = bins.first(shape.needs, index + 1)
    return placed


def open_bins(shape: Shape, wanted: int, empty: list[int], limit: int, allow: Optional[Allow] = None) -> list[Bin]:
    """New bins of capacity ``empty``, at most ``limit``, holding up to ``wanted`` of the shape's
    pods. With ``allow`` (the inter-pod rules), at most one: the next one's domains count this one."""
    per_bin = _room_for(shape, list(empty), [], []) if wanted and limit > 0 else 0
    opened: list[Bin] = []
    if allow is not None:
        limit = min(limit, 1)
    while wanted and per_bin and len(opened) < limit:
        new_bin = Bin(list(empty))
        copies = min(wanted, per_bin)
        if allow is not None:
            copies = allow(new_bin, copies)
            if not copies:
                break
        _fill(new_bin, shape, copies)
        wanted -= copies
        opened.append(new_bin)
    return opened


def close_bin(bins: FirstFit[Bin], index: int) -> None:
    """Give a bin up: emptied of its pods by the caller, it fits nothing from now on."""
    target = bins.entries[index]
    target.closed = True
    target.free[:] = [-1] * len(target.free)
    bins.changed(index)
