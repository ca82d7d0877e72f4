"""aws_reader against moto in-process: groups and their launch settings, instances, activities,
spot prices, clients and error translation; and each call's total deadline over HTTP."""
import logging
import os
from datetime import datetime, timedelta, timezone

import pytest
from botocore.stub import Stubber
from silent_server import DrippingServer

from autoscaler.act.aws_actuator import AwsActuator
from autoscaler.clients.aws_errors import CloudUnreachable

from autoscaler.read import aws_reader
from autoscaler.read.aws_reader import (AwsClients, CloudError, RegionClients, aws_clients, make_session, read_activities,
                                   read_groups, read_instances, read_spot_prices)
from autoscaler.read.capacity import CapacityCatalog
from autoscaler.model.config import Settings
from autoscaler.model.objects import Taint
from moto_builders import AMI, CLUSTER, create_launch_configuration, create_launch_template, create_moto_group

REGION = "us-west-2"
SETTINGS = Settings(cluster_name=CLUSTER, regions=(REGION, "us-east-1"))


@pytest.fixture
def aws(moto_in_process):
    return AwsClients(SETTINGS)


def count_calls(client):
    calls = []
    client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    return calls


def by_name(groups):
    return {group.name: group for group in groups}


# ---------------------------------------------------------------------------------------- groups

def test_groups_are_filtered_by_cluster_tag_and_role(aws):
    clients = aws(REGION)
    create_launch_configuration(clients)
    create_moto_group(clients, "minion", role=("Role", "minion"))  # the README's word (README.md#auto-scaling-groups)
    create_moto_group(clients, "worker", role=("KubernetesRole", "worker"))
    create_moto_group(clients, "kubernetes-minion", role=("Role", "kubernetes-minion"))
    create_moto_group(clients, "master", role=("Role", "master"))
    create_moto_group(clients, "no-role", role=None)
    create_moto_group(clients, "other-cluster", cluster="other", role=("Role", "worker"))
    groups = read_groups(aws, SETTINGS, REGION)
    assert [g.name for g in groups] == ["kubernetes-minion", "minion", "worker"]


def test_group_from_launch_configuration(aws):
    clients = aws(REGION)
    create_launch_configuration(clients, instance_type="p3.2xlarge", SpotPrice="1.25")
    create_moto_group(clients, "gpu", zones=["us-west-2a"], desired=2, tags={
        "kube/team": "ml", "k8s.io/cluster-autoscaler/priority": "7",
        "k8s.io/cluster-autoscaler/node-template/taint/dedicated": "gpu:NoSchedule",
        "k8s.io/cluster-autoscaler/node-template/resources/ephemeral-storage": "100Gi"})
    (group,) = read_groups(aws, SETTINGS, REGION)
    assert (group.region, group.min_size, group.max_size, group.desired, group.zones) == (REGION, 0, 10, 2, ("us-west-2a",))
    assert len(group.instance_ids) == 2
    assert (group.is_spot, group.spot_price, group.priority) == (True, "1.25", 7)
    assert group.taints == (Taint("dedicated", "gpu", "NoSchedule"),)
    assert group.created is not None and group.tags["kube/team"] == "ml"
    assert {k: group.labels[k] for k in ("aws/type", "aws/class", "aws/ami-id", "aws/region", "team", "topology.kubernetes.io/zone")} == {
        "aws/type": "p3.2xlarge", "aws/class": "p", "aws/ami-id": AMI, "aws/region": REGION, "team": "ml",
        "topology.kubernetes.io/zone": "us-west-2a"}
    (shape,) = group.shapes
    assert shape.instance_type == "p3.2xlarge"  # moto does not know it: from the shipped table
    assert shape.capacity.get("nvidia.com/gpu") == 1000
    assert shape.capacity.get("cpu") == 8000 - 90
    assert shape.capacity.get("ephemeral-storage") == 100 * (1 << 30) * 1000


