"""Pack a tier's new instances again, exactly, when they hold only a few pod shapes.

Pure. First fit decreasing can buy more than needed: 6 pods of 2 CPUs and 5 of 3 CPUs on 8-CPU
instances go 3+3, 3+3, 3+2+2, 2+2+2, 2 (five instances) where 3+2+2 three times and 3+3 take four;
and what fills four large instances to three quarters may fit three large and one half-size. Batch
clusters run many copies of a few shapes, so this is the common case.

When the new instances of a tier's groups hold at most MAX_SHAPES shapes (none with inter-pod rules),
the cheapest set of instances holding those pods is found by a search over how many of each shape
are left: each step buys one instance of a group, filled with a maximal mix of the shapes it takes
(one to which no further pod fits). The result is kept when it costs less and stays within each
group's max size. The search visits at most MAX_STATES states and MAX_PATTERNS mixes, so its cost
stays small and bounded; past them the first-fit plan stands.
"""
from __future__ import annotations

from typing import Optional, Sequence, cast

from .group_plan import GroupPlan
from .packing import Bin, copies_fitting, put, unfill
from .pending_shapes import PodShape
from .reasons import PackedExactly

MAX_SHAPES = 4
MAX_STATES = 500  # states of the search (how many of each shape are left) it may visit
MAX_PATTERNS = 60  # maximal mixes of shapes that fit one instance, over the tier's groups
MICRODOLLARS = 1_000_000  # prices compared as whole numbers: float sums would tell equal plans apart


def repack(plans: Sequence[GroupPlan], in_dollars: bool = True) -> bool:
    """Re-pack the plans' new instances when that costs less; returns whether it did. Each group
    holding new instances afterwards is told why (in $/h when ``in_dollars``: the least-waste
    expander's prices are sizes)."""
    # A fixed order that names only break ties in (as everywhere in scale up): equal-cost plans
    # are told apart by the first option, the cheapest group's.
    priced = sorted((plan for plan in plans if plan.price is not None),
                    key=lambda plan: (plan.price, plan.offer.cost_tie_break))
    new_bins = [(plan, entry) for plan in priced for entry in plan.new_bins()]
    if not new_bins:  # one instance counts too: two smaller ones may cost less
        return False
    counts: dict[PodShape, int] = {}
    for _, entry in new_bins:
        for held, copies in entry.contents.items():
            shape = cast(PodShape, held)  # bins hold the shapes the planner put there
            counts[shape] = counts.get(shape, 0) + copies
    shapes = sorted(counts, key=lambda shape: shape.index)
    if len(shapes) > MAX_SHAPES or any(shape.has_terms or shape.rules for shape in shapes):
        return False
    demand = tuple(counts[shape] for shape in shapes)
    options = _options(priced, shapes, demand)
    if options is None:
        return False
    current = sum(_price(plan) for plan, _ in new_bins)
    packing = cheapest(demand, options, current - 1)
    if packing is None:
        return False
    bought: dict[int, int] = {}
    for option in packing:
        bought[option[0]] = bought.get(option[0], 0) + 1
    if any(count > priced[index].room + len(priced[index].new_bins()) for index, count in bought.items()):
        return False  # more than a group's max size allows
    for plan, entry in new_bins:
        for packed, copies in list(entry.contents.items()):
            unfill(entry, packed, copies)
        plan.close(entry)
    for index, pattern in packing:
        plan = priced[index]
        entry = Bin(list(plan.empty))
        for shape, copies in zip(shapes, pattern, strict=True):
            if copies:
                put(entry, shape, copies)
        plan.bins.extend([entry])
        plan.new += 1
        plan.spare_checked = False
    if in_dollars:
        after = sum(priced[index].price or 0.0 for index, _ in packing)
        note = PackedExactly(len(packing), after, current / MICRODOLLARS)
        for index in sorted(bought):
            priced[index].notes.append(note)
    return True


def _price(plan: GroupPlan) -> int:
    return round((plan.price or 0.0) * MICRODOLLARS)


