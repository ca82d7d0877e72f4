"""What each group offers pending pods this loop: the instance it would launch (capacity and
$/h), how many more it may launch, the booting instances it already has, and where it stands in
the candidate order.

Pure. Rules (docs/decisions.md#scale-up):
- Planning type of a mixed-instances group: the type its allocation strategy launches where that
  is determined (``prioritized``: the first override; ``lowest-price``: the cheapest override);
  otherwise a capacity every override provides (per resource, the least of them), priced at the
  most expensive override, since AWS may launch any of them. A single-type group plans with its type.
- Price of one new instance: the operator's ``openai/hourly-price`` tag wins; a spot group pays the
  current spot price (per zone of the group the latest record, averaged over its zones: AWS
  spreads a group over its zones), falling back to the on-demand price; otherwise the on-demand
  price of the shipped table. None when unknown.
- Booting instances (desired above the group's initialized or broken nodes, group not timed out:
  instances not registered yet, and nodes still starting, see initialized.py) are free room for
  pending pods; new instances may be bought up to ``max size - max(desired, nodes)``.
- Candidate order: priority tag (higher first), then region position in --regions: a tier. Inside
  a tier the expander chooses; single-AZ before multi-AZ, spot before on-demand, then name (the
  last tie-breaker) and region only break ties.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

from ..model.config import Settings
from ..model.objects import Group, InstanceShape, Resources, Snapshot, SpotPrice

PRIORITIZED = "prioritized"
LOWEST_PRICE = "lowest-price"

Tier = tuple[int, int]
TieBreak = tuple[int, int, str, str]
CostTieBreak = tuple[int, int, str, tuple[tuple[str, int], ...], str, str]


@dataclass(frozen=True)
class Offer:
    group: Group
    # The type planned with (None: no launch settings); ``determined`` is False when it stands for
    # "any of the overrides" (its capacity the least of them).
    planned: Optional[InstanceShape]
    determined: bool
    price: Optional[float]  # $/h of one new instance; None when unknown
    price_source: str  # "operator tag", "spot", "on-demand", or "" when unknown
    nodes: int  # the group's nodes now
    booting: int  # instances asked for that are not nodes yet
    room: int  # new instances it may still get
    timed_out: bool
    tier: Tier
    tie_break: TieBreak

    @property
    def usable(self) -> bool:
        return self.planned is not None and not self.timed_out

    @property
    def cost_tie_break(self) -> CostTieBreak:
        """At equal cost: single-AZ, spot, then what the group launches (its type and capacity), and
        only then its name, so renaming groups never changes a choice between different groups.
        (The priority expander keeps the original's order, ``tie_break``, names included.)"""
        planned = self.planned
        shape = (planned.instance_type, tuple(sorted(planned.capacity.items()))) if planned is not None else ("", ())
        return (self.tie_break[0], self.tie_break[1], *shape, self.group.name, self.group.region)

    @property
    def key(self) -> tuple[str, str]:
        return self.group.key

    def instance_name(self) -> str:
        if self.planned is None:
            return "?"
        if self.determined:
            return self.planned.instance_type
        return " or ".join(shape.instance_type for shape in self.group.shapes)


def latest_spot_price(group: Group, instance_type: str, spot_prices: Sequence[SpotPrice]) -> Optional[float]:
    """The latest spot price of the type in each of the group's zones, averaged over those zones."""
    latest: dict[str, SpotPrice] = {}
    zones = set(group.zones)
    for record in spot_prices:
        if record.region != group.region or record.instance_type != instance_type:
            continue
        if zones and record.zone not in zones:
            continue
        seen = latest.get(record.zone)
        if seen is None or record.timestamp > seen.timestamp:
            latest[record.zone] = record
    if not latest:
        return None
    return sum(record.price for record in latest.values()) / len(latest)


def type_price(group: Group, shape: InstanceShape, spot_prices: Sequence[SpotPrice]) -> tuple[Optional[float], str]:
    """$/h of one instance of this type of the group, and where the figure comes from."""
    if group.hourly_price_override is not None:
        return group.hourly_price_override, "operator tag"
    if group.is_spot:
        spot = latest_spot_price(group, shape.instance_type, spot_prices)
        if spot is not None:
            return spot, "spot"
    if shape.hourly_price is not None:
        return shape.hourly_price, "on-demand"
    return None, ""


def least_of(shapes: Iterable[InstanceShape]) -> Resources:
    """Per resource, the least any of the shapes offers (a resource one lacks drops out)."""
    shapes = list(shapes)
    names = set.intersection(*(set(shape.capacity.names()) for shape in shapes)) if shapes else set()
    return Resources({name: min(shape.capacity.get(name) for shape in shapes) for name in names})


def planned_type(group: Group, spot_prices: Sequence[SpotPrice]) -> tuple[Optional[InstanceShape], bool, Optional[float], str]:
    """(planning shape, determined, price, price source) of one new instance of the group."""
    shapes = group.shapes
    if not shapes:
        return None, True, None, ""
    if len(shapes) == 1:
        return (shapes[0], True) + type_price(group, shapes[0], spot_prices)
    by_type = {shape.instance_type: shape for shape in shapes}
    strategy = group.allocation_strategy
    if strategy == PRIORITIZED and not group.is_spot:
        first = next((by_type[name] for name in group.override_order if name in by_type), None)
        if first is not None:
            return (first, True) + type_price(group, first, spot_prices)
    priced = [(type_price(group, shape, spot_prices), shape) for shape in shapes]
    if strategy == LOWEST_PRICE and all(price is not None for (price, _), _ in priced):
        (price, source), cheapest = min(priced, key=lambda item: (item[0][0] or 0.0, item[1].instance_type))
        return cheapest, True, price, source
    # Not determined: plan with what every override provides, at the dearest override's price.
    least = InstanceShape(" or ".join(shape.instance_type for shape in shapes), least_of(shapes))
    prices = [price for (price, _), _ in priced]
    if any(price is None for price in prices):
        return least, False, None, ""
    sources = sorted({source for (_, source), _ in priced})
    return least, False, max(price for price in prices if price is not None), "/".join(sources)


def make_offers(snapshot: Snapshot, settings: Settings, timed_out: frozenset[tuple[str, str]],
                booting_nodes: frozenset[str] = frozenset()) -> list[Offer]:
    """One offer per group, in candidate order (tier, then the tie-breakers). ``booting_nodes``:
    nodes still starting; they count as booting instances of their group, not as its nodes."""
    group_of_instance = {instance_id: group.key for group in snapshot.groups for instance_id in group.instance_ids}
    node_count: dict[tuple[str, str], int] = {}
    for node in snapshot.nodes:
        if node.name in booting_nodes:
            continue
        key = group_of_instance.get(node.instance_id or "")
        if key is not None:
            node_count[key] = node_count.get(key, 0) + 1
    offers = []
    for group in snapshot.groups:
        planned, determined, price, source = planned_type(group, snapshot.spot_prices)
        nodes = node_count.get(group.key, 0)
        is_out = group.key in timed_out
        offers.append(Offer(
            group=group, planned=planned, determined=determined, price=price, price_source=source, nodes=nodes,
            booting=0 if is_out else max(0, group.desired - nodes),
            room=max(0, group.max_size - max(group.desired, nodes)), timed_out=is_out,
            tier=(-group.priority, settings.region_rank(group.region)),
            tie_break=(0 if len(group.zones) <= 1 else 1, 0 if group.is_spot else 1, group.name, group.region)))
    offers.sort(key=lambda offer: (offer.tier, offer.tie_break))
    return offers


def describe_price(price: Optional[float]) -> str:
    if price is None:
        return "unknown price"
    return f"${price:.3f}/h" if price < 0.1 else f"${price:.2f}/h"


def offers_by_key(offers: Iterable[Offer]) -> Mapping[tuple[str, str], Offer]:
    return {offer.key: offer for offer in offers}
