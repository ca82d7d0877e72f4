"""scale_down: from a snapshot to verdicts and cordon/drain/terminate/delete actions."""
import random
from dataclasses import replace
from datetime import timedelta

import pytest

from autoscaler.decide.scale_down import plan_scale_down, scale_in_limit
from autoscaler.decide.scale_up import plan_scale_up
from autoscaler.model.config import Settings
from autoscaler.model.objects import DETACHED_LABEL, LAST_BUSY_ANNOTATION, Instance, NodeState, PodPhase, Snapshot, Taint
from autoscaler.model.plan import AnnotateNode, Cordon, DeleteNode, EvictPod, Notify, TerminateInstance, Uncordon
from builders import NOW, make_group, make_node, make_pod

SETTINGS = Settings(cluster_name="test", regions=("us-west-2",), idle_threshold=600, type_idle_threshold=3600, max_scale_in_fraction=1.0)


def ago(seconds):
    return NOW - timedelta(seconds=seconds)


def node(name, *, idle=7200, cordoned=False, by_autoscaler=False, heartbeat_ago=30, labels=None, **options):
    """A node of group g1 (instance ``i-<name>``) launched ``idle`` seconds ago."""
    built = make_node(name, instance_id=f"i-{name}", unschedulable=cordoned, cordoned_by_autoscaler=by_autoscaler,
                      labels=labels, **options)
    return replace(built, created=ago(idle), last_heartbeat=ago(heartbeat_ago))


def instance(instance_id, *, state="running", launch_ago=7200, group="g1"):
    return Instance(instance_id, "us-west-2", "us-west-2a", state, "m5.xlarge", ago(launch_ago), group_name=group)


def busy_pod(node_name, name=None, *, cpu="1", scheduled_ago=7200, **options):
    pod = make_pod(name or f"job-{node_name}", cpu=cpu, node=node_name, **options)
    return replace(pod, scheduled_at=ago(scheduled_ago))


def world(nodes, pods=(), *, min_size=0, desired=None, states=None, extra_instances=(), in_group=None):
    """One group g1 holding every node's instance (or those named in ``in_group``) plus ``extra_instances``."""
    states = states or {}
    grouped = [n for n in nodes if n.instance_id and (in_group is None or n.name in in_group)]
    instances = {n.instance_id: instance(n.instance_id, state=states.get(n.name, "running"),
                                         launch_ago=(NOW - n.created).total_seconds(),
                                         group="g1" if n in grouped else None) for n in nodes if n.instance_id}
    instances.update({i.id: i for i in extra_instances})
    ids = [n.instance_id for n in grouped] + [i.id for i in extra_instances]
    group = make_group("g1", min_size=min_size, desired=len(ids) if desired is None else desired, instance_ids=ids)
    return Snapshot(nodes=tuple(nodes), pods=tuple(pods), groups=(group,), instances=instances)


def run(snapshot, settings=SETTINGS):
    return plan_scale_down(snapshot, settings, NOW)


def states(result):
    return {verdict.node.name: verdict.state for verdict in result.verdicts}


def of_type(result, kind):
    return [action for action in result.actions if isinstance(action, kind)]


def changes(result):
    """The actions minus bookkeeping, as (kind, subject) pairs."""
    summary = []
    for action in result.actions:
        if isinstance(action, (AnnotateNode, Notify)):
            continue
        subject = getattr(action, "node", "") or getattr(action, "instance_id", "")
        if isinstance(action, EvictPod):
            subject = f"{action.namespace}/{action.name}"
        if isinstance(action, TerminateInstance):
            subject = (action.instance_id, action.node, action.decrement_desired)
        summary.append((type(action).__name__, subject))
    return summary