@pytest.mark.parametrize("version, expected_type", [
    (None, "m5.large"), ("$Default", "m5.large"), ("$Latest", "m5.2xlarge"), ("2", "m5.xlarge"), ("1", "m5.large"),
], ids=["no-version", "default", "latest", "explicit-2", "explicit-1"])
def test_group_from_launch_template_version(aws, version, expected_type):
    clients = aws(REGION)
    create_launch_template(clients)
    for instance_type in ("m5.xlarge", "m5.2xlarge"):
        clients.ec2.create_launch_template_version(LaunchTemplateName="tmpl", LaunchTemplateData={"ImageId": AMI, "InstanceType": instance_type})
    spec = {"LaunchTemplateName": "tmpl", **({"Version": version} if version else {})}
    create_moto_group(clients, "g", LaunchTemplate=spec)
    (group,) = read_groups(aws, SETTINGS, REGION)
    assert [s.instance_type for s in group.shapes] == [expected_type]
    assert group.labels["node.kubernetes.io/instance-type"] == expected_type
    assert not group.is_spot


def test_launch_template_spot_market(aws):
    clients = aws(REGION)
    create_launch_template(clients, InstanceMarketOptions={"MarketType": "spot", "SpotOptions": {"MaxPrice": "0.4"}})
    create_moto_group(clients, "g", LaunchTemplate={"LaunchTemplateName": "tmpl", "Version": "$Latest"})
    (group,) = read_groups(aws, SETTINGS, REGION)
    assert (group.is_spot, group.spot_price) == (True, "0.4")


@pytest.mark.parametrize("distribution, is_spot, spot_price", [
    ({"OnDemandPercentageAboveBaseCapacity": 0, "SpotMaxPrice": "0.3"}, True, "0.3"),
    ({"OnDemandPercentageAboveBaseCapacity": 0}, True, None),
    ({"OnDemandPercentageAboveBaseCapacity": 50, "SpotMaxPrice": "0.3"}, False, None),
    ({}, False, None),
], ids=["all-spot-bid", "all-spot-on-demand-cap", "half-spot", "default-on-demand"])
def test_mixed_instances_policy(aws, distribution, is_spot, spot_price):
    clients = aws(REGION)
    create_launch_template(clients)
    create_moto_group(clients, "mixed", MixedInstancesPolicy={
        "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateName": "tmpl", "Version": "$Default"},
                           "Overrides": [{"InstanceType": "m5.2xlarge"}, {"InstanceType": "c5.large"}, {"InstanceType": "m5.large"}]},
        "InstancesDistribution": distribution})
    (group,) = read_groups(aws, SETTINGS, REGION)
    # smallest first, never the first override's size
    assert [s.instance_type for s in group.shapes] == ["c5.large", "m5.large", "m5.2xlarge"]
    assert (group.is_spot, group.spot_price) == (is_spot, spot_price)
    assert "aws/type" not in group.labels and "aws/class" not in group.labels
    assert group.labels["kubernetes.io/arch"] == "amd64"


def test_two_regions(aws):
    for region, instance_type in ((REGION, "m5.large"), ("us-east-1", "c5.xlarge")):
        clients = aws(region)
        create_launch_configuration(clients, instance_type=instance_type)
        create_moto_group(clients, f"workers-{region}")
    catalog = CapacityCatalog(aws)
    west, east = (read_groups(aws, SETTINGS, region, catalog) for region in SETTINGS.regions)
    assert [(g.name, g.region, g.instance_type) for g in west + east] == [
        ("workers-us-west-2", REGION, "m5.large"), ("workers-us-east-1", "us-east-1", "c5.xlarge")]
    assert east[0].labels["topology.kubernetes.io/region"] == "us-east-1"


def delete_template(clients):
    clients.ec2.delete_launch_template(LaunchTemplateName="other")


def delete_launch_configuration(clients):
    clients.autoscaling.delete_launch_configuration(LaunchConfigurationName="lc")


