"""How long one scale-up decision takes on a large synthetic cluster (the original took minutes there).

The original needed 193 s for 10,000 pending pods on 2,000 nodes. This builds 20 pod shapes in
5 selector sets, 2,000 nodes with running pods, and 50 groups in 3 regions, then times
``plan_scale_up`` (best of 3) at several pending-pod counts and reports the peak memory of one
decision. Run: /tmp/venv/bin/python bench/scale_up.py

``--distinct`` instead gives every pending pod a request of its own (no two pods share a shape,
so nothing is placed by count) with one node per 10 pending pods, up to 100,000 pending pods on
10,000 nodes, the case where the cost of first fit over nodes and over new instances shows.

``--rules`` gives a quarter of the 20 shapes a host port, a quarter a hostname spread constraint
(max skew 2), a quarter a zone spread constraint (max skew 50) and one a zone anti-affinity
against the batch pool, and labels single-zone groups and their nodes with their zone: the
placement rules' slow path (placement_rules.py, topology.py) at scale.

Targets (issue 9): 10,000 pending pods x 2,000 nodes x 50 groups under 0.5 s; 100,000 pending
pods of distinct shapes x 10,000 nodes under 3 s, growing about linearly. The groups carry
on-demand prices, so the price expander's choice is what is timed.
"""
from __future__ import annotations

import os
import sys
import time
import tracemalloc
from datetime import datetime, timezone

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from autoscaler.model.config import Settings  # noqa: E402
from autoscaler.model.objects import (  # noqa: E402
    HOSTNAME_LABEL, ZONE_LABEL, Group, Instance, InstanceShape, LabelSelector, Node, Placement, Pod, PodAffinityTerm, PodPhase,
    Resources, Snapshot, SpreadConstraint, Taint, Toleration,
)
from autoscaler.decide.decision import decide  # noqa: E402
from autoscaler.decide.group_health import GroupHealthState  # noqa: E402
from autoscaler.decide.scale_up import plan_scale_up  # noqa: E402

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
REGIONS = ("us-west-2", "us-east-1", "eu-west-1")
GIB = 1 << 30
GPU = "nvidia.com/gpu"
GPU_TAINT = Taint(GPU, "true", "NoSchedule")

# instance type -> (vCPUs, memory GiB, GPUs, on-demand $/h in us-east-1)
TYPES = {"m5.xlarge": (4, 16, 0, 0.192), "m5.4xlarge": (16, 64, 0, 0.768), "c5.4xlarge": (16, 32, 0, 0.68),
         "r5.2xlarge": (8, 64, 0, 0.504), "p3.2xlarge": (8, 61, 1, 3.06)}
POOLS = ("batch", "ml", "etl", "web", "gpu")


def capacity(instance_type: str) -> Resources:
    cpu, memory, gpus, _ = TYPES[instance_type]
    return Resources({"cpu": cpu * 1000 - 100, "memory": (memory - 1) * GIB * 1000, GPU: gpus * 1000, "pods": 110_000})


def build_groups() -> list[Group]:
    groups = []
    names = sorted(TYPES)
    for index in range(50):
        instance_type = names[index % len(names)]
        region = REGIONS[index % len(REGIONS)]
        pool = "gpu" if instance_type == "p3.2xlarge" else POOLS[index % 4]
        labels = {"aws/type": instance_type, "aws/class": instance_type[0], "aws/region": region, "pool": pool}
        zones = (f"{region}a",) if index % 3 else (f"{region}a", f"{region}b")
        if RULES and len(zones) == 1:
            labels[ZONE_LABEL] = zones[0]
        groups.append(Group(
            name=f"{pool}-{instance_type}-{index:02}", region=region, min_size=0, max_size=1000, desired=0,
            zones=zones, labels=labels, taints=(GPU_TAINT,) if pool == "gpu" else (),
            shapes=(InstanceShape(instance_type, capacity(instance_type), TYPES[instance_type][3]),), is_spot=index % 2 == 0,
        ))
    return groups


def build_nodes(groups: list[Group], count: int) -> tuple[list[Group], list[Node], dict, list[Pod]]:
    """``count`` nodes spread over the groups, each running pods that leave a little room."""
    members: dict[int, list[str]] = {index: [] for index in range(len(groups))}
    nodes, instances, running = [], {}, []
    for number in range(count):
        index = number % len(groups)
        group = groups[index]
        name = f"ip-10-0-{number // 250}-{number % 250}.ec2.internal"
        instance_id = f"i-{number:017x}"
        members[index].append(instance_id)
        nodes.append(Node(name, {**group.labels, HOSTNAME_LABEL: name}, group.shapes[0].capacity, group.taints,
                          instance_id=instance_id, region=group.region, zone=group.zones[0], created=NOW))
        instances[instance_id] = Instance(instance_id, group.region, group.zones[0], "running", group.shapes[0].instance_type, NOW)
        share = group.shapes[0].capacity.get("cpu") // 4
        for slot in range(3 if number % 5 else 4):  # every fifth node is full
            running.append(Pod("jobs", f"running-{number}-{slot}", PodPhase.RUNNING,
                               Resources({"cpu": share, "memory": GIB * 1000, "pods": 1000}), node_name=name,
                               owner_kinds=("Job",), scheduled_at=NOW))
    updated = [Group(**{**group.__dict__, "instance_ids": tuple(members[index]), "desired": len(members[index])})
               for index, group in enumerate(groups)]
    return updated, nodes, instances, running


