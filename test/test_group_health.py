"""Group health (docs/decisions.md#launch-failures-and-region-overflow): launch failures, silent failures and spot prices -> timeouts
and capacity corrections. Every case injects ``now``; messages are the texts AWS writes."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from autoscaler.decide.group_health import (
    FailureKind,
    GroupHealthState,
    assess_groups,
    classify_failure,
    outbid_seconds,
)
from autoscaler.model import config
from autoscaler.model.config import Settings
from autoscaler.model.objects import Group, Instance, Node, Resources, ScalingActivity, Snapshot, SpotPrice
from autoscaler.model.plan import CancelSpotRequest, Notify, SetDesiredCapacity
from builders import make_group, make_shape

REGION = "us-east-1"
START = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
SETTINGS = Settings(cluster_name="test", regions=(REGION,))

INSTANCE_LIMIT_TEXT = (
    "You have requested more instances (11) than your current instance limit of 10 allows for the specified"
    " instance type. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to"
    " this limit. Launching EC2 instance failed."
)
VOLUME_LIMIT_TEXT = (
    "Instance became unhealthy while waiting for instance to be in InService state. Termination Reason:"
    " Client.VolumeLimitExceeded: Volume limit exceeded"
)
INSUFFICIENT_CAPACITY_TEXT = "Insufficient capacity. Launching EC2 instance failed."
AZ_CAPACITY_TEXT = (
    "We currently do not have sufficient p3.2xlarge capacity in the Availability Zone you requested"
    " (us-east-1a). Our system will be working on provisioning additional capacity. You can currently get"
    " p3.2xlarge capacity by not specifying an Availability Zone in your request or choosing us-east-1b."
)
SPOT_COUNT_TEXT = "Max spot instance count exceeded. Placing Spot instance request failed."
SPOT_WAITING_TEXT = "Placed Spot instance request: sir-abc123. Waiting for instance(s)"
SPOT_CANCELLED_TEXT = "Spot instance request: sir-abc123 has been cancelled."
LAUNCH_CAUSE = (
    "At 2026-11-27T10:00:00Z an instance was started in response to a difference between desired and actual"
    " capacity, increasing the capacity from 3 to 5."
)
REBALANCE_CAUSE = "An instance was launched to aid in balancing the group's zones."


def east_group(name="workers", desired=5, zones=("us-east-1a",), types=("p3.2xlarge",), **options) -> Group:
    """A group of the region under test, launching ``types``; see builders.make_group."""
    return make_group(name, region=REGION, desired=desired, zones=zones, shapes=[make_shape(t) for t in types], **options)


def make_activity(message="", code="Failed", cause=LAUNCH_CAUSE, start=START, activity_id="a-1",
                  group="workers", description="Launching a new EC2 instance.  Status Reason: see message",
                  end=None):
    return ScalingActivity(
        activity_id=activity_id, group_name=group, region=REGION, status_code=code, status_message=message,
        description=description, cause=cause, start_time=start,
        end_time=end if end is not None or code == "WaitingForSpotInstanceId" else start + timedelta(seconds=30),
    )


def group_snapshot(groups, activities=(), node_instances=None, instance_state="running", spot_prices=()):
    """Every instance of every group exists in ``instance_state``; ``node_instances`` of them have
    become nodes (all of them when None)."""
    instances = {}
    nodes = []
    for group in groups:
        for index, instance_id in enumerate(group.instance_ids):
            instances[instance_id] = Instance(instance_id, REGION, group.zones[0], instance_state,
                                              group.instance_type, group_name=group.name)
            if node_instances is None or index < node_instances:
                nodes.append(Node(name=f"node-{instance_id}", labels={}, allocatable=Resources({"cpu": 8000}),
                                  instance_id=instance_id, region=REGION, zone=group.zones[0]))
    return Snapshot(nodes=tuple(nodes), groups=tuple(groups), instances=instances,
                    activities=tuple(activities), spot_prices=tuple(spot_prices))


def assess(snapshot, now, state=None, settings=SETTINGS):
    return assess_groups(state if state is not None else GroupHealthState(), snapshot, settings, now)


def of_type(actions, kind):
    return [action for action in actions if isinstance(action, kind)]


# --- the pattern table ---------------------------------------------------------------------------

@pytest.mark.parametrize("message, code, expected", [
    pytest.param(INSTANCE_LIMIT_TEXT, "Failed", FailureKind.INSTANCE_LIMIT, id="instance-limit"),
    pytest.param(VOLUME_LIMIT_TEXT, "Cancelled", FailureKind.VOLUME_LIMIT, id="volume-limit"),
    pytest.param(INSUFFICIENT_CAPACITY_TEXT, "Failed", FailureKind.INSUFFICIENT_CAPACITY, id="insufficient-capacity"),
    pytest.param(AZ_CAPACITY_TEXT, "Failed", FailureKind.AZ_CAPACITY, id="az-capacity"),
    pytest.param(SPOT_COUNT_TEXT, "Failed", FailureKind.SPOT_COUNT, id="spot-count"),
    pytest.param(SPOT_WAITING_TEXT, "WaitingForSpotInstanceId", FailureKind.SPOT_WAITING, id="spot-waiting"),
    pytest.param(INSTANCE_LIMIT_TEXT.replace("(11)", "(250)").replace("of 10", "of 249"), "Failed",
                 FailureKind.INSTANCE_LIMIT, id="instance-limit-other-numbers"),
    pytest.param(AZ_CAPACITY_TEXT.replace("p3.2xlarge", "c5.18xlarge").replace("us-east-1a", "eu-west-1c"),
                 "Failed", FailureKind.AZ_CAPACITY, id="az-capacity-other-type-and-zone"),
    pytest.param(SPOT_WAITING_TEXT.replace("sir-abc123", "sir-9x8y7z6w"), "WaitingForSpotInstanceId",
                 FailureKind.SPOT_WAITING, id="spot-waiting-other-request-id"),
    # texts that must not match
    pytest.param("", "Successful", None, id="successful-launch"),
    pytest.param("Launching a new EC2 instance: i-123. Status Reason: ...", "Failed", None, id="launch-description"),
    pytest.param("The image id '[ami-0123456789]' does not exist. Launching EC2 instance failed.", "Failed", None,
                 id="unrelated-failure"),
    pytest.param(SPOT_CANCELLED_TEXT, "Cancelled", FailureKind.SPOT_CANCELLED, id="cancelled-spot-request"),
    pytest.param(SPOT_CANCELLED_TEXT, "Successful", None, id="cancelled-text-with-other-status"),
    pytest.param(SPOT_WAITING_TEXT, "Successful", None, id="spot-waiting-text-with-other-status"),
    pytest.param(INSUFFICIENT_CAPACITY_TEXT, "InProgress", None, id="failure-text-not-yet-failed"),
])
def test_classify_failure(message, code, expected):
    assert classify_failure(message, code) == expected


# --- corrections per pattern ---------------------------------------------------------------------

@pytest.mark.parametrize("message, code, group, nodes, expected_desired", [
    # cause: from 3 to 5, so requested 5 -> 4
    pytest.param(INSTANCE_LIMIT_TEXT, "Failed", east_group(desired=5), None, 4, id="instance-limit"),
    pytest.param(VOLUME_LIMIT_TEXT, "Cancelled", east_group(desired=5), None, None, id="volume-limit-timeout-only"),
    pytest.param(INSUFFICIENT_CAPACITY_TEXT, "Failed", east_group(desired=5), None, 3, id="insufficient-capacity"),
    pytest.param(AZ_CAPACITY_TEXT, "Failed", east_group(desired=5), None, 3, id="az-capacity-single-az"),
    pytest.param(SPOT_COUNT_TEXT, "Failed", east_group(desired=5, instances=3, spot=True), 2, 2,
                 id="spot-count-to-node-count"),
    pytest.param(INSUFFICIENT_CAPACITY_TEXT, "Failed", east_group(desired=5, min_size=4), None, 4,
                 id="never-below-min-size"),
    pytest.param(SPOT_COUNT_TEXT, "Failed", east_group(desired=5, min_size=3, spot=True), 0, 3,
                 id="spot-count-never-below-min-size"),
    pytest.param(INSUFFICIENT_CAPACITY_TEXT, "Failed", east_group(desired=3), None, None,
                 id="already-at-corrected-value"),
    pytest.param(INSTANCE_LIMIT_TEXT, "Failed", east_group(desired=2), None, None, id="never-raises-desired"),
])
def test_failure_corrects_capacity_and_times_out(message, code, group, nodes, expected_desired):
    snapshot = group_snapshot([group], [make_activity(message, code)], node_instances=nodes)
    result = assess(snapshot, START + timedelta(minutes=2))

    corrections = of_type(result.actions, SetDesiredCapacity)
    if expected_desired is None:
        assert corrections == []
    else:
        assert [(c.group, c.region, c.previous, c.desired) for c in corrections] == [
            (group.name, REGION, group.desired, expected_desired)]
        assert corrections[0].reason == result.timeouts[group.key].reason.split(" (activity")[0]
    assert result.timed_out == {group.key}
    assert result.timeouts[group.key].until == START + timedelta(hours=1)
    # The actuator reports the correction once made; the plan only announces the timeout.
    [notice] = of_type(result.actions, Notify)
    assert notice.kind == "group-timed-out" and notice.message.startswith("workers (us-east-1)")
    assert isinstance(result.actions[-1], Notify)  # the correction comes before the notice


def test_instance_limit_without_cause_uses_current_desired():
    group = east_group(desired=6)
    result = assess(group_snapshot([group], [make_activity(INSTANCE_LIMIT_TEXT, cause="")]), START)
    assert [c.desired for c in of_type(result.actions, SetDesiredCapacity)] == [5]


def test_az_capacity_in_multi_az_group_is_left_to_aws():
    group = east_group(desired=5, zones=("us-east-1a", "us-east-1b"))
    result = assess(group_snapshot([group], [make_activity(AZ_CAPACITY_TEXT)]), START + timedelta(minutes=1))
    assert result.actions == () and result.timed_out == frozenset()


@pytest.mark.parametrize("minutes_after_start, timed_out", [
    pytest.param(59, True, id="active-at-59-min"),
    pytest.param(61, False, id="expired-at-61-min"),
])
def test_timeout_runs_one_hour_from_the_failed_activity(minutes_after_start, timed_out):
    group = east_group(desired=5, instances=5)  # no shortfall, so the silent-failure rule stays out
    snapshot = group_snapshot([group], [make_activity(VOLUME_LIMIT_TEXT, "Cancelled")])
    first = assess(snapshot, START + timedelta(minutes=1))
    later = assess(snapshot, START + timedelta(minutes=minutes_after_start), state=first.state)
    assert (group.key in later.timed_out) is timed_out
    assert (group.key in later.state.timeouts) is timed_out


def test_failure_seen_first_after_its_hour_is_history():
    group = east_group(desired=5)
    result = assess(group_snapshot([group], [make_activity(INSUFFICIENT_CAPACITY_TEXT)]), START + timedelta(minutes=61))
    assert result.actions == () and result.timed_out == frozenset()


def test_correction_is_applied_once_per_activity():
    group = east_group(desired=5)
    snapshot = group_snapshot([group], [make_activity(INSTANCE_LIMIT_TEXT)])
    first = assess(snapshot, START + timedelta(minutes=1))
    second = assess(snapshot, START + timedelta(minutes=2), state=first.state)
    assert len(of_type(first.actions, SetDesiredCapacity)) == 1
    assert second.actions == ()  # no correction again, no second timed-out notification
    assert group.key in second.timed_out

    another = make_activity(INSTANCE_LIMIT_TEXT, activity_id="a-2", start=START + timedelta(minutes=3))
    third = assess(group_snapshot([group], [make_activity(INSTANCE_LIMIT_TEXT), another]),
                   START + timedelta(minutes=4), state=second.state)
    assert len(of_type(third.actions, SetDesiredCapacity)) == 1
    assert third.state.timeouts[group.key].until == START + timedelta(minutes=63)


def test_only_the_latest_launch_counts():
    group = east_group(desired=5, instances=5)
    failure = make_activity(INSUFFICIENT_CAPACITY_TEXT, activity_id="a-1")
    success = make_activity("", "Successful", activity_id="a-2", start=START + timedelta(minutes=5))
    termination = make_activity("", "Successful", activity_id="a-3", start=START + timedelta(minutes=6),
                                description="Terminating EC2 instance: i-0123", cause="")

    # failure then success, seen together: the group is not failing
    fresh = assess(group_snapshot([group], [failure, success, termination]), START + timedelta(minutes=7))
    assert fresh.actions == () and fresh.timed_out == frozenset()

    # failure seen and acted on, then a success: the recorded timeout still runs its hour
    first = assess(group_snapshot([group], [failure]), START + timedelta(minutes=1))
    later = assess(group_snapshot([group], [failure, success]), START + timedelta(minutes=30), state=first.state)
    assert later.actions == ()
    assert group.key in later.timed_out
    assert group.key not in assess(group_snapshot([group], [failure, success]), START + timedelta(minutes=61),
                                   state=later.state).timed_out


def test_termination_after_failure_does_not_hide_it():
    group = east_group(desired=5)
    failure = make_activity(INSUFFICIENT_CAPACITY_TEXT)
    termination = make_activity("", "Successful", activity_id="a-2", start=START + timedelta(minutes=1),
                                description="Terminating EC2 instance: i-0123", cause="")
    result = assess(group_snapshot([group], [failure, termination]), START + timedelta(minutes=2))
    assert [c.desired for c in of_type(result.actions, SetDesiredCapacity)] == [3]


def test_groups_are_assessed_apart_and_in_a_stable_order():
    alpha, beta = east_group("alpha", desired=5), east_group("beta", desired=5)
    activities = [make_activity(INSUFFICIENT_CAPACITY_TEXT, group="beta", activity_id="b"),
                  make_activity(INSTANCE_LIMIT_TEXT, group="alpha", activity_id="a")]
    result = assess(group_snapshot([beta, alpha], activities), START + timedelta(minutes=1))
    assert [(c.group, c.desired) for c in of_type(result.actions, SetDesiredCapacity)] == [("alpha", 4), ("beta", 3)]
    assert result.timed_out == {alpha.key, beta.key}
    assert len(result.describe_timeouts()) == 2 and result.describe_timeouts()[0].startswith("alpha (us-east-1)")


# --- spot requests -------------------------------------------------------------------------------

@pytest.mark.parametrize("waited, cause, expect_cancel", [
    pytest.param(timedelta(minutes=4), LAUNCH_CAUSE, False, id="waiting-under-5-min"),
    pytest.param(timedelta(seconds=config.SPOT_WAIT_SECONDS), LAUNCH_CAUSE, False, id="waiting-exactly-5-min"),
    pytest.param(timedelta(minutes=6), LAUNCH_CAUSE, True, id="waiting-over-5-min"),
    pytest.param(timedelta(minutes=6), REBALANCE_CAUSE, False, id="az-rebalance-launch"),
])
def test_spot_request_stuck_past_five_minutes(waited, cause, expect_cancel):
    group = east_group(desired=5, spot=True, instances=4)
    waiting = make_activity(SPOT_WAITING_TEXT, "WaitingForSpotInstanceId", cause=cause)
    result = assess(group_snapshot([group], [waiting]), START + waited)
    if expect_cancel:
        assert of_type(result.actions, CancelSpotRequest) == [
            CancelSpotRequest("sir-abc123", REGION, "workers", reason=of_type(result.actions, CancelSpotRequest)[0].reason)]
        assert [c.desired for c in of_type(result.actions, SetDesiredCapacity)] == [4]
        assert result.timeouts[group.key].until == START + timedelta(hours=1)
        assert [a.kind for a in of_type(result.actions, Notify)] == ["group-timed-out"]
    else:
        assert result.actions == () and result.timed_out == frozenset()


def test_cancelled_spot_request_is_not_cancelled_again():
    group = east_group(desired=4, spot=True, instances=4)
    waiting = make_activity(SPOT_WAITING_TEXT, "WaitingForSpotInstanceId")
    first = assess(group_snapshot([group], [waiting]), START + timedelta(minutes=6))
    cancelled = make_activity(SPOT_CANCELLED_TEXT, "Cancelled")  # the same activity, updated by AWS
    second = assess(group_snapshot([group], [cancelled]), START + timedelta(minutes=7), state=first.state)
    assert second.actions == () and group.key in second.timed_out


def test_cancelled_spot_request_keeps_the_group_out_after_a_restart():
    """A restarted autoscaler has no state, only the last hour's activities: the cancelled launch
    times the group out until an hour after it started, and nothing is corrected again."""
    group = east_group(desired=4, spot=True, instances=4)
    cancelled = make_activity(SPOT_CANCELLED_TEXT, "Cancelled")
    restarted = assess(group_snapshot([group], [cancelled]), START + timedelta(minutes=20))
    assert of_type(restarted.actions, (SetDesiredCapacity, CancelSpotRequest)) == []
    assert restarted.timeouts[group.key].until == START + timedelta(hours=1)
    assert "cancelled" in restarted.timeouts[group.key].reason


def test_spot_cancel_keeps_min_size():
    group = east_group(desired=2, min_size=2, spot=True, instances=2)
    waiting = make_activity(SPOT_WAITING_TEXT, "WaitingForSpotInstanceId")
    result = assess(group_snapshot([group], [waiting]), START + timedelta(minutes=6))
    assert len(of_type(result.actions, CancelSpotRequest)) == 1
    assert of_type(result.actions, SetDesiredCapacity) == []


# --- silent failures -----------------------------------------------------------------------------

def test_silent_failure_times_out_after_instance_init_time():
    settings = Settings(cluster_name="test", regions=(REGION,), instance_init_time=600)
    group = east_group(desired=5, instances=3)
    snapshot = group_snapshot([group])

    first = assess(snapshot, START, settings=settings)
    assert first.timed_out == frozenset() and first.state.shortfall_since == {group.key: START}
    before = assess(snapshot, START + timedelta(seconds=600), state=first.state, settings=settings)
    assert before.timed_out == frozenset()
    after = assess(snapshot, START + timedelta(seconds=601), state=before.state, settings=settings)
    assert after.timed_out == {group.key}
    assert after.timeouts[group.key].until == START + timedelta(seconds=601 + 3600)
    [warning] = of_type(after.actions, Notify)
    assert warning.kind == "group-timed-out" and "workers (us-east-1)" in warning.message
    assert "silent" in warning.message


@pytest.mark.parametrize("activity", [
    pytest.param(make_activity("", "InProgress"), id="launch-in-progress"),
    pytest.param(make_activity(SPOT_WAITING_TEXT, "WaitingForSpotInstanceId", cause=REBALANCE_CAUSE),
                 id="spot-request-waiting-for-rebalance"),
    pytest.param(make_activity(VOLUME_LIMIT_TEXT, "Cancelled", start=START - timedelta(minutes=61),
                               end=START + timedelta(minutes=1)), id="table-failure-during-shortfall"),
])
def test_shortfall_explained_by_an_activity_is_not_silent(activity):
    settings = Settings(cluster_name="test", regions=(REGION,), instance_init_time=600)
    group = east_group(desired=5, instances=3)
    snapshot = group_snapshot([group], [activity])
    state = GroupHealthState(shortfall_since={group.key: START})
    result = assess(snapshot, START + timedelta(minutes=11), state=state, settings=settings)
    assert result.timed_out == frozenset()
    assert result.state.shortfall_since == {group.key: START}


def first_timed_out_minute(zones, message, failing_minutes, total_minutes=120):
    """Loops every 5 minutes (one minute after each launch) while a launch fails every 5 minutes
    for ``failing_minutes``; after that the group has its instances. The minute of the first loop
    that times the group out, or None."""
    state = GroupHealthState()
    for minute in range(1, total_minutes, 5):
        failing = minute < failing_minutes
        group = east_group(desired=5, instances=3 if failing else 5, zones=zones)
        launches = [make_activity(message, activity_id=f"a-{start}", start=START + timedelta(minutes=start))
                    for start in range(max(0, minute - 59), min(minute, failing_minutes), 5)]
        result = assess(group_snapshot([group], launches), START + timedelta(minutes=minute), state=state)
        if group.key in result.timed_out:
            return minute
        state = result.state
    return None


MULTI_AZ = ("us-east-1a", "us-east-1b")


@pytest.mark.parametrize("zones, message, failing_minutes, expected", [
    # Ignored as a failure (AWS tries the other zones), so the silent-failure rule must catch it:
    # short since minute 1, more than --instance-init-time (25 min) later is minute 31.
    pytest.param(MULTI_AZ, AZ_CAPACITY_TEXT, 120, 31, id="multi-az-every-zone-out-of-capacity"),
    pytest.param(MULTI_AZ, AZ_CAPACITY_TEXT, 10, None, id="multi-az-capacity-found-in-another-zone"),
    pytest.param(("us-east-1a",), AZ_CAPACITY_TEXT, 120, 1, id="single-az-times-out-at-once"),
    pytest.param(MULTI_AZ, INSUFFICIENT_CAPACITY_TEXT, 120, 1, id="multi-az-insufficient-capacity-at-once"),
])
def test_repeated_launch_failures_time_the_group_out(zones, message, failing_minutes, expected):
    assert first_timed_out_minute(zones, message, failing_minutes) == expected


@pytest.mark.parametrize("desired, instance_state, short", [
    pytest.param(3, "running", False, id="desired-met"),
    pytest.param(3, "pending", False, id="pending-instances-count"),
    pytest.param(3, "terminated", True, id="terminated-instances-do-not-count"),
])
def test_shortfall_tracking(desired, instance_state, short):
    group = east_group(desired=desired, instances=3)
    state = GroupHealthState(shortfall_since={group.key: START - timedelta(hours=1)})
    result = assess(group_snapshot([group], instance_state=instance_state), START, state=state)
    assert (group.key in result.state.shortfall_since) is short
    assert (group.key in result.timed_out) is short


# --- spot price history --------------------------------------------------------------------------

def price(zone, minutes_before_now, value, now):
    return SpotPrice(REGION, zone, "p3.2xlarge", now - timedelta(minutes=minutes_before_now), value)


@pytest.mark.parametrize("points, bid, start_minutes, expected_minutes", [
    pytest.param([(60, 2.0)], 1.0, 300, 60, id="last-point-holds-until-now"),
    pytest.param([(400, 2.0), (200, 0.5)], 1.0, 300, 100, id="point-before-window-clipped-to-start"),
    pytest.param([(400, 2.0), (350, 0.5)], 1.0, 300, 0, id="point-wholly-before-window"),
    pytest.param([(100, 2.0), (70, 0.5), (50, 3.0), (40, 0.9)], 1.0, 300, 40, id="two-outbid-spells"),
    pytest.param([(100, 1.0)], 1.0, 300, 0, id="price-equal-to-bid-is-not-outbid"),
])
def test_outbid_seconds(points, bid, start_minutes, expected_minutes):
    now = START
    series = tuple((now - timedelta(minutes=m), value) for m, value in points)
    assert outbid_seconds(series, bid, now - timedelta(minutes=start_minutes), now) == expected_minutes * 60


@pytest.mark.parametrize("zone_points, timed_out", [
    # one zone outbid 30 min, the other 0: average 15 min
    pytest.param({"us-east-1a": [(40, 2.0), (10, 0.5)], "us-east-1b": [(300, 0.5)]}, False, id="average-under-20-min"),
    # 50 min and 0: average 25 min
    pytest.param({"us-east-1a": [(60, 2.0), (10, 0.5)], "us-east-1b": [(300, 0.5)]}, True, id="average-over-20-min"),
    # 30 min in both zones
    pytest.param({"us-east-1a": [(30, 2.0)], "us-east-1b": [(360, 0.2), (30, 2.0)]}, True, id="both-zones-30-min"),
    # an outbid spell 6 hours ago is outside the window
    pytest.param({"us-east-1a": [(400, 2.0), (301, 0.5)], "us-east-1b": [(300, 0.5)]}, False,
                 id="outbid-before-window"),
])
def test_spot_group_outbid_on_average(zone_points, timed_out):
    now = START
    group = east_group(desired=2, spot=True, spot_price="1.0", zones=("us-east-1a", "us-east-1b"))
    prices = [price(zone, m, value, now) for zone, points in zone_points.items() for m, value in points]
    result = assess(group_snapshot([group], spot_prices=prices), now)
    assert (group.key in result.timed_out) is timed_out
    if timed_out:
        assert result.timeouts[group.key].reason.startswith("outbid")
        assert [a.kind for a in result.actions] == ["group-timed-out"]


def test_on_demand_group_ignores_spot_prices():
    now = START
    group = east_group(desired=2, spot_price=None, zones=("us-east-1a",))
    result = assess(group_snapshot([group], spot_prices=[price("us-east-1a", 300, 9.0, now)]), now)
    assert result.timed_out == frozenset()


def test_outbid_group_is_notified_once_and_stays_out_while_outbid():
    now = START
    group = east_group(desired=2, spot=True, spot_price="1.0", zones=("us-east-1a",))
    snapshot = group_snapshot([group], spot_prices=[price("us-east-1a", 60, 2.0, now)])
    first = assess(snapshot, now)
    second = assess(snapshot, now + timedelta(minutes=1), state=first.state)
    assert [a.kind for a in first.actions] == ["group-timed-out"] and second.actions == ()
    assert second.timeouts[group.key].until == now + timedelta(minutes=61)


def test_group_with_several_types_is_outbid_only_if_its_least_outbid_type_is():
    now = START
    group = east_group(desired=2, spot=True, spot_price="1.0", types=("p3.2xlarge", "p3.8xlarge"))
    prices = [price("us-east-1a", 60, 2.0, now),
              SpotPrice(REGION, "us-east-1a", "p3.8xlarge", now - timedelta(minutes=60), 0.5)]
    assert assess(group_snapshot([group], spot_prices=prices), now).timed_out == frozenset()


def test_handled_activities_keep_only_ids_still_in_the_snapshot():
    group = east_group(desired=5, instances=5)
    state = GroupHealthState(handled_activities=frozenset({"gone", "a-1"}))
    result = assess(group_snapshot([group], [make_activity(INSTANCE_LIMIT_TEXT)]), START, state=state)
    assert result.state.handled_activities == {"a-1"}
    assert of_type(result.actions, SetDesiredCapacity) == []


# --- corrections not made are decided again ------------------------------------------------------

SUCCESS_LATER = make_activity("", "Successful", activity_id="a-2", start=START + timedelta(minutes=7))


@pytest.mark.parametrize("first, then, group, not_made, expected", [
    pytest.param(make_activity(INSTANCE_LIMIT_TEXT), [make_activity(INSTANCE_LIMIT_TEXT)], east_group(desired=5),
                 [SetDesiredCapacity], [("SetDesiredCapacity", 4)], id="correction-failed"),
    pytest.param(make_activity(INSTANCE_LIMIT_TEXT), [make_activity(INSTANCE_LIMIT_TEXT)], east_group(desired=5),
                 [], [], id="correction-made"),
    pytest.param(make_activity(SPOT_WAITING_TEXT, "WaitingForSpotInstanceId"),
                 [make_activity(SPOT_WAITING_TEXT, "WaitingForSpotInstanceId")], east_group(desired=5, spot=True),
                 [CancelSpotRequest], [("CancelSpotRequest", "sir-abc123")], id="cancel-failed-lowering-made"),
    pytest.param(make_activity(SPOT_WAITING_TEXT, "WaitingForSpotInstanceId"),
                 [make_activity(SPOT_CANCELLED_TEXT, "Cancelled")], east_group(desired=5, spot=True),
                 [SetDesiredCapacity], [("SetDesiredCapacity", 4)], id="lowering-failed-request-since-cancelled"),
    pytest.param(make_activity(SPOT_WAITING_TEXT, "WaitingForSpotInstanceId"),
                 [make_activity(SPOT_CANCELLED_TEXT, "Cancelled")], east_group(desired=5, spot=True),
                 [CancelSpotRequest], [], id="cancel-failed-request-since-cancelled"),
    pytest.param(make_activity(INSTANCE_LIMIT_TEXT), [make_activity(INSTANCE_LIMIT_TEXT), SUCCESS_LATER],
                 east_group(desired=5), [SetDesiredCapacity], [], id="a-later-launch-succeeded"),
])
def test_corrections_not_made_are_decided_again(first, then, group, not_made, expected):
    decided = assess(group_snapshot([group], [first]), START + timedelta(minutes=6))
    assert set(decided.origins) == set(of_type(decided.actions, (SetDesiredCapacity, CancelSpotRequest)))
    assert set(decided.origins.values()) == {"a-1"}
    unapplied = [action for action in decided.actions if type(action) in not_made]
    state = decided.state.with_unapplied(decided.origins, unapplied + of_type(decided.actions, Notify))

    again = assess(group_snapshot([group], then), START + timedelta(minutes=8), state=state)
    redone = of_type(again.actions, (SetDesiredCapacity, CancelSpotRequest))
    assert [(type(a).__name__, a.desired if isinstance(a, SetDesiredCapacity) else a.request_id)
            for a in redone] == expected
    assert again.origins == {action: "a-1" for action in redone}
    assert again.state.unapplied == frozenset()  # decided again now; the loop says if they fail again
    assert of_type(again.actions, Notify) == []  # the timeout was announced once


# A lowering whose call failed is retried to the target first decided, from the group as it is now:
# if the first call landed and only its reply was lost, the group is already there and is not lowered
# again. name -> (failed launch, the group at the retry, the desired capacity retried, if any)
SPOT_WAITING = make_activity(SPOT_WAITING_TEXT, "WaitingForSpotInstanceId")
RETRIED_TARGET_CASES = {
    "spot-not-landed": (SPOT_WAITING, east_group(desired=5, spot=True), 4),
    "spot-landed-reply-lost": (SPOT_WAITING, east_group(desired=4, spot=True), None),
    "spot-lowered-further-meanwhile": (SPOT_WAITING, east_group(desired=3, spot=True), None),
    "spot-min-raised-meanwhile": (SPOT_WAITING, east_group(desired=5, min_size=5, spot=True), None),
    "spot-min-raised-partly": (SPOT_WAITING, east_group(desired=6, min_size=5, spot=True), 5),
    "limit-not-landed": (make_activity(INSTANCE_LIMIT_TEXT), east_group(desired=5), 4),
    "limit-landed-reply-lost": (make_activity(INSTANCE_LIMIT_TEXT), east_group(desired=4), None),
    "limit-raised-again-meanwhile": (make_activity(INSTANCE_LIMIT_TEXT), east_group(desired=7), 4),
}


@pytest.mark.parametrize("launch, group_now, expected", RETRIED_TARGET_CASES.values(), ids=RETRIED_TARGET_CASES.keys())
def test_a_failed_lowering_is_retried_to_its_first_target(launch, group_now, expected):
    decided = assess(group_snapshot([east_group(desired=5, spot=group_now.is_spot)], [launch]),
                     START + timedelta(minutes=6))
    [lowering] = of_type(decided.actions, SetDesiredCapacity)
    assert lowering.desired == 4
    state = decided.state.with_unapplied(decided.origins, [lowering])
    again = assess(group_snapshot([group_now], [launch]), START + timedelta(minutes=8), state=state)
    retried = [(a.desired, a.previous) for a in of_type(again.actions, SetDesiredCapacity)]
    assert retried == ([] if expected is None else [(expected, group_now.desired)])
    assert of_type(again.actions, CancelSpotRequest) == []  # only what failed is done again