@pytest.mark.parametrize("launch, break_it, reason", [
    ({"LaunchTemplate": {"LaunchTemplateName": "tmpl", "Version": "9"}}, None, "version 9"),
    ({"LaunchTemplate": {"LaunchTemplateName": "other"}}, delete_template, "other"),
    ({"LaunchConfigurationName": "lc"}, delete_launch_configuration, "launch configuration lc not found"),
    ({"LaunchConfigurationName": "lc-unknown-type"}, None, "zz9.huge"),
], ids=["missing-version", "deleted-template", "deleted-launch-configuration", "unknown-instance-type"])
def test_unreadable_launch_settings_give_empty_shapes_and_a_warning(aws, caplog, launch, break_it, reason):
    clients = aws(REGION)
    create_launch_template(clients)
    create_launch_template(clients, name="other")
    create_launch_configuration(clients)
    create_launch_configuration(clients, name="lc-fine")
    create_launch_configuration(clients, name="lc-unknown-type", instance_type="zz9.huge")
    create_moto_group(clients, "broken", **launch)
    # Neighbours on the same template (another version) and on a launch configuration still work.
    create_moto_group(clients, "fine-template", LaunchTemplate={"LaunchTemplateName": "tmpl", "Version": "$Default"})
    create_moto_group(clients, "fine", LaunchConfigurationName="lc-fine")
    if break_it:
        break_it(clients)
    with caplog.at_level(logging.WARNING):
        groups = by_name(read_groups(aws, SETTINGS, REGION))
    assert groups["broken"].shapes == ()
    assert groups["fine"].shapes and groups["fine-template"].shapes
    assert "broken" in caplog.text and reason in caplog.text
    assert "fine" not in caplog.text


def test_read_groups_batches_launch_settings(aws):
    clients = aws(REGION)
    for index in range(3):
        create_launch_configuration(clients, name=f"lc{index}")
        create_moto_group(clients, f"lc-group{index}", LaunchConfigurationName=f"lc{index}")
    create_launch_template(clients)
    for index in range(3):
        create_moto_group(clients, f"lt-group{index}", LaunchTemplate={"LaunchTemplateName": "tmpl", "Version": ["$Default", "$Latest", "1"][index]})
    asg_calls, ec2_calls = count_calls(clients.autoscaling), count_calls(clients.ec2)
    catalog = CapacityCatalog(aws)
    assert len(read_groups(aws, SETTINGS, REGION, catalog)) == 6
    assert asg_calls == ["DescribeAutoScalingGroups", "DescribeLaunchConfigurations"]
    assert ec2_calls == ["DescribeLaunchTemplateVersions", "DescribeInstanceTypes"]
    read_groups(aws, SETTINGS, REGION, catalog)  # instance types are not described again
    assert ec2_calls.count("DescribeInstanceTypes") == 1


# ------------------------------------------------------------------------------------- instances

def test_read_instances_of_a_group(aws):
    clients = aws(REGION)
    create_launch_configuration(clients)
    create_moto_group(clients, "workers", desired=3)
    (group,) = read_groups(aws, SETTINGS, REGION)
    instances = read_instances(aws, REGION, group.instance_ids + ("i-0000000000000dead",))
    assert sorted(instances) == sorted(group.instance_ids)
    instance = instances[group.instance_ids[0]]
    assert (instance.region, instance.state, instance.instance_type, instance.group_name, instance.lifecycle) == (
        REGION, "running", "m5.large", "workers", "on-demand")
    assert instance.zone.startswith(REGION) and instance.launch_time is not None