# name -> (snapshot, settings, expected (kind, subject) list)
PLAN_CASES = {
    "idle-schedulable-is-cordoned": (world([node("a"), node("b", idle=60)]), SETTINGS, [("Cordon", "a")]),
    "idle-unschedulable-by-autoscaler-is-terminated": (
        world([node("a", by_autoscaler=True), node("b", idle=60)]), SETTINGS,
        [("TerminateInstance", ("i-a", "a", True))]),
    "idle-unschedulable-by-a-person-is-terminated-never-uncordoned": (
        world([node("a", cordoned=True), node("b", idle=60)]), SETTINGS,
        [("TerminateInstance", ("i-a", "a", True))]),
    "busy-cordoned-by-autoscaler-is-uncordoned": (
        world([node("a", by_autoscaler=True), node("b", idle=60)], [busy_pod("a")]), SETTINGS, [("Uncordon", "a")]),
    "busy-cordoned-by-a-person-stays-cordoned": (
        world([node("a", cordoned=True), node("b", idle=60)], [busy_pod("a")]), SETTINGS, []),
    "busy-and-grace-do-nothing": (world([node("a"), node("b", idle=60)], [busy_pod("a")]), SETTINGS, []),
    "instance-terminated-deletes-node-only": (
        world([node("a"), node("b", idle=60)], states={"a": "terminated"}), SETTINGS, [("DeleteNode", "a")]),
    "dead-is-terminated-and-deleted": (
        world([node("a", heartbeat_ago=7200, idle=60), node("b", idle=60)]), SETTINGS,
        [("TerminateInstance", ("i-a", "a", True))]),
    "dead-at-min-size-is-replaced": (
        world([node("a", heartbeat_ago=7200, idle=60), node("b", idle=60)], min_size=2), SETTINGS,
        [("TerminateInstance", ("i-a", "a", False))]),
    "dead-outside-managed-groups-is-only-deleted": (
        world([node("a", heartbeat_ago=7200, idle=60), node("b", idle=60)], in_group={"b"}), SETTINGS,
        [("DeleteNode", "a")]),
    "idle-outside-managed-groups-is-left-alone": (
        world([node("a"), node("b", by_autoscaler=True)], in_group=set()), SETTINGS, []),
    "detached-is-left-alone": (
        world([node("a", labels={DETACHED_LABEL: "true"}, by_autoscaler=True), node("b", idle=60)]), SETTINGS, []),
    "min-size-group-is-left-alone": (world([node("a"), node("b", cordoned=True)], min_size=2), SETTINGS, []),
    "min-size-gives-back-an-autoscaler-cordon": (
        world([node("a", by_autoscaler=True)], min_size=1), SETTINGS, [("Uncordon", "a")]),
    "under-utilized-not-drained-without-drain-utilization": (
        world([node("a"), node("b", idle=60)], [busy_pod("a", cpu="500m")]), SETTINGS, []),
    "under-utilized-drainable-is-cordoned-and-drained": (
        world([node("a"), node("b", idle=60)],
              [busy_pod("a", cpu="500m"), busy_pod("a", "agent", cpu="100m", owner_kinds=("DaemonSet",))]),
        replace(SETTINGS, drain_utilization=0.5), [("Cordon", "a"), ("EvictPod", "default/job-a")]),
    "under-utilized-drain-retried-without-cordon": (
        world([node("a", by_autoscaler=True), node("b", idle=60)], [busy_pod("a", cpu="500m")]),
        replace(SETTINGS, drain_utilization=0.5), [("EvictPod", "default/job-a")]),
    "under-utilized-undrainable-is-kept": (
        world([node("a"), node("b", idle=60)], [busy_pod("a", cpu="500m", owner_kinds=())]),
        replace(SETTINGS, drain_utilization=0.5), []),
    "under-utilized-undrainable-cordoned-is-given-back": (
        world([node("a", by_autoscaler=True), node("b", idle=60)], [busy_pod("a", cpu="500m", scheduled_ago=60)]),
        replace(SETTINGS, drain_utilization=0.5), [("Uncordon", "a")]),
    "unregistered-instance-past-init-time-is-replaced": (
        world([node("b", idle=60)], extra_instances=[instance("i-lost", launch_ago=1501)]), SETTINGS,
        [("TerminateInstance", ("i-lost", "", False))]),
    "unregistered-instance-within-init-time-waits": (
        world([node("b", idle=60)], extra_instances=[instance("i-new", launch_ago=1499)]), SETTINGS, []),
    "unregistered-instance-not-running-is-ignored": (
        world([node("b", idle=60)], extra_instances=[instance("i-gone", state="terminated", launch_ago=9000)]), SETTINGS, []),
}


@pytest.mark.parametrize("snapshot, settings, expected", list(PLAN_CASES.values()), ids=list(PLAN_CASES))
def test_plan(snapshot, settings, expected):
    assert changes(run(snapshot, settings)) == expected


