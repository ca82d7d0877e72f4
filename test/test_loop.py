"""The loop's rhythm: --sleep after a loop that read the world, doubling after each loop that
could not (or that an API throttled) up to the cap, back to --sleep after one that could; health
over time; a bug after the read that must not kill the daemon; and a stop between actions."""
import logging
import threading
from dataclasses import replace
from datetime import timedelta

import pytest

from autoscaler.run import daemon, loop as loop_module
from autoscaler.clients.aws_errors import CloudError
from autoscaler.run.backoff import MAX_BACKOFF_SECONDS, is_throttling
from autoscaler.decide.decision import DecisionCounts, ScaleUpCounts, remember_last_busy, remember_seen_busy, with_remembered_last_busy, with_seen_busy
from autoscaler.run.logs import ALWAYS_SHOWN
from autoscaler.act.kube_actuator import EvictionRefused
from autoscaler.clients.kube_errors import KubeError
from autoscaler.run.loop import LoopCounters, LoopReport
from autoscaler.run.observer import LoopObserver, Observers
from autoscaler.run.metrics import Liveness, Metrics, health_window
from autoscaler.model.objects import LAST_BUSY_ANNOTATION, NodeState, ScalingActivity
from autoscaler.model.plan import AnnotateNode, Cordon, SetDesiredCapacity
from builders import NOW, make_group, make_group_nodes, make_node, make_pod, make_snapshot
from loop_stubs import RecordingAdapter, StubWorld, make_loop, make_settings

OK = make_snapshot()
FAIL = KubeError("list nodes: HTTP 500")
# Every loop decides to raise the group for the pending pod (the stub world never changes).
PENDING = make_snapshot(pods=[make_pod("job", cpu="3")], groups=[make_group("workers")])
DENIED = CloudError("AccessDenied", "setting desired capacity: access denied")
RATE_LIMITED = CloudError("RequestLimitExceeded", "setting desired capacity: RequestLimitExceeded")

# name -> (--sleep, what each read does, what the AWS adapter fails, the waits expected after each loop)
BACKOFF_CASES = {
    "steady": (60, [OK, OK, OK], {}, [60, 60, 60]),
    "doubles-then-recovers": (60, [FAIL, FAIL, FAIL, OK, FAIL], {}, [120, 240, 480, 60, 120]),
    "capped": (60, [FAIL] * 6, {}, [120, 240, 480, 600, 600, 600]),
    "sleep-above-the-cap": (900, [FAIL, FAIL, OK], {}, [900, 900, 900]),
    "read-throttled": (60, [KubeError("list pods: HTTP 429", 429), OK], {}, [120, 60]),
    # One action refused every loop: the loop read the world and acted; everyone else's scale up
    # must not wait 10 minutes for it.
    "an-action-refused-every-loop": (60, [PENDING] * 4, {"set_desired_capacity": DENIED}, [60, 60, 60, 60]),
    "actions-throttled": (60, [PENDING] * 4, {"set_desired_capacity": RATE_LIMITED}, [120, 240, 480, 600]),
}


@pytest.mark.parametrize("sleep, reads, failing, expected", BACKOFF_CASES.values(), ids=BACKOFF_CASES.keys())
def test_backoff(sleep, reads, failing, expected):
    waits = []
    loop = make_loop(StubWorld(*reads), make_settings(sleep=sleep), aws=RecordingAdapter(fail=failing))

    def record(seconds):
        waits.append(seconds)
        if len(waits) == len(reads):
            loop.stop.set()

    loop.wait = record
    loop.run_forever()
    assert waits == expected
    assert MAX_BACKOFF_SECONDS == 600


@pytest.mark.parametrize("error, throttling", [
    (CloudError("Throttling", "x"), True),
    (CloudError("ThrottlingException", "x"), True),
    (CloudError("RequestLimitExceeded", "x"), True),
    (CloudError("AccessDenied", "x"), False),
    (KubeError("patch node: HTTP 429", 429), True),
    (EvictionRefused("evict pod: HTTP 429: disruption budget", 429), False),
    (KubeError("delete node: HTTP 403", 403), False),
    (KubeError("cannot reach the API server"), False),
    (ValueError("a bug"), False),
], ids=["aws-throttling", "aws-throttling-exception", "ec2-request-limit", "aws-denied", "kube-429",
        "eviction-refused-by-a-budget", "kube-403", "kube-unreachable", "other"])
def test_is_throttling(error, throttling):
    assert is_throttling(error) is throttling