def test_read_instances_spot_lifecycle(aws):
    clients = aws(REGION)
    clients.ec2.request_spot_instances(SpotPrice="0.5", InstanceCount=1, LaunchSpecification={"ImageId": AMI, "InstanceType": "m5.large"})
    (instance_id,) = [i["InstanceId"] for r in clients.ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    assert read_instances(aws, REGION, [instance_id])[instance_id].lifecycle == "spot"


@pytest.mark.parametrize("count, expected_calls", [(0, 0), (5, 1), (10, 1), (11, 2), (25, 3)], ids=lambda v: str(v))
def test_read_instances_calls_grow_only_by_batch(aws, monkeypatch, count, expected_calls):
    monkeypatch.setattr(aws_reader, "INSTANCE_BATCH", 10)  # the real batch is 200; the rule is the same
    clients = aws(REGION)
    ids = []
    if count:
        ids = [i["InstanceId"] for i in clients.ec2.run_instances(ImageId=AMI, InstanceType="m5.large", MinCount=count, MaxCount=count)["Instances"]]
    calls = count_calls(clients.ec2)
    assert sorted(read_instances(aws, REGION, ids)) == sorted(ids)
    assert calls == ["DescribeInstances"] * expected_calls


def test_instance_batch_is_within_ec2_limits():
    assert 0 < aws_reader.INSTANCE_BATCH <= 1000


# ------------------------------------------------------------------------------------ activities

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def test_no_scaling_activity_is_normal(aws):
    assert read_activities(aws, REGION, ["workers", "gpu"], NOW - timedelta(hours=1)) == ()
    assert read_activities(aws, REGION, ["workers"], NOW - timedelta(hours=1)) == ()
    assert read_activities(aws, REGION, [], NOW - timedelta(hours=1)) == ()


def raw_activity(activity_id, group, minutes_ago, status="Successful", message=""):
    start = NOW - timedelta(minutes=minutes_ago)
    return {"ActivityId": activity_id, "AutoScalingGroupName": group, "Cause": f"cause {activity_id}",
            "StartTime": start, "StatusCode": status, "Progress": 100, "Description": f"description {activity_id}",
            **({"StatusMessage": message} if message else {}), **({"EndTime": start} if status != "InProgress" else {})}


def test_activities_are_parsed_filtered_and_paging_stops_at_older_ones(aws):
    clients = aws(REGION)
    message = "Insufficient capacity. Launching EC2 instance failed."
    with Stubber(clients.autoscaling) as stub:
        stub.add_response("describe_scaling_activities", {"Activities": [
            raw_activity("a3", "workers", 5, "Failed", message), raw_activity("x1", "someone-else", 10),
            raw_activity("a2", "gpu", 20, "InProgress")], "NextToken": "page2"}, {})
        stub.add_response("describe_scaling_activities", {"Activities": [
            raw_activity("a1", "workers", 50), raw_activity("old", "workers", 61)], "NextToken": "page3"}, {"NextToken": "page2"})
        activities = read_activities(aws, REGION, ["workers", "gpu"], NOW - timedelta(hours=1))
        stub.assert_no_pending_responses()  # page3 was never asked for
    assert [a.activity_id for a in activities] == ["a1", "a2", "a3"]  # oldest first
    failed = activities[-1]
    assert (failed.group_name, failed.region, failed.status_code, failed.status_message, failed.cause) == (
        "workers", REGION, "Failed", message, "cause a3")
    assert failed.start_time == NOW - timedelta(minutes=5) and activities[1].end_time is None


def test_activities_of_one_group_are_asked_for_by_name(aws):
    clients = aws(REGION)
    with Stubber(clients.autoscaling) as stub:
        stub.add_response("describe_scaling_activities", {"Activities": [raw_activity("a1", "workers", 5)]},
                          {"AutoScalingGroupName": "workers"})
        assert [a.activity_id for a in read_activities(aws, REGION, ["workers"], NOW - timedelta(hours=1))] == ["a1"]


# ----------------------------------------------------------------------------------- spot prices

def test_spot_prices(aws):
    prices = read_spot_prices(aws, REGION, ["m5.large"], NOW - timedelta(hours=5))
    assert prices and all(p.instance_type == "m5.large" and p.region == REGION and p.price >= 0 for p in prices)
    assert list(prices) == sorted(prices, key=lambda p: (p.instance_type, p.zone, p.timestamp))
    assert read_spot_prices(aws, REGION, [], NOW) == ()


# -------------------------------------------------------------------------------- clients, errors

def test_clients_are_cached_per_region_and_use_adaptive_retries(aws):
    assert aws(REGION) is aws(REGION) and aws(REGION) is not aws("us-east-1")
    config = aws(REGION).ec2.meta.config
    assert config.retries["mode"] == "adaptive" and config.retries["total_max_attempts"] == aws_reader.MAX_ATTEMPTS
    assert (config.connect_timeout, config.read_timeout) == (aws_reader.CONNECT_TIMEOUT_SECONDS, aws_reader.READ_TIMEOUT_SECONDS)
    assert aws(REGION).autoscaling.meta.region_name == REGION


def test_clients_botocore_makes_for_credentials_do_not_wait_60_s_a_read():
    """STS for IAM roles for service accounts is made by botocore from the session's defaults."""
    session = make_session(SETTINGS)
    sts = session._session.create_client("sts", region_name=REGION)  # as botocore's credential providers do
    config = sts.meta.config
    assert (config.connect_timeout, config.read_timeout) == (aws_reader.CONNECT_TIMEOUT_SECONDS, aws_reader.READ_TIMEOUT_SECONDS)
    assert config.retries["total_max_attempts"] == aws_reader.MAX_ATTEMPTS


def test_explicit_keys_win_over_the_default_chain(aws):
    explicit = make_session(Settings(cluster_name=CLUSTER, aws_access_key="AKIAEXPLICIT", aws_secret_key="secret"))
    assert explicit.get_credentials().access_key == "AKIAEXPLICIT"
    assert make_session(SETTINGS).get_credentials().access_key == os.environ["AWS_ACCESS_KEY_ID"]  # the default chain


def test_aws_endpoint_url_is_honoured(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5999")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    clients = aws_clients(SETTINGS, REGION)
    assert clients.ec2.meta.endpoint_url == "http://127.0.0.1:5999"
    assert clients.autoscaling.meta.endpoint_url == "http://127.0.0.1:5999"


@pytest.mark.parametrize("code, expected", [
    ("AccessDenied", "autoscaling:DescribeAutoScalingGroups"),
    ("Throttling", "Throttling: Rate exceeded"),
], ids=["access-denied", "other"])
def test_errors_become_cloud_errors(aws, code, expected):
    clients = aws(REGION)
    with Stubber(clients.autoscaling) as stub:
        stub.add_client_error("describe_auto_scaling_groups", service_error_code=code, service_message="Rate exceeded" if code == "Throttling" else "no")
        with pytest.raises(CloudError) as raised:
            read_groups(aws, SETTINGS, REGION)
    assert raised.value.code == code and expected in str(raised.value) and REGION in str(raised.value)


def test_unauthorized_ec2_call_names_the_ec2_action(aws):
    clients = aws(REGION)
    with Stubber(clients.ec2) as stub:
        stub.add_client_error("describe_instances", service_error_code="UnauthorizedOperation", service_message="no")
        with pytest.raises(CloudError, match="ec2:DescribeInstances"):
            read_instances(aws, REGION, ["i-0123456789abcdef0"])


def test_read_functions_accept_one_region_clients(aws):
    clients = aws(REGION)
    assert isinstance(clients, RegionClients)
    assert read_groups(clients, SETTINGS, REGION) == ()


def test_keys_from_the_environment_keep_their_session_token(monkeypatch):
    from autoscaler.read.aws_reader import make_session
    from autoscaler.model.config import Settings

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIATEMP")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "token-123")
    from_env = make_session(Settings(cluster_name="c", aws_access_key="ASIATEMP", aws_secret_key="secret"))
    assert from_env.get_credentials().token == "token-123"
    explicit = make_session(Settings(cluster_name="c", aws_access_key="AKIAOTHER", aws_secret_key="other"))
    assert explicit.get_credentials().token is None


# ------------------------------------------------- prices, mixed-policy strategies, ephemeral storage

GIB_MILLI = (1 << 30) * 1000
MIXED_TYPES = ["m5.2xlarge", "c5.large", "m5.large"]


def make_mixed_group(clients, distribution, name="mixed", desired=0, **template_data):
    create_launch_template(clients, name=f"{name}-tmpl", **template_data)
    create_moto_group(clients, name, desired=desired, MixedInstancesPolicy={
        "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateName": f"{name}-tmpl", "Version": "$Default"},
                           "Overrides": [{"InstanceType": t} for t in MIXED_TYPES]},
        "InstancesDistribution": distribution})


