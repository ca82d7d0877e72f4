"""FakeAws: a moto server on 127.0.0.1 with a shim for the gaps of moto 5.2 that matter here.

The shim (a WSGI middleware in front of moto's app, plus a hook on moto's instance launch):

- rejects SetDesiredCapacity outside [MinSize, MaxSize] (and UpdateAutoScalingGroup with a
  DesiredCapacity outside its bounds) with AWS's ValidationError texts;
- answers DescribeScalingActivities from its own log: every instance launch moto makes is logged
  as a Successful activity with AWS's cause text, and tests add more with `add_activity`;
- `fail_launches` makes a group's launches fail: moto still stores the desired capacity (so
  DescribeAutoScalingGroups shows it), but the group's launch step is replaced by one that starts
  no instance and logs a Failed activity. Hooking the launch step, rather than undoing launches
  after SetDesiredCapacity, also covers every other path on which moto launches (an
  UpdateAutoScalingGroup, a replacement after a terminate without decrement);
- `inject_faults` answers the next N calls of an action with an error (throttling, 5xx);
- records every call as (service, action, region) in `calls`;
- `set_clock` makes instance LaunchTime and activity times follow a test clock;
- an EC2 resource's tags are read from moto's index by resource id, not by scanning every tag in
  the region per resource (aws_tags.py): DescribeInstances then grows with instances, not with
  instances x tags.

Intended use: one server per test session, reset per test (`test/conftest.py` has the fixtures
`fake_aws_server` (session) and `fake_aws` (function, resets)). Starting a server is cheap, but
the first call of a process builds moto's backends (about 1.5 s); after a reset the first call
in a region costs tens of milliseconds. The server skips moto's default AMIs
(MOTO_EC2_LOAD_DEFAULT_AMIS=false while it runs), which makes that per-region cost about 15 ms;
use `FAKE_AMI_ID` and never DescribeImages.

Moto's state is global to the process: one FakeAws runs at a time, and `mock_aws` in the same
process shares (and resets) the same state.
"""

from __future__ import annotations

import os
import threading
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, NamedTuple

import boto3
import moto.ec2.models.instances as moto_ec2_instances
from botocore.config import Config
from moto.autoscaling.models import FakeAutoScalingGroup, autoscaling_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from ..model.text import as_utc
from . import aws_builders, aws_tags
from .net import send_small_replies_at_once
from .aws_activities import (
    ActivityLog,
    ScalingActivity,
    describe_scaling_activities_xml,
    launch_cause,
    launch_details,
    launch_failure_description,
    launch_success_description,
    user_request_text,
)
from .aws_builders import FAKE_AMI_ID
from .aws_protocol import AwsRequest, error_response, read_request, xml_response

__all__ = ["ApiCall", "FakeAws", "FAKE_AMI_ID", "INSUFFICIENT_CAPACITY"]

INSUFFICIENT_CAPACITY = "Insufficient capacity. Launching EC2 instance failed."
READ_ONLY_PREFIXES = ("Describe", "List", "Get")
FINISHED_STATUS_CODES = ("Successful", "Failed", "Cancelled")
_DESIRED_CAPACITY_ACTIONS = ("CreateAutoScalingGroup", "SetDesiredCapacity", "UpdateAutoScalingGroup")
_DEFAULT_FAULTS = {  # status -> code botocore treats as that kind of failure
    400: "Throttling",
    500: "InternalFailure",
    503: "ServiceUnavailable",
}


class ApiCall(NamedTuple):
    service: str | None
    action: str | None
    region: str | None


@dataclass
class _Fault:
    status: int
    code: str
    message: str
    remaining: int


@dataclass(frozen=True)
class _LaunchFailure:
    status_code: str
    status_message: str


