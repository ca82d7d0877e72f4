"""The loop's rhythm: --sleep after a success, doubling after each failure up to the cap, back to
--sleep once a loop succeeds; and a stop between actions."""
import pytest

from autoscaler.kube_errors import KubeError
from autoscaler.loop import MAX_BACKOFF_SECONDS
from builders import make_group, make_pod, make_snapshot
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