@pytest.mark.parametrize("distribution, desired, strategy", [
    ({}, 0, "prioritized"),
    ({"OnDemandAllocationStrategy": "lowest-price"}, 0, "lowest-price"),
    ({"OnDemandPercentageAboveBaseCapacity": 0, "SpotAllocationStrategy": "capacity-optimized"}, 0, "capacity-optimized"),
    ({"OnDemandPercentageAboveBaseCapacity": 0, "OnDemandBaseCapacity": 2}, 1, aws_reader.MIXED_MARKETS),
    ({"OnDemandPercentageAboveBaseCapacity": 25}, 0, aws_reader.MIXED_MARKETS),
], ids=["on-demand-default", "on-demand-lowest-price", "spot", "base-not-filled", "split"])
def test_mixed_policy_override_order_and_allocation_strategy(aws, distribution, desired, strategy):
    clients = aws(REGION)
    make_mixed_group(clients, distribution, desired=desired)
    (group,) = read_groups(aws, SETTINGS, REGION)
    assert group.override_order == tuple(MIXED_TYPES)  # the launch settings' order, not the shapes' size order
    assert group.allocation_strategy == strategy
    # Each shape has its type's on-demand price (us-west-2: the table's us-east-1 figures).
    assert {s.instance_type: s.hourly_price for s in group.shapes} == {"c5.large": 0.085, "m5.large": 0.096,
                                                                       "m5.2xlarge": 0.384}


