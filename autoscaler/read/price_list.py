"""READ: on-demand prices of every region of --regions from the AWS Price List API, refreshed about
daily in the background of the loop (the daemon only; --once and the sandbox use the table).

pricing:GetProducts is served from us-east-1 whatever the region priced. One region is a few
pages of products (Linux, shared tenancy, no pre-installed software, capacity status Used), each
call bounded by the same total deadline as every other AWS call (clients/deadline.py). The loop
never waits for it: the first loops, and any region whose fetch failed, are priced from the
shipped table (read/prices.py), and a region planned with another region's figures is warned
about once. The permission is optional in iam-policy.json: refused, it is one warning and the
table goes on.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Callable, Iterable, Mapping, Optional

from ..clients.aws_errors import CloudConfigurationError, CloudError, cloud_errors
from . import prices

log = logging.getLogger("autoscaler.cluster")

PRICING_REGION = "us-east-1"  # the Price List API's endpoint for every region's prices
REFRESH_SECONDS = 24 * 3600
RETRY_SECONDS = 3600  # after a failed fetch
FILTERS = {"operatingSystem": "Linux", "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}


def product_price(document: Mapping[str, Any]) -> Optional[tuple[str, float]]:
    """(instance type, on-demand $/h) of one Price List product, or None when it has neither."""
    instance_type = ((document.get("product") or {}).get("attributes") or {}).get("instanceType")
    if not isinstance(instance_type, str) or not instance_type:
        return None
    for term in ((document.get("terms") or {}).get("OnDemand") or {}).values():
        for dimension in (term.get("priceDimensions") or {}).values():
            try:
                price = float(dimension["pricePerUnit"]["USD"])
            except (KeyError, TypeError, ValueError):
                continue
            if dimension.get("unit") in ("Hrs", "Hours") and price > 0:
                return instance_type, price
    return None


def fetch_region_prices(pricing: Any, region: str) -> dict[str, float]:
    """instance type -> on-demand Linux $/h in ``region``; the lowest where products repeat a type."""
    filters = [{"Type": "TERM_MATCH", "Field": field, "Value": value}
               for field, value in {"regionCode": region, **FILTERS}.items()]
    found: dict[str, float] = {}
    with cloud_errors(pricing, f"reading on-demand prices for {region}"):
        for page in pricing.get_paginator("get_products").paginate(ServiceCode="AmazonEC2", Filters=filters,
                                                                  FormatVersion="aws_v1"):
            for item in page.get("PriceList", ()):
                try:
                    priced = product_price(json.loads(item) if isinstance(item, str) else item)
                except ValueError:
                    continue
                if priced and (priced[0] not in found or priced[1] < found[priced[0]]):
                    found[priced[0]] = priced[1]
    return dict(sorted(found.items()))


class PriceList:
    """Fetches --regions' prices in a background thread when due (``after_loop``), sets them as
    the live figures, and warns once per region planned with another region's figures."""

    def __init__(self, pricing: Any, regions: Iterable[str], clock: Callable[[], float] = time.monotonic):
        self.pricing = pricing
        self.regions = tuple(regions)
        self.clock = clock
        self._due = 0.0
        self._thread: Optional[threading.Thread] = None
        self._warned: set[str] = set()
        self._refused = False

    def announce(self) -> None:
        """The start-up line: which figures price the first loops."""
        log.info("on-demand prices: the shipped table generated %s (%s), until the Price List API answers "
                 "for %s (refreshed daily)", prices.table_date(), ", ".join(sorted(prices.price_table())),
                 ", ".join(self.regions))

    def after_loop(self, planned_regions: Iterable[str]) -> None:
        """After a loop that read the world: warn about the regions it priced with another's figures,
        and start a refresh when one is due and none is running."""
        for region in sorted(set(planned_regions)):
            source = prices.price_source(region)
            if source not in ("live", region) and region not in self._warned:
                self._warned.add(region)
                log.warning("prices for %s: planned with %s's on-demand figures from the shipped table "
                            "(generated %s) until the Price List API answers for it", region, source,
                            prices.table_date())
        if (self._thread is None or not self._thread.is_alive()) and self.clock() >= self._due:
            self._due = self.clock() + RETRY_SECONDS  # a refresh that fails is tried again in an hour
            self._thread = threading.Thread(target=self.refresh, name="price-list", daemon=True)
            self._thread.start()

    def refresh(self) -> None:
        """Every region once; on success the next refresh in a day."""
        fetched = 0
        for region in self.regions:
            try:
                found = fetch_region_prices(self.pricing, region)
            except CloudConfigurationError as error:
                if not self._refused:
                    self._refused = True
                    log.warning("no live on-demand prices, the shipped table prices every region (the permission "
                                "pricing:GetProducts is optional; tried again hourly, without this warning): %s", error)
                return
            except CloudError as error:
                log.warning("on-demand prices for %s not refreshed (tried again in an hour): %s", region, error)
                continue
            except Exception:  # noqa: BLE001 - a bug here must not stop the loop's thread; the table stays
                log.exception("on-demand prices for %s not refreshed (a bug)", region)
                continue
            if found:
                prices.set_live_prices(region, found)
                self._warned.discard(region)
                fetched += 1
                log.info("on-demand prices for %s: %d instance types from the Price List API", region, len(found))
            else:
                log.warning("on-demand prices for %s: the Price List API knows no instance type there; the "
                            "shipped table stays", region)
        if fetched == len(self.regions):
            self._due = self.clock() + REFRESH_SECONDS
