"""Launch failures and region overflow (docs/decisions.md#launch-failures-and-region-overflow), end to end: the real CLI as a subprocess
(``--once``, or the daemon for a bounded time) against moto behind FakeAws's shim and the fake
Kubernetes API, and the loop in-process with an injected clock where time must pass.

The cluster: the same m5.xlarge group in two regions, us-west-2 first in --regions, and four
pending one-CPU jobs (an m5.xlarge takes three after the kubelet reserve: two instances).
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

from slack_capture import SlackCapture

from autoscaler.act.actuator import Actuator
from autoscaler.act.aws_actuator import AwsActuator
from autoscaler.read.aws_reader import AwsClients
from autoscaler.model.config import Settings
from autoscaler.fakes.kube_objects import make_pod
from autoscaler.act.kube_actuator import KubeActuator
from autoscaler.clients.kube_connect import connect
from autoscaler.read.kube_reader import KubeReader
from autoscaler.run.loop import Loop
from autoscaler.act.notifier import SlackNotifier
from autoscaler.read.world import World

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLUSTER = "overflow"
WEST, EAST = "us-west-2", "us-east-1"
REGIONS = f"{WEST},{EAST}"
RAISE_WEST = "Set desired capacity of cpu-west (us-west-2) from 0 to 2"
CORRECT_WEST = "Set desired capacity of cpu-west (us-west-2) from 2 to 0: EC2 has insufficient capacity"
RAISE_EAST = "Set desired capacity of cpu-east (us-east-1) from 0 to 2"
WEST_TIMED_OUT = "Timed out: cpu-west (us-west-2) timed out until"
UNSUPPORTED = ("The requested configuration is currently not supported. Please check the documentation for supported "
               "configurations. Launching EC2 instance failed.")


def make_cluster(fake_aws, fake_kube, jobs=4):
    fake_aws.create_group(WEST, "cpu-west", CLUSTER, instance_type="m5.xlarge", max_size=20)
    fake_aws.create_group(EAST, "cpu-east", CLUSTER, instance_type="m5.xlarge", max_size=20)
    for index in range(jobs):
        fake_kube.add(make_pod(f"job-{index}", cpu="1", memory="2Gi"))


def command(fake_kube, *args):
    return [sys.executable, str(ROOT / "main.py"), "--cluster-name", CLUSTER, "--kubeconfig", fake_kube.kubeconfig,
            "--regions", REGIONS, "--over-provision", "0", "--metrics-port", "0", "-vvv", *args]


def run_once(fake_aws, fake_kube, *args):
    result = subprocess.run(command(fake_kube, "--once", *args), capture_output=True, text=True,
                            env=fake_aws.env(inherit=os.environ), timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr


def group_of(fake_aws, region, name):
    groups = fake_aws.client("autoscaling", region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return groups["AutoScalingGroups"][0]


def desired_of(fake_aws, region, name):
    return group_of(fake_aws, region, name)["DesiredCapacity"]


def lines_with(log, text):
    return [line.split(" - ", 3)[-1] for line in log.splitlines() if text in line]


def loops_of(log):
    """The log cut into loops: the lines after each ``Running Scaling Loop`` banner."""
    loops = []
    for line in log.splitlines():
        if "Running Scaling Loop" in line:
            loops.append([])
        elif loops:
            loops[-1].append(line)
    return ["\n".join(lines) for lines in loops]


def wait_for(condition, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")


# --- overflow, restarts and expiry ---------------------------------------------------------------

def test_failed_launch_overflows_to_the_next_region_and_stays_out_across_restarts(fake_aws, fake_kube):
    make_cluster(fake_aws, fake_kube)
    fake_aws.fail_launches(WEST, "cpu-west")  # "Insufficient capacity. Launching EC2 instance failed."

    # Loop 1: the first region is preferred; its launch fails (the shim logs a Failed activity).
    first = run_once(fake_aws, fake_kube)
    assert lines_with(first, RAISE_WEST) and not lines_with(first, RAISE_EAST)
    assert desired_of(fake_aws, WEST, "cpu-west") == 2 and group_of(fake_aws, WEST, "cpu-west")["Instances"] == []

    # Loop 2, a new process: it knows of the failure only from the last hour's activities. It sets
    # the west group back and raises the east group for the same pods, and says so on Slack.
    slack = SlackCapture()
    try:
        second = run_once(fake_aws, fake_kube, "--slack-hook", slack.url)
    finally:
        slack.close()
    [timed_out] = lines_with(second, WEST_TIMED_OUT)
    assert "EC2 has insufficient capacity for this instance type" in timed_out
    [correction] = lines_with(second, CORRECT_WEST)
    [overflow] = lines_with(second, RAISE_EAST)
    assert second.index(correction) < second.index(overflow)  # set back first, then overflow
    assert "4 pending pods" in overflow
    assert desired_of(fake_aws, WEST, "cpu-west") == 0
    assert desired_of(fake_aws, EAST, "cpu-east") == 2
    assert ("Capacity correction: set cpu-west (us-west-2) desired capacity back from 2 to 0: EC2 has insufficient "
            "capacity for this instance type") in slack.messages
    assert any(m.startswith("cpu-west (us-west-2) is skipped by scale up until") for m in slack.messages)

    # Loop 3, restarted again within the hour: west stays out, nothing is corrected or raised twice.
    fake_aws.clear_calls()
    third = run_once(fake_aws, fake_kube)
    assert lines_with(third, WEST_TIMED_OUT)
    assert not lines_with(third, "Set desired capacity")
    assert fake_aws.mutating_calls() == []
    assert (desired_of(fake_aws, WEST, "cpu-west"), desired_of(fake_aws, EAST, "cpu-east")) == (0, 2)


def test_first_region_is_preferred_again_once_the_timeout_expires(fake_aws, fake_kube, tmp_path):
    """The daemon, with --group-timeout shortened to 4 s: loop 2 overflows; once west can launch
    again and its timeout has run out, new pods go to west first. The pods east's booting
    instances hold stay there (docs/decisions.md#scale-up: booting instances are filled before
    anything is bought), and the two pods of room those instances have left take the first of
    the new ones."""
    make_cluster(fake_aws, fake_kube)
    fake_aws.fail_launches(WEST, "cpu-west")
    log_path = tmp_path / "autoscaler.log"

    def west_is_back() -> bool:
        loops = loops_of(log_path.read_text())[:-1]  # the last one may still be running
        raised = [index for index, text in enumerate(loops) if RAISE_EAST in text]
        return bool(raised) and any(WEST_TIMED_OUT not in text for text in loops[raised[0] + 1:])

    with open(log_path, "w") as log_file:
        daemon = subprocess.Popen(command(fake_kube, "--sleep", "0.3", "--group-timeout", "4"), stderr=log_file,
                                  stdout=subprocess.DEVNULL, env=fake_aws.env(inherit=os.environ), cwd=ROOT)
        try:
            wait_for(lambda: desired_of(fake_aws, EAST, "cpu-east") == 2, "the east group to be raised")
            fake_aws.stop_failing(WEST, "cpu-west")  # capacity is back in us-west-2
            wait_for(west_is_back, "the west group's timeout to run out")
            # All six at once (the store's lock): a loop that read half of them would raise west
            # for those and again next loop for the rest, a different (correct) story.
            with fake_kube.store.lock:
                for index in range(4, 10):
                    fake_kube.add(make_pod(f"job-{index}", cpu="1", memory="2Gi"))
            wait_for(lambda: len(group_of(fake_aws, WEST, "cpu-west")["Instances"]) == 2,
                     "the west group to be raised again and launch")
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    log = log_path.read_text()
    assert daemon.returncode == 0 and "Traceback" not in log, log

    loops = loops_of(log)
    assert RAISE_WEST in loops[0] and RAISE_EAST not in loops[0]
    # Within two loops: the second sets west back and raises east for the same pods.
    assert CORRECT_WEST in loops[1] and RAISE_EAST in loops[1] and WEST_TIMED_OUT in loops[1]
    again = [index for index, text in enumerate(loops) if RAISE_WEST in text]
    assert len(again) == 2, log
    back = loops[again[1]]
    assert WEST_TIMED_OUT not in back and "Set desired capacity of cpu-east" not in back
    expired = next(index for index in range(1, len(loops)) if WEST_TIMED_OUT not in loops[index])
    assert expired <= again[1] and all(WEST_TIMED_OUT in loops[index] for index in range(1, expired))  # out until it expired
    # East's booting instances held the first pods while west was back: nothing bought twice.
    assert not any("Set desired capacity of cpu-east" in text for text in loops[2:])
    assert (desired_of(fake_aws, WEST, "cpu-west"), desired_of(fake_aws, EAST, "cpu-east")) == (2, 2)


def test_dry_run_logs_the_correction_and_changes_nothing(fake_aws, fake_kube):
    make_cluster(fake_aws, fake_kube)
    fake_aws.fail_launches(WEST, "cpu-west")
    fake_aws.client("autoscaling", WEST).set_desired_capacity(AutoScalingGroupName="cpu-west", DesiredCapacity=2)
    fake_aws.clear_calls()

    log = run_once(fake_aws, fake_kube, "--dry-run")
    assert lines_with(log, "[dry-run] would set desired capacity of cpu-west (us-west-2) from 2 to 0: "
                           "EC2 has insufficient capacity for this instance type")
    assert lines_with(log, "[dry-run] would set desired capacity of cpu-east (us-east-1) from 0 to 2")
    assert fake_aws.mutating_calls() == []
    assert (desired_of(fake_aws, WEST, "cpu-west"), desired_of(fake_aws, EAST, "cpu-east")) == (2, 0)


# --- spot ----------------------------------------------------------------------------------------

def test_spot_request_stuck_past_five_minutes_is_cancelled(fake_aws, fake_kube):
    now = datetime.now(timezone.utc)
    fake_aws.set_clock(now - timedelta(minutes=30))  # the group and its two instances
    fake_aws.create_group(WEST, "spot-west", CLUSTER, instance_type="m5.xlarge", max_size=10, desired=2,
                          spot_price="0.5")
    ec2 = fake_aws.client("ec2", WEST)
    request_id = ec2.request_spot_instances(SpotPrice="0.5", InstanceCount=1, LaunchSpecification={
        "ImageId": "ami-12345678", "InstanceType": "m5.xlarge"})["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
    # Six minutes ago the group was raised from 2 to 3 and AWS placed a spot request that is still waiting.
    fake_aws.set_clock(now - timedelta(minutes=6))
    fake_aws.fail_launches(WEST, "spot-west", status_code="WaitingForSpotInstanceId",
                           status_message=f"Placed Spot instance request: {request_id}. Waiting for instance(s)")
    fake_aws.client("autoscaling", WEST).set_desired_capacity(AutoScalingGroupName="spot-west", DesiredCapacity=3)
    fake_aws.set_clock(None)
    fake_aws.stop_failing(WEST, "spot-west")
    fake_aws.clear_calls()

    log = run_once(fake_aws, fake_kube)
    assert lines_with(log, f"Cancel spot request {request_id} of spot-west (us-west-2): spot request not fulfilled "
                           "within 5 minutes")
    assert lines_with(log, "Set desired capacity of spot-west (us-west-2) from 3 to 2")
    assert lines_with(log, "Timed out: spot-west (us-west-2)")
    assert ("ec2", "CancelSpotInstanceRequests", WEST) in fake_aws.calls
    still_open = [r for r in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
                  if r["SpotInstanceRequestId"] == request_id and r["State"] in ("open", "active")]
    assert still_open == []
    assert desired_of(fake_aws, WEST, "spot-west") == 2

    # AWS turns the waiting activity into a cancelled one. A restarted autoscaler keeps the group
    # out from that alone, and neither cancels nor lowers anything again.
    [waiting] = [a for a in fake_aws.activities.newest_first(WEST, "spot-west") if a.status_code != "Successful"]
    fake_aws.activities.clear()
    fake_aws.activities.add(dataclasses.replace(
        waiting, status_code="Cancelled", status_message=f"Spot instance request: {request_id} has been cancelled."))
    fake_aws.clear_calls()
    restarted = run_once(fake_aws, fake_kube)
    assert lines_with(restarted, "Timed out: spot-west (us-west-2)")
    # (Its two instances never became Nodes in 30 minutes: they are replaced at the scale-in rate,
    # one a loop, by TerminateInstanceInAutoScalingGroup without lowering desired capacity.)
    assert [call for call in fake_aws.mutating_calls() if call.action != "TerminateInstanceInAutoScalingGroup"] == []
    assert desired_of(fake_aws, WEST, "spot-west") == 2


# --- through the loop in-process, with an injected clock ----------------------------------------

def in_process_loop(fake_aws, fake_kube, monkeypatch, clock, **settings):
    """The daemon's wiring (world, actuator, loop) in this process, so time can be made to pass."""
    for name, value in fake_aws.env().items():
        monkeypatch.setenv(name, value)
    settings = Settings(cluster_name=CLUSTER, regions=(WEST, EAST), kubeconfig=fake_kube.kubeconfig,
                        over_provision=0, **settings)
    api = connect(fake_kube.kubeconfig)
    aws = AwsClients(settings)
    actuator = Actuator(AwsActuator(aws), KubeActuator(api), SlackNotifier(None), dry_run=False)
    return Loop(World(KubeReader(api), aws, settings), actuator, settings, clock=clock)