@pytest.mark.parametrize("launch", ["configuration", "template", "mixed-one-override"])
def test_single_type_groups_have_no_override_order_or_strategy(aws, launch):
    clients = aws(REGION)
    if launch == "configuration":
        create_launch_configuration(clients, instance_type="r5.xlarge")
        create_moto_group(clients, "g")
    elif launch == "template":
        create_launch_template(clients, instance_type="r5.xlarge")
        create_moto_group(clients, "g", LaunchTemplate={"LaunchTemplateName": "tmpl"})
    else:
        create_launch_template(clients, instance_type="m5.large")
        create_moto_group(clients, "g", MixedInstancesPolicy={
            "LaunchTemplate": {"LaunchTemplateSpecification": {"LaunchTemplateName": "tmpl"},
                               "Overrides": [{"InstanceType": "r5.xlarge"}]}})
    (group,) = read_groups(aws, SETTINGS, REGION)
    assert (group.override_order, group.allocation_strategy) == ((), "")
    assert [(s.instance_type, s.hourly_price) for s in group.shapes] == [("r5.xlarge", 0.252)]


@pytest.mark.parametrize("tag, expected, warns", [
    (None, None, False), ("0.5", 0.5, False), ("cheap", None, True), ("-2", None, True)])
def test_hourly_price_tag_of_a_group(aws, caplog, tag, expected, warns):
    clients = aws(REGION)
    create_launch_configuration(clients)
    create_moto_group(clients, "priced", tags={"openai/hourly-price": tag} if tag is not None else {})
    with caplog.at_level(logging.WARNING, logger="autoscaler"):
        (group,) = read_groups(aws, SETTINGS, REGION)
    assert group.hourly_price_override == expected
    warned = [r.getMessage() for r in caplog.records if "openai/hourly-price" in r.getMessage()]
    assert len(warned) == (1 if warns else 0)
    assert all("priced" in message for message in warned)


@pytest.mark.parametrize("mappings, expected_gib", [
    (None, 17),  # no mapping: the EKS AMI's 20 GiB, less 1 GiB reserved and the 10 % eviction threshold
    ([{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 100, "VolumeType": "gp3"}}], 89),
    ([{"DeviceName": "/dev/xvdb", "Ebs": {"VolumeSize": 200}}, {"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 50}}], 44),
], ids=["default", "root-100", "root-listed-second"])
@pytest.mark.parametrize("launch", ["template", "mixed", "configuration"])
def test_ephemeral_storage_from_the_root_volume(aws, mappings, expected_gib, launch):
    clients = aws(REGION)
    extra = {"BlockDeviceMappings": mappings} if mappings else {}
    if launch == "configuration":
        create_launch_configuration(clients, **extra)
        create_moto_group(clients, "g")
    elif launch == "template":
        create_launch_template(clients, **extra)
        create_moto_group(clients, "g", LaunchTemplate={"LaunchTemplateName": "tmpl"})
    else:
        make_mixed_group(clients, {}, name="g", **extra)
    (group,) = read_groups(aws, SETTINGS, REGION)
    assert group.shapes
    assert {s.capacity.get("ephemeral-storage") for s in group.shapes} == {expected_gib * GIB_MILLI}


def test_a_node_template_tag_wins_over_the_root_volume_estimate(aws):
    clients = aws(REGION)
    create_launch_template(clients, BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 100}}])
    create_moto_group(clients, "g", LaunchTemplate={"LaunchTemplateName": "tmpl"},
               tags={"k8s.io/cluster-autoscaler/node-template/resources/ephemeral-storage": "300Gi"})
    (group,) = read_groups(aws, SETTINGS, REGION)
    assert group.shapes[0].capacity.get("ephemeral-storage") == 300 * GIB_MILLI


