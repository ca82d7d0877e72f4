"""World: what one loop reads from AWS for group health — the last hour of scaling activities
the first time and only what is new after, and spot prices for the groups that bid. Against
FakeAws (moto behind the shim, which answers DescribeScalingActivities 100 to a page, newest
first, as AWS does)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from autoscaler.model.config import Settings
from autoscaler.read.aws_reader import AwsClients
from autoscaler.read.world import World

CLUSTER = "world"
REGION = "us-west-2"
OTHER_REGION = "us-east-1"


class NoKubernetes:
    """The Kubernetes side of the world is not what these tests are about: an empty cluster."""

    def read_nodes(self):
        return ()

    def read_pods(self):
        return ()

    def read_budgets(self):
        return ()

    def read_daemonsets(self):
        return ()


@pytest.fixture
def make_world(fake_aws, monkeypatch):
    for name, value in fake_aws.env().items():
        monkeypatch.setenv(name, value)

    def build(*regions):
        settings = Settings(cluster_name=CLUSTER, regions=regions or (REGION,))
        return World(NoKubernetes(), AwsClients(settings), settings)

    return build


def calls_of(fake_aws, action, region=REGION):
    return sum(1 for call in fake_aws.calls if call.action == action and call.region == region)


def add_activities(fake_aws, group, count, newest, spacing=timedelta(seconds=5), region=REGION):
    for index in range(count):
        fake_aws.add_activity(region, group, "Successful", description=f"Launching a new EC2 instance: i-{index:08x}",
                              start_time=newest - index * spacing)


@pytest.mark.parametrize("managed_groups", [
    pytest.param(("workers",), id="one-group-filtered-by-name"),
    pytest.param(("gpu", "workers"), id="several-groups-one-stream"),
])
def test_activities_last_hour_first_then_only_what_is_new(fake_aws, make_world, managed_groups):
    for name in managed_groups:
        fake_aws.create_group(REGION, name, CLUSTER)
    fake_aws.create_group(REGION, "not-ours", "another-cluster")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    # 250 launches between 15 and 36 minutes ago (three pages), one two hours ago, and a group of
    # another cluster that must not leak in.
    add_activities(fake_aws, "workers", 250, newest=now - timedelta(minutes=15))
    fake_aws.add_activity(REGION, "workers", "Successful", start_time=now - timedelta(hours=2))
    fake_aws.add_activity(REGION, "not-ours", "Failed", "Insufficient capacity. Launching EC2 instance failed.",
                          start_time=now - timedelta(minutes=20))
    world = make_world()
    fake_aws.clear_calls()

    first = world.read(now)
    assert len(first.activities) == 250
    assert {a.group_name for a in first.activities} == {"workers"}
    assert min(a.start_time for a in first.activities) >= now - timedelta(hours=1)
    first_pages = calls_of(fake_aws, "DescribeScalingActivities")
    assert first_pages == 3  # paginated: 250 in the hour take three pages of 100; the third reaches older ones

    fake_aws.add_activity(REGION, "workers", "Failed", "Insufficient capacity. Launching EC2 instance failed.",
                          start_time=now + timedelta(seconds=30))
    fake_aws.clear_calls()
    second = world.read(now + timedelta(minutes=1))
    # Only what is new: one page, which reaches activities older than the last read at once.
    assert calls_of(fake_aws, "DescribeScalingActivities") == 1
    assert len(second.activities) == 251  # the hour is remembered, not read again
    assert second.activities[-1].status_code == "Failed"

    # Fifty minutes on, the first batch has left the hour and is forgotten.
    third = world.read(now + timedelta(minutes=50))
    assert [a.status_code for a in third.activities] == ["Failed"]


def test_an_activity_that_finishes_after_it_was_read_is_read_again(fake_aws, make_world):
    """AWS updates an activity in place (InProgress -> Failed); the overlap of each read sees it."""
    fake_aws.create_group(REGION, "workers", CLUSTER)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    world = make_world()
    started = now - timedelta(minutes=2)
    in_progress = fake_aws.add_activity(REGION, "workers", "InProgress", start_time=started)
    assert [a.status_code for a in world.read(now).activities] == ["InProgress"]

    fake_aws.activities.clear()
    fake_aws.activities.add(type(in_progress)(**{**in_progress.__dict__, "status_code": "Failed",
                                                  "status_message": "Insufficient capacity. Launching EC2 instance failed.",
                                                  "end_time": now}))
    later = world.read(now + timedelta(minutes=1))
    assert [(a.activity_id, a.status_code) for a in later.activities] == [(in_progress.activity_id, "Failed")]


FAILED_TEXT = "Insufficient capacity. Launching EC2 instance failed."


@pytest.mark.parametrize("status, finishes_after_minutes, expected", [
    # Unfinished for 30 minutes before it fails: far beyond a short overlap of re-reading.
    pytest.param("InProgress", 30, "Failed", id="in-progress-fails-30-min-after-its-start"),
    pytest.param("WaitingForSpotInstanceId", 45, "Failed", id="spot-request-fails-45-min-after-its-start"),
    pytest.param("InProgress", 3, "Failed", id="fails-within-minutes"),
    # Still unfinished an hour after its start: it has left the window and is no longer read.
    pytest.param("InProgress", 65, None, id="left-the-hour-while-unfinished"),
])
def test_an_activity_unfinished_for_long_is_read_again_when_it_finishes(
        fake_aws, make_world, status, finishes_after_minutes, expected):
    """AWS updates an activity in place whenever it finishes; until then it is read again every loop."""
    fake_aws.create_group(REGION, "workers", CLUSTER)
    started = datetime.now(timezone.utc).replace(microsecond=0)
    world = make_world()
    unfinished = fake_aws.add_activity(REGION, "workers", status, start_time=started)
    assert [a.status_code for a in world.read(started + timedelta(minutes=1)).activities] == [status]
    for minute in range(5, finishes_after_minutes, 5):  # loops meanwhile, each one moving the read on
        world.read(started + timedelta(minutes=minute))

    finished_at = started + timedelta(minutes=finishes_after_minutes)
    fake_aws.activities.update(unfinished.activity_id, status_code="Failed", status_message=FAILED_TEXT,
                               end_time=finished_at)
    later = world.read(finished_at + timedelta(minutes=1))
    assert [a.status_code for a in later.activities] == ([expected] if expected else [])


def test_a_region_without_activity_is_normal(fake_aws, make_world):
    fake_aws.create_group(REGION, "workers", CLUSTER)
    snapshot = make_world(REGION, OTHER_REGION).read(datetime.now(timezone.utc))
    assert snapshot.activities == ()
    assert [g.name for g in snapshot.groups] == ["workers"]


def create_template_spot_group(fake_aws, name, max_price):
    """A launch template whose market options bid, which aws_builders does not make."""
    fake_aws.client("ec2", REGION).create_launch_template(LaunchTemplateName=f"{name}-template", LaunchTemplateData={
        "ImageId": "ami-12345678", "InstanceType": "c5.large",
        "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {"MaxPrice": max_price}}})
    fake_aws.client("autoscaling", REGION).create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=5, DesiredCapacity=0, AvailabilityZones=[f"{REGION}a"],
        LaunchTemplate={"LaunchTemplateName": f"{name}-template", "Version": "$Default"},
        Tags=[{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": key, "Value": value,
               "PropagateAtLaunch": True} for key, value in (("KubernetesCluster", CLUSTER), ("Role", "worker"))])


def test_spot_prices_are_read_for_the_groups_that_bid(fake_aws, make_world):
    fake_aws.create_group(REGION, "spot-config", CLUSTER, instance_type="m5.large", spot_price="0.5")
    fake_aws.create_group(REGION, "spot-mixed", CLUSTER, launch="mixed", overrides=["r5.large", "r5.xlarge"],
                          spot_price="0.4")
    create_template_spot_group(fake_aws, "spot-template", "0.3")
    fake_aws.create_group(REGION, "on-demand", CLUSTER, instance_type="p3.8xlarge")
    world = make_world()
    fake_aws.clear_calls()

    snapshot = world.read(datetime.now(timezone.utc))
    bids = {g.name: (g.is_spot, g.spot_price) for g in snapshot.groups}
    assert bids == {"spot-config": (True, "0.5"), "spot-mixed": (True, "0.4"), "spot-template": (True, "0.3"),
                    "on-demand": (False, None)}
    assert {p.instance_type for p in snapshot.spot_prices} == {"m5.large", "r5.large", "r5.xlarge", "c5.large"}
    assert {p.region for p in snapshot.spot_prices} == {REGION}
    assert calls_of(fake_aws, "DescribeSpotPriceHistory") >= 1


def test_no_spot_price_call_without_a_bidding_group(fake_aws, make_world):
    fake_aws.create_group(REGION, "on-demand", CLUSTER, instance_type="m5.large")
    world = make_world()
    fake_aws.clear_calls()
    assert world.read(datetime.now(timezone.utc)).spot_prices == ()
    assert calls_of(fake_aws, "DescribeSpotPriceHistory") == 0


def test_the_snapshot_holds_the_daemonsets_the_kubernetes_reader_read(fake_aws, make_world):
    from autoscaler.model.objects import DaemonSet, Resources

    agent = DaemonSet("kube-system", "agent", Resources({"cpu": 100, "pods": 1000}))
    world = make_world()
    world.kube.read_daemonsets = lambda: (agent,)
    assert world.read(datetime.now(timezone.utc)).daemonsets == (agent,)
