"""Scheduling fidelity, with the real scheduler as judge: an instance is bought only if the real
scheduler then puts a pending pod on it (docs/design: "above all placement").

Each world is groups, what their nodes really are when they register (NodeProfile), and
workload; the autoscaler runs as a daemon until every workload pod runs, and a few loops more.
Then no instance it bought may have run nothing but DaemonSet pods: the kubelet simulator keeps
the history, so an instance bought by mistake and scaled in later still counts.

Each world is one of issue 17's ("buy only what the scheduler will use"): the planner's model of a
new node and of placement, checked against the real scheduler, controllers and API server.
"""
from __future__ import annotations

import dataclasses

import pytest
from daemon_process import poll
from kubelets import NodeProfile
from workloads import (
    CLUSTER,
    REGION,
    container,
    job,
    node_daemon_set,
    pod,
    sidecar,
    with_claim,
    zonal_volume,
    zone_anti_affinity,
    zone_spread,
)

FAST = ("--sleep", "1", "--idle-threshold", "3", "--type-idle-threshold", "0", "--instance-init-time", "120",
        "--over-provision", "0", "--max-scale-in-fraction", "1")
SETTLE_LOOPS = 3  # loops after every pod runs in which nothing more may be bought
# Loops without a raise while workload pods still wait: the autoscaler has settled on a plan the
# scheduler does not follow. Nodes register within a second and pods bind within another, so 8
# loops (8 s) is ample; it fails such a world in seconds instead of at the deadline.
STUCK_LOOPS = 8
# Nodes come up tainted until their agent (the DaemonSet) is ready, as with Cilium or the VPC
# CNI: the DaemonSet pod, which tolerates everything, lands first, as on a real node.
AGENT_NOT_READY = NodeProfile(startup_taints=({"key": "agent.example.com/not-ready", "effect": "NoSchedule"},),
                              startup_taint_seconds=2)


@dataclasses.dataclass
class World:
    groups: list[dict]  # create_group options: name, instance_type, zones, tags
    workload: list[dict]
    pods: int  # workload pods that must end Running
    profiles: dict[str, NodeProfile] = dataclasses.field(default_factory=dict)


def group(name: str, instance_type: str, zones: tuple[str, ...] = (f"{REGION}a",), **options) -> dict:
    return {"name": name, "instance_type": instance_type, "zones": list(zones), **options}


def build(real, kubelets, world: World) -> None:
    for options in world.groups:
        options = dict(options)
        real.aws.create_group(REGION, options.pop("name"), CLUSTER, max_size=10, **options)
    kubelets.profiles.update(world.profiles)
    for body in world.workload:
        real.create(body)


def workload_pods(real) -> list[dict]:
    return [p for p in real.pods() if not any(o["kind"] == "DaemonSet" for o in p["metadata"].get("ownerReferences", ()))]


def run_until_placed(real, kubelets, autoscalers, pods: int) -> None:
    daemon = autoscalers.start(*FAST)

    def placed() -> bool:
        assert_nothing_bought_for_nothing(kubelets, gone_only=True)  # a wasted instance fails at once, not at the deadline
        running = len([p for p in workload_pods(real) if p["status"].get("phase") == "Running"])
        if running >= pods:
            return True
        log = daemon.log()
        since_raise = log[log.rfind("Set desired capacity"):].count("Loop done:") if "Set desired capacity" in log else 0
        assert since_raise < STUCK_LOOPS, (f"{STUCK_LOOPS} loops without a raise and {pods - running} workload pod(s) "
                                           "still not running: the autoscaler counts on room the scheduler does not find")
        return False

    poll(placed, 90, f"{pods} workload pod(s) Running")
    loops = daemon.log().count("Loop done:")
    poll(lambda: daemon.log().count("Loop done:") >= loops + SETTLE_LOOPS, 60, f"{SETTLE_LOOPS} more loops")
    assert daemon.popen.poll() is None, daemon.log()


def assert_nothing_bought_for_nothing(kubelets, gone_only: bool = False) -> None:
    unused = kubelets.instances_without_work(gone_only)
    assert unused == [], (f"bought, and no pod but a DaemonSet's ran there: {unused}; "
                          f"the others ran {kubelets.work_by_instance}")


