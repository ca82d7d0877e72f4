"""PURE: scaling activities, instance counts and spot prices -> group timeouts and capacity corrections.

docs/decisions.md#launch-failures-and-region-overflow. A group whose latest launch failed is *timed out*: scale up skips it for
``settings.group_timeout`` seconds from the failed activity's start, so its pods overflow to the
next candidate group. Some failures also set desired capacity back, so AWS stops retrying a
launch that cannot succeed. The loop carries a ``GroupHealthState`` from one call to the next;
this module never reads the clock and never talks to AWS.

Decisions written down here, where the spec leaves room:

- Only the latest launch activity of a group counts. A failure followed by a success in the same
  snapshot is history: no correction, no new timeout. A timeout already recorded runs its full
  time even when a later launch succeeds ("a later successful launch clears nothing early").
- A failure whose timeout has already run out (started ``group_timeout`` ago or more) is history
  too: no correction is applied for it.
- "Spot instance request: sir-... has been cancelled." is what the waiting launch turns into once
  its request is cancelled (by us, after 5 minutes). It times the group out from the launch's start
  like the waiting one did, and corrects nothing (the cancellation came with its correction). So a
  restarted autoscaler, which knows only the last hour's activities, keeps the group out as well.
- Not enough capacity in the requested zone is a failure only for a single-AZ group. A multi-AZ
  group's next launch goes to another of its zones, so it is neither corrected nor timed out; if
  every zone is out of capacity, the silent-failure rule times it out after --instance-init-time.
- Instance limit: "requested" is the capacity the launch was raising to (the cause's "to"
  number); the account-wide count in the message says nothing about this group. Without a
  parsable cause, the group's current desired capacity stands in for it.
- Spot prices: a zone's price holds from its timestamp until the next point in that zone (the
  last one until ``now``), clipped to the 5-hour window. The outbid time is averaged over the
  group's zones that have price history (a zone without history gives no evidence). A group that
  can launch several types is outbid only if even its least-outbid type is. The timeout is renewed
  every loop while the group is outbid.
- A group is notified as timed out once, when it goes from not timed out to timed out. Capacity
  corrections and cancellations are reported by the actuator when it has made them (and logged as
  ``[dry-run] would ...`` in a dry run), so Slack never hears of a correction that failed.
- ``handled_activities`` keeps only ids still present in the snapshot, which holds the last
  hour's activities each loop; older ids can never come back.
- A correction that was not made (its call failed, or the plan stopped before it) is decided again
  next loop, from the world as it is then: the loop hands back what was not applied
  (``GroupHealthState.with_unapplied``), using ``HealthAssessment.origins`` to tell which activity
  each action answers. Only the actions not made are decided again, never the whole activity: a
  spot launch whose cancellation failed but whose lowering was made must not be lowered twice.
  The retry lasts as long as the activity is the group's latest failure within its timeout.
- A lowering is retried to the absolute target first decided, never recomputed from the group's
  desired capacity then: a call that landed but whose reply was lost would otherwise lower the group
  a second time (a spot launch's ``desired - 1``). The retry is skipped once desired capacity is at or
  below that target, and never goes below min size.
"""
from __future__ import annotations

import enum
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Iterable, Mapping, Optional

from ..model import config
from ..model.config import Settings
from ..model.objects import FINISHED_STATUS_CODES, Group, ScalingActivity, Snapshot, SpotPrice
from ..model.plan import Action, CancelSpotRequest, Notify, SetDesiredCapacity

# Spot rules (docs/decisions.md#launch-failures-and-region-overflow), named so that tests and the sandbox can shorten them.
SPOT_HISTORY_SECONDS = 5 * 3600
MAX_AVERAGE_OUTBID_SECONDS = 20 * 60

FAILED_STATUS_CODES = frozenset({"Failed", "Cancelled"})
WAITING_FOR_SPOT = "WaitingForSpotInstanceId"
LIVE_INSTANCE_STATES = frozenset({"pending", "running"})

GroupKey = tuple[str, str]


class FailureKind(str, enum.Enum):
    INSTANCE_LIMIT = "instance-limit"
    VOLUME_LIMIT = "volume-limit"
    INSUFFICIENT_CAPACITY = "insufficient-capacity"
    AZ_CAPACITY = "az-capacity"
    SPOT_COUNT = "spot-count"
    SPOT_WAITING = "spot-waiting"
    SPOT_CANCELLED = "spot-cancelled"