def test_every_candidate_timed_out_reports_the_pods_and_the_loop_goes_on(fake_aws, fake_kube, monkeypatch, caplog):
    make_cluster(fake_aws, fake_kube)
    for region, name in ((WEST, "cpu-west"), (EAST, "cpu-east")):
        fake_aws.fail_launches(region, name)
        fake_aws.client("autoscaling", region).set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=2)
    now = datetime.now(timezone.utc)
    loop = in_process_loop(fake_aws, fake_kube, monkeypatch, lambda: now)
    caplog.set_level("INFO")

    report = loop.run_once()
    assert report.ok and report.counters.decision.scale_up.unaccounted == 4 and report.counters.decision.groups_timed_out == 2
    assert any("failed to scale up for 4 pending pods" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert (desired_of(fake_aws, WEST, "cpu-west"), desired_of(fake_aws, EAST, "cpu-east")) == (0, 0)


def test_silent_launch_failure_times_the_group_out_after_instance_init_time(fake_aws, fake_kube, monkeypatch, caplog):
    """West's launches fail with an error of no row of the table, so nothing explains why its
    desired capacity stays above its instances; after --instance-init-time it is timed out with a
    warning naming it, and that loop overflows to east."""
    make_cluster(fake_aws, fake_kube)
    fake_aws.fail_launches(WEST, "cpu-west", status_message=UNSUPPORTED)
    now = [datetime.now(timezone.utc).replace(microsecond=0)]
    fake_aws.set_clock(lambda: now[0])
    loop = in_process_loop(fake_aws, fake_kube, monkeypatch, lambda: now[0], instance_init_time=600)
    caplog.set_level("INFO")
    assert loop.run_once().ok
    assert desired_of(fake_aws, WEST, "cpu-west") == 2  # raised; the launch fails

    now[0] += timedelta(minutes=1)  # the shortfall is first seen: 2 desired, 0 instances
    assert loop.run_once().ok
    assert desired_of(fake_aws, EAST, "cpu-east") == 0

    now[0] += timedelta(minutes=9)  # 9 min of shortfall: still within --instance-init-time
    assert loop.run_once().ok
    assert desired_of(fake_aws, EAST, "cpu-east") == 0

    caplog.clear()
    now[0] += timedelta(minutes=2)  # 11 min
    assert loop.run_once().ok
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "cpu-west (us-west-2)" in r.getMessage()]
    assert any("is skipped by scale up" in m and "silent launch failure" in m for m in warnings), warnings
    assert desired_of(fake_aws, EAST, "cpu-east") == 2