def test_verdicts_one_per_managed_node_sorted_with_counts():
    unmanaged = make_node("control-plane")
    result = run(world([node("c"), node("a", idle=60), unmanaged, node("b")], [busy_pod("c")]))
    assert [verdict.node.name for verdict in result.verdicts] == ["a", "b", "c"]
    assert states(result) == {"a": NodeState.GRACE_PERIOD, "b": NodeState.IDLE_SCHEDULABLE, "c": NodeState.BUSY}
    assert result.state_counts[NodeState.BUSY] == 1 and result.state_counts[NodeState.DEAD] == 0
    assert list(result.state_counts) == list(NodeState)


def test_min_size_removes_the_longest_idle_first_and_keeps_the_rest():
    nodes = [node("a", by_autoscaler=True, idle=4000), node("b", by_autoscaler=True, idle=9000),
             node("c", by_autoscaler=True, idle=6000)]
    result = run(world(nodes, min_size=1))
    assert changes(result) == [("Uncordon", "a"), ("TerminateInstance", ("i-b", "b", True)),
                               ("TerminateInstance", ("i-c", "c", True))]
    kept = next(verdict for verdict in result.verdicts if verdict.node.name == "a")
    assert kept.state is NodeState.ASG_MIN_SIZE and "below min size 1" in kept.reason


def test_min_size_counts_dead_nodes_before_idle_ones():
    nodes = [node("a", by_autoscaler=True), node("b", heartbeat_ago=7200), node("c", idle=60)]
    result = run(world(nodes, min_size=2))
    assert changes(result) == [("Uncordon", "a"), ("TerminateInstance", ("i-b", "b", True))]
    assert states(result)["a"] is NodeState.ASG_MIN_SIZE


def test_desired_below_node_count_limits_removals():
    nodes = [node("a", by_autoscaler=True), node("b", by_autoscaler=True), node("c", idle=60)]
    result = run(world(nodes, min_size=1, desired=2))
    assert [a.instance_id for a in of_type(result, TerminateInstance)] == ["i-a"]


def test_drain_notifies_which_pods_once():
    settings = replace(SETTINGS, drain_utilization=0.5)
    pods = [busy_pod("a", "j1", cpu="500m"), busy_pod("a", "j2", cpu="500m")]
    starting = run(world([node("a"), node("b", idle=60)], pods), settings)
    [notice] = of_type(starting, Notify)
    assert notice.kind == "drained" and "default/j1, default/j2" in notice.message and "node a" in notice.message
    retrying = run(world([node("a", by_autoscaler=True), node("b", idle=60)], pods), settings)
    assert of_type(retrying, Notify) == [] and len(of_type(retrying, EvictPod)) == 2


def test_terminations_are_notified():
    result = run(world([node("a", by_autoscaler=True), node("b", idle=60)]))
    [notice] = of_type(result, Notify)
    assert notice.kind == "nodes-terminated" and "a (g1)" in notice.message


@pytest.mark.parametrize("last_busy_ago, annotated", [(None, True), (30, False), (59, False), (60, True), (3600, True)],
                         ids=["missing", "fresh", "just-fresh", "a-minute-old", "an-hour-old"])
def test_last_busy_annotation_is_refreshed_at_most_once_a_minute(last_busy_ago, annotated):
    busy = node("a")
    if last_busy_ago is not None:
        busy = replace(busy, last_busy=ago(last_busy_ago))
    result = run(world([busy, node("b", idle=60)], [busy_pod("a")]))
    expected = [AnnotateNode("a", LAST_BUSY_ANNOTATION, "2026-11-27T10:00:00Z", "runs 1 busy pod(s)")]
    assert of_type(result, AnnotateNode) == (expected if annotated else [])


def test_idle_nodes_are_not_annotated():
    result = run(world([node("a"), node("b", idle=60)], [busy_pod("a", owner_kinds=("DaemonSet",))]))
    assert of_type(result, AnnotateNode) == []


def test_type_grace_keeps_the_five_most_recently_busy_per_group():
    nodes = [node(f"n{i}", idle=1000 + 100 * i) for i in range(7)]
    result = run(world(nodes))
    kept = sorted(name for name, state in states(result).items() if state is NodeState.TYPE_GRACE_PERIOD)
    assert kept == ["n0", "n1", "n2", "n3", "n4"]
    assert [a.node for a in of_type(result, Cordon)] == ["n5", "n6"]


