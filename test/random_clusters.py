"""Small random clusters for the planner's property and optimality tests: one region, 2-4 groups
of real instance types at their us-east-1 on-demand prices, up to 40 pending pods."""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Optional

from autoscaler.model.objects import Group, InstanceShape, Pod, Snapshot, Taint, Toleration
from builders import make_group, make_pod, make_resources, make_snapshot

# type -> (allocatable cpu, allocatable memory, GPUs, on-demand $/h in us-east-1)
TYPES = {
    "m5.large": ("1930m", "7Gi", 0, 0.096), "m5.xlarge": ("3920m", "14Gi", 0, 0.192),
    "m5.2xlarge": ("7910m", "29Gi", 0, 0.384), "m5.4xlarge": ("15890m", "59Gi", 0, 0.768),
    "r5.large": ("1930m", "15Gi", 0, 0.126), "r5.xlarge": ("3920m", "30Gi", 0, 0.252),
    "c5.xlarge": ("3920m", "6Gi", 0, 0.17), "c5.2xlarge": ("7910m", "14Gi", 0, 0.34),
    "p3.2xlarge": ("7910m", "58Gi", 1, 3.06),
}
TEAM_TAINT = Taint("team", "ml", "NoSchedule")


def priced_shape(instance_type: str) -> InstanceShape:
    cpu, memory, gpu, price = TYPES[instance_type]
    return InstanceShape(instance_type, make_resources(cpu=cpu, memory=memory, gpu=gpu, pods=110), price)


def priced_group(name: str, instance_type: str, region: str = "us-east-1", **options: object) -> Group:
    group = make_group(name, region=region, shapes=[priced_shape(instance_type)], zones=(f"{region}a",), **options)
    return group


def random_cluster(seed: int, max_pods: int = 40) -> Snapshot:
    chance = random.Random(seed)
    types = chance.sample(sorted(TYPES), chance.randint(2, 4))
    groups = []
    for index, instance_type in enumerate(types):
        labels = {"team": "ml"} if chance.random() < 0.25 else {}
        taints = [TEAM_TAINT] if labels and chance.random() < 0.5 else []
        groups.append(priced_group(f"g{index}-{chance.randint(0, 99)}", instance_type, max_size=chance.randint(3, 30),
                                   labels=labels, taints=taints, spot=chance.random() < 0.2))
    pods: list[Pod] = []
    sizes = [(chance.choice([100, 250, 500, 1000, 1500, 2000, 3000]), chance.choice([128, 512, 1024, 2048, 4096, 8192, 12288, 24576]))
             for _ in range(chance.randint(1, 6))]
    for number in range(chance.randint(1, max_pods)):
        cpu, memory = chance.choice(sizes) if chance.random() < 0.7 else (chance.randint(1, 30) * 100, chance.randint(1, 96) * 256)
        options: dict[str, object] = {}
        roll = chance.random()
        if roll < 0.15:
            options["selector"] = {"team": "ml"}
            options["tolerations"] = [Toleration("team", "Equal", "ml")]
        elif roll < 0.25:
            options["tolerations"] = [Toleration("team", "Exists")]
        gpu = 1 if "p3.2xlarge" in types and chance.random() < 0.1 else 0
        pods.append(make_pod(f"p{number:02}", cpu=f"{cpu}m", memory=f"{memory}Mi", gpu=gpu, **options))
    return make_snapshot(pods, groups=groups)


def renamed(snapshot: Snapshot, names: Optional[dict[str, str]] = None) -> Snapshot:
    """The same cluster with the group names reversed in order (or as given)."""
    groups = snapshot.groups
    if names is None:
        ordered = sorted(group.name for group in groups)
        names = dict(zip(ordered, reversed(ordered), strict=True))
    return replace(snapshot, groups=tuple(replace(group, name=names[group.name]) for group in groups))
