"""READ: one Snapshot of the world per loop, from the Kubernetes reader and every region's AWS API.

Keeps the one piece of read-side memory the loop needs: scaling activities are read for the
last hour the first time, then only what is new or still unfinished, and the window is pruned as
it slides.
"""
from __future__ import annotations

import gc
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..model.config import Settings
from ..model.objects import FINISHED_STATUS_CODES, Snapshot
from .aws_reader import MIXED_MARKETS, AwsClients, read_activities, read_groups, read_instances, read_spot_prices
from .capacity import CapacityCatalog
from .kube_reader import KubeReader

log = logging.getLogger(__name__)

ACTIVITY_WINDOW = timedelta(hours=1)
READ_OVERLAP = timedelta(minutes=10)
SPOT_HISTORY = timedelta(hours=5)


@dataclass(frozen=True)
class _RegionRead:
    groups: tuple
    instances: dict
    activities: list
    spot_prices: tuple


@contextmanager
def _collector_paused():
    """No cyclic garbage collection while the world is read. Reading builds tens of thousands of
    JSON dicts and model objects, none in a cycle, that refcounting frees; meanwhile the collector
    kept walking the whole heap (boto's service models included) and took 40% of the loop's CPU
    at 15,000 pods. It is back on after the read, and its next pass frees any cycle the read made."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class World:
    def __init__(self, kube: KubeReader, aws: AwsClients, settings: Settings):
        self.kube = kube
        self.aws = aws
        self.settings = settings
        self.catalog = CapacityCatalog(aws)
        self._activities: dict[str, dict] = {region: {} for region in settings.regions}  # region -> id -> activity
        self._activities_read_until: dict[str, datetime] = {}

    def read(self, now: datetime) -> Snapshot:
        """Kubernetes and every region at once: each is a few calls waiting on a server, and
        parsing one answer can overlap with waiting for the others. The snapshot is assembled in
        region order, so it does not depend on which answer came first."""
        for region in self.settings.regions:
            self.aws(region)  # clients are made from one boto3 session, which is not thread-safe
        with _collector_paused(), ThreadPoolExecutor(max_workers=1 + len(self.settings.regions),
                                                     thread_name_prefix="read") as pool:
            nodes_read = pool.submit(self.kube.read_nodes)
            regions_read = [pool.submit(self._read_region, region, nodes_read, now) for region in self.settings.regions]
            pods = self.kube.read_pods()
            budgets = self.kube.read_budgets()
            # Every namespace's, --pod-namespace or not: they land on every new node they admit.
            daemonsets = self.kube.read_daemonsets()
            nodes = nodes_read.result()
            regions = [future.result() for future in regions_read]

        instances = {instance_id: instance for region in regions for instance_id, instance in region.instances.items()}
        return Snapshot(
            nodes=nodes,
            pods=pods,
            groups=tuple(group for region in regions for group in region.groups),
            instances=instances,
            activities=tuple(sorted((a for region in regions for a in region.activities),
                                    key=lambda a: (a.start_time, a.activity_id))),
            budgets=budgets,
            spot_prices=tuple(price for region in regions for price in region.spot_prices),
            daemonsets=daemonsets,
        )

    def _read_region(self, region: str, nodes_read: Future, now: datetime) -> "_RegionRead":
        groups = read_groups(self.aws, self.settings, region, self.catalog)
        # The instances of the groups and of the nodes in this region (a node may belong to no
        # managed group); nodes are read meanwhile, on another thread.
        ids = {instance_id for group in groups for instance_id in group.instance_ids}
        ids.update(node.instance_id for node in nodes_read.result() if node.instance_id and node.region == region)
        instances = read_instances(self.aws, region, ids)
        activities = self._read_new_activities(region, [g.name for g in groups], now)
        spot_types = spot_instance_types(groups)
        spot_prices = read_spot_prices(self.aws, region, spot_types, now - SPOT_HISTORY) if spot_types else ()
        return _RegionRead(groups, instances, activities, spot_prices)

    def _read_new_activities(self, region: str, group_names, now: datetime):
        window_start = now - ACTIVITY_WINDOW
        known = self._activities[region]
        # An activity's status changes after it starts (InProgress -> Failed), however long after,
        # and it must be seen again with its final status: re-read from the oldest one still
        # unfinished, and a little overlap before the last read for any that came in late.
        since = self._activities_read_until.get(region, window_start) - READ_OVERLAP
        unfinished = [a.start_time for a in known.values() if a.status_code not in FINISHED_STATUS_CODES]
        since = max(window_start, min([since, *unfinished]))
        for activity in read_activities(self.aws, region, group_names, since):
            known[activity.activity_id] = activity
        self._activities_read_until[region] = now
        for activity_id in [i for i, a in known.items() if a.start_time < window_start]:
            del known[activity_id]
        return list(known.values())


def spot_instance_types(groups) -> list:
    """Every type a group may launch as spot, whose price history the loop reads: spot groups
    (bid or not: the planner prices them at the current spot price) and mixed-market ones, each
    with all its overrides, those without a capacity estimate included."""
    return sorted({instance_type for g in groups if g.is_spot or g.allocation_strategy == MIXED_MARKETS
                   for instance_type in (*g.override_order, *(s.instance_type for s in g.shapes))})
