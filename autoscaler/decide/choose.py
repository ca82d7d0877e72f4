"""Stage 4 of scale up: choose groups and pack the waiting pods into their instances.

Pure. Rules (docs/decisions.md#scale-up):
- One decision over all waiting pods: a new instance of a group takes any pod whose placement the
  group satisfies and that fits it, whatever constraint set the pod is in.
- Booting instances cost nothing more: they are filled first, tier by tier, the dearest first.
- Tiers (priority tag, then region position in --regions) are served in order; a tier's groups
  take what they can before the next tier sees the rest (region overflow).
- Inside a tier the expander chooses:
  ``price``: greedy by cost (greedy.py). Groups without a known price come after the priced ones
  of their tier, chosen by least waste. Then an improvement pass (improve.py), and on the plan
  kept, an exact re-packing of tiers whose new instances hold a few pod shapes (repack.py).
  On small problems, plans that first let one group take all it can are compared with the
  greedy one (choose).
  ``least-waste``: the same greedy with each instance priced at its size (normalised capacity), so
  the least capacity is bought: the least unused share.
  ``priority``: the original's order: single-AZ, spot, name; each group takes all it can.
- Name, single-AZ and spot only break ties (equal cost).
- A last sweep offers any pod still waiting to every group in candidate order, so no pod is left
  out that an instance of the plan, or one more within max size, could take.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

from ..model.config import EXPANDERS
from .greedy import greedy
from .group_plan import GroupPlan
from .improve import improve
from .ledger import Placed, Waiting, commit, forks, placed_by, waiting_of
from .offers import Offer
from .pending_shapes import PodShape
from .placement_rules import is_port_dimension
from .reasons import NoCheaperChoice, PlansCompared, TakeAll
from .repack import repack
from .topology import Topology

PRICE, LEAST_WASTE, PRIORITY = EXPANDERS
SMALL_SHAPES = 64  # waiting shapes up to which the price expander compares several plans
SMALL_GROUPS = 8


@dataclass(frozen=True)
class Chosen:
    plans: tuple[GroupPlan, ...]  # every usable group's, in candidate order
    placed: Placed  # the waiting pods the plans hold (booting and new instances)


def choose(waiting: Waiting, offers: Sequence[Offer], dimensions: tuple[str, ...],
           expander: str = PRICE, topology: Optional[Topology] = None) -> Chosen:
    """The plans of every usable group for the waiting pods, and the ledger of what they hold.

    With the price expander on a small problem (every group priced), the greedy plan is compared
    with plans that first let one group take all it can, and the cheapest is kept (fewest pods
    left out first): the greedy alone misses consolidations such as one larger instance for pods
    it spread over several families. Each trial plans its own copies of the shapes
    (PodShape.fork); the plan kept is the ledger."""
    shapes = forks(waiting)
    usable = [offer for offer in offers if offer.usable]
    if (expander != PRICE or len(shapes) > SMALL_SHAPES or len(usable) > SMALL_GROUPS or len(usable) < 2
            or any(offer.price is None for offer in usable)):
        plans = _repack(shapes, _choose(shapes, offers, dimensions, expander, None, topology), expander)
        return Chosen(tuple(plans), placed_by(shapes))
    tiers = sorted({offer.tier for offer in usable})
    tried: list[tuple[tuple[int, tuple[int, ...], float], Optional[tuple[str, str]], list[GroupPlan], list[PodShape]]] = []
    for seed in [None, *(offer.key for offer in usable)]:
        trial = [shape.fork() for shape in shapes]
        plans = _choose(trial, offers, dimensions, expander, seed, topology)
        # Fewest pods left out, then the most served by the first tiers (priority, region), then $/h.
        by_tier = tuple(-sum(plan.pods_placed() for plan in plans if plan.offer.tier == tier) for tier in tiers)
        score = (sum(shape.remaining for shape in trial), by_tier, round(sum(plan.cost() for plan in plans), 9))
        tried.append((score, seed, plans, trial))
    tried.sort(key=lambda attempt: attempt[0])  # stable: the greedy plan wins ties
    (left, _, total), seed, plans, kept = tried[0]
    if seed is not None:
        runner_up = tried[1][0]
        why = PlansCompared(len(tried), runner_up[0] > left, total, runner_up[2])
        for plan in plans:
            if plan.offer.key == seed and plan.notes:
                plan.notes.insert(1, why)
    plans = _repack(kept, plans, expander)
    return Chosen(tuple(plans), placed_by(kept))


def choose_and_pack(shapes: Sequence[PodShape], offers: Sequence[Offer], dimensions: tuple[str, ...],
                    expander: str = PRICE, topology: Optional[Topology] = None) -> list[GroupPlan]:
    """Stage 4 on shapes held by the caller: the plans, their pods counted on the shapes."""
    chosen = choose(waiting_of(shapes), offers, dimensions, expander, topology)
    commit(chosen.placed)
    return list(chosen.plans)


def _choose(shapes: Sequence[PodShape], offers: Sequence[Offer], dimensions: tuple[str, ...],
            expander: str, seed: Optional[tuple[str, str]], topology: Optional[Topology] = None) -> list[GroupPlan]:
    plans = [GroupPlan(offer, dimensions) for offer in offers if offer.usable]
    if topology is not None:
        # One view of every group's bins: the inter-pod rules count pods per zone across groups.
        view = topology.with_plans([(plan.offer.group.labels, plan.bins) for plan in plans])
        for plan in plans:
            plan.topology = view
    fill_booting(shapes, plans)
    tiers: dict[tuple[int, int], list[GroupPlan]] = {}
    for plan in plans:
        tiers.setdefault(plan.offer.tier, []).append(plan)
    for tier in sorted(tiers):
        members = tiers[tier]
        if expander == PRIORITY:
            for plan in members:
                _take_all(plan, shapes, TakeAll.PRIORITY_ORDER)
            continue
        priced, unpriced = _priced_and_unpriced(members, expander)
        if priced:
            for plan in priced:
                if plan.offer.key == seed:
                    _take_all(plan, shapes, TakeAll.SEED)
            greedy(shapes, priced, PRICE)
            improve(priced)
        if unpriced:
            for plan in unpriced:
                plan.price = size_price(plan, unpriced)
            greedy(shapes, unpriced, LEAST_WASTE, no_price=expander == PRICE)
            improve(unpriced)
    sweep(shapes, plans)
    return plans


def _priced_and_unpriced(members: Sequence[GroupPlan], expander: str) -> tuple[list[GroupPlan], list[GroupPlan]]:
    """A tier's groups chosen by price, and those chosen by size (least waste): their prices are
    in different units, so they are never compared with each other."""
    priced = [plan for plan in members if plan.price is not None] if expander == PRICE else []
    return priced, [plan for plan in members if plan not in priced]


def _repack(shapes: Sequence[PodShape], plans: list[GroupPlan], expander: str) -> list[GroupPlan]:
    """The chosen plan's tiers packed again exactly where that costs less (repack.py), once, on
    the plan kept: the room that frees may let a move between groups pay, and is offered to the
    pods still waiting. The priority expander keeps the original's packing."""
    if expander == PRIORITY:
        return plans
    tiers: dict[tuple[int, int], list[GroupPlan]] = {}
    for plan in plans:
        tiers.setdefault(plan.offer.tier, []).append(plan)
    changed = False
    for tier in sorted(tiers):
        priced, unpriced = _priced_and_unpriced(tiers[tier], expander)
        for part in (priced, unpriced):
            if repack(part, in_dollars=part is priced):
                improve(part)
                changed = True
    if changed:
        sweep(shapes, plans)
    return plans


