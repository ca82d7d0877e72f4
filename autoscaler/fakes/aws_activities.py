"""Scaling activities as AWS Auto Scaling reports them, which moto 5.2 never does.

Texts follow what AWS writes, so the product's parsing of causes and status messages is tested
against the real wording (docs/decisions.md#launch-failures-and-region-overflow).
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..model.text import as_utc, utc_text
from .aws_protocol import AUTOSCALING_XMLNS, xml_element

MAX_RECORDS_LIMIT = 100  # AWS caps MaxRecords of DescribeScalingActivities at 100


@dataclass(frozen=True)
class ScalingActivity:
    region: str
    group_name: str
    status_code: str
    description: str
    cause: str
    start_time: datetime
    end_time: datetime | None
    status_message: str | None = None
    progress: int = 100
    details: str = "{}"
    activity_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def launch_cause(now: datetime, actual_before: int, target: int, user_request: str | None) -> str:
    """The cause AWS gives an instance launch, after the user request that led to it, if any."""
    launch = (
        f"At {utc_text(now)} an instance was started in response to a difference between "
        f"desired and actual capacity, increasing the capacity from {actual_before} to {target}."
    )
    if user_request is None:
        return launch
    return f"At {utc_text(now)} {user_request}.  {launch}"


def user_request_text(action: str, old: int, new: int, min_size: int, max_size: int) -> str:
    """How AWS words the user request in a cause, for the actions that change desired capacity."""
    change = f"changing the desired capacity from {old} to {new}"
    if action == "CreateAutoScalingGroup":
        return f"a user request created an AutoScalingGroup {change}"
    if action == "UpdateAutoScalingGroup":
        return (
            f"a user request update of AutoScalingGroup constraints to min: {min_size}, "
            f"max: {max_size}, desired: {new} {change}"
        )
    return f"a user request explicitly set group desired capacity {change}"


def launch_success_description(instance_id: str) -> str:
    return f"Launching a new EC2 instance: {instance_id}"


def launch_failure_description(status_message: str) -> str:
    return f"Launching a new EC2 instance.  Status Reason: {status_message}"


def launch_details(zone: str | None, subnet_id: str | None) -> str:
    details = {}
    if subnet_id:
        details["Subnet ID"] = subnet_id
    if zone:
        details["Availability Zone"] = zone
    return json.dumps(details)


class ActivityLog:
    """Activities per region, kept in the order they happened; read newest first, as AWS does."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._activities: list[ScalingActivity] = []

    def add(self, activity: ScalingActivity) -> ScalingActivity:
        with self._lock:
            self._activities.append(activity)
        return activity

    def update(self, activity_id: str, **changes) -> ScalingActivity:
        """Change an activity in place, as AWS does when its status moves on (InProgress -> Failed)."""
        with self._lock:
            for index, activity in enumerate(self._activities):
                if activity.activity_id == activity_id:
                    self._activities[index] = replace(activity, **changes)
                    return self._activities[index]
        raise KeyError(activity_id)

    def clear(self) -> None:
        with self._lock:
            self._activities.clear()

    def newest_first(
        self,
        region: str,
        group_name: str | None = None,
        activity_ids: frozenset[str] = frozenset(),
    ) -> list[ScalingActivity]:
        with self._lock:
            snapshot = list(self._activities)
        # Stable sort on start time only: activities with one start time stay newest-added first.
        selected = [
            activity
            for activity in reversed(snapshot)
            if activity.region == region
            and (group_name is None or activity.group_name == group_name)
            and (not activity_ids or activity.activity_id in activity_ids)
        ]
        return sorted(selected, key=lambda activity: activity.start_time, reverse=True)


def describe_scaling_activities_xml(
    activities: list[ScalingActivity], max_records: int, next_token: str | None, request_id: str
) -> str:
    """One page of DescribeScalingActivities; NextToken is the offset of the next page."""
    start = int(next_token) if next_token else 0
    page_size = max(1, min(max_records, MAX_RECORDS_LIMIT))
    page = activities[start : start + page_size]
    following = start + page_size if start + page_size < len(activities) else None
    members = "".join(_member_xml(activity) for activity in page)
    return (
        f'<DescribeScalingActivitiesResponse xmlns="{AUTOSCALING_XMLNS}">'
        f"<DescribeScalingActivitiesResult><Activities>{members}</Activities>"
        f"{xml_element('NextToken', following)}</DescribeScalingActivitiesResult>"
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        "</DescribeScalingActivitiesResponse>"
    )


def _member_xml(activity: ScalingActivity) -> str:
    return (
        "<member>"
        + xml_element("ActivityId", activity.activity_id)
        + xml_element("AutoScalingGroupName", activity.group_name)
        + xml_element("Description", activity.description)
        + xml_element("Cause", activity.cause)
        + xml_element("StartTime", _xml_time(activity.start_time))
        + xml_element("EndTime", _xml_time(activity.end_time) if activity.end_time else None)
        + xml_element("StatusCode", activity.status_code)
        + xml_element("StatusMessage", activity.status_message)
        + xml_element("Progress", activity.progress)
        + xml_element("Details", activity.details)
        + "</member>"
    )


def _xml_time(moment: datetime) -> str:
    """AWS's own XML form, to the millisecond: 2026-11-27T10:00:00.000Z."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