def test_grace_period_nodes_count_as_kept_spares():
    nodes = [node("young1", idle=100), node("young2", idle=200)] + [node(f"old{i}", idle=1000 + i) for i in range(5)]
    result = run(world(nodes))
    assert result.state_counts[NodeState.GRACE_PERIOD] == 2
    assert result.state_counts[NodeState.TYPE_GRACE_PERIOD] == 3
    assert [a.node for a in of_type(result, Cordon)] == ["old3", "old4"]


def test_last_busy_decides_idle_time_over_launch_time():
    recently_busy = replace(node("a", idle=99999), last_busy=ago(120))
    assert states(run(world([recently_busy, node("b", idle=60)])))["a"] is NodeState.GRACE_PERIOD


# name -> (pending pods, expected state of node a, a 4-cpu node running one 2-cpu daemon pod)
PENDING_CASES = {
    "fits": ([make_pod("p", cpu="1")], NodeState.POD_PENDING),
    "fits-exactly-the-free-room": ([make_pod("p", cpu="2")], NodeState.POD_PENDING),
    "too-big-for-free-room": ([make_pod("p", cpu="3")], NodeState.IDLE_SCHEDULABLE),
    "selector-does-not-match": ([make_pod("p", cpu="1", selector={"aws/type": "p3.2xlarge"})], NodeState.IDLE_SCHEDULABLE),
    "one-of-many-shapes-fits": (
        [make_pod(f"big{i}", cpu="3") for i in range(50)] + [make_pod("small", cpu="1", selector={"zone": "a"}),
                                                             make_pod("fits", cpu="1")], NodeState.POD_PENDING),
    "assigned-pending-pod-is-not-demand": ([make_pod("p", cpu="1", node="b", phase=PodPhase.PENDING)], NodeState.IDLE_SCHEDULABLE),
    "daemonset-pod-is-not-demand": ([make_pod("p", cpu="1", owner_kinds=("DaemonSet",))], NodeState.IDLE_SCHEDULABLE),
    "start-up-taint-of-a-new-node-is-no-obstacle": ([make_pod("p", cpu="1")], NodeState.POD_PENDING),
    "no-pending-pods": ([], NodeState.IDLE_SCHEDULABLE),
}


@pytest.mark.parametrize("pending, expected", list(PENDING_CASES.values()), ids=list(PENDING_CASES))
def test_pod_pending(pending, expected, request):
    daemon = busy_pod("a", "agent", cpu="2", owner_kinds=("DaemonSet",))
    a = node("a")
    if "start-up-taint" in request.node.callspec.id:  # registered a minute ago, not Ready yet
        a = replace(node("a", idle=60), taints=(Taint("node.kubernetes.io/not-ready", "", "NoSchedule"),), ready=False)
    result = run(world([a, node("b", idle=60)], [daemon, *pending]))
    assert states(result)["a"] is expected


@pytest.mark.parametrize("cordon, settings, expected", [
    ("autoscaler", SETTINGS, NodeState.POD_PENDING),
    ("autoscaler", replace(SETTINGS, no_scale=True), NodeState.IDLE_UNSCHEDULABLE),
    ("person", SETTINGS, NodeState.IDLE_UNSCHEDULABLE),
], ids=["autoscaler-cordon-is-taken-back-by-scale-up", "no-scale-takes-nothing-back", "person-cordon-is-not-taken-back"])
def test_pending_pod_and_a_cordoned_idle_node(cordon, settings, expected):
    """Scale up uncordons an idle node the autoscaler cordoned when a pending pod fits it; the
    same plan must not terminate that node."""
    cordoned = node("a", by_autoscaler=True) if cordon == "autoscaler" else node("a", cordoned=True)
    result = run(world([cordoned, node("b", idle=60)], [make_pod("p", cpu="1")]), settings)
    assert states(result)["a"] is expected
    terminated = [a.node for a in of_type(result, TerminateInstance)]
    assert terminated == ([] if expected is NodeState.POD_PENDING else ["a"])


