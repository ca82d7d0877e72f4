"""Stage 4 of scale up: choose groups and pack the waiting pods into their instances.

Pure. Rules (README "How it decides"):
- One decision over all waiting pods: a new instance of a group takes any pod whose placement the
  group satisfies and that fits it, whatever constraint set the pod is in.
- Booting instances cost nothing more: they are filled first, tier by tier, the dearest first.
- Tiers (priority tag, then region position in --regions) are served in order; a tier's groups
  take what they can before the next tier sees the rest (region overflow).
- Inside a tier the expander chooses:
  ``price``: greedy by cost. Each class of similar pods is valued at the least any group would
  charge for it (its share of an instance times the instance's price); each group is estimated
  at the value of the pods it would take over the price of the instances they need (all it can
  take, or only those it is the cheapest for); the best group's first-fit-decreasing packing is
  committed, and the estimate runs again on what is left. Groups without a known price come after
  the priced ones of their tier, chosen by least waste. Then an improvement pass (improve.py).
  On small problems, plans that first let one group take all it can are compared with the
  greedy one (choose_and_pack).
  ``least-waste``: the same greedy with each instance priced at its size (normalised capacity), so
  the least capacity is bought: the least unused share.
  ``priority``: the original's order: single-AZ, spot, name; each group takes all it can.
- Name, single-AZ and spot only break ties (equal cost).
- A last sweep offers any pod still waiting to every group in candidate order, so no pod is left
  out that an instance of the plan, or one more within max size, could take.
"""
from __future__ import annotations

from typing import Optional, Sequence

from .config import EXPANDERS
from .demand_classes import DemandClass, classify, instances_for, whole
from .group_plan import GroupPlan
from .improve import improve
from .offers import Offer, describe_price
from .packing import copies_fitting
from .pending_shapes import PodShape

PRICE, LEAST_WASTE, PRIORITY = EXPANDERS
TOLERANCE = 1e-9
SMALL_SHAPES = 64  # waiting shapes up to which the price expander compares several plans
SMALL_GROUPS = 8


def choose_and_pack(shapes: Sequence[PodShape], offers: Sequence[Offer], dimensions: tuple[str, ...],
                    expander: str = PRICE) -> list[GroupPlan]:
    """Plans of every usable group, in candidate order; the shapes' ``taken`` counts grow by
    what the plans hold.

    With the price expander on a small problem (every group priced), the greedy plan is compared
    with plans that first let one group take all it can, and the cheapest is kept (fewest pods
    left out first): the greedy alone misses consolidations such as one larger instance for pods
    it spread over several families."""
    usable = [offer for offer in offers if offer.usable]
    waiting = [shape for shape in shapes if shape.remaining]
    if (expander != PRICE or len(waiting) > SMALL_SHAPES or len(usable) > SMALL_GROUPS or len(usable) < 2
            or any(offer.price is None for offer in usable)):
        return _choose(shapes, offers, dimensions, expander, None)
    start = [shape.taken for shape in shapes]
    tiers = sorted({offer.tier for offer in usable})
    tried: list[tuple[tuple[int, tuple[int, ...], float], Optional[tuple[str, str]], list[GroupPlan], list[int]]] = []
    for seed in [None, *(offer.key for offer in usable)]:
        for shape, taken in zip(shapes, start, strict=True):
            shape.taken = taken
        plans = _choose(shapes, offers, dimensions, expander, seed)
        # Fewest pods left out, then the most served by the first tiers (priority, region), then $/h.
        by_tier = tuple(-sum(plan.pods_placed() for plan in plans if plan.offer.tier == tier) for tier in tiers)
        score = (sum(shape.remaining for shape in shapes), by_tier, round(sum(plan.cost() for plan in plans), 9))
        tried.append((score, seed, plans, [shape.taken for shape in shapes]))
    tried.sort(key=lambda attempt: attempt[0])  # stable: the greedy plan wins ties
    (left, _, total), seed, plans, taken_counts = tried[0]
    for shape, taken in zip(shapes, taken_counts, strict=True):
        shape.taken = taken
    if seed is not None:
        runner_up = tried[1][0]
        if runner_up[0] > left:
            why = f"of {len(tried)} plans compared, the one that leaves out the fewest pods"
        else:
            why = (f"{describe_price(total)} in all against {describe_price(runner_up[2])} for the next plan "
                   f"of {len(tried)} compared")
        for plan in plans:
            if plan.offer.key == seed and plan.notes:
                plan.notes[0] = f"{plan.notes[0]}; {why}"
    return plans