@dataclass(frozen=True)
class FailurePattern:
    kind: FailureKind
    status_message: re.Pattern[str]
    status_codes: frozenset[str]
    meaning: str  # what AWS is saying, for logs, action reasons and Slack


# The table of docs/decisions.md#launch-failures-and-region-overflow: one place, matched on the stable words of AWS's text, never on
# the numbers, instance types, zones or request ids inside it.
FAILURE_PATTERNS: tuple[FailurePattern, ...] = (
    FailurePattern(
        FailureKind.INSTANCE_LIMIT,
        re.compile(r"You have requested more instances \(\d+\) than your current instance limit of \d+ allows"),
        FAILED_STATUS_CODES,
        "EC2 instance limit of the account reached for this instance type",
    ),
    FailurePattern(
        FailureKind.VOLUME_LIMIT,
        re.compile(r"Client\.VolumeLimitExceeded|Volume limit exceeded"),
        FAILED_STATUS_CODES,
        "EBS volume limit of the account exceeded",
    ),
    FailurePattern(
        FailureKind.INSUFFICIENT_CAPACITY,
        re.compile(r"Insufficient capacity\."),
        FAILED_STATUS_CODES,
        "EC2 has insufficient capacity for this instance type",
    ),
    FailurePattern(
        FailureKind.AZ_CAPACITY,
        re.compile(r"We currently do not have sufficient \S+ capacity in the Availability Zone you requested"),
        FAILED_STATUS_CODES,
        "EC2 has insufficient capacity for this instance type in the group's availability zone",
    ),
    FailurePattern(
        FailureKind.SPOT_COUNT,
        re.compile(r"Max spot instance count exceeded"),
        FAILED_STATUS_CODES,
        "maximum spot instance count of the account exceeded",
    ),
    FailurePattern(
        FailureKind.SPOT_WAITING,
        re.compile(r"Placed Spot instance request: sir-\w+\. Waiting for instance\(s\)"),
        frozenset({WAITING_FOR_SPOT}),
        f"spot request not fulfilled within {config.SPOT_WAIT_SECONDS // 60} minutes",
    ),
    # Not a row of the table: the spot-waiting row's launch after its request was cancelled.
    FailurePattern(
        FailureKind.SPOT_CANCELLED,
        re.compile(r"Spot instance request: sir-\w+ has been cancelled"),
        FAILED_STATUS_CODES,
        "spot request cancelled before it was fulfilled",
    ),
)
_MEANINGS = {pattern.kind: pattern.meaning for pattern in FAILURE_PATTERNS}

LAUNCH_CAUSE = re.compile(r"increasing the capacity from (?P<before>\d+) to (?P<requested>\d+)")
AZ_REBALANCE_CAUSE = re.compile(r"launched to aid in balancing the group's zones")
SPOT_REQUEST_ID = re.compile(r"\b(sir-\w+)")


def classify_failure(status_message: str, status_code: str) -> Optional[FailureKind]:
    """Which row of the table in docs/decisions.md#launch-failures-and-region-overflow an activity's status is, or None for anything else."""
    for pattern in FAILURE_PATTERNS:
        if status_code in pattern.status_codes and pattern.status_message.search(status_message or ""):
            return pattern.kind
    return None


@dataclass(frozen=True)
class UnappliedCorrection:
    """A correction decided but not made (its call failed, or the plan was stopped first)."""

    activity_id: str  # the scaling activity it answers
    action: type[SetDesiredCapacity] | type[CancelSpotRequest]
    target: Optional[int] = None  # the desired capacity a lowering aimed at


@dataclass(frozen=True)
class TimeoutRecord:
    until: datetime
    reason: str
    # Why, as a short stable word (a FailureKind value, or one of the two below): metric labels.
    kind: str = ""


SILENT_FAILURE = "silent-launch-failure"
SPOT_OUTBID = "spot-outbid"