SELECTOR_SETS = (
        Placement(),
        Placement(node_selector=(("pool", "batch"),)),
        Placement(node_selector=(("pool", "ml"),)),
        Placement(node_selector=(("aws/class", "r"),)),
        Placement(node_selector=(("pool", "gpu"),), tolerations=(Toleration(GPU, "Exists"),)),
)


def _rules(number: int, labels: dict[str, str]) -> dict[str, object]:
    """--rules: the placement rules of shape ``number``."""
    if not RULES:
        return {}
    own = LabelSelector(tuple(labels.items()))
    if number == 7:
        batch = LabelSelector((("pool", "batch"),))
        return {"anti_affinity": (PodAffinityTerm(batch, ("jobs",), ZONE_LABEL),)}
    kind = number % 4
    if kind == 1:
        return {"host_ports": (f"TCP/{9000 + number}",)}
    if kind == 2:
        return {"spread": (SpreadConstraint(HOSTNAME_LABEL, 2, own),)}
    if kind == 3:
        return {"spread": (SpreadConstraint(ZONE_LABEL, 50, own),)}
    return {}


def build_pending(count: int) -> list[Pod]:
    """``count`` pending pods of 20 shapes, in 5 selector sets."""
    shapes = []
    for number in range(20):
        placement = SELECTOR_SETS[number % 5]
        gpus = 1000 if number % 5 == 4 else 0
        requests = Resources({"cpu": 250 * (1 + number % 8), "memory": GIB * 1000 * (1 + number % 6), GPU: gpus, "pods": 1000})
        shapes.append((placement, requests, f"job-{number}", _rules(number, {"job-name": f"job-{number}"})))
    return [Pod("jobs", f"{shapes[i % 20][2]}-{i}", PodPhase.PENDING, shapes[i % 20][1], placement=shapes[i % 20][0],
                labels={"job-name": shapes[i % 20][2]}, owner_kinds=("Job",), created=NOW, **shapes[i % 20][3])  # type: ignore[arg-type]
            for i in range(count)]


def build_distinct_pending(count: int) -> list[Pod]:
    """``count`` pending pods in the 5 selector sets, each with a request no other pod has (the
    memory differs by 64Ki from one pod to the next)."""
    pods = []
    for number in range(count):
        gpus = 1000 if number % 5 == 4 else 0
        memory = (GIB * (1 + number % 6) + number * 64 * 1024) * 1000
        requests = Resources({"cpu": 250 * (1 + number % 8), "memory": memory, GPU: gpus, "pods": 1000})
        pods.append(Pod("jobs", f"distinct-{number}", PodPhase.PENDING, requests, placement=SELECTOR_SETS[number % 5],
                        labels={"job-name": f"distinct-{number}"}, owner_kinds=("Job",), created=NOW))
    return pods


def build_snapshot(pending_count: int, node_count: int = 2000, distinct: bool = False) -> Snapshot:
    groups, nodes, instances, running = build_nodes(build_groups(), node_count)
    pending = build_distinct_pending(pending_count) if distinct else build_pending(pending_count)
    return Snapshot(nodes=tuple(nodes), pods=tuple(running + pending), groups=tuple(groups), instances=instances)


def best_of(runs: int, snapshot: Snapshot, settings: Settings) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = plan_scale_up(snapshot, settings, NOW)
        best = min(best, time.perf_counter() - start)
    return best, result


RULES = "--rules" in sys.argv[1:]


def main() -> None:
    distinct = "--distinct" in sys.argv[1:]
    settings = Settings(cluster_name="bench", regions=REGIONS, over_provision=5)
    if distinct:
        sizes = ((10_000, 1_000), (25_000, 2_500), (50_000, 5_000), (100_000, 10_000))
        print("one distinct request per pending pod, one node per 10 pending pods")
    else:
        sizes = tuple((count, 2_000) for count in (1_000, 5_000, 10_000, 20_000))
    print(f"{'pending pods':>12} {'nodes':>6} {'groups':>6} {'best of 3':>10} {'per 1k pods':>12}  decision")
    for pending_count, node_count in sizes:
        snapshot = build_snapshot(pending_count, node_count, distinct)
        seconds, result = best_of(3, snapshot, settings)
        print(f"{pending_count:>12,} {len(snapshot.nodes):>6,} {len(snapshot.groups):>6} {seconds * 1000:>8.1f}ms "
              f"{seconds * 1e6 / pending_count:>10.1f}ms  {result.summary()}")
    snapshot = build_snapshot(10_000, 2_000 if not distinct else 1_000, distinct)
    # The whole decision around it: node readiness, templates (DaemonSet overhead, learned labels),
    # the buy-loop guard (its second loop remembers every pod planned onto new instances), scale in.
    guard_state = decide(snapshot, settings, NOW, GroupHealthState()).guard
    start = time.perf_counter()
    decision = decide(snapshot, settings, NOW, GroupHealthState(), guard_state)
    print(f"whole decision (decide) at 10,000 pending pods / {len(snapshot.nodes):,} nodes, second loop: "
          f"{(time.perf_counter() - start) * 1000:.1f}ms ({len(guard_state.bought):,} pods remembered as bought for, "
          f"{len(decision.actions)} actions)")
    tracemalloc.start()
    plan_scale_up(snapshot, settings, NOW)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"peak memory of one decision at 10,000 pending pods / {len(snapshot.nodes):,} nodes: {peak / (1 << 20):.1f} MiB")


if __name__ == "__main__":
    main()
