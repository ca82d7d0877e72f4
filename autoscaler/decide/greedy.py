"""The price expander's greedy choice inside one tier (choose.py runs it; least-waste too, with
each instance priced at its size).

Pure. Each class of similar waiting pods (demand_classes.py) is valued at the least any group
would charge for it: its share of an instance times the instance's price. Each group is estimated
at the value of the pods it would take (all it can, or only those it is the cheapest for) over
the price of the instances they need; the best group's first-fit-decreasing packing is committed
and the estimate runs again on what is left. Room left in instances already planned is filled
first: it costs nothing. Estimates cost classes x groups; only the chosen group packs pods.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ..model.config import EXPANDERS
from .demand_classes import DemandClass, classify, instances_for, whole
from .group_plan import GroupPlan
from .offers import CostTieBreak
from .packing import copies_fitting
from .pending_shapes import PodShape
from .reasons import Candidate, CheaperThanNext, Choice, LeastWaste, OnlyInTier

PRICE, LEAST_WASTE, _ = EXPANDERS
TOLERANCE = 1e-9


class _Candidate:
    __slots__ = ("plan", "classes", "value", "instances", "efficiency", "partial", "pods")

    def __init__(self, plan: GroupPlan, classes: list[DemandClass], value: float, instances: int,
                 efficiency: float, partial: bool, pods: int):
        self.plan, self.classes, self.value = plan, classes, value
        self.instances, self.efficiency, self.partial = instances, efficiency, partial
        self.pods = pods  # about how many pods it would take (counted now: committing changes the classes)

    def rank(self) -> tuple[float, int, CostTieBreak]:
        # Rounded so that equal prices tie exactly and the tie-breakers decide.
        return (-round(self.efficiency, 9), -len(self.classes), self.plan.offer.cost_tie_break)


def greedy(shapes: Sequence[PodShape], plans: Sequence[GroupPlan], kind: str, no_price: bool = False) -> None:
    width = len(plans[0].empty)
    classes = classify(shapes, width)
    if not classes:
        return
    # Per (class, plan): how many of the class's largest pod fit one instance (0: not at all).
    fits = {(index, position): (copies_fitting(demand.largest_needs, plan.empty) if plan.matches(demand.shapes[0].placement) else 0)
            for index, demand in enumerate(classes) for position, plan in enumerate(plans)}
    for _ in range(4 * (len(plans) + len(classes)) + 8):
        _fill_all_spare(plans, classes)
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


def _fill_all_spare(plans: Sequence[GroupPlan], classes: Sequence[DemandClass]) -> None:
    """Every group's spare room, before anything new is bought. Pods of a zone rule (spread,
    affinity) placed in one group may let another group's planned instances take more (the
    least zone grew): then every group is looked at again, until nothing more moves."""
    moved = True
    while moved:
        moved = False
        for plan in plans:
            if not plan.spare_checked:
                moved = _fill_spare(plan, classes) or moved
        if moved:
            for plan in plans:
                plan.spare_checked = False


def _fill_spare(plan: GroupPlan, classes: Sequence[DemandClass]) -> bool:
    """Room left in instances already planned costs nothing: waiting pods that fit go there.
    True when pods of a zone rule were placed (other groups' room may take more now)."""
    plan.spare_checked = True
    spare = max_free(plan)
    moved = False
    if not any(spare):
        return moved
    for demand in classes:
        # A class whose smallest request, resource by resource, fits no open bin has no member that does.
        if not demand.count or not plan.matches(demand.shapes[0].placement) or not copies_fitting(demand.smallest_needs, spare):
            continue
        placed = 0
        for shape in demand.shapes:
            if shape.remaining and copies_fitting(shape.needs, spare) and plan.takes(shape):
                count = plan.place(shape, 0)
                placed += count
                moved = moved or bool(count and shape.domain_keys)
        if placed:
            demand.refresh()
            spare = max_free(plan)
    plan.spare_checked = True
    return moved


def max_free(plan: GroupPlan) -> list[int]:
    """Per dimension, the most room any open bin has: a pod needing more fits none."""
    best = [0] * len(plan.empty)
    for entry in plan.bins.entries:
        if not entry.closed:
            for dimension, amount in enumerate(entry.free):
                if amount > best[dimension]:
                    best[dimension] = amount
    return best


def _why(best: _Candidate, runner_up: Optional[_Candidate], kind: str, no_price: bool) -> Choice:
    """Why this group, against the next candidate for the same pods (the raise's reason puts the
    group's own final $/h in front)."""
    other = None
    if runner_up is not None:
        plan = runner_up.plan
        other = Candidate(runner_up.instances, plan.offer.instance_name(), plan.name, (plan.price or 0.0) * runner_up.instances)
    if kind == LEAST_WASTE:
        return LeastWaste(no_price, other)
    if other is None or runner_up is None:
        return OnlyInTier()
    return CheaperThanNext(other, best.pods, runner_up.pods)