class SimulatedTime:
    """One monotonic clock for the liveness check, the loop's waits and its reads."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def health_over_time(sleep, loop_seconds, reads, failing=None):
    """Runs the loop over ``reads``, each read taking ``loop_seconds``; /healthz's answer checked
    just before each read and at the end of each wait, i.e. at the worst moments."""
    time_now = SimulatedTime()
    liveness = Liveness(health_window(sleep), clock=time_now)
    world = StubWorld(*reads)
    answers = []

    class SlowWorld:
        def read(self, now):
            answers.append(liveness.check()[0])
            time_now.now += loop_seconds
            return world.read(now)

    loop = make_loop(SlowWorld(), make_settings(sleep=sleep), aws=RecordingAdapter(fail=failing), liveness=liveness)

    def wait(seconds):
        time_now.now += seconds
        answers.append(liveness.check()[0])
        if world.reads == len(reads):
            loop.stop.set()

    loop.wait = wait
    loop.run_forever()
    return answers


@pytest.mark.parametrize("sleep, loop_seconds", [(10, 60), (60, 0), (60, 60), (300, 60), (600, 60), (900, 60)],
                         ids=["short-sleep-slow-loops", "default", "default-slow-loops", "long-sleep",
                              "sleep-at-the-cap", "sleep-above-the-cap"])
def test_one_failed_read_never_fails_health(sleep, loop_seconds):
    assert all(health_over_time(sleep, loop_seconds, [OK, OK, FAIL, OK, OK]))


def test_reads_failing_for_long_fail_health():
    answers = health_over_time(60, 0, [OK] + [FAIL] * 6)
    assert answers[-1] is False


def test_an_action_failing_every_loop_never_fails_health():
    assert all(health_over_time(60, 5, [PENDING] * 30, failing={"set_desired_capacity": DENIED}))


# --- a bug after the read ------------------------------------------------------------------------

def broken(*args, **kwargs):
    raise ZeroDivisionError("a bug in decision code")


class BrokenMetrics(Metrics):
    loop_done = broken


BUG_PLACES = {
    "decide": lambda monkeypatch, options: monkeypatch.setattr(loop_module, "decide", broken),
    "remember-last-busy": lambda monkeypatch, options: monkeypatch.setattr(loop_module, "remember_last_busy", broken),
    "events-for-loop": lambda monkeypatch, options: (monkeypatch.setattr(loop_module, "events_for_loop", broken),
                                                     options.update(events=RecordingAdapter())),
    "metrics": lambda monkeypatch, options: options.update(metrics=BrokenMetrics()),
}


@pytest.mark.parametrize("place", BUG_PLACES.values(), ids=BUG_PLACES.keys())
def test_a_bug_after_the_read_fails_the_loop_loudly_and_the_daemon_goes_on(place, monkeypatch, caplog):
    options = {}
    place(monkeypatch, options)
    liveness = Liveness(180, clock=SimulatedTime())
    world = StubWorld(PENDING)
    loop = make_loop(world, liveness=liveness, **options)
    waits = []

    def wait(seconds):
        waits.append(seconds)
        if len(waits) == 3:
            loop.stop.set()

    loop.wait = wait
    with caplog.at_level(logging.ERROR):
        loop.run_forever()
    assert world.reads == 3 and waits == [120, 240, 480]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "a bug" in r.getMessage()]
    assert len(errors) == 3 and errors[0].exc_info is not None
    assert liveness._last_success is None


@pytest.mark.parametrize("error, traceback", [(FAIL, False), (AttributeError("a bug in the reader"), True)],
                         ids=["api-error", "bug"])
def test_a_failed_read_shows_a_traceback_only_for_a_bug(error, traceback, caplog):
    report = make_loop(StubWorld(error)).run_once()
    [record] = [r for r in caplog.records if "reading the cluster failed" in r.getMessage()]
    assert not report.ok and record.levelno == logging.ERROR and bool(record.exc_info) is traceback


# --- --once ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("report, code", [
    (LoopReport(True), 0),
    (LoopReport(True, failed_actions=1, error="delete node n1: HTTP 403"), 1),
    (LoopReport(False, error="list pods: HTTP 500"), 1),
], ids=["clean", "an-action-failed", "the-read-failed"])
def test_once_exits_1_when_anything_failed_and_always_ends_with_one_line(report, code, capsys, caplog):
    class OneLoop:
        def run_once(self):
            return report

    assert daemon._run_once(OneLoop(), None, threading.Event()) == code
    err = capsys.readouterr().err
    summaries = [r for r in caplog.records if r.getMessage().startswith("done: ")]
    if code:
        assert report.error in err and err.count("\n") == 1 and not summaries
    else:
        assert err == "" and len(summaries) == 1 and getattr(summaries[0], ALWAYS_SHOWN)


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
    assert report.counters.not_applied == 2
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
    applied = [loop.run_once().counters.by_action.get(SetDesiredCapacity, 0) for _ in range(3)]
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
    assert loop.run_once().counters.decision.nodes_by_state[NodeState.BUSY] == 1
    report = loop.run_once()
    assert report.counters.decision.nodes_by_state.get(NodeState.GRACE_PERIOD) == 1, report.counters
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


# --- idle time runs from the last loop that saw the node busy --------------------------------------

@pytest.mark.parametrize("annotated_before, idle_for, threshold, cordoned", [
    # The annotation was written 50 s before the loop that last saw the job: measured from it, the
    # node would be 70 s idle and cordoned with a 60 s threshold, 20 s after its job ended.
    pytest.param(50, 20, 60, False, id="annotation-older-than-the-last-busy-loop"),
    pytest.param(50, 61, 60, True, id="idle-past-the-threshold-since-the-last-busy-loop"),
    pytest.param(0, 20, 5, True, id="short-threshold"),
])
def test_idle_time_runs_from_the_last_loop_that_saw_the_node_busy(annotated_before, idle_for, threshold, cordoned):
    busy_at = NOW - timedelta(seconds=idle_for)
    busy, idle = node_busy_then_idle_snapshots(written_last_busy=busy_at - timedelta(seconds=annotated_before))
    busy = replace(busy, nodes=idle.nodes)  # the same annotation in both reads: loop 1 does not rewrite it
    kube = RecordingAdapter()
    settings = make_settings(idle_threshold=threshold, type_idle_threshold=threshold, spare_idle_nodes=0)
    times = iter([busy_at, NOW])
    loop = make_loop(StubWorld(busy, idle), settings, kube=kube, clock=lambda: next(times))
    loop.run_once()
    loop.run_once()
    assert ("cordon" in [name for name, _ in kube.calls]) is cordoned, kube.calls


def test_the_seen_busy_memory_keeps_nodes_still_there_and_leaves_busy_nodes_their_annotation():
    busy, idle = node_busy_then_idle_snapshots(written_last_busy=EARLIER)
    [name] = [node.name for node in busy.nodes]
    seen = remember_seen_busy({"gone": EARLIER}, busy, LATER)
    assert seen == {name: LATER}
    assert with_seen_busy(busy, seen).nodes[0].last_busy == busy.nodes[0].last_busy  # busy: unchanged
    assert with_seen_busy(idle, seen).nodes[0].last_busy == LATER
    assert remember_seen_busy(seen, idle, NOW) == {name: LATER}  # idle now: the last busy loop stays


# --- the loop's summary and its observers --------------------------------------------------------

SCALE_UP = DecisionCounts(0, ScaleUpCounts(pending=3, placed_on_nodes=1, pods_for_new_instances=2, groups_raised=1,
                                           infeasible=0, unaccounted=0, gated=2),
                          {NodeState.BUSY: 2, NodeState.BUSY_UNSCHEDULABLE: 1})


@pytest.mark.parametrize("counters, expected", [
    (LoopCounters(1), "groups_timed_out=0 loop=1 nodes=0 pods=0 groups=0 actions=0 failed_actions=0 seconds=0.0"),
    (LoopCounters(4, SCALE_UP, nodes=3, pods=9, groups=2, actions=2, by_action={SetDesiredCapacity: 1, Cordon: 1},
                  events=5, seconds=0.12345),
     "groups_timed_out=0 pending=3 placed_on_nodes=1 pods_for_new_instances=2 groups_raised=1 infeasible=0 "
     "unaccounted=0 gated=2 nodes_busy=2 nodes_busy_unschedulable=1 loop=4 nodes=3 pods=9 groups=2 actions=2 "
     "failed_actions=0 applied_Cordon=1 applied_SetDesiredCapacity=1 events=5 seconds=0.123"),
    (LoopCounters(2, SCALE_UP, actions=1, by_action={SetDesiredCapacity: 1}, dry_run=True, events=3),
     "groups_timed_out=0 pending=3 placed_on_nodes=1 pods_for_new_instances=2 groups_raised=1 infeasible=0 "
     "unaccounted=0 gated=2 nodes_busy=2 nodes_busy_unschedulable=1 loop=2 nodes=0 pods=0 groups=0 actions=1 "
     "failed_actions=0 would_SetDesiredCapacity=1 would_post_events=3 seconds=0.0"),
    (LoopCounters(3, failed_actions=2, throttled=1, not_applied=4, by_action={}),
     "groups_timed_out=0 loop=3 nodes=0 pods=0 groups=0 actions=0 failed_actions=2 throttled=1 not_applied=4 "
     "seconds=0.0"),
], ids=["failed-read", "real-run", "dry-run", "stopped"])
def test_the_summary_line_names_each_counter(counters, expected):
    assert " ".join(f"{name}={value}" for name, value in counters.fields().items()) == expected


class PhaseRecorder(LoopObserver):
    def __init__(self):
        self.seen = []

    def phase_done(self, phase, seconds):
        self.seen.append(phase)

    def loop_failed(self, seconds, error):
        self.seen.append(f"failed: {error}")

    def loop_done(self, seconds, snapshot, decision, result):
        self.seen.append(f"done: {len(result.done)} applied")


def test_observers_hear_each_phase_then_how_the_loop_ended():
    first, second = PhaseRecorder(), PhaseRecorder()
    loop = make_loop(StubWorld(PENDING, KubeError("list pods: HTTP 500")), observer=Observers(first, second))
    loop.run_once()
    loop.run_once()
    assert first.seen == second.seen == ["read", "decide", "act", "done: 1 applied", "failed: list pods: HTTP 500"]


def test_a_loop_without_observers_or_election_acts():
    aws = RecordingAdapter()
    loop = make_loop(StubWorld(PENDING), aws=aws, observer=None)
    assert loop.run_once().ok and [name for name, _ in aws.calls] == ["set_desired_capacity"]