def _take_back_worlds():
    """An idle node the autoscaler cordoned, labelled team=a by its kubelet (not by its group),
    and a pending pod that asks for team=a, in several variations."""
    pod = make_pod("p", cpu="1", selector={"team": "a"})
    yield "kubelet-label", world([node("a", by_autoscaler=True, labels={"team": "a"}), node("b", idle=60)], [pod]), SETTINGS
    yield "draining", world([node("a", by_autoscaler=True, labels={"team": "a"}), node("b", idle=60)],
                            [pod, busy_pod("a", cpu="500m")]), replace(SETTINGS, drain_utilization=0.5)
    yield "detached", world([node("a", by_autoscaler=True, labels={"team": "a", DETACHED_LABEL: "true"}), node("b", idle=60)],
                            [pod]), SETTINGS
    broken = replace(node("a", by_autoscaler=True, labels={"team": "a"}), ready=False)
    yield "not-ready", world([broken, node("b", idle=60)], [pod]), SETTINGS
    yield "too-big", world([node("a", by_autoscaler=True, labels={"team": "a"}), node("b", idle=60)],
                           [make_pod("p", cpu="8", selector={"team": "a"})]), SETTINGS
    yield "daemonset-pod", world([node("a", by_autoscaler=True, labels={"team": "a"}), node("b", idle=60)],
                                 [make_pod("p", cpu="1", selector={"team": "a"}, owner_kinds=("DaemonSet",))]), SETTINGS


@pytest.mark.parametrize("snapshot, settings", [pytest.param(s, c, id=name) for name, s, c in _take_back_worlds()])
def test_scale_in_keeps_exactly_what_scale_up_takes_back(snapshot, settings):
    """The node is pod-pending (kept) exactly when scale up uncordons it in the same plan; else it
    is removed or drained as usual, never left to block the pending pod for ever."""
    kept = states(run(snapshot, settings))["a"] is NodeState.POD_PENDING
    taken_back = [a.node for a in plan_scale_up(snapshot, settings, NOW).actions if isinstance(a, Uncordon)]
    assert taken_back == (["a"] if kept else [])


@pytest.mark.parametrize("fraction, total, limit", [(0.1, 10, 1), (0.1, 30, 3), (0.1, 31, 4), (0.1, 1, 1), (0.0, 50, 0),
                                                    (1.0, 7, 7), (0.1, 0, 0)],
                         ids=["tenth-of-10", "tenth-of-30-no-float-creep", "rounded-up", "one-of-one", "zero", "all", "empty"])
def test_scale_in_limit(fraction, total, limit):
    assert scale_in_limit(replace(SETTINGS, max_scale_in_fraction=fraction), total) == limit


def _capped_world(dead=False):
    """Ten instances: idle0..idle3 cordoned, idle for 7200 s + 1000 i (idle3 the longest), one
    idle but schedulable ("fresh", cordoned now), five busy nodes, and optionally one dead."""
    nodes = [node(f"idle{i}", idle=7200 + 1000 * i, cordoned=True, by_autoscaler=True) for i in range(4)] + \
            [node("fresh", idle=7200)] + [node(f"busy{i}") for i in range(5 - dead)]
    if dead:
        nodes.append(node("dead", idle=600, heartbeat_ago=7200))
    return world(nodes, [busy_pod(f"busy{i}") for i in range(5 - dead)])


@pytest.mark.parametrize("fraction, cap, dead, removed, held", [
    # 10 instances, 4 idle cordoned ones to remove.
    (1.0, "rate", False, ["idle0", "idle1", "idle2", "idle3"], 0),
    (0.4, "rate", False, ["idle0", "idle1", "idle2", "idle3"], 0),  # exactly the limit
    (0.2, "rate", False, ["idle2", "idle3"], 2),  # the two longest idle
    (0.1, "rate", False, ["idle3"], 3),
    (0.01, "rate", False, ["idle3"], 3),  # rounded up: at least one a loop
    (0.0, "rate", False, [], 4),  # 0 removes no instance
    (0.2, "rate", True, ["dead", "idle3"], 3),  # a dead node goes before the idle ones
    (0.4, "brake", False, ["idle0", "idle1", "idle2", "idle3"], 0),
    (0.2, "brake", False, [], 4),  # the original's brake: more than the limit, none
    (0.1, "brake", True, [], 5),
], ids=["all", "at-the-limit", "rate-two-longest-idle", "rate-one", "rate-rounds-up-to-one", "rate-zero",
        "rate-dead-first", "brake-at-the-limit", "brake-holds-all", "brake-with-dead"])
