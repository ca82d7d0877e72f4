"""The loop's rhythm: --sleep after a success, doubling after each failure up to the cap, back to
--sleep once a loop succeeds; and a stop between actions."""
from dataclasses import replace
from datetime import timedelta

import pytest

from autoscaler.aws_reader import CloudError
from autoscaler.decide import remember_last_busy, with_remembered_last_busy
from autoscaler.kube_errors import KubeError
from autoscaler.loop import MAX_BACKOFF_SECONDS
from autoscaler.model import LAST_BUSY_ANNOTATION, ScalingActivity
from autoscaler.plan import AnnotateNode
from builders import NOW, make_group, make_group_nodes, make_node, make_pod, make_snapshot
from loop_stubs import RecordingAdapter, StubWorld, make_loop, make_settings

OK = make_snapshot()
FAIL = KubeError("list nodes: HTTP 500")

# name -> (--sleep, what each read does, the waits expected after each loop)
BACKOFF_CASES = {
    "steady": (60, [OK, OK, OK], [60, 60, 60]),
    "doubles-then-recovers": (60, [FAIL, FAIL, FAIL, OK, FAIL], [120, 240, 480, 60, 120]),
    "capped": (60, [FAIL] * 6, [120, 240, 480, 600, 600, 600]),
    "sleep-above-the-cap": (900, [FAIL, FAIL, OK], [900, 900, 900]),
}


@pytest.mark.parametrize("sleep, reads, expected", BACKOFF_CASES.values(), ids=BACKOFF_CASES.keys())
def test_backoff(sleep, reads, expected):
    waits = []
    loop = make_loop(StubWorld(*reads), make_settings(sleep=sleep))

    def record(seconds):
        waits.append(seconds)
        if len(waits) == len(reads):
            loop.stop.set()

    loop.wait = record
    loop.run_forever()
    assert waits == expected
    assert MAX_BACKOFF_SECONDS == 600


def test_a_stop_during_the_plan_lets_the_current_action_finish_and_applies_nothing_more():
    pods = [make_pod(f"job-{i}", cpu="3", selector={"pool": str(i)}) for i in range(3)]
    groups = [make_group(f"pool-{i}", labels={"pool": str(i)}) for i in range(3)]
    holder = {}

    def stop_on_first_call(name, args):
        holder["loop"].stop.set()  # SIGTERM arrives while the first call is under way

    aws = RecordingAdapter(before_call=stop_on_first_call)
    loop = make_loop(StubWorld(make_snapshot(pods=pods, groups=groups)), aws=aws)
    holder["loop"] = loop
    report = loop.run_once()
    assert [name for name, _ in aws.calls] == ["set_desired_capacity"]
    assert report.counters["not_applied"] == 2
    assert report.ok


class LostLease:
    def __init__(self, leader_for_calls):
        self.remaining = leader_for_calls
        self.retry_period = 1
        self.contact_at = None

    def is_leader(self):
        self.remaining -= 1
        return self.remaining >= 0


@pytest.mark.parametrize("leader_for_checks, calls", [(0, 0), (2, 1), (99, 3)],
                         ids=["lost-before-the-plan", "lost-after-one-action", "kept"])
def test_a_lost_lease_stops_the_plan_between_actions(leader_for_checks, calls):
    pods = [make_pod(f"job-{i}", cpu="3", selector={"pool": str(i)}) for i in range(3)]
    groups = [make_group(f"pool-{i}", labels={"pool": str(i)}) for i in range(3)]
    aws = RecordingAdapter()
    loop = make_loop(StubWorld(make_snapshot(pods=pods, groups=groups)), aws=aws, leader=LostLease(leader_for_checks))
    loop.run_once()
    assert len(aws.calls) == calls


# --- capacity corrections that did not happen are decided again ----------------------------------

LAUNCH_CAUSE = ("At 2026-11-27T09:59:00Z an instance was started in response to a difference between desired and"
                " actual capacity, increasing the capacity from 3 to 5.")
FAILED_LAUNCHES = {
    "instance-limit": ("Failed", "You have requested more instances (11) than your current instance limit of 10"
                       " allows for the specified instance type. Launching EC2 instance failed."),
    "spot-waiting": ("WaitingForSpotInstanceId", "Placed Spot instance request: sir-abc123. Waiting for instance(s)"),
}
THROTTLED = CloudError("Throttling", "setting desired capacity: Throttling: Rate exceeded")


def failed_launch_snapshot(kind):
    """A group of desired 5 whose latest launch (10 minutes ago) failed in the way ``kind`` says."""
    code, message = FAILED_LAUNCHES[kind]
    group = make_group("pool", desired=5, spot=kind.startswith("spot"))
    launch = ScalingActivity("a-1", "pool", "us-west-2", code, message, "Launching a new EC2 instance", LAUNCH_CAUSE,
                             NOW - timedelta(minutes=10))
    return replace(make_snapshot(groups=[group]), activities=(launch,))


class Leadership:
    def __init__(self):
        self.leading = True
        self.retry_period = 1
        self.contact_at = None

    def is_leader(self):
        return self.leading


