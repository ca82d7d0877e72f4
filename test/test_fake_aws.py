"""The AWS test harness: moto behind a shim that behaves like AWS where moto 5.2 does not."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from autoscaler.fakes.aws import INSUFFICIENT_CAPACITY, ApiCall

REGION = "us-east-1"
CLUSTER = "test-cluster"
T0 = datetime(2026, 11, 27, 10, 0, 0, tzinfo=timezone.utc)


def describe_group(fake_aws, name, region=REGION):
    groups = fake_aws.client("autoscaling", region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return groups["AutoScalingGroups"][0]


def all_activities(fake_aws, region=REGION, page_size=100, **filters):
    paginator = fake_aws.client("autoscaling", region).get_paginator("describe_scaling_activities")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": page_size}, **filters))
    return [activity for page in pages for activity in page["Activities"]], len(pages)


# ---- MinSize / MaxSize --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "desired, message",
    [
        (6, "New SetDesiredCapacity value 6 is above max value 2 for the AutoScalingGroup."),
        (0, "New SetDesiredCapacity value 0 is below min value 1 for the AutoScalingGroup."),
    ],
    ids=["above-max", "below-min"],
)
def test_set_desired_capacity_outside_the_size_limits_is_refused_like_aws(fake_aws, desired, message):
    fake_aws.create_group(REGION, "workers", CLUSTER, min_size=1, max_size=2, desired=1)

    with pytest.raises(ClientError) as refused:
        fake_aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=desired)

    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert refused.value.response["Error"]["Message"] == message
    group = describe_group(fake_aws, "workers")
    assert (group["DesiredCapacity"], len(group["Instances"])) == (1, 1)


def test_set_desired_capacity_within_the_limits_launches_and_logs_each_launch(fake_aws):
    fake_aws.create_group(REGION, "workers", CLUSTER, max_size=5, desired=1)

    fake_aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=3)

    group = describe_group(fake_aws, "workers")
    assert (group["DesiredCapacity"], len(group["Instances"])) == (3, 3)
    activities, _ = all_activities(fake_aws, AutoScalingGroupName="workers")
    assert [activity["StatusCode"] for activity in activities] == ["Successful"] * 3
    assert {activity["Description"] for activity in activities} == {
        f"Launching a new EC2 instance: {instance['InstanceId']}" for instance in group["Instances"]
    }
    assert [activity["Cause"].split("  ")[-1] for activity in activities] == [
        f"At {activity['StartTime']:%Y-%m-%dT%H:%M:%SZ} an instance was started in response to a "
        f"difference between desired and actual capacity, increasing the capacity from {before} to {after}."
        for activity, (before, after) in zip(activities, [(1, 3), (1, 3), (0, 1)], strict=True)
    ]
    assert "explicitly set group desired capacity changing the desired capacity from 1 to 3." in activities[0]["Cause"]


def test_update_with_desired_capacity_outside_the_new_limits_is_refused(fake_aws):
    fake_aws.create_group(REGION, "workers", CLUSTER, max_size=5)

    with pytest.raises(ClientError) as refused:
        fake_aws.client("autoscaling").update_auto_scaling_group(
            AutoScalingGroupName="workers", MaxSize=3, DesiredCapacity=4
        )

    assert refused.value.response["Error"]["Message"] == (
        "Desired capacity:4 must be between the specified min size:0 and max size:3"
    )
    assert describe_group(fake_aws, "workers")["MaxSize"] == 5


# ---- scaling activities -------------------------------------------------------------------------


def test_activities_come_back_newest_first_filtered_and_paginated(fake_aws):
    for minute in range(5):
        fake_aws.add_activity(
            REGION, "gpu", "Failed", INSUFFICIENT_CAPACITY,
            cause=f"cause {minute}", start_time=T0 + timedelta(minutes=minute),
        )
    fake_aws.add_activity(REGION, "cpu", "Successful", start_time=T0)
    fake_aws.add_activity("us-west-2", "gpu", "Successful", start_time=T0)

    gpu_activities, page_count = all_activities(fake_aws, page_size=2, AutoScalingGroupName="gpu")
    region_activities, _ = all_activities(fake_aws)

    assert page_count == 3
    assert [activity["Cause"] for activity in gpu_activities] == [f"cause {minute}" for minute in (4, 3, 2, 1, 0)]
    assert gpu_activities[0]["StartTime"] == T0 + timedelta(minutes=4)
    assert gpu_activities[0]["StatusMessage"] == INSUFFICIENT_CAPACITY
    assert gpu_activities[0]["Progress"] == 100
    assert len({activity["ActivityId"] for activity in gpu_activities}) == 5
    assert sorted(activity["AutoScalingGroupName"] for activity in region_activities) == ["cpu"] + ["gpu"] * 5


def test_activities_can_be_asked_for_by_id(fake_aws):
    wanted = fake_aws.add_activity(REGION, "gpu", "Successful")
    fake_aws.add_activity(REGION, "gpu", "Successful")

    response = fake_aws.client("autoscaling").describe_scaling_activities(ActivityIds=[wanted.activity_id])

    assert [activity["ActivityId"] for activity in response["Activities"]] == [wanted.activity_id]


def test_no_activity_is_an_empty_list(fake_aws):
    assert fake_aws.client("autoscaling").describe_scaling_activities()["Activities"] == []


# ---- failing launches ---------------------------------------------------------------------------


def test_a_failing_group_keeps_its_desired_capacity_gets_no_instance_and_a_failed_activity(fake_aws):
    fake_aws.create_group(REGION, "gpu", CLUSTER, max_size=10, desired=1)
    fake_aws.fail_launches(REGION, "gpu")

    fake_aws.client("autoscaling").set_desired_capacity(AutoScalingGroupName="gpu", DesiredCapacity=3)

    group = describe_group(fake_aws, "gpu")
    assert (group["DesiredCapacity"], len(group["Instances"])) == (3, 1)
    latest = all_activities(fake_aws, AutoScalingGroupName="gpu")[0][0]
    assert latest["StatusCode"] == "Failed"
    assert latest["StatusMessage"] == "Insufficient capacity. Launching EC2 instance failed."
    assert latest["Cause"].endswith("increasing the capacity from 1 to 3.")
    reservations = fake_aws.client("ec2").describe_instances()["Reservations"]
    assert sum(len(reservation["Instances"]) for reservation in reservations) == 1


def test_a_failing_group_does_not_replace_a_terminated_instance_either(fake_aws):
    fake_aws.create_group(REGION, "gpu", CLUSTER, max_size=10, desired=2, protect=False)
    fake_aws.fail_launches(REGION, "gpu", status_message="Max spot instance count exceeded. Placing Spot instance request failed.")
    instance_id = describe_group(fake_aws, "gpu")["Instances"][0]["InstanceId"]

    fake_aws.client("autoscaling").terminate_instance_in_auto_scaling_group(
        InstanceId=instance_id, ShouldDecrementDesiredCapacity=False
    )

    group = describe_group(fake_aws, "gpu")
    assert (group["DesiredCapacity"], len(group["Instances"])) == (2, 1)
    latest = all_activities(fake_aws)[0][0]
    assert latest["StatusMessage"] == "Max spot instance count exceeded. Placing Spot instance request failed."
    assert latest["Cause"].endswith("increasing the capacity from 1 to 2.")


def test_after_stop_failing_the_group_launches_again(fake_aws):
    fake_aws.create_group(REGION, "gpu", CLUSTER, max_size=10)
    fake_aws.fail_launches(REGION, "gpu")
    autoscaling = fake_aws.client("autoscaling")
    autoscaling.set_desired_capacity(AutoScalingGroupName="gpu", DesiredCapacity=2)

    fake_aws.stop_failing(REGION, "gpu")
    autoscaling.set_desired_capacity(AutoScalingGroupName="gpu", DesiredCapacity=3)

    assert len(describe_group(fake_aws, "gpu")["Instances"]) == 3
    assert [activity["StatusCode"] for activity in all_activities(fake_aws)[0]] == ["Successful"] * 3 + ["Failed"]


# ---- fault injection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "service, action, call, fault, expected_status, expected_code",
    [
        ("autoscaling", "DescribeAutoScalingGroups", "describe_auto_scaling_groups", {}, 400, "Throttling"),
        ("autoscaling", "SetDesiredCapacity", "set_desired_capacity", {"status": 503}, 503, "ServiceUnavailable"),
        ("ec2", "DescribeInstances", "describe_instances", {"code": "RequestLimitExceeded", "status": 503}, 503, "RequestLimitExceeded"),
    ],
    ids=["autoscaling-throttling", "autoscaling-503", "ec2-request-limit"],
)
def test_injected_faults_surface_as_client_errors_for_the_next_n_calls(
    fake_aws, service, action, call, fault, expected_status, expected_code
):
    fake_aws.create_group(REGION, "workers", CLUSTER)
    kwargs = {"AutoScalingGroupName": "workers", "DesiredCapacity": 1} if action == "SetDesiredCapacity" else {}
    client = fake_aws.client(service, max_attempts=1)
    fake_aws.inject_faults(action, count=2, **fault)

    for _ in range(2):
        with pytest.raises(ClientError) as failed:
            getattr(client, call)(**kwargs)
        assert failed.value.response["Error"]["Code"] == expected_code
        assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == expected_status
    getattr(client, call)(**kwargs)


def test_a_retrying_client_gets_through_a_single_throttle(fake_aws):
    fake_aws.inject_faults("DescribeAutoScalingGroups", count=1)

    fake_aws.client("autoscaling", max_attempts=2).describe_auto_scaling_groups()

    assert fake_aws.calls.count(ApiCall("autoscaling", "DescribeAutoScalingGroups", REGION)) == 2


# ---- call recording, reset, clock, environment --------------------------------------------------


def test_every_call_is_recorded_with_service_action_and_region(fake_aws):
    fake_aws.client("ec2", "us-west-2").describe_instances()
    fake_aws.client("autoscaling", "us-west-2").describe_auto_scaling_groups()
    fake_aws.create_group("us-west-2", "workers", CLUSTER, max_size=3)
    with pytest.raises(ClientError):
        fake_aws.client("autoscaling", "us-west-2").set_desired_capacity(AutoScalingGroupName="workers", DesiredCapacity=9)

    assert fake_aws.calls == [
        ApiCall("ec2", "DescribeInstances", "us-west-2"),
        ApiCall("autoscaling", "DescribeAutoScalingGroups", "us-west-2"),
        ApiCall("autoscaling", "CreateLaunchConfiguration", "us-west-2"),
        ApiCall("autoscaling", "CreateAutoScalingGroup", "us-west-2"),
        ApiCall("autoscaling", "SetDesiredCapacity", "us-west-2"),
    ]
    assert [call.action for call in fake_aws.mutating_calls()] == [
        "CreateLaunchConfiguration", "CreateAutoScalingGroup", "SetDesiredCapacity",
    ]


def test_reset_gives_fresh_state(fake_aws):
    fake_aws.create_group(REGION, "workers", CLUSTER, desired=1)
    fake_aws.fail_launches(REGION, "workers")
    fake_aws.inject_faults("DescribeAutoScalingGroups", count=5)
    fake_aws.add_activity(REGION, "workers", "Failed", INSUFFICIENT_CAPACITY)
    fake_aws.set_clock(T0)

    fake_aws.reset()

    assert fake_aws.calls == []
    autoscaling = fake_aws.client("autoscaling", max_attempts=1)
    assert autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert autoscaling.describe_scaling_activities()["Activities"] == []
    fake_aws.create_group(REGION, "workers", CLUSTER, desired=1)
    instance = describe_group(fake_aws, "workers")["Instances"]
    assert len(instance) == 1
    launched = fake_aws.client("ec2").describe_instances()["Reservations"][0]["Instances"][0]
    assert launched["LaunchTime"] > T0


def test_launch_time_and_activities_follow_the_test_clock(fake_aws):
    fake_aws.set_clock(T0)
    fake_aws.create_group(REGION, "workers", CLUSTER, desired=1)

    instance = fake_aws.client("ec2").describe_instances()["Reservations"][0]["Instances"][0]
    activity = all_activities(fake_aws)[0][0]

    assert instance["LaunchTime"] == T0
    assert activity["StartTime"] == T0
    assert activity["Cause"].startswith("At 2026-11-27T10:00:00Z a user request created an AutoScalingGroup")


def test_a_subprocess_with_env_reaches_the_fake(fake_aws):
    fake_aws.create_group("eu-west-1", "workers", CLUSTER)
    script = (
        "import boto3, json;"
        "groups = boto3.client('autoscaling').describe_auto_scaling_groups()['AutoScalingGroups'];"
        "print(json.dumps([group['AutoScalingGroupName'] for group in groups]))"
    )

    result = subprocess.run(
        [sys.executable, "-c", script],
        env=fake_aws.env(inherit={"PATH": "/usr/bin", "AWS_PROFILE": "production"}, region="eu-west-1"),
        capture_output=True, text=True, timeout=60, check=True,
    )

    assert json.loads(result.stdout) == ["workers"]


# ---- builders -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "launch, options, expected_types",
    [
        ("config", {"spot_price": "0.30"}, None),
        ("template", {}, None),
        ("mixed", {"overrides": ["p3.8xlarge", "p3.2xlarge"], "spot_price": "3.00"}, ["p3.8xlarge", "p3.2xlarge"]),
    ],
    ids=["launch-configuration", "launch-template", "mixed-instances"],
)
def test_builders_create_a_tagged_protected_group(fake_aws, launch, options, expected_types):
    fake_aws.create_group(
        REGION, "gpu", CLUSTER, instance_type="p3.8xlarge", min_size=0, max_size=4, desired=1,
        tags={"kube/gpu": "true"}, zones=["us-east-1b"], launch=launch, **options,
    )

    group = describe_group(fake_aws, "gpu")
    assert {tag["Key"]: tag["Value"] for tag in group["Tags"]} == {
        "KubernetesCluster": CLUSTER, "Role": "worker", "kube/gpu": "true",
    }
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"]) == (0, 4, 1)
    assert group["AvailabilityZones"] == ["us-east-1b"]
    assert group["NewInstancesProtectedFromScaleIn"] is True
    assert [instance["ProtectedFromScaleIn"] for instance in group["Instances"]] == [True]
    if launch == "config":
        config = fake_aws.client("autoscaling").describe_launch_configurations(
            LaunchConfigurationNames=[group["LaunchConfigurationName"]]
        )["LaunchConfigurations"][0]
        assert (config["InstanceType"], config["SpotPrice"]) == ("p3.8xlarge", "0.30")
    elif launch == "template":
        assert group["LaunchTemplate"]["LaunchTemplateName"] == "gpu-template"
    else:
        policy = group["MixedInstancesPolicy"]
        overrides = policy["LaunchTemplate"]["Overrides"]
        assert [override["InstanceType"] for override in overrides] == expected_types
        assert policy["InstancesDistribution"]["SpotMaxPrice"] == "3.00"


# ---- tags read by resource id (aws_tags.py) -------------------------------------------------------

# Every instance of group "workers" carries these: the group's tags and the one moto adds.
BASE_TAGS = {"KubernetesCluster": CLUSTER, "Role": "worker", "kube/pool": "batch", "aws:autoscaling:groupName": "workers"}


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda ec2, first: None, BASE_TAGS),
        (lambda ec2, first: ec2.create_tags(Resources=[first], Tags=[{"Key": "Name", "Value": "one"}]),
         {**BASE_TAGS, "Name": "one"}),
        (lambda ec2, first: ec2.create_tags(Resources=[first], Tags=[{"Key": "Role", "Value": "changed"}]),
         {**BASE_TAGS, "Role": "changed"}),
        (lambda ec2, first: ec2.delete_tags(Resources=[first], Tags=[{"Key": "kube/pool"}]),
         {key: value for key, value in BASE_TAGS.items() if key != "kube/pool"}),
        (lambda ec2, first: ec2.delete_tags(Resources=[first], Tags=[{"Key": "Role", "Value": "other"}]),
         BASE_TAGS),
        (lambda ec2, first: ec2.delete_tags(Resources=[first], Tags=[{"Key": "Role", "Value": "worker"}]),
         {key: value for key, value in BASE_TAGS.items() if key != "Role"}),
        (lambda ec2, first: ec2.delete_tags(Resources=[first], Tags=[{"Key": key} for key in BASE_TAGS]), {}),
    ],
    ids=["untouched", "create-adds", "create-overwrites", "delete-by-key", "delete-other-value-keeps",
         "delete-own-value-removes", "delete-all"],
)
def test_instances_show_their_tags_after_create_and_delete_tags(fake_aws, edit, expected):
    from moto.ec2.models.core import TaggedEC2Resource

    from autoscaler.fakes import aws_tags

    assert TaggedEC2Resource.get_tags is aws_tags.indexed_get_tags  # the lookup under test is the one in use
    fake_aws.create_group(REGION, "workers", CLUSTER, max_size=3, desired=3, tags={"kube/pool": "batch"})
    fake_aws.create_group(REGION, "others", CLUSTER, desired=1, tags={"kube/pool": "etl"})
    ec2 = fake_aws.client("ec2")
    first, *rest = sorted(instance["InstanceId"] for instance in describe_group(fake_aws, "workers")["Instances"])

    edit(ec2, first)

    pages = ec2.get_paginator("describe_instances").paginate()
    listed = {instance["InstanceId"]: instance.get("Tags", [])
              for page in pages for reservation in page["Reservations"] for instance in reservation["Instances"]}
    assert {key: {tag["Key"]: tag["Value"] for tag in listed[key]} for key in [first, *rest]} == {
        first: expected, **{instance_id: BASE_TAGS for instance_id in rest}}
    for instance_id, tags in listed.items():  # what moto's own scan (DescribeTags) finds, in its order
        scanned = ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"]
        assert tags == [{"Key": tag["Key"], "Value": tag["Value"]} for tag in scanned]
    batch = ec2.describe_instances(Filters=[{"Name": "tag:kube/pool", "Values": ["batch"]}])
    assert sorted(instance["InstanceId"] for reservation in batch["Reservations"]
                  for instance in reservation["Instances"]) == sorted(rest + ([first] if "kube/pool" in expected else []))