@dataclass(frozen=True)
class GroupHealthState:
    """What the loop carries between calls; ``GroupHealthState()`` to start."""

    handled_activities: frozenset[str] = frozenset()  # activity ids whose corrections were decided
    timeouts: Mapping[GroupKey, TimeoutRecord] = field(default_factory=dict)
    shortfall_since: Mapping[GroupKey, datetime] = field(default_factory=dict)
    # Corrections decided but not made: decided again.
    unapplied: frozenset[UnappliedCorrection] = frozenset()

    def with_unapplied(self, origins: Mapping[Action, str], actions: Iterable[Action]) -> GroupHealthState:
        """This state, with those of ``actions`` that are corrections (keys of ``origins``) to be
        decided again by the next assessment; a lowering keeps the desired capacity it aimed at."""
        retry = set()
        for action in actions:
            if action in origins and isinstance(action, SetDesiredCapacity):
                retry.add(UnappliedCorrection(origins[action], SetDesiredCapacity, action.desired))
            elif action in origins and isinstance(action, CancelSpotRequest):
                retry.add(UnappliedCorrection(origins[action], CancelSpotRequest))
        return replace(self, unapplied=self.unapplied | retry) if retry else self


@dataclass(frozen=True)
class HealthAssessment:
    state: GroupHealthState
    actions: tuple[Action, ...]
    timed_out: frozenset[GroupKey]  # Group.key of every group timed out at ``now``
    timeouts: Mapping[GroupKey, TimeoutRecord]  # the same groups, with until and reason
    # Each capacity correction or spot cancellation among ``actions`` -> the activity id it answers.
    origins: Mapping[Action, str] = field(default_factory=dict)

    def describe_timeouts(self) -> tuple[str, ...]:
        return tuple(
            f"{name} ({region}) timed out until {record.until.isoformat()}: {record.reason}"
            for (region, name), record in sorted(self.timeouts.items())
        )


def assess_groups(state: GroupHealthState, snapshot: Snapshot, settings: Settings, now: datetime) -> HealthAssessment:
    timeout = timedelta(seconds=settings.group_timeout)
    timeouts = {key: record for key, record in state.timeouts.items() if record.until > now}
    timed_out_before = frozenset(timeouts)
    activities_by_group: dict[GroupKey, list[ScalingActivity]] = defaultdict(list)
    for activity in snapshot.activities:
        activities_by_group[(activity.region, activity.group_name)].append(activity)
    node_instance_ids = frozenset(node.instance_id for node in snapshot.nodes if node.instance_id)
    prices = _index_prices(snapshot.spot_prices)
    handled = set(state.handled_activities & {a.activity_id for a in snapshot.activities})
    shortfall_since: dict[GroupKey, datetime] = {}
    actions: list[Action] = []
    origins: dict[Action, str] = {}

    for group in sorted(snapshot.groups, key=lambda g: g.key):
        activities = activities_by_group.get(group.key, [])
        latest = _latest_launch(activities)
        kind = _failure_of(latest, group, now, settings) if latest else None
        if latest is not None and kind is not None and latest.start_time + timeout > now:
            meaning = _MEANINGS[kind]
            reason = f"{meaning} (activity {latest.activity_id} started {latest.start_time.isoformat()})"
            _extend(timeouts, group.key, TimeoutRecord(latest.start_time + timeout, reason, kind.value))
            if latest.activity_id not in handled:
                handled.add(latest.activity_id)
                corrections = _corrections(group, kind, latest, node_instance_ids)
            else:
                corrections = _retried_corrections(state.unapplied, group, kind, latest, node_instance_ids)
            actions.extend(corrections)
            origins.update((action, latest.activity_id) for action in corrections)

        since = _shortfall_start(group, snapshot, state, now)
        if since is not None:
            shortfall_since[group.key] = since
            waited = (now - since).total_seconds()
            if (waited > settings.instance_init_time and group.key not in timeouts
                    and not _explained(activities, group, since, now, settings)):
                live = group.desired - _shortfall(group, snapshot)
                reason = (
                    f"desired capacity {group.desired} above its {live} running or pending instances for"
                    f" {waited / 60:.0f} min with no scaling activity explaining it (silent launch failure)"
                )
                timeouts[group.key] = TimeoutRecord(now + timeout, reason, SILENT_FAILURE)

        outbid = _spot_outbid_reason(group, prices, now)
        if outbid:
            _extend(timeouts, group.key, TimeoutRecord(now + timeout, outbid, SPOT_OUTBID))

        if group.key in timeouts and group.key not in timed_out_before:
            record = timeouts[group.key]
            actions.append(Notify(
                kind="group-timed-out",
                message=f"{group.describe()} is skipped by scale up until {record.until.isoformat()}: {record.reason}",
            ))

    new_state = GroupHealthState(frozenset(handled), dict(timeouts), shortfall_since)
    return HealthAssessment(new_state, tuple(actions), frozenset(timeouts), dict(timeouts), origins)


