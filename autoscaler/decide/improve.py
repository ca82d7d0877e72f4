"""The improvement pass of choose-and-pack: give up new instances when their pods fit elsewhere
for less.

Pure. After the greedy choice of one tier, two kinds of move, each kept when it lowers the tier's
$/h and undone otherwise, repeated while one helps (a bounded number of times):
- the least-filled of the last new instances of a group (dearest groups first) is emptied into
  room left in the plan's other instances and, for what does not fit there, into new instances
  of strictly cheaper groups;
- a group with a few new instances hands all of them over: their pods into room elsewhere, then
  into new instances of one other group.
"""
from __future__ import annotations

from typing import Sequence, cast

from .group_plan import GroupPlan
from .packing import Bin, fill_bins, open_bins, put, unfill
from .pending_shapes import PodShape

MAX_MOVES = 200
LAST_BINS = 3  # the least filled of a group's last few new instances is tried
GROUP_MOVE_BINS = 6  # at most this many new instances are handed over to one group at once


def improve(plans: Sequence[GroupPlan]) -> int:
    """Returns how many instances were given up."""
    moves = 0
    while moves < MAX_MOVES and _one_move(plans):
        moves += 1
    return moves


def _fill_level(plan: GroupPlan, target: Bin) -> float:
    return max((1 - free / size for free, size, sized in zip(target.free, plan.empty, plan.sized, strict=True)
                if size > 0 and sized), default=1.0)


def _last_new_bins(plan: GroupPlan) -> list[Bin]:
    found: list[Bin] = []
    for entry in reversed(plan.bins.entries):
        if not entry.closed and not entry.booting:
            found.append(entry)
            if len(found) == LAST_BINS:
                break
    return found


def _one_move(plans: Sequence[GroupPlan]) -> bool:
    by_price = sorted(plans, key=lambda plan: ((plan.price or 0.0), plan.offer.cost_tie_break))
    for owner in reversed(by_price):
        candidates = _last_new_bins(owner)
        if not candidates or not owner.price:
            continue
        target = min(candidates, key=lambda entry: _fill_level(owner, entry))
        cheaper = [other for other in by_price if (other.price or 0.0) < owner.price]
        if _relocate([(owner, target)], by_price, cheaper):
            return True
    # A few new instances of other groups all into one group (room elsewhere first), when that
    # costs less: one group at a time, then every other group at once (say one larger instance
    # for what three families took).
    for receiver in by_price:
        if receiver.room <= 0:
            continue
        others = [plan for plan in reversed(by_price) if plan is not receiver and plan.price and plan.new_bins()]
        moves = [[plan] for plan in others] + ([others] if len(others) > 1 else [])
        for givers in moves:
            bins = [(giver, entry) for giver in givers for entry in giver.new_bins()]
            if len(bins) <= GROUP_MOVE_BINS and _relocate(bins, by_price, [receiver]):
                return True
    return False


def _relocate(targets: list[tuple[GroupPlan, Bin]], fill_plans: Sequence[GroupPlan],
              open_plans: Sequence[GroupPlan]) -> bool:
    """Try to move the pods of ``targets`` (new instances, each with its group) into room in
    ``fill_plans``' instances, then into new instances of ``open_plans``; keep the move when it
    costs less than the instances it gives up, else undo it."""
    if any(cast(PodShape, shape).pinned for _, target in targets for shape in target.contents):
        return False  # affinity or spread counts these pods where they are (pending_shapes.PodShape.pinned)
    saved: list[tuple[GroupPlan, Bin, int, list[int], list[tuple[PodShape, int]]]] = []
    moving: dict[PodShape, int] = {}
    for owner, target in targets:
        index = owner.bins.entries.index(target)
        # Bins hold the shapes the planner put there.
        held = [(cast(PodShape, shape), copies) for shape, copies in target.contents.items()]
        for shape, copies in held:
            unfill(target, shape, copies)
            moving[shape] = moving.get(shape, 0) + copies
        saved.append((owner, target, index, list(target.free), held))
        target.free[:] = [-1] * len(target.free)  # it takes nothing while its pods look for room elsewhere
        owner.bins.changed(index)
    fills: list[tuple[GroupPlan, Bin, PodShape, int]] = []
    opened: list[tuple[GroupPlan, list[Bin]]] = []
    added = 0.0
    moved = True
    for shape in sorted(moving, key=lambda item: item.sort_key):
        left = moving[shape]
        for other in fill_plans:
            if left and other.takes(shape):
                for entry, placed in fill_bins(shape, left, other.bins, other.allow(shape)):
                    fills.append((other, entry, shape, placed))
                    left -= placed
        while left:
            # One instance at a time, of the group that places the next pods for least a pod:
            # 4 pods that one m5.2xlarge held go to an m5.xlarge (3) and an m5.large (1), which
            # neither type alone does for less.
            best = None
            for other in open_plans:
                if other.room > 0 and other.takes(shape):
                    trial = open_bins(shape, left, other.empty, 1, other.allow(shape))
                    if trial:
                        placed = trial[0].contents[shape]
                        key = ((other.price or 0.0) / placed, other.offer.cost_tie_break)
                        if best is None or key < best[0]:
                            best = (key, other, trial, placed)
            if best is None:
                break
            _, other, new, placed = best
            other.bins.extend(new)
            other.new += 1
            opened.append((other, new))
            added += other.price or 0.0
            left -= placed
        if left:
            moved = False
            break
    if moved and added < sum(owner.price or 0.0 for owner, _ in targets) - 1e-9:
        for owner, target in targets:
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
    for owner, target, index, free, held in saved:
        target.free[:] = free
        for shape, copies in held:
            put(target, shape, copies)
        owner.bins.changed(index)
    return False