def test_a_pod_asking_for_ephemeral_storage_scales_a_group_with_no_nodes(aws):
    """Before the estimate, a group with no node offered no ephemeral-storage and such a pod was
    called infeasible."""
    from builders import NOW, make_pod

    from autoscaler.decide.decision import decide
    from autoscaler.decide.group_health import GroupHealthState
    from autoscaler.model.objects import Snapshot
    from autoscaler.model.plan import SetDesiredCapacity

    clients = aws(REGION)
    create_launch_template(clients, BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 100}}])
    create_moto_group(clients, "g", LaunchTemplate={"LaunchTemplateName": "tmpl"})
    groups = read_groups(aws, SETTINGS, REGION)
    pod = make_pod("scratch", cpu="500m", memory="1Gi", **{"ephemeral-storage": "50Gi"})
    decision = decide(Snapshot(groups=groups, pods=(pod,)), SETTINGS, NOW, GroupHealthState())
    raises = [a for a in decision.actions if isinstance(a, SetDesiredCapacity)]
    assert [(a.group, a.region) for a in raises] == [("g", REGION)] and raises[0].desired >= 1
    # More than the volume can hold, less its reserve: infeasible, nothing raised.
    too_big = make_pod("huge", cpu="500m", memory="1Gi", **{"ephemeral-storage": "95Gi"})
    decision = decide(Snapshot(groups=groups, pods=(too_big,)), SETTINGS, NOW, GroupHealthState())
    assert not [a for a in decision.actions if isinstance(a, SetDesiredCapacity)]


# ------------------------------------------------------------ an endpoint that drips its answer

# Every call has CALL_DEADLINE_SECONDS in all, botocore's retries and any credential fetch
# included: an endpoint that sends a byte every 0.5 s (never long enough for a read timeout) fails
# the call at its deadline, with one line naming it. Credentials by web identity (IRSA) come from
# STS, here the only endpoint that drips: the fetch is bounded by the call's deadline.
DRIPPING_CALLS = {
    "paginated": (lambda clients: read_groups(clients, SETTINGS, REGION), "everything", {},
                  f"reading Auto Scaling groups in {REGION}: DescribeAutoScalingGroups: no complete answer within 1 s"),
    "direct": (lambda clients: AwsActuator(clients).set_desired_capacity("workers", REGION, 2), "everything", {},
               f"setting desired capacity of workers ({REGION}) to 2: SetDesiredCapacity: no complete answer within 1 s"),
    "web-identity-credentials": (lambda clients: read_groups(clients, SETTINGS, REGION), "sts",
                                 {"AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/autoscaler"},
                                 "DescribeAutoScalingGroups: no complete answer within 1 s, all retries and any "
                                 "credential fetch included"),
}


@pytest.mark.parametrize("call, drips, env, says", DRIPPING_CALLS.values(), ids=DRIPPING_CALLS.keys())
def test_a_call_to_an_endpoint_that_drips_its_answer_fails_at_its_deadline(call, drips, env, says, fake_aws,
                                                                             monkeypatch, tmp_path):
    monkeypatch.setattr(aws_reader, "CALL_DEADLINE_SECONDS", 1)
    for name in [name for name in os.environ if name.startswith("AWS_")]:
        monkeypatch.delenv(name)
    with DrippingServer() as server:  # it closes its connections after 5 s: a call still waiting then fails otherwise
        environment = fake_aws.env()
        if drips == "everything":
            environment["AWS_ENDPOINT_URL"] = server.url
        else:
            del environment["AWS_ACCESS_KEY_ID"], environment["AWS_SECRET_ACCESS_KEY"]
            (tmp_path / "token").write_text("a-service-account-token")
            environment.update(AWS_ENDPOINT_URL_STS=server.url, AWS_WEB_IDENTITY_TOKEN_FILE=str(tmp_path / "token"))
        for name, value in {**environment, **env}.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(CloudUnreachable) as raised:
            call(AwsClients(SETTINGS))
    assert says in str(raised.value)