def _choose(shapes: Sequence[PodShape], offers: Sequence[Offer], dimensions: tuple[str, ...],
            expander: str, seed: Optional[tuple[str, str]]) -> list[GroupPlan]:
    plans = [GroupPlan(offer, dimensions) for offer in offers if offer.usable]
    fill_booting(shapes, plans)
    tiers: dict[tuple[int, int], list[GroupPlan]] = {}
    for plan in plans:
        tiers.setdefault(plan.offer.tier, []).append(plan)
    for tier in sorted(tiers):
        members = tiers[tier]
        if expander == PRIORITY:
            for plan in members:
                _take_all(plan, shapes, "the first in priority order (single-AZ, spot, name) that takes them")
            continue
        priced = [plan for plan in members if plan.price is not None] if expander == PRICE else []
        unpriced = [plan for plan in members if plan not in priced]
        if priced:
            for plan in priced:
                if plan.offer.key == seed:
                    _take_all(plan, shapes, "all it can take")
            greedy(shapes, priced, PRICE)
            improve(priced)
        if unpriced:
            for plan in unpriced:
                plan.price = size_price(plan, unpriced)
            greedy(shapes, unpriced, LEAST_WASTE, no_price=expander == PRICE)
            improve(unpriced)
    sweep(shapes, plans)
    return plans


def fill_booting(shapes: Sequence[PodShape], plans: Sequence[GroupPlan]) -> None:
    """Booting instances cost nothing more: tier by tier, the dearest first (they take the pods
    that would cost the most to buy for), whatever the groups are called."""
    for plan in sorted(plans, key=lambda p: (p.offer.tier, -(p.price or 0.0), [-a for a in p.empty], p.offer.tie_break)):
        if plan.offer.booting:
            for shape in shapes:
                if shape.remaining and plan.takes(shape):
                    plan.place(shape, 0)


def sweep(shapes: Sequence[PodShape], plans: Sequence[GroupPlan]) -> None:
    waiting = [shape for shape in shapes if shape.remaining]
    for plan in sorted(plans, key=lambda p: (p.offer.tier, p.price if p.price is not None else float("inf"),
                                             p.offer.tie_break)):
        if not waiting:
            return
        before = plan.new
        placed = 0
        for shape in plan.decreasing(shape for shape in waiting if plan.takes(shape)):
            placed += plan.place(shape, plan.room)
        waiting = [shape for shape in waiting if shape.remaining]
        if placed and plan.new > before:
            plan.notes.append(f"for {placed} pods no cheaper choice took")


def _take_all(plan: GroupPlan, shapes: Sequence[PodShape], why: str) -> None:
    before = plan.new
    for shape in plan.decreasing(shape for shape in shapes if shape.remaining and plan.takes(shape)):
        plan.place(shape, plan.room)
    if plan.new > before:
        plan.notes.append(why)


def size_price(plan: GroupPlan, plans: Sequence[GroupPlan]) -> float:
    """An instance's size as a price: per resource asked, its capacity over the largest any of
    these groups offers, averaged (pod slots aside: they cost nothing). Buying the least of it
    is buying the least unused room."""
    shares = []
    for dimension, amount in enumerate(plan.empty):
        if plan.dimensions[dimension] == "pods":
            continue
        top = max(other.empty[dimension] for other in plans)
        if top > 0:
            shares.append(amount / top)
    return sum(shares) / len(shares) if shares else 1.0


class _Candidate:
    __slots__ = ("plan", "classes", "value", "instances", "efficiency", "partial", "pods")

    def __init__(self, plan: GroupPlan, classes: list[DemandClass], value: float, instances: int,
                 efficiency: float, partial: bool, pods: int):
        self.plan, self.classes, self.value = plan, classes, value
        self.instances, self.efficiency, self.partial = instances, efficiency, partial
        self.pods = pods  # about how many pods it would take (counted now: committing changes the classes)

    def rank(self) -> tuple[float, int, tuple[int, int, str, str]]:
        # Rounded so that equal prices tie exactly and the tie-breakers decide.
        return (-round(self.efficiency, 9), -len(self.classes), self.plan.offer.tie_break)