def fill_booting(shapes: Sequence[PodShape], plans: Sequence[GroupPlan]) -> None:
    """Booting instances cost nothing more: tier by tier, the dearest first (they take the pods
    that would cost the most to buy for), whatever the groups are called."""
    fill_planned(shapes, sorted(plans, key=lambda p: (p.offer.tier, -(p.price or 0.0), [-a for a in p.empty],
                                                      p.offer.cost_tie_break)))


def fill_planned(shapes: Sequence[PodShape], plans: Sequence[GroupPlan]) -> None:
    """Waiting pods into the room of the instances already planned (booting or new), group after
    group, none opened. Pods of a zone rule (spread, affinity) placed in one group may let another
    group's instances take more (the least zone grew): then every group is offered them again,
    until nothing more moves; as the scheduler binds pod after pod wherever the skew allows."""
    moved = True
    while moved:
        moved = False
        for plan in plans:
            if not any(not entry.closed for entry in plan.bins.entries):
                continue
            for shape in shapes:
                if shape.remaining and plan.takes(shape) and plan.place(shape, 0) and shape.domain_keys:
                    moved = True


def sweep(shapes: Sequence[PodShape], plans: Sequence[GroupPlan]) -> None:
    waiting = [shape for shape in shapes if shape.remaining]
    ordered = sorted(plans, key=lambda p: (p.offer.tier, p.price if p.price is not None else float("inf"),
                                           p.offer.cost_tie_break))
    zone_rules = any(shape.domain_keys for shape in waiting)
    refill = zone_rules
    for plan in ordered:
        if refill:
            # Room already planned anywhere first: no instance for a pod of a zone rule that an
            # instance of the plan takes once the other zones have had their share.
            fill_planned(waiting, ordered)
            waiting = [shape for shape in waiting if shape.remaining]
        if not waiting:
            return
        before = plan.new
        placed = 0
        for shape in plan.decreasing(shape for shape in waiting if plan.takes(shape)):
            placed += plan.place(shape, plan.room)
        waiting = [shape for shape in waiting if shape.remaining]
        refill = zone_rules and placed > 0
        if placed and plan.new > before:
            plan.notes.append(NoCheaperChoice(placed))


def _take_all(plan: GroupPlan, shapes: Sequence[PodShape], why: TakeAll) -> None:
    before = plan.new
    for shape in plan.decreasing(shape for shape in shapes if shape.remaining and plan.takes(shape)):
        plan.place(shape, plan.room)
    if plan.new > before:
        plan.notes.append(why)


# Resources every instance has whose unused share is not worth counting unless a pod asks for them.
COMMON_RESOURCES = frozenset({"cpu", "memory", "pods", "ephemeral-storage"})


def size_price(plan: GroupPlan, plans: Sequence[GroupPlan]) -> float:
    """An instance's size as a price: per resource asked, its capacity over the largest any of
    these groups offers, averaged (pod slots aside: they cost nothing). Buying the least of it
    is buying the least unused room. A device no pod asks for (a GPU, an FPGA) counts too, as room
    left wholly unused: CPU pods are not put on an untainted GPU group because its memory fits."""
    shares = []
    for dimension, amount in enumerate(plan.empty):
        if plan.dimensions[dimension] == "pods" or is_port_dimension(plan.dimensions[dimension]):
            continue
        top = max(other.empty[dimension] for other in plans)
        if top > 0:
            shares.append(amount / top)
    unasked = {name for other in plans for name in other.capacity.names()
               if name not in COMMON_RESOURCES and name not in plan.dimensions}
    for name in sorted(unasked):
        top = max(other.capacity.get(name) for other in plans)
        shares.append(plan.capacity.get(name) / top if top > 0 else 0.0)
    return sum(shares) / len(shares) if shares else 1.0