# name -> (failed launch, per loop: what the AWS adapter fails and whether we lead, AWS calls expected per loop)
RETRY_CASES = {
    "applied-once": ("instance-limit", [({}, True)] * 3, [["set_desired_capacity"], [], []]),
    "correction-throttled": ("instance-limit", [({"set_desired_capacity": THROTTLED}, True)] + [({}, True)] * 2,
                             [["set_desired_capacity"], ["set_desired_capacity"], []]),
    "correction-denied-twice": ("instance-limit", [({"set_desired_capacity": THROTTLED}, True)] * 2 + [({}, True)],
                                [["set_desired_capacity"]] * 3),
    "lease-lost-before-the-plan": ("instance-limit", [({}, False)] + [({}, True)] * 2,
                                   [[], ["set_desired_capacity"], []]),
    # Only what failed is done again: the group's desired capacity is lowered once, not twice.
    "spot-cancel-denied": ("spot-waiting", [({"cancel_spot_request": THROTTLED}, True)] + [({}, True)] * 2,
                           [["cancel_spot_request", "set_desired_capacity"], ["cancel_spot_request"], []]),
    "spot-lowering-throttled": ("spot-waiting", [({"set_desired_capacity": THROTTLED}, True)] + [({}, True)] * 2,
                                [["cancel_spot_request", "set_desired_capacity"], ["set_desired_capacity"], []]),
}


@pytest.mark.parametrize("kind, loops, expected", RETRY_CASES.values(), ids=RETRY_CASES.keys())
def test_a_correction_that_failed_or_was_not_made_is_decided_again(kind, loops, expected):
    aws, leadership = RecordingAdapter(), Leadership()
    loop = make_loop(StubWorld(failed_launch_snapshot(kind)), aws=aws, leader=leadership)
    calls = []
    for failing, leading in loops:
        aws.fail, leadership.leading = failing, leading
        before = len(aws.calls)
        loop.run_once()
        calls.append([name for name, _ in aws.calls[before:]])
    assert calls == expected


def test_a_dry_run_decides_a_correction_once():
    loop = make_loop(StubWorld(failed_launch_snapshot("instance-limit")), make_settings(dry_run=True))
    applied = [loop.run_once().counters.get("applied_SetDesiredCapacity", 0) for _ in range(3)]
    assert applied == [1, 0, 0]


# --- idle time is measured the same in a dry run ----------------------------------------------------

def node_busy_then_idle_snapshots(written_last_busy):
    """Loop 1: a node launched 3 hours ago runs a job. Loop 2: the job is gone; the node carries
    ``written_last_busy`` as its annotation (what a real run wrote in loop 1, None in a dry run)."""
    group, [node] = make_group_nodes(make_group("pool", max_size=5), 1)
    node = replace(node, created=NOW - timedelta(hours=3))
    busy = make_snapshot(pods=[make_pod("job", cpu="1", node=node.name)], nodes=[node], groups=[group])
    launched = {i: replace(instance, launch_time=NOW - timedelta(hours=3)) for i, instance in busy.instances.items()}
    busy = replace(busy, instances=launched)
    idle = replace(busy, pods=(), nodes=(replace(node, last_busy=written_last_busy),))
    return busy, idle


@pytest.mark.parametrize("dry_run", [False, True], ids=["real-run", "dry-run"])
def test_a_dry_run_measures_idle_time_as_a_real_run_does(dry_run):
    first, second = NOW - timedelta(minutes=2), NOW
    busy, idle = node_busy_then_idle_snapshots(written_last_busy=None if dry_run else first)
    kube = RecordingAdapter()
    settings = make_settings(dry_run=dry_run, idle_threshold=3600, type_idle_threshold=600)
    times = iter([first, second])
    loop = make_loop(StubWorld(busy, idle), settings, kube=kube, clock=lambda: next(times))
    assert loop.run_once().counters["nodes_busy"] == 1
    report = loop.run_once()
    assert report.counters.get("nodes_grace_period") == 1, report.counters
    assert "cordon" not in [name for name, _ in kube.calls]


def annotate_busy(node, moment):
    return AnnotateNode(node, LAST_BUSY_ANNOTATION, moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "runs 1 busy pod(s)")


EARLIER, LATER = NOW - timedelta(minutes=10), NOW - timedelta(minutes=1)


@pytest.mark.parametrize("annotated, remembered, actions, expected_seen, expected_remembered", [
    pytest.param(None, {"a": LATER}, [], LATER, {"a": LATER}, id="remembered-only"),
    pytest.param(EARLIER, {"a": LATER}, [], LATER, {"a": LATER}, id="remembered-is-later"),
    pytest.param(LATER, {"a": EARLIER}, [], LATER, {"a": EARLIER}, id="annotation-is-later"),
    pytest.param(None, {"a": EARLIER, "gone": EARLIER}, [annotate_busy("a", LATER)], EARLIER, {"a": LATER},
                 id="decided-now-and-a-node-gone"),
    pytest.param(None, {}, [AnnotateNode("a", "other/key", "2026-11-27T09:59:00Z", ""), annotate_busy("gone", LATER)],
                 None, {}, id="other-annotations-and-absent-nodes-ignored"),
])
def test_remembered_last_busy_times(annotated, remembered, actions, expected_seen, expected_remembered):
    snapshot = make_snapshot(nodes=[replace(make_node("a"), last_busy=annotated)])
    [node] = with_remembered_last_busy(snapshot, remembered).nodes
    assert node.last_busy == expected_seen
    assert remember_last_busy(remembered, snapshot, actions) == expected_remembered
