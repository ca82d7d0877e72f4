"""node_state: the state machine of docs/decisions.md#scale-in, drainability and utilization, by table."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from autoscaler.decide.node_state import classify, idle_since, is_busy_pod, is_drainable, utilization, why_undrainable
from autoscaler.model.config import Settings
from autoscaler.model.objects import (
    DETACHED_LABEL,
    DO_NOT_DRAIN_LABEL,
    Instance,
    NodeState,
    Pod,
    PodPhase,
    Resources,
)
from builders import make_group, make_node, make_pod

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
GIB = (1 << 30) * 1000


def ago(seconds):
    return None if seconds is None else NOW - timedelta(seconds=seconds)


def resources(cpu=0.0, memory_gib=0.0, gpu=0, pods=0):
    return Resources({"cpu": int(cpu * 1000), "memory": int(memory_gib * GIB), "nvidia.com/gpu": gpu * 1000, "pods": pods * 1000})


def aged_node(name="n1", *, cordoned=False, by_autoscaler=False, detached=False, heartbeat_ago=30,
              last_busy_ago=None, created_ago=None, gpu=0):
    """A node of instance ``i-<name>``; its times are seconds before NOW (None: not known)."""
    built = make_node(name, labels={DETACHED_LABEL: "true"} if detached else None, unschedulable=cordoned,
                      cordoned_by_autoscaler=by_autoscaler, instance_id=f"i-{name}",
                      allocatable=resources(cpu=4, memory_gib=16, gpu=gpu, pods=110), created=ago(created_ago))
    return replace(built, last_heartbeat=ago(heartbeat_ago), last_busy=ago(last_busy_ago))


def make_instance(instance_id="i-n1", *, state="running", launch_ago=7200):
    return Instance(id=instance_id, region="us-west-2", zone="us-west-2a", state=state, instance_type="m5.xlarge",
                    launch_time=ago(launch_ago), group_name="g1")


def aged_pod(name="p1", *, node="n1", cpu=1.0, gpu=0, owner="Job", daemonset=False, mirror=False,
            phase=PodPhase.RUNNING, scheduled_ago=7200, created_ago=None, do_not_drain=False, safe_to_evict=None):
    """A pod whose times are seconds before NOW (None: not known)."""
    owners = ("DaemonSet",) if daemonset else ((owner,) if owner else ())
    built = make_pod(name, node=node, phase=phase, owner_kinds=owners, requests=resources(cpu=cpu, gpu=gpu, pods=1),
                     labels={DO_NOT_DRAIN_LABEL: "true"} if do_not_drain else None)
    return replace(built, is_mirror=mirror, safe_to_evict=safe_to_evict, scheduled_at=ago(scheduled_ago),
                   created=ago(created_ago))


SETTINGS = Settings(cluster_name="test", idle_threshold=600, type_idle_threshold=3600)
DRAINING = Settings(cluster_name="test", idle_threshold=600, type_idle_threshold=3600, drain_utilization=0.5)
MISSING = object()


def verdict_for(node=None, *, pods=(), instance=MISSING, group=MISSING, group_node_count=3, pending=False, kept=0,
                settings=SETTINGS):
    node = node or aged_node()
    return classify(
        node,
        pods_on_node=pods,
        instance=make_instance(node.instance_id) if instance is MISSING else instance,
        group=make_group("g1", desired=3) if group is MISSING else group,
        group_node_count=group_node_count,
        pending_pods_fitting=pending,
        idle_nodes_kept_in_group=kept,
        settings=settings,
        now=NOW,
    )


BUSY_POD = aged_pod()
# name -> (arguments of verdict_for, expected state, words the reason must contain)
STATE_CASES = {
    "instance-terminated": (dict(instance=make_instance(state="terminated")), NodeState.INSTANCE_TERMINATED, "terminated"),
    "instance-missing": (dict(instance=None), NodeState.INSTANCE_TERMINATED, "not found"),
    "instance-stopped": (dict(instance=make_instance(state="stopped")), NodeState.INSTANCE_TERMINATED, "stopped"),
    "instance-terminated-beats-detached-dead-busy": (
        dict(node=aged_node(detached=True, heartbeat_ago=99999), pods=[BUSY_POD], instance=make_instance(state="terminated")),
        NodeState.INSTANCE_TERMINATED, "terminated"),
    "detached": (dict(node=aged_node(detached=True)), NodeState.DETACHED, "detached"),
    "detached-beats-dead": (dict(node=aged_node(detached=True, heartbeat_ago=99999)), NodeState.DETACHED, "detached"),
    "dead": (dict(node=aged_node(heartbeat_ago=3601)), NodeState.DEAD, "heartbeat"),
    "dead-in-min-size-group": (dict(node=aged_node(heartbeat_ago=3601), group=make_group("g1", desired=3, min_size=5)), NodeState.DEAD, "heartbeat"),
    "dead-beats-busy": (dict(node=aged_node(heartbeat_ago=7200), pods=[BUSY_POD]), NodeState.DEAD, "heartbeat"),
    "heartbeat-just-under-an-hour-is-alive": (dict(node=aged_node(heartbeat_ago=3599)), NodeState.IDLE_SCHEDULABLE, "idle"),
    "no-heartbeat-known-is-not-dead": (dict(node=aged_node(heartbeat_ago=None)), NodeState.IDLE_SCHEDULABLE, "idle"),
    "asg-min-size": (dict(group=make_group("g1", desired=3, min_size=3), group_node_count=3), NodeState.ASG_MIN_SIZE, "min size 3"),
    "asg-min-size-beats-busy": (dict(group=make_group("g1", desired=3, min_size=3), pods=[BUSY_POD]), NodeState.ASG_MIN_SIZE, "min size"),
    "above-min-size": (dict(group=make_group("g1", desired=3, min_size=2), group_node_count=3), NodeState.IDLE_SCHEDULABLE, "idle"),
    "busy": (dict(pods=[BUSY_POD]), NodeState.BUSY, "1 busy pod"),
    "busy-past-idle-threshold-is-busy": (
        dict(node=aged_node(last_busy_ago=99999, created_ago=99999), pods=[BUSY_POD]), NodeState.BUSY, "busy"),
    "busy-unschedulable": (dict(node=aged_node(by_autoscaler=True), pods=[BUSY_POD]), NodeState.BUSY_UNSCHEDULABLE, "busy"),
    "busy-beats-pod-pending": (dict(pods=[BUSY_POD], pending=True), NodeState.BUSY, "busy"),
    "bare-pod-is-busy": (dict(pods=[aged_pod(owner=None)]), NodeState.BUSY, "busy"),
    "pending-with-node-is-busy": (dict(pods=[aged_pod(phase=PodPhase.PENDING)]), NodeState.BUSY, "busy"),
    "daemonset-only-is-idle": (dict(pods=[aged_pod(daemonset=True)]), NodeState.IDLE_SCHEDULABLE, "idle"),
    "mirror-only-is-idle": (dict(pods=[aged_pod(mirror=True, owner="Node")]), NodeState.IDLE_SCHEDULABLE, "idle"),
    "finished-pods-are-idle": (
        dict(pods=[aged_pod(phase=PodPhase.SUCCEEDED), aged_pod("p2", phase=PodPhase.FAILED)]), NodeState.IDLE_SCHEDULABLE, "idle"),
    "pod-pending": (dict(pending=True), NodeState.POD_PENDING, "pending"),
    "pod-pending-beats-grace-period": (dict(instance=make_instance(launch_ago=60), pending=True), NodeState.POD_PENDING, "pending"),
    "pod-pending-on-idle-node-the-autoscaler-cordoned": (
        dict(node=aged_node(by_autoscaler=True), pending=True), NodeState.POD_PENDING, "scale up takes it back"),
    "pod-pending-not-on-a-node-a-person-cordoned": (
        dict(node=aged_node(cordoned=True), pending=True), NodeState.IDLE_UNSCHEDULABLE, "someone else"),
    "pod-pending-not-on-autoscaler-cordoned-node-without-scale-up": (
        dict(node=aged_node(by_autoscaler=True), pending=True, settings=replace(SETTINGS, no_scale=True)),
        NodeState.IDLE_UNSCHEDULABLE, "autoscaler"),
    "pod-pending-not-on-a-draining-node": (
        dict(node=aged_node(by_autoscaler=True), pods=[aged_pod(cpu=1)], pending=True, settings=DRAINING),
        NodeState.UNDER_UTILIZED_DRAINABLE, "drainable"),
    "grace-period-from-launch": (dict(instance=make_instance(launch_ago=300)), NodeState.GRACE_PERIOD, "idle 300s"),
    "grace-period-from-last-busy": (dict(node=aged_node(last_busy_ago=120)), NodeState.GRACE_PERIOD, "idle 120s"),
    "grace-period-from-node-creation": (dict(node=aged_node(created_ago=200)), NodeState.GRACE_PERIOD, "idle 200s"),
    "grace-period-unknown-idle-time": (dict(instance=make_instance(launch_ago=None)), NodeState.GRACE_PERIOD, "unknown"),
    "grace-period-ends-at-threshold": (dict(instance=make_instance(launch_ago=600)), NodeState.TYPE_GRACE_PERIOD, "spare 1 of 5"),
    "grace-period-beats-type-grace": (dict(instance=make_instance(launch_ago=100), kept=0), NodeState.GRACE_PERIOD, "idle 100s"),
    "type-grace-period": (dict(instance=make_instance(launch_ago=1800)), NodeState.TYPE_GRACE_PERIOD, "spare 1 of 5"),
    "type-grace-period-fifth-spare": (dict(instance=make_instance(launch_ago=1800), kept=4), NodeState.TYPE_GRACE_PERIOD, "spare 5 of 5"),
    "type-grace-period-sixth-is-not-kept": (dict(instance=make_instance(launch_ago=1800), kept=5), NodeState.IDLE_SCHEDULABLE, "idle"),
    "type-grace-period-needs-a-group": (dict(instance=make_instance(launch_ago=1800), group=None), NodeState.IDLE_SCHEDULABLE, "idle"),
    "past-type-idle-threshold": (dict(instance=make_instance(launch_ago=3600)), NodeState.IDLE_SCHEDULABLE, "idle 3600s"),
    "cordoned-in-grace-is-idle-unschedulable": (
        dict(node=aged_node(by_autoscaler=True), instance=make_instance(launch_ago=60)), NodeState.IDLE_UNSCHEDULABLE, "autoscaler"),
    "idle-schedulable": (dict(), NodeState.IDLE_SCHEDULABLE, "idle 7200s"),
    "idle-unschedulable-by-autoscaler": (dict(node=aged_node(by_autoscaler=True)), NodeState.IDLE_UNSCHEDULABLE, "by the autoscaler"),
    "idle-unschedulable-by-a-person": (dict(node=aged_node(cordoned=True)), NodeState.IDLE_UNSCHEDULABLE, "by someone else"),
    "under-utilized-drainable": (dict(pods=[aged_pod(cpu=1)], settings=DRAINING), NodeState.UNDER_UTILIZED_DRAINABLE, "25% utilized"),
    "under-utilized-undrainable-bare-pod": (
        dict(pods=[aged_pod(owner=None)], settings=DRAINING), NodeState.UNDER_UTILIZED_UNDRAINABLE, "no owner"),
    "under-utilized-undrainable-young-pod": (
        dict(pods=[aged_pod(scheduled_ago=60)], settings=DRAINING), NodeState.UNDER_UTILIZED_UNDRAINABLE, "drain grace"),
    "under-utilized-only-with-drain-utilization": (dict(pods=[aged_pod(cpu=0.1)]), NodeState.BUSY, "busy"),
    "well-utilized-is-busy": (dict(pods=[aged_pod(cpu=2)], settings=DRAINING), NodeState.BUSY, "50% utilized"),
    "under-utilized-but-pod-pending": (dict(pods=[aged_pod(cpu=1)], settings=DRAINING, pending=True), NodeState.POD_PENDING, "pending"),
    "under-utilized-skips-grace": (
        dict(pods=[aged_pod(cpu=1)], settings=DRAINING, instance=make_instance(launch_ago=60)), NodeState.UNDER_UTILIZED_DRAINABLE, "drainable"),
    "under-utilized-cordoned-keeps-draining": (
        dict(node=aged_node(by_autoscaler=True), pods=[aged_pod(cpu=1)], settings=DRAINING), NodeState.UNDER_UTILIZED_DRAINABLE, "drainable"),
}


@pytest.mark.parametrize("arguments, expected, words", list(STATE_CASES.values()), ids=list(STATE_CASES))
def test_classify(arguments, expected, words):
    verdict = verdict_for(**arguments)
    assert verdict.state is expected, verdict.reason
    assert words in verdict.reason


@pytest.mark.parametrize("arguments, idle", [
    (dict(), 7200.0),
    (dict(node=aged_node(last_busy_ago=90)), 90.0),
    (dict(pods=[BUSY_POD]), 0.0),
    (dict(instance=None), None),
], ids=["idle-since-launch", "idle-since-last-busy", "busy-is-zero", "terminated-is-unknown"])
def test_verdict_idle_seconds(arguments, idle):
    assert verdict_for(**arguments).idle_seconds == idle


def test_idle_since_is_the_latest_known_time():
    node = aged_node(last_busy_ago=500, created_ago=9000)
    assert idle_since(node, make_instance(launch_ago=8000)) == ago(500)
    assert idle_since(aged_node(created_ago=50), make_instance(launch_ago=8000)) == ago(50)
    assert idle_since(aged_node(), None) is None


# name -> (pod, drainable, words of the reason when not)
DRAIN_CASES = {
    "daemonset": (aged_pod(daemonset=True, scheduled_ago=1), True, ""),
    "mirror": (aged_pod(mirror=True, owner="Node", scheduled_ago=1), True, ""),
    "bare-pod": (aged_pod(owner=None), False, "no owner"),
    "job-owned-past-grace": (aged_pod(owner="Job", scheduled_ago=3601), True, ""),
    "job-owned-within-grace": (aged_pod(owner="Job", scheduled_ago=1800), False, "drain grace"),
    "job-owned-exactly-at-grace": (aged_pod(owner="Job", scheduled_ago=3600), False, "drain grace"),
    "replicaset-owned": (aged_pod(owner="ReplicaSet"), True, ""),
    "do-not-drain": (aged_pod(do_not_drain=True), False, "do-not-drain"),
    "safe-to-evict-false": (aged_pod(safe_to_evict=False), False, "safe-to-evict: false"),
    "safe-to-evict-true-bare": (aged_pod(owner=None, safe_to_evict=True), True, ""),
    "safe-to-evict-true-young": (aged_pod(scheduled_ago=10, safe_to_evict=True), True, ""),
    "safe-to-evict-true-do-not-drain": (aged_pod(safe_to_evict=True, do_not_drain=True), False, "do-not-drain"),
    "created-time-when-not-scheduled": (aged_pod(scheduled_ago=None, created_ago=7200), True, ""),
    "no-time-known": (aged_pod(scheduled_ago=None), False, "no known scheduling time"),
}


@pytest.mark.parametrize("pod, drainable, words", list(DRAIN_CASES.values()), ids=list(DRAIN_CASES))
def test_drainability(pod, drainable, words):
    assert is_drainable(pod, NOW, 3600) is drainable
    reason = why_undrainable(pod, NOW, 3600)
    assert (reason is None) is drainable
    if not drainable:
        assert words in reason and pod.key in reason


@pytest.mark.parametrize("pod, busy", [
    (aged_pod(), True),
    (aged_pod(owner=None), True),
    (aged_pod(daemonset=True), False),
    (aged_pod(mirror=True, owner="Node"), False),
], ids=["job", "bare", "daemonset", "mirror"])
def test_is_busy_pod(pod, busy):
    assert is_busy_pod(pod) is busy


@pytest.mark.parametrize("node, pods, expected", [
    (aged_node(), [], 0.0),
    (aged_node(), [aged_pod(cpu=1), aged_pod("p2", cpu=1)], 0.5),
    (aged_node(gpu=4), [aged_pod(cpu=0.1, gpu=3)], 0.75),
    (aged_node(), [Pod("default", "m", PodPhase.RUNNING, resources(memory_gib=12), node_name="n1")], 0.75),
], ids=["nothing", "cpu", "gpu-dominates", "memory-dominates"])
def test_utilization_is_the_highest_ratio(node, pods, expected):
    assert utilization(node, pods) == pytest.approx(expected)


@pytest.mark.parametrize("grace, drainable", [(60, True), (1800, False)], ids=["short-grace", "default-like-grace"])
def test_drain_grace_comes_from_settings(grace, drainable):
    """A Job pod scheduled 10 minutes ago on an under-utilized node: the grace is the setting's."""
    settings = Settings(cluster_name="test", idle_threshold=600, type_idle_threshold=3600, drain_utilization=0.5,
                        drain_grace_seconds=grace)
    verdict = verdict_for(pods=[aged_pod(scheduled_ago=600)], settings=settings)
    expected = NodeState.UNDER_UTILIZED_DRAINABLE if drainable else NodeState.UNDER_UTILIZED_UNDRAINABLE
    assert verdict.state is expected, verdict.reason


@pytest.mark.parametrize("heartbeat_ago, dead_after, expected", [
    (120, 60, NodeState.DEAD), (120, 3600, NodeState.IDLE_SCHEDULABLE)], ids=["shortened", "default"])
def test_dead_node_threshold_comes_from_settings(heartbeat_ago, dead_after, expected):
    settings = Settings(cluster_name="test", idle_threshold=600, type_idle_threshold=3600, dead_node_seconds=dead_after)
    assert verdict_for(aged_node(heartbeat_ago=heartbeat_ago), settings=settings).state is expected


@pytest.mark.parametrize("spares, kept, expected", [
    (2, 1, NodeState.TYPE_GRACE_PERIOD), (2, 2, NodeState.IDLE_SCHEDULABLE), (0, 0, NodeState.IDLE_SCHEDULABLE)],
    ids=["second-of-two", "third-of-two", "no-spares"])
def test_spare_count_comes_from_settings(spares, kept, expected):
    settings = Settings(cluster_name="test", idle_threshold=600, type_idle_threshold=3600, spare_idle_nodes=spares)
    verdict = verdict_for(instance=make_instance(launch_ago=1800), kept=kept, settings=settings)
    assert verdict.state is expected, verdict.reason