def _latest_launch(activities: list[ScalingActivity]) -> Optional[ScalingActivity]:
    latest = None
    for activity in activities:  # oldest first; on equal start times the later entry wins
        if _is_launch(activity) and (latest is None or activity.start_time >= latest.start_time):
            latest = activity
    return latest


def _is_launch(activity: ScalingActivity) -> bool:
    return bool(
        activity.description.startswith("Launching")
        or activity.status_code == WAITING_FOR_SPOT
        or LAUNCH_CAUSE.search(activity.cause or "")
        or AZ_REBALANCE_CAUSE.search(activity.cause or "")
        or classify_failure(activity.status_message, activity.status_code) is not None
    )


def _failure_of(activity: ScalingActivity, group: Group, now: datetime, settings: Settings) -> Optional[FailureKind]:
    """The table row that applies to this launch of this group now, if any."""
    kind = classify_failure(activity.status_message, activity.status_code)
    if kind is FailureKind.AZ_CAPACITY and len(group.zones) != 1:
        return None
    if kind is FailureKind.SPOT_WAITING:
        waiting = (now - activity.start_time).total_seconds()
        if waiting <= settings.spot_wait_seconds or AZ_REBALANCE_CAUSE.search(activity.cause or ""):
            return None
    return kind


def _corrections(group: Group, kind: FailureKind, activity: ScalingActivity,
                 node_instance_ids: frozenset[str]) -> list[Action]:
    meaning = _MEANINGS[kind]
    cause = LAUNCH_CAUSE.search(activity.cause or "")
    actions: list[Action] = []
    target: Optional[int] = None
    if kind is FailureKind.INSTANCE_LIMIT:
        requested = int(cause.group("requested")) if cause else group.desired
        target = requested - 1
    elif kind in (FailureKind.INSUFFICIENT_CAPACITY, FailureKind.AZ_CAPACITY):
        target = int(cause.group("before")) if cause else None
    elif kind is FailureKind.SPOT_COUNT:
        target = sum(1 for instance_id in group.instance_ids if instance_id in node_instance_ids)
    elif kind is FailureKind.SPOT_WAITING:
        request = SPOT_REQUEST_ID.search(activity.status_message)
        if request:
            actions.append(CancelSpotRequest(request.group(1), group.region, group.name, reason=meaning))
        target = group.desired - 1

    if target is not None:
        # A correction only ever lowers desired capacity, never below min size.
        target = max(group.min_size, min(target, group.max_size))
        if target < group.desired:
            actions.append(SetDesiredCapacity(group.name, group.region, target, group.desired, reason=meaning))
    # No Notify here: the actuator reports each correction to Slack once it has been made.
    return actions


def _retried_corrections(unapplied: frozenset[UnappliedCorrection], group: Group, kind: FailureKind, activity: ScalingActivity,
                         node_instance_ids: frozenset[str]) -> list[Action]:
    """The corrections of an activity already handled that were not made: a cancellation decided
    afresh, a lowering to the target first decided (see the module's notes)."""
    retry = [correction for correction in unapplied if correction.activity_id == activity.activity_id]
    actions: list[Action] = []
    # Once the request is cancelled (by us or by AWS) there is nothing left to cancel.
    if any(correction.action is CancelSpotRequest for correction in retry) and kind is not FailureKind.SPOT_CANCELLED:
        actions.extend(action for action in _corrections(group, kind, activity, node_instance_ids)
                       if isinstance(action, CancelSpotRequest))
    targets = [correction.target for correction in retry
               if correction.action is SetDesiredCapacity and correction.target is not None]
    if targets:
        target = max(group.min_size, min(targets))
        if target < group.desired:
            meaning = _MEANINGS[FailureKind.SPOT_WAITING if kind is FailureKind.SPOT_CANCELLED else kind]
            actions.append(SetDesiredCapacity(group.name, group.region, target, group.desired, reason=meaning))
    return actions


