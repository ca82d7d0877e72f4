"""The improvement pass of choose-and-pack: give up a new instance when its pods fit elsewhere
for less.

Pure. After the greedy choice of one tier, the least-filled of the last new instances of each
group (dearest groups first) is emptied into room left in the plan's other instances and, for
what does not fit there, into new instances of strictly cheaper groups; the move is kept when it
lowers the tier's $/h, and undone otherwise. Repeated while a move helps, a bounded number of times.
"""
from __future__ import annotations

from typing import Sequence, cast

from .group_plan import GroupPlan
from .packing import Bin, fill_bins, open_bins, put, unfill
from .pending_shapes import PodShape

MAX_MOVES = 200
LAST_BINS = 3  # the least filled of a group's last few new instances is tried


def improve(plans: Sequence[GroupPlan]) -> int:
    """Returns how many instances were given up."""
    moves = 0
    while moves < MAX_MOVES and _one_move(plans):
        moves += 1
    return moves


def _fill_level(plan: GroupPlan, target: Bin) -> float:
    return max((1 - free / size for free, size in zip(target.free, plan.empty, strict=True) if size > 0), default=1.0)


def _last_new_bins(plan: GroupPlan) -> list[Bin]:
    found: list[Bin] = []
    for entry in reversed(plan.bins.entries):
        if not entry.closed and not entry.booting:
            found.append(entry)
            if len(found) == LAST_BINS:
                break
    return found


def _one_move(plans: Sequence[GroupPlan]) -> bool:
    by_price = sorted(plans, key=lambda plan: ((plan.price or 0.0), plan.offer.tie_break))
    for owner in reversed(by_price):
        candidates = _last_new_bins(owner)
        if not candidates or not owner.price:
            continue
        target = min(candidates, key=lambda entry: _fill_level(owner, entry))
        if _relocate(target, owner, by_price):
            return True
    return False


def _relocate(target: Bin, owner: GroupPlan, by_price: Sequence[GroupPlan]) -> bool:
    # Bins hold the shapes the planner put there.
    items = sorted(((cast(PodShape, shape), copies) for shape, copies in target.contents.items()),
                   key=lambda item: item[0].sort_key)
    index = owner.bins.entries.index(target)
    for shape, copies in items:
        unfill(target, shape, copies)
    saved = list(target.free)
    target.free[:] = [-1] * len(saved)  # it takes nothing while its pods look for room elsewhere
    owner.bins.changed(index)
    fills: list[tuple[GroupPlan, Bin, PodShape, int]] = []
    opened: list[tuple[GroupPlan, list[Bin]]] = []
    added = 0.0
    moved = True
    for shape, copies in items:
        left = copies
        for other in by_price:
            if left and other.takes(shape):
                for entry, placed in fill_bins(shape, left, other.bins):
                    fills.append((other, entry, shape, placed))
                    left -= placed
        for other in by_price:
            if not left or (other.price or 0.0) >= (owner.price or 0.0):
                continue
            if other.room > 0 and other.takes(shape):
                new = open_bins(shape, left, other.empty, other.room)
                if new:
                    other.bins.extend(new)
                    other.new += len(new)
                    opened.append((other, new))
                    added += (other.price or 0.0) * len(new)
                    left -= sum(entry.contents[shape] for entry in new)
        if left:
            moved = False
            break
    if moved and added < (owner.price or 0.0) - 1e-9:
        target.contents.clear()
        target.pods.clear()
        owner.close(target)
        for other, _ in opened:
            other.spare_checked = False
        return True
    for other, entry, shape, placed in reversed(fills):
        unfill(entry, shape, placed)
        other.bins.changed(other.bins.entries.index(entry))
    for other, new in opened:
        for entry in new:
            for packed, placed in list(entry.contents.items()):
                unfill(entry, packed, placed)
            other.close(entry)
    target.free[:] = saved
    for shape, copies in items:
        put(target, shape, copies)
    owner.bins.changed(index)
    return False