def greedy(shapes: Sequence[PodShape], plans: Sequence[GroupPlan], kind: str, no_price: bool = False) -> None:
    width = len(plans[0].empty)
    classes = classify(shapes, width)
    if not classes:
        return
    # Per (class, plan): how many of the class's largest pod fit one instance (0: not at all).
    fits = {(index, position): (copies_fitting(demand.largest_needs, plan.empty) if plan.matches(demand.shapes[0].placement) else 0)
            for index, demand in enumerate(classes) for position, plan in enumerate(plans)}
    for _ in range(4 * (len(plans) + len(classes)) + 8):
        for plan in plans:
            if not plan.spare_checked:
                _fill_spare(plan, classes)
        live = [index for index, demand in enumerate(classes) if demand.count]
        if not live:
            return
        cost: dict[tuple[int, int], float] = {}
        value: dict[int, float] = {}
        for index in live:
            demand = classes[index]
            for position, plan in enumerate(plans):
                per_instance = fits[index, position]
                if per_instance and plan.room > 0:
                    cost[index, position] = (plan.price or 0.0) * demand.units(plan.empty, per_instance)
            options = [cost[index, position] for position in range(len(plans)) if (index, position) in cost]
            if options:
                value[index] = min(options)
        candidates = []
        for position, plan in enumerate(plans):
            mine = [index for index in live if (index, position) in cost]
            if not mine:
                continue
            cheapest = [index for index in mine if cost[index, position] <= value[index] * (1 + TOLERANCE) + TOLERANCE]
            for chosen in ([mine, cheapest] if cheapest and len(cheapest) < len(mine) else [mine]):
                candidates.append(_estimate(plan, position, [classes[i] for i in chosen], chosen, value, fits))
        if not candidates:
            return
        candidates.sort(key=_Candidate.rank)
        best = candidates[0]
        runner_up = next((c for c in candidates[1:] if c.plan is not best.plan), None)
        placed = _commit(best)
        for demand in best.classes:
            demand.refresh()
        if placed:
            best.plan.notes.append(_why(best, runner_up, kind, no_price))
        else:
            # Nothing fitted after all (anti-affinity): do not offer these classes to it again.
            position = plans.index(best.plan)
            for demand in best.classes:
                fits[classes.index(demand), position] = 0


def _estimate(plan: GroupPlan, position: int, chosen: list[DemandClass], indexes: list[int],
              value: dict[int, float], fits: dict[tuple[int, int], int]) -> _Candidate:
    instances = instances_for(((demand, fits[index, position]) for demand, index in zip(chosen, indexes, strict=True)), plan.empty)
    worth = sum(value[index] for index in indexes)
    pods = sum(demand.count for demand in chosen)
    needed = whole(instances)
    partial = needed > plan.room
    if partial:
        worth *= plan.room / instances
        pods = int(pods * plan.room / instances)
        needed = plan.room
    price = plan.price or 0.0
    efficiency = worth / (price * needed) if price > 0 else float("inf")
    return _Candidate(plan, chosen, worth, needed, efficiency, partial, pods)


def _commit(candidate: _Candidate) -> int:
    plan = candidate.plan
    members = plan.decreasing(shape for demand in candidate.classes for shape in demand.shapes
                              if shape.remaining and plan.takes(shape))
    placed = 0
    for shape in members:
        placed += plan.place(shape, plan.room)
    return placed


def _fill_spare(plan: GroupPlan, classes: Sequence[DemandClass]) -> None:
    """Room left in instances already planned costs nothing: waiting pods that fit go there."""
    plan.spare_checked = True
    spare = max_free(plan)
    if not any(spare):
        return
    for demand in classes:
        # A class whose smallest request, resource by resource, fits no open bin has no member that does.
        if not demand.count or not plan.matches(demand.shapes[0].placement) or not copies_fitting(demand.smallest_needs, spare):
            continue
        placed = 0
        for shape in demand.shapes:
            if shape.remaining and copies_fitting(shape.needs, spare) and plan.takes(shape):
                placed += plan.place(shape, 0)
        if placed:
            demand.refresh()
            spare = max_free(plan)
    plan.spare_checked = True


def max_free(plan: GroupPlan) -> list[int]:
    """Per dimension, the most room any open bin has: a pod needing more fits none."""
    best = [0] * len(plan.empty)
    for entry in plan.bins.entries:
        if not entry.closed:
            for dimension, amount in enumerate(entry.free):
                if amount > best[dimension]:
                    best[dimension] = amount
    return best


def _why(best: _Candidate, runner_up: Optional[_Candidate], kind: str, no_price: bool) -> str:
    """Why this group, against the next candidate for the same pods (the raise's reason puts the
    group's own final $/h in front)."""
    if kind == LEAST_WASTE:
        own = "no known price, so chosen by least waste: it leaves the least room unused" if no_price \
            else "it leaves the least room unused"
        if runner_up is None:
            return own + "; the only group of its tier that takes them"
        return own + f", against {runner_up.instances} {runner_up.plan.offer.instance_name()} of {runner_up.plan.name} (next candidate)"
    if runner_up is None:
        return "the only group of its tier that takes them"
    other = runner_up.plan
    takes = ""
    if runner_up.pods < best.pods:
        takes = f", which would take about {runner_up.pods} of the {best.pods} pods"
    elif runner_up.pods > best.pods:
        takes = f", which would take {runner_up.pods} pods"
    return (f"against {describe_price((other.price or 0.0) * runner_up.instances)} for {runner_up.instances} "
            f"{other.offer.instance_name()} of {other.name} (next candidate{takes})")