def _extend(timeouts: dict[GroupKey, TimeoutRecord], key: GroupKey, record: TimeoutRecord) -> None:
    current = timeouts.get(key)
    if current is None or record.until > current.until:
        timeouts[key] = record


def _shortfall(group: Group, snapshot: Snapshot) -> int:
    """How many instances the group's desired capacity is above its running or pending ones."""
    live = 0
    for instance_id in group.instance_ids:
        instance = snapshot.instances.get(instance_id)
        if instance is not None and instance.state in LIVE_INSTANCE_STATES:
            live += 1
    return group.desired - live


def _shortfall_start(group: Group, snapshot: Snapshot, state: GroupHealthState, now: datetime) -> Optional[datetime]:
    if _shortfall(group, snapshot) <= 0:
        return None
    return state.shortfall_since.get(group.key, now)


def _explained(activities: list[ScalingActivity], group: Group, since: datetime, now: datetime,
               settings: Settings) -> bool:
    """A launch still under way, or a failure of the table that ended during the shortfall,
    accounts for it: AWS is still trying, or the failure's own timeout covers the group. Only a
    failure this group is timed out for counts: a multi-AZ group's AZ-capacity failures are not,
    and if they explained the shortfall too, a group out of capacity in every zone would never be
    timed out and its pods would never overflow."""
    for activity in activities:
        if not _is_launch(activity):
            continue
        if activity.status_code not in FINISHED_STATUS_CODES:
            return True
        ended = activity.end_time or activity.start_time
        if ended >= since and _failure_of(activity, group, now, settings) is not None:
            return True
    return False


PriceSeries = tuple[tuple[datetime, float], ...]


def _index_prices(spot_prices: tuple[SpotPrice, ...]) -> Mapping[tuple[str, str], Mapping[str, PriceSeries]]:
    """(region, instance type) -> zone -> [(timestamp, price)], oldest first."""
    series: dict[tuple[str, str], dict[str, list[tuple[datetime, float]]]] = defaultdict(lambda: defaultdict(list))
    for point in spot_prices:
        series[(point.region, point.instance_type)][point.zone].append((point.timestamp, point.price))
    return {
        key: {zone: tuple(sorted(points)) for zone, points in zones.items()}
        for key, zones in series.items()
    }


def outbid_seconds(points: PriceSeries, bid: float, start: datetime, end: datetime) -> float:
    """Seconds within [start, end] during which the price was above the bid.

    Each point's price holds until the next point; the last one holds until ``end``.
    """
    total = 0.0
    for index, (timestamp, price) in enumerate(points):
        if price <= bid:
            continue
        holds_until = points[index + 1][0] if index + 1 < len(points) else end
        begin, finish = max(timestamp, start), min(holds_until, end)
        if finish > begin:
            total += (finish - begin).total_seconds()
    return total


def _spot_outbid_reason(group: Group, prices: Mapping[tuple[str, str], Mapping[str, PriceSeries]], now: datetime) -> Optional[str]:
    if not group.is_spot or not group.spot_price:
        return None
    try:
        bid = float(group.spot_price)
    except ValueError:
        return None
    start = now - timedelta(seconds=SPOT_HISTORY_SECONDS)
    least: Optional[tuple[float, str]] = None
    for instance_type in sorted({shape.instance_type for shape in group.shapes}):
        zones = prices.get((group.region, instance_type), {})
        wanted = [zone for zone in (group.zones or sorted(zones)) if zone in zones]
        if not wanted:
            continue
        average = sum(outbid_seconds(zones[zone], bid, start, now) for zone in wanted) / len(wanted)
        if least is None or average < least[0]:
            least = (average, instance_type)
    if least is None or least[0] <= MAX_AVERAGE_OUTBID_SECONDS:
        return None
    average, instance_type = least
    return (
        f"outbid for {average / 60:.0f} min on average over the last {SPOT_HISTORY_SECONDS // 3600} hours"
        f" at bid {group.spot_price} for {instance_type}"
    )