def _options(plans: Sequence[GroupPlan], shapes: Sequence[PodShape],
             demand: tuple[int, ...]) -> Optional[list[tuple[int, int, tuple[int, ...]]]]:
    """(plan index, price, pattern) of every maximal mix each plan's instance takes; None past
    MAX_PATTERNS."""
    options: list[tuple[int, int, tuple[int, ...]]] = []
    for index, plan in enumerate(plans):
        takes = [demand[i] if plan.takes(shape) else 0 for i, shape in enumerate(shapes)]
        if not any(takes):
            continue
        patterns = maximal_patterns(shapes, takes, plan.empty, MAX_PATTERNS - len(options))
        if patterns is None:
            return None
        options.extend((index, _price(plan), pattern) for pattern in patterns)
    return options


def maximal_patterns(shapes: Sequence[PodShape], demand: Sequence[int], empty: Sequence[int],
                     limit: int) -> Optional[list[tuple[int, ...]]]:
    """Every mix of the shapes (at most their demand) that fits one empty instance and to which
    no further pod fits; None when there are more than ``limit``."""
    found: list[tuple[int, ...]] = []

    def extend(index: int, free: list[int], chosen: list[int]) -> bool:
        if index == len(shapes):
            if any(chosen[i] < demand[i] and copies_fitting(shapes[i].needs, free) > 0 for i in range(len(shapes))):
                return True  # not maximal: one more pod of some shape fits
            if any(chosen):
                found.append(tuple(chosen))
            return len(found) <= limit
        most = min(demand[index], copies_fitting(shapes[index].needs, free))
        for copies in range(most, -1, -1):
            for dimension, amount in shapes[index].needs:
                free[dimension] -= amount * copies
            chosen.append(copies)
            going = extend(index + 1, free, chosen)
            chosen.pop()
            for dimension, amount in shapes[index].needs:
                free[dimension] += amount * copies
            if not going:
                return False
        return True

    return found if extend(0, list(empty), []) else None


def cheapest(demand: tuple[int, ...], options: Sequence[tuple[int, int, tuple[int, ...]]],
             at_most: int) -> Optional[list[tuple[int, tuple[int, ...]]]]:
    """The cheapest instances ((plan index, pods of each shape it holds), the last ones cut to what
    is left) holding ``demand``, when that costs at most ``at_most``; None otherwise, or when the
    search would visit more than MAX_STATES states."""
    done = tuple(0 for _ in demand)
    best: dict[tuple[int, ...], tuple[int, int]] = {done: (0, 0)}  # state -> (cost, instances)
    step: dict[tuple[int, ...], tuple[int, tuple[int, ...]]] = {}  # state -> (plan index, state after)
    visited = 0

    # Per option, the shapes it holds: an option none of whose shapes is left makes no progress.
    holds = [tuple(i for i, take in enumerate(pattern) if take) for _, _, pattern in options]

    def solve(state: tuple[int, ...]) -> tuple[int, int]:
        nonlocal visited
        visited += 1
        if visited > MAX_STATES:
            raise _TooLarge
        result = (1 << 62, 0)
        for (index, price, pattern), held in zip(options, holds, strict=True):
            if not any(state[i] for i in held):
                continue
            rest = tuple(left - take if left > take else 0 for left, take in zip(state, pattern, strict=True))
            known = best.get(rest)
            cost, instances = known if known is not None else solve(rest)
            # The cheaper; at equal cost, fewer instances; then the first option (a fixed order).
            if cost + price < result[0] or (cost + price == result[0] and instances + 1 < result[1]):
                result = (cost + price, instances + 1)
                step[state] = (index, rest)
        best[state] = result
        return result

    try:
        if solve(demand)[0] > at_most:
            return None
    except (_TooLarge, RecursionError):  # RecursionError: a chain of more instances than the stack allows
        return None
    packing, state = [], demand
    while state != done:
        index, rest = step[state]
        packing.append((index, tuple(left - after for left, after in zip(state, rest, strict=True))))
        state = rest
    return packing


class _TooLarge(Exception):
    """The search went past MAX_STATES."""
