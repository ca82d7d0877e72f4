"""READ: one Snapshot of the world per loop, from the Kubernetes reader and every region's AWS API.

Keeps the one piece of read-side memory the loop needs: scaling activities are read for the
last hour the first time, then only what is new, and the window is pruned as it slides.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from .aws_reader import AwsClients, read_activities, read_groups, read_instances, read_spot_prices
from .capacity import CapacityCatalog
from .config import Settings
from .group_labels import effective_shapes
from .kube_reader import KubeReader
from .model import Snapshot

log = logging.getLogger(__name__)

ACTIVITY_WINDOW = timedelta(hours=1)
SPOT_HISTORY = timedelta(hours=5)


class World:
    def __init__(self, kube: KubeReader, aws: AwsClients, settings: Settings):
        self.kube = kube
        self.aws = aws
        self.settings = settings
        self.catalog = CapacityCatalog(aws)
        self._activities: dict[str, dict] = {region: {} for region in settings.regions}  # region -> id -> activity
        self._activities_read_until: dict[str, datetime] = {}

    def read(self, now: datetime) -> Snapshot:
        nodes = self.kube.read_nodes()
        pods = self.kube.read_pods()
        budgets = self.kube.read_budgets()
        node_instances: dict[str, set] = {region: set() for region in self.settings.regions}
        for node in nodes:
            if node.instance_id and node.region in node_instances:
                node_instances[node.region].add(node.instance_id)

        groups, instances, activities, spot_prices = [], {}, [], []
        for region in self.settings.regions:
            region_groups = read_groups(self.aws, self.settings, region, self.catalog)
            ids = set(node_instances[region])
            for group in region_groups:
                ids.update(group.instance_ids)
            instances.update(read_instances(self.aws, region, ids))
            activities.extend(self._read_new_activities(region, [g.name for g in region_groups], now))
            spot_types = sorted({s.instance_type for g in region_groups if g.is_spot and g.spot_price for s in g.shapes})
            if spot_types:
                spot_prices.extend(read_spot_prices(self.aws, region, spot_types, now - SPOT_HISTORY))
            groups.extend(region_groups)

        node_of_instance = {node.instance_id: node for node in nodes if node.instance_id}
        groups = [self._with_real_capacity(group, node_of_instance) for group in groups]
        return Snapshot(
            nodes=nodes,
            pods=pods,
            groups=tuple(groups),
            instances=instances,
            activities=tuple(sorted(activities, key=lambda a: (a.start_time, a.activity_id))),
            budgets=budgets,
            spot_prices=tuple(spot_prices),
        )

    def _read_new_activities(self, region: str, group_names, now: datetime):
        window_start = now - ACTIVITY_WINDOW
        known = self._activities[region]
        # Re-read a little overlap: an activity's status changes after it starts (InProgress ->
        # Failed), and it must be seen again with its final status.
        since = max(window_start, self._activities_read_until.get(region, window_start) - timedelta(minutes=10))
        for activity in read_activities(self.aws, region, group_names, since):
            known[activity.activity_id] = activity
        self._activities_read_until[region] = now
        for activity_id in [i for i, a in known.items() if a.start_time < window_start]:
            del known[activity_id]
        return list(known.values())

    @staticmethod
    def _with_real_capacity(group, node_of_instance):
        own = [node_of_instance[i] for i in group.instance_ids if i in node_of_instance]
        return replace(group, shapes=effective_shapes(group, own)) if own else group
