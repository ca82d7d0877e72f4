"""On-demand $/h of an instance type in a region, from the price table shipped in the package.

``data/on_demand_prices.json`` holds AWS's public on-demand Linux prices as aws/karpenter-provider-aws
generates them from the AWS Pricing API (its source, date and the command that regenerates it are
in the file and in docs/decisions.md#prices). That source carries us-east-1 only. A region the table
does not have is priced with the us-east-1 figure: AWS prices a region's types in nearly the same
ratios everywhere (us-west-2 has the same figures for the common families), so choosing the
cheapest type within one region comes out the same; the absolute figure is an estimate there.

Read once, on the first lookup (nothing is loaded at import).
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Mapping, Optional

PRICE_TABLE = Path(__file__).parent.with_name("data") / "on_demand_prices.json"
REFERENCE_REGION = "us-east-1"


@functools.lru_cache(maxsize=1)
def price_table() -> Mapping[str, Mapping[str, float]]:
    """region -> instance type -> $/h, as shipped."""
    return json.loads(PRICE_TABLE.read_text())["prices"]


def on_demand_price(region: str, instance_type: str) -> Optional[float]:
    """$/h of one on-demand Linux instance of the type in the region; the us-east-1 figure for a
    region the table lacks; None for a type the table does not know."""
    table = price_table()
    prices = table.get(region) or table.get(REFERENCE_REGION, {})
    return prices.get(instance_type)
