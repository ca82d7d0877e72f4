"""On-demand $/h of an instance type in a region, from the price table shipped in the package.

``data/on_demand_prices.json`` holds AWS's public on-demand Linux prices as aws/karpenter-provider-aws
generates them from the AWS Pricing API (its source, date and the command that regenerates it are
in the file and in docs/decisions.md#prices). That source carries us-east-1 only. A region the table
does not have is priced with the us-east-1 figure: AWS prices a region's types in nearly the same
ratios everywhere (us-west-2 has the same figures for the common families), so choosing the
cheapest type within one region comes out the same; the absolute figure is an estimate there.

Read once, on the first lookup (nothing is loaded at import).

The daemon also fetches every region of --regions from the AWS Price List API, about daily, in
the background (read/price_list.py); those live figures, set here, win over the table.
"""
from __future__ import annotations

import functools
import json
import threading
from pathlib import Path
from typing import Any, Mapping, Optional

PRICE_TABLE = Path(__file__).parent.with_name("data") / "on_demand_prices.json"
REFERENCE_REGION = "us-east-1"


# region -> instance type -> $/h from the Price List API (read/price_list.py); empty until fetched.
_live: dict[str, Mapping[str, float]] = {}
_live_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def price_table() -> Mapping[str, Mapping[str, float]]:
    """region -> instance type -> $/h, as shipped."""
    return json.loads(PRICE_TABLE.read_text())["prices"]


def table_date() -> str:
    """When the shipped table's figures were generated (recorded in it by tools/update_prices.py);
    read when asked (once, at start), not kept."""
    shipped: Mapping[str, Any] = json.loads(PRICE_TABLE.read_text())
    return str(shipped.get("generated_at") or "unknown")[:10]


def set_live_prices(region: str, prices: Mapping[str, float]) -> None:
    with _live_lock:
        _live[region] = dict(prices)


def clear_live_prices() -> None:
    with _live_lock:
        _live.clear()


def price_source(region: str) -> str:
    """Whose figures price the region: ``live`` (the Price List API), the region's own in the
    table, or the reference region's (``us-east-1``) when the table lacks it."""
    with _live_lock:
        if _live.get(region):
            return "live"
    return region if region in price_table() else REFERENCE_REGION


def on_demand_price(region: str, instance_type: str) -> Optional[float]:
    """$/h of one on-demand Linux instance of the type in the region: the live figure when one was
    fetched, else the table's; the us-east-1 figure for a region the table lacks; None for a type
    neither knows."""
    with _live_lock:
        live = _live.get(region)
    if live and instance_type in live:
        return live[instance_type]
    table = price_table()
    prices = table.get(region) or table.get(REFERENCE_REGION, {})
    return prices.get(instance_type)