class _QuietRequestHandler(MotoRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per request on stderr drowns test output; errors are still logged."""


class FakeAws:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._moto_app = DomainDispatcherApplication(create_backend_app)
        self._lock = threading.Lock()
        self._request_context = threading.local()
        self._clients: dict[tuple[str, str, int | None], Any] = {}
        self._saved_ami_setting: str | None = None
        self.activities = ActivityLog()
        self.calls: list[ApiCall] = []
        self._faults: dict[str, _Fault] = {}
        self._failing: dict[tuple[str, str], _LaunchFailure] = {}
        self._clock: Callable[[], datetime] | None = None

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> "FakeAws":
        global _active
        if _active is not None:
            raise RuntimeError("a FakeAws is already running; moto's state is global to the process")
        self._saved_ami_setting = os.environ.get("MOTO_EC2_LOAD_DEFAULT_AMIS")
        os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = "false"
        self._server = make_server(
            self._host, self._port, self._wsgi, threaded=True, request_handler=_QuietRequestHandler
        )
        send_small_replies_at_once(self._server)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-aws", daemon=True)
        self._thread.start()
        _active = self
        _install_launch_hook()
        aws_tags.install()
        return self

    def stop(self) -> None:
        global _active
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._server = self._thread = None
        self._clients.clear()  # they point at this server's port
        self.set_clock(None)
        _active = None
        _remove_launch_hook()
        aws_tags.remove()
        if self._saved_ami_setting is None:
            os.environ.pop("MOTO_EC2_LOAD_DEFAULT_AMIS", None)
        else:
            os.environ["MOTO_EC2_LOAD_DEFAULT_AMIS"] = self._saved_ami_setting

    def __enter__(self) -> "FakeAws":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeAws is not started")
        return f"http://{self._server.host}:{self._server.port}"

    def reset(self) -> None:
        """Fresh moto state and a fresh shim: no activities, faults, failures, calls or clock."""
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")).close()
        with self._lock:
            self._faults.clear()
            self._failing.clear()
            self.calls.clear()
        self.activities.clear()
        self.set_clock(None)

    # ---- clients ----------------------------------------------------------------------------

    def env(self, inherit: Mapping[str, str] | None = None, region: str = "us-east-1") -> dict[str, str]:
        """Environment for a subprocess that must reach this fake and nothing else.

        With `inherit` (say os.environ), its AWS_* variables (a profile, a session token) are
        dropped and the rest kept.
        """
        base = {key: value for key, value in (inherit or {}).items() if not key.startswith("AWS_")}
        return {
            **base,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def client(self, service: str, region: str = "us-east-1", *, max_attempts: int | None = None) -> Any:
        """A boto3 client against this fake; `max_attempts=1` disables retries."""
        key = (service, region, max_attempts)
        if key not in self._clients:
            config = Config(retries={"mode": "standard"} if max_attempts is None
                            else {"mode": "standard", "total_max_attempts": max_attempts})
            session = boto3.session.Session(
                aws_access_key_id="testing", aws_secret_access_key="testing", region_name=region
            )
            self._clients[key] = session.client(  # type: ignore[call-overload]  # the service is a run-time value
                service, endpoint_url=self.url, config=config
            )
        return self._clients[key]

    # ---- test controls ----------------------------------------------------------------------

    def inject_faults(
        self,
        action: str,
        *,
        count: int = 1,
        status: int = 400,
        code: str | None = None,
        message: str = "Rate exceeded",
    ) -> None:
        """Answer the next `count` calls of `action` with an error (default: 400 Throttling)."""
        fault_code = code or _DEFAULT_FAULTS.get(status, "InternalFailure")
        with self._lock:
            self._faults[action] = _Fault(status, fault_code, message, count)

    def fail_launches(
        self,
        region: str,
        group: str,
        status_message: str = INSUFFICIENT_CAPACITY,
        status_code: str = "Failed",
    ) -> None:
        with self._lock:
            self._failing[(region, group)] = _LaunchFailure(status_code, status_message)

    def stop_failing(self, region: str, group: str) -> None:
        with self._lock:
            self._failing.pop((region, group), None)

    def add_activity(
        self,
        region: str,
        group: str,
        status_code: str,
        status_message: str | None = None,
        *,
        description: str | None = None,
        cause: str = "",
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        progress: int = 100,
    ) -> ScalingActivity:
        """Log an activity; times default to the clock, naive times are taken as UTC."""
        start = as_utc(start_time) if start_time else self.now()
        if end_time is not None:
            end: datetime | None = as_utc(end_time)
        else:
            end = start if status_code in FINISHED_STATUS_CODES else None
        if description is None:
            description = (
                launch_failure_description(status_message)
                if status_message
                else "Launching a new EC2 instance"
            )
        return self.activities.add(
            ScalingActivity(
                region=region,
                group_name=group,
                status_code=status_code,
                status_message=status_message,
                description=description,
                cause=cause,
                start_time=start,
                end_time=end,
                progress=progress,
            )
        )

    def set_clock(self, clock: Callable[[], datetime] | datetime | None) -> None:
        """Make instance LaunchTime and activity times follow `clock` (None: the real clock)."""
        if isinstance(clock, datetime):
            fixed = as_utc(clock)
            clock = lambda: fixed  # noqa: E731
        self._clock = clock
        if clock is None:
            moto_ec2_instances.utcnow = _moto_utcnow
        else:
            # moto keeps naive UTC datetimes
            moto_ec2_instances.utcnow = lambda: self.now().replace(tzinfo=None)

    def now(self) -> datetime:
        return as_utc(self._clock()) if self._clock else datetime.now(timezone.utc)

    def mutating_calls(self) -> list[ApiCall]:
        with self._lock:
            return [
                call
                for call in self.calls
                if call.action and not call.action.startswith(READ_ONLY_PREFIXES)
            ]

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()

    def create_group(self, region: str, name: str, cluster: str, **options: Any) -> str:
        """See aws_builders.create_group for the options."""
        return aws_builders.create_group(
            self.client("autoscaling", region), self.client("ec2", region), region, name, cluster, **options
        )

    # ---- the middleware -----------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if environ.get("PATH_INFO", "").startswith("/moto-api"):
            return self._moto_app(environ, start_response)
        request = read_request(environ)
        with self._lock:
            self.calls.append(ApiCall(request.service, request.action, request.region))
            fault = self._take_fault(request.action)
        if fault is not None:
            return error_response(request, fault.status, fault.code, fault.message)(environ, start_response)
        if request.service == "autoscaling" and request.region:
            answer = self._answer_autoscaling(request)
            if answer is not None:
                return answer(environ, start_response)
        self._request_context.user_request = self._user_request(request)
        try:
            return self._moto_app(environ, start_response)
        finally:
            self._request_context.user_request = None

    def _take_fault(self, action: str | None) -> _Fault | None:
        fault = self._faults.get(action or "")
        if fault is None:
            return None
        fault.remaining -= 1
        if fault.remaining <= 0:
            del self._faults[action or ""]
        return fault

    def _answer_autoscaling(self, request: AwsRequest) -> Any:
        if request.action == "DescribeScalingActivities":
            return self._describe_scaling_activities(request)
        if request.action not in ("SetDesiredCapacity", "UpdateAutoScalingGroup"):
            return None
        group = _moto_group(request.region or "", request.param("AutoScalingGroupName") or "")
        desired = request.param("DesiredCapacity")
        if group is None or desired is None:
            return None
        message = _size_limit_violation(
            request.action,
            int(desired),
            int(request.param("MinSize") or group.min_size or 0),
            int(request.param("MaxSize") or group.max_size or 0),
        )
        return None if message is None else error_response(request, 400, "ValidationError", message)

    def _describe_scaling_activities(self, request: AwsRequest) -> Any:
        activity_ids = frozenset(
            value for key, value in request.params.items() if key.startswith("ActivityIds.member.")
        )
        activities = self.activities.newest_first(
            request.region or "", request.param("AutoScalingGroupName"), activity_ids
        )
        xml = describe_scaling_activities_xml(
            activities,
            int(request.param("MaxRecords") or 100),
            request.param("NextToken"),
            str(uuid.uuid4()),
        )
        return xml_response(xml)

    def _user_request(self, request: AwsRequest) -> tuple[str, str, str] | None:
        """(region, group, wording) of a user request that sets desired capacity, for causes."""
        if request.service != "autoscaling" or request.action not in _DESIRED_CAPACITY_ACTIONS:
            return None
        region, name = request.region or "", request.param("AutoScalingGroupName") or ""
        desired = request.param("DesiredCapacity")
        group = _moto_group(region, name)
        if request.action == "CreateAutoScalingGroup":
            old, min_size, max_size = 0, 0, 0
        elif group is None:
            return None
        else:
            old, min_size, max_size = group.desired_capacity or 0, group.min_size or 0, group.max_size or 0
        if desired is None:
            return None
        text = user_request_text(
            request.action or "",
            old,
            int(desired),
            int(request.param("MinSize") or min_size),
            int(request.param("MaxSize") or max_size),
        )
        return region, name, text

    # ---- the launch hook (runs inside moto, on the request's thread) ---------------------------

    def _launch(
        self,
        group: FakeAutoScalingGroup,
        count: int,
        tags: dict[str, str],
        launch: Callable[..., None],
    ) -> None:
        now = self.now()
        user_request = getattr(self._request_context, "user_request", None)
        wording = None
        if user_request and user_request[:2] == (group.region, group.name):
            wording = user_request[2]
        cause = launch_cause(now, len(group.instance_states), group.desired_capacity or 0, wording)
        with self._lock:
            failure = self._failing.get((group.region, group.name))
        if failure is not None:
            self.activities.add(
                ScalingActivity(
                    region=group.region,
                    group_name=group.name,
                    status_code=failure.status_code,
                    status_message=failure.status_message,
                    description=launch_failure_description(failure.status_message),
                    cause=cause,
                    start_time=now,
                    end_time=now,
                )
            )
            return
        known = {state.instance.id for state in group.instance_states}
        launch(group, count, tags)
        for state in group.instance_states:
            instance = state.instance
            if instance.id in known:
                continue
            self.activities.add(
                ScalingActivity(
                    region=group.region,
                    group_name=group.name,
                    status_code="Successful",
                    description=launch_success_description(instance.id),
                    cause=cause,
                    start_time=now,
                    end_time=now,
                    details=launch_details(instance.availability_zone, instance.subnet_id),
                )
            )


def _size_limit_violation(action: str | None, desired: int, min_size: int, max_size: int) -> str | None:
    """AWS's ValidationError text for a desired capacity outside the group's bounds, if it is."""
    if action == "SetDesiredCapacity":
        if desired > max_size:
            return (
                f"New SetDesiredCapacity value {desired} is above max value {max_size} "
                "for the AutoScalingGroup."
            )
        if desired < min_size:
            return (
                f"New SetDesiredCapacity value {desired} is below min value {min_size} "
                "for the AutoScalingGroup."
            )
        return None
    if min_size <= desired <= max_size:
        return None
    return (
        f"Desired capacity:{desired} must be between the specified min size:{min_size} "
        f"and max size:{max_size}"
    )


def _moto_group(region: str, name: str) -> FakeAutoScalingGroup | None:
    account = os.environ.get("MOTO_ACCOUNT_ID", DEFAULT_ACCOUNT_ID)
    return autoscaling_backends[account][region].autoscaling_groups.get(name)


# moto launches a group's instances in FakeAutoScalingGroup.replace_autoscaling_group_instances;
# while a FakeAws runs, that step goes through its shim.
_active: FakeAws | None = None
_moto_utcnow = moto_ec2_instances.utcnow
_moto_launch = FakeAutoScalingGroup.replace_autoscaling_group_instances


def _launch_through_shim(
    group: FakeAutoScalingGroup, count_needed: int, propagated_tags: dict[str, str]
) -> None:
    shim = _active
    if shim is None:
        _moto_launch(group, count_needed, propagated_tags)
    else:
        shim._launch(group, count_needed, propagated_tags, _moto_launch)


def _install_launch_hook() -> None:
    FakeAutoScalingGroup.replace_autoscaling_group_instances = _launch_through_shim  # type: ignore[method-assign, assignment]


def _remove_launch_hook() -> None:
    FakeAutoScalingGroup.replace_autoscaling_group_instances = _moto_launch  # type: ignore[method-assign]