def test_scale_in_cap(fraction, cap, dead, removed, held):
    result = run(_capped_world(dead), replace(SETTINGS, max_scale_in_fraction=fraction, scale_in_cap=cap))
    assert sorted(a.node for a in of_type(result, TerminateInstance)) == sorted(removed)
    assert result.capped == (held > 0)
    assert [a.node for a in of_type(result, Cordon)] == ["fresh"]  # cordons are never held back
    reasons = {v.node.name: v.reason for v in result.verdicts}
    held_nodes = [name for name in reasons if "held back" in reasons[name]]
    assert len(held_nodes) == held and not set(held_nodes) & set(removed)
    notices = {n.kind: n for n in of_type(result, Notify)}
    if cap == "brake" and held:
        assert notices["scale-in-capped"].error and f"{held} of 10" in notices["scale-in-capped"].message
        assert "nodes-terminated" not in notices
    else:
        assert "scale-in-capped" not in notices
    if cap == "rate" and held and removed:
        assert f"{held} more wait for later loops" in notices["nodes-terminated"].message


def test_a_large_idle_fleet_drains_at_the_rate_over_a_few_loops():
    """Thirty idle cordoned nodes, 0.1 a loop: three a loop of what is left (rounded up), the
    longest idle first, until none is left; never more than the fraction of the instances then."""
    fleet = [node(f"n{i:02}", idle=7200 + 60 * i, cordoned=True, by_autoscaler=True) for i in range(30)]
    settings = replace(SETTINGS, max_scale_in_fraction=0.1)
    removed_per_loop = []
    while fleet:
        result = run(world(fleet), settings)
        gone = {a.node for a in of_type(result, TerminateInstance)}
        assert 1 <= len(gone) <= scale_in_limit(settings, len(fleet))
        longest = sorted(fleet, key=lambda n: n.created)[:len(gone)]
        assert gone == {n.name for n in longest}
        removed_per_loop.append(len(gone))
        fleet = [n for n in fleet if n.name not in gone]
    assert removed_per_loop[:3] == [3, 3, 3] and sum(removed_per_loop) == 30 and len(removed_per_loop) < 30


def test_cap_keeps_deleting_nodes_of_gone_instances():
    nodes = [node(f"gone{i}") for i in range(3)] + [node("live", idle=60)]
    result = run(world(nodes, states={f"gone{i}": "terminated" for i in range(3)}),
                 replace(SETTINGS, max_scale_in_fraction=0.1))
    assert [a.node for a in of_type(result, DeleteNode)] == ["gone0", "gone1", "gone2"] and not result.capped


def test_decisions_do_not_depend_on_input_order():
    nodes = [node(f"n{i:02}", idle=500 + 300 * i, by_autoscaler=i % 4 == 0, heartbeat_ago=7200 if i == 5 else 30)
             for i in range(20)]
    pods = [busy_pod(f"n{i:02}") for i in range(0, 20, 3)] + [make_pod(f"pending{i}", cpu="8") for i in range(5)]
    base = world(nodes, pods, min_size=3)
    expected = run(base)
    shuffler = random.Random(7)
    for _ in range(5):
        shuffled_nodes, shuffled_pods = list(base.nodes), list(base.pods)
        shuffler.shuffle(shuffled_nodes)
        shuffler.shuffle(shuffled_pods)
        again = run(replace(base, nodes=tuple(shuffled_nodes), pods=tuple(shuffled_pods)))
        assert again.actions == expected.actions
        assert [(v.node.name, v.state, v.reason) for v in again.verdicts] == \
               [(v.node.name, v.state, v.reason) for v in expected.verdicts]


def test_many_pending_pods_and_nodes_stay_cheap():
    """10,000 pending pods of 3 shapes against 1,000 idle nodes: shapes, not pods, are matched."""
    calls = []
    import autoscaler.decide.scale_down as scale_down

    original = scale_down.placement_matches

    def counting(placement, labels, taints):
        calls.append(1)
        return original(placement, labels, taints)

    nodes = [node(f"n{i:04}") for i in range(1000)]
    selectors = [{"aws/type": "p3.2xlarge"}, {"team": "a"}, {"team": "b"}]
    pods = [make_pod(f"p{i}", cpu="1", selector=selectors[i % 3]) for i in range(10000)]
    try:
        scale_down.placement_matches = counting
        result = run(world(nodes, pods))
    finally:
        scale_down.placement_matches = original
    assert result.state_counts[NodeState.POD_PENDING] == 0
    assert len(calls) <= 3 * 1000