def test_a_pod_that_fits_only_beside_the_daemonset_on_the_larger_type_buys_that_type(real, kubelets, autoscalers):
    """The simple world: a 300m DaemonSet on every node and a pod of 1.8 CPU. An m5.large (1930m
    allocatable) would hold the pod alone but not beside the DaemonSet; an m5.xlarge holds both."""
    world = World(groups=[group("small", "m5.large"), group("large", "m5.xlarge")],
                  workload=[node_daemon_set("agent"), job("work", cpu="1800m", run_seconds=3600)], pods=1,
                  profiles={"small": AGENT_NOT_READY, "large": AGENT_NOT_READY})
    build(real, kubelets, world)
    run_until_placed(real, kubelets, autoscalers, world.pods)
    assert_nothing_bought_for_nothing(kubelets)
    [work] = workload_pods(real)
    node = real.kube.get(f"/api/v1/nodes/{work['spec']['nodeName']}")
    assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "m5.xlarge"


TAINTED = NodeProfile(startup_taints=({"key": "node.example.com/initializing", "effect": "NoSchedule"},),
                      startup_taint_seconds=4)
LATE_GPU = NodeProfile(gpu_delay_seconds=4)
GPU_POD = container(resources={"limits": {"nvidia.com/gpu": "1"}})
TWO_ZONES = (group("west-a", "m5.xlarge", zones=(f"{REGION}a",)), group("west-b", "m5.xlarge", zones=(f"{REGION}b",)))

HOST_PORT = container(cpu="500m", ports=[{"containerPort": 8080, "hostPort": 8080}])
SPREAD, EVEN = {"app": "spread"}, {"app": "even"}

WORLDS = {
    # A start-up taint the group's tags do not mention, lifted a few seconds after registration:
    # the pod waits for it; one instance, not a second bought while the first is tainted.
    "start-up-taint": World(groups=[group("workers", "m5.xlarge")], pods=1, profiles={"workers": TAINTED},
                            workload=[job("work", cpu="1", run_seconds=3600)]),
    # The GPU appears seconds after the node (the device plugin): one GPU instance, not two.
    "late-gpu": World(groups=[group("gpus", "g4dn.xlarge")], pods=1, profiles={"gpus": LATE_GPU},
                      workload=[job("train", containers=[GPU_POD], run_seconds=3600)]),
    # Two pods asking for the same host port never share a node: two instances, both used.
    "host-ports": World(groups=[group("workers", "m5.xlarge")], pods=2,
                        workload=[job("web", parallelism=2, run_seconds=3600, containers=[HOST_PORT])]),
    # A volume in zone b: only an instance of zone b's group can run the pod.
    "zonal-volume": World(groups=list(TWO_ZONES), pods=1, workload=[
        *zonal_volume("data", f"{REGION}b"), job("db", cpu="1", run_seconds=3600, **with_claim("data"))]),
    # Two replicas that must not share a zone: one instance in each zone's group.
    "zone-anti-affinity": World(groups=list(TWO_ZONES), pods=2, workload=[
        job("spread", parallelism=2, cpu="1", run_seconds=3600, labels=SPREAD, **zone_anti_affinity(SPREAD))]),
    # Four pods spread over two zones with a skew of at most one: two in each zone.
    "topology-spread": World(groups=list(TWO_ZONES), pods=4, workload=[
        job("even", parallelism=4, cpu="1", run_seconds=3600, labels=EVEN, **zone_spread(EVEN))]),
    # A native sidecar's requests count for the pod's whole life: 1.5 + 0.5 CPU fits no m5.large.
    "sidecar": World(groups=[group("small", "m5.large"), group("large", "m5.xlarge")], pods=1,
                     workload=[job("app", cpu="1500m", run_seconds=3600, **sidecar("500m"))]),
}
@pytest.mark.parametrize("world", list(WORLDS.values()), ids=list(WORLDS))
def test_every_instance_bought_runs_a_pending_pod(real, kubelets, autoscalers, world):
    build(real, kubelets, world)
    run_until_placed(real, kubelets, autoscalers, world.pods)
    assert_nothing_bought_for_nothing(kubelets)


def test_a_gated_pod_buys_nothing_until_its_gate_is_lifted(real, kubelets, autoscalers):
    real.aws.create_group(REGION, "workers", CLUSTER, instance_type="m5.xlarge", max_size=10)
    real.create(pod("gated", cpu="1", schedulingGates=[{"name": "example.com/quota"}]))
    daemon = autoscalers.start(*FAST)
    poll(lambda: daemon.log().count("Loop done:") >= SETTLE_LOOPS, 60, f"{SETTLE_LOOPS} loops")
    assert kubelets.instances_seen == set(), "bought for a pod the scheduler does not consider yet"

    real.kube.patch(f"/api/v1/namespaces/{real.namespace}/pods/gated", {"spec": {"schedulingGates": None}})
    poll(lambda: real.pod("gated")["status"].get("phase") == "Running", 90, "the pod Running once its gate is lifted")
    assert_nothing_bought_for_nothing(kubelets)
