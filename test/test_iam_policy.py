"""iam-policy.json against the AWS calls the autoscaler makes.

One full run of the real CLI (two loops, as subprocesses) against FakeAws and the fake Kubernetes
API — scale up, a failed launch overflowing to a second region, a spot request that waits too
long, and idle nodes cordoned then terminated — records every AWS action; the policy must allow
each one, and every action the policy allows must be one the code calls. The same run's
Kubernetes requests are checked against the ClusterRole of autoscaler-dep.yaml.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import botocore.session
from botocore import xform_name

from autoscaler.fakes.aws import FAKE_AMI_ID
from autoscaler.fakes.kube_objects import make_node, make_pod
from test_manifests import GRANTED_TO_EVERY_USER, granted, rbac_request

ROOT = pathlib.Path(__file__).resolve().parent.parent
POLICY_FILE = ROOT / "iam-policy.json"
PRODUCT_SOURCES = (ROOT / "main.py", *sorted(path for path in (ROOT / "autoscaler").rglob("*.py") if path.relative_to(ROOT / "autoscaler").parts[0] not in ("fakes", "sandbox")))
CLUSTER = "iam"
BATCH = {"workload": "batch"}


def policy_actions() -> set[str]:
    policy = json.loads(POLICY_FILE.read_text())
    actions = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow" and statement["Resource"] == "*", statement
        assert not any("*" in action for action in statement["Action"]), statement
        actions.update(statement["Action"])
    return actions


def optional_actions() -> set[str]:
    """The actions of the statements whose Sid starts with Optional: the autoscaler works without
    them (pricing:GetProducts: the daemon's live prices; the shipped table otherwise)."""
    policy = json.loads(POLICY_FILE.read_text())
    return {action for statement in policy["Statement"] if statement["Sid"].startswith("Optional")
            for action in statement["Action"]}


def boto3_calls_in_code() -> dict[str, set[str]]:
    """IAM action -> the snake_case client methods in the product that need it: every operation
    of every service the product makes a client for, whose method is called or paginated."""
    text = "\n".join(source.read_text() for source in PRODUCT_SOURCES)
    services = set(re.findall(r"\.client\(\s*[\"'](\w+)[\"']", text))
    names = set(re.findall(r"\.(\w+)\(", text)) | set(re.findall(r"get_paginator\(\s*[\"'](\w+)[\"']", text))
    session = botocore.session.get_session()
    actions: dict[str, set[str]] = {}
    for service in sorted(services):
        model = session.get_service_model(service)
        for operation in model.operation_names:
            if xform_name(operation) in names:
                actions.setdefault(f"{model.signing_name}:{operation}", set()).add(xform_name(operation))
    return actions


# ------------------------------------------------------------------------------------ the scenario

def run_loop(fake_aws, fake_kube, *args):
    """One loop of the real CLI; the AWS actions it called, as IAM names."""
    fake_aws.clear_calls()
    command = [sys.executable, str(ROOT / "main.py"), "--cluster-name", CLUSTER, "--kubeconfig", fake_kube.kubeconfig,
               "--regions", "us-west-2,us-east-1", "--once", "-vv", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=fake_aws.env(inherit=os.environ),
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return {f"{call.service}:{call.action}" for call in fake_aws.calls}


def group(fake_aws, region, name):
    answer = fake_aws.client("autoscaling", region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return answer["AutoScalingGroups"][0]


def build_cluster(fake_aws, fake_kube, now):
    # Pending batch jobs: us-west-2 comes first, but its group cannot launch; us-east-1 can.
    fake_aws.create_group("us-west-2", "batch-west", CLUSTER, launch="template", instance_type="m5.xlarge",
                          max_size=20, tags={"kube/workload": "batch"})
    fake_aws.fail_launches("us-west-2", "batch-west")
    fake_aws.create_group("us-east-1", "batch-east", CLUSTER, instance_type="m5.xlarge", max_size=20,
                          tags={"kube/workload": "batch"})
    for index in range(4):
        fake_kube.add(make_pod(f"job-{index}", cpu="1", memory="2Gi", node_selector=BATCH))

    # Two nodes idle for two hours: their instances were launched then and run nothing since.
    fake_aws.set_clock(now - timedelta(hours=2))
    fake_aws.create_group("us-west-2", "idle-west", CLUSTER, instance_type="m5.large", desired=2, max_size=5)
    fake_aws.set_clock(None)
    for instance in group(fake_aws, "us-west-2", "idle-west")["Instances"]:
        fake_kube.add(make_node(
            f"idle-{instance['InstanceId']}", cpu="2", memory="8Gi", instance_type="m5.large",
            zone=instance["AvailabilityZone"], provider_id=f"aws:///{instance['AvailabilityZone']}/{instance['InstanceId']}",
            creation_timestamp=(now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            heartbeat_timestamp=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        ))

    # A spot group (its bid is checked against the price history every loop).
    fake_aws.create_group("us-east-1", "spot-east", CLUSTER, instance_type="m5.large", spot_price="1.00", max_size=5)


def spot_request_waiting(fake_aws, now):
    """A spot request of spot-east that has waited ten minutes; the autoscaler cancels it.

    Added before one loop only: each --once run is a new process that forgets what it cancelled,
    and moto fails a second cancel of the same request with a 500 (AWS answers it normally)."""
    ec2 = fake_aws.client("ec2", "us-east-1")
    request_id = ec2.request_spot_instances(
        SpotPrice="1.00", InstanceCount=1,
        LaunchSpecification={"ImageId": FAKE_AMI_ID, "InstanceType": "m5.large"},
    )["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
    fake_aws.add_activity("us-east-1", "spot-east", "WaitingForSpotInstanceId",
                          f"Placed Spot instance request: {request_id}. Waiting for instance(s)",
                          start_time=now - timedelta(minutes=10))
    return request_id


def test_a_full_run_needs_exactly_the_actions_of_the_policy(fake_aws, fake_kube):
    now = datetime.now(timezone.utc)
    build_cluster(fake_aws, fake_kube, now)
    idle_instances = sorted(i["InstanceId"] for i in group(fake_aws, "us-west-2", "idle-west")["Instances"])
    fake_kube.clear_requests()
    # Scale in without waiting: no spare idle nodes kept, and both may go in one loop.
    flags = ("--over-provision", "0", "--type-idle-threshold", "0", "--max-scale-in-fraction", "1")

    called = run_loop(fake_aws, fake_kube, *flags)
    assert group(fake_aws, "us-west-2", "batch-west")["DesiredCapacity"] > 0  # raised; its launch failed
    assert all(node["spec"].get("unschedulable") for node in fake_kube.list("Node"))  # idle: cordoned

    spot_request = spot_request_waiting(fake_aws, now)
    called |= run_loop(fake_aws, fake_kube, *flags)
    assert group(fake_aws, "us-west-2", "batch-west")["DesiredCapacity"] == 0  # corrected, timed out
    assert group(fake_aws, "us-east-1", "batch-east")["DesiredCapacity"] > 0  # the pods overflowed
    assert fake_kube.list("Node") == []  # cordoned idle nodes: terminated and deleted
    remaining = {i["InstanceId"] for i in group(fake_aws, "us-west-2", "idle-west")["Instances"]}
    assert not remaining & set(idle_instances)
    requests = fake_aws.client("ec2", "us-east-1").describe_spot_instance_requests()["SpotInstanceRequests"]
    assert spot_request not in {r["SpotInstanceRequestId"] for r in requests if r["State"] != "cancelled"}

    allowed = policy_actions()
    assert not called - allowed, f"the run called actions iam-policy.json does not allow: {sorted(called - allowed)}"
    assert called == allowed - optional_actions(), f"the run never needed: {sorted(allowed - optional_actions() - called)}"

    kube_needed = {rbac_request(r.method, r.path, r.query) for r in fake_kube.requests} - {None} - GRANTED_TO_EVERY_USER
    assert not kube_needed - granted(), f"the ClusterRole lacks: {sorted(kube_needed - granted())}"


def test_the_policy_allows_exactly_what_the_code_calls():
    in_code = boto3_calls_in_code()
    assert "autoscaling:SetDesiredCapacity" in in_code and "ec2:DescribeInstances" in in_code, "the call finder is broken"
    allowed = policy_actions()
    assert not in_code.keys() - allowed, f"called in the code, missing from the policy: {sorted(in_code.keys() - allowed)}"
    assert not allowed - in_code.keys(), f"in the policy, never called by the code: {sorted(allowed - in_code.keys())}"


def test_every_write_is_limited_to_the_clusters_own_tagged_resources():
    """Reads cannot be limited by tag (Describe* take no resource); every write must be, to the
    groups (and spot requests) the autoscaler manages: tagged KubernetesCluster=<the cluster> and a
    worker role in Role or KubernetesRole (the reader's filter, read/aws_reader.py). IAM has no OR
    across condition keys, so each role tag is its own statement, and each write action must be in
    one statement per role tag. The cluster value is the manifests' placeholder, replaced together."""
    from autoscaler.read.aws_reader import CLUSTER_TAG, MANAGED_ROLES, ROLE_TAGS
    from test_manifests import container_environment, documents

    cluster = container_environment(documents(ROOT / "autoscaler-dep.yaml"))["AUTOSCALER_CLUSTER_NAME"]
    assert CLUSTER_TAG == "KubernetesCluster"
    write_role_tags: dict[str, set[str]] = {}
    for statement in json.loads(POLICY_FILE.read_text())["Statement"]:
        writes = [action for action in statement["Action"] if not action.split(":")[1].startswith(("Describe", "Get"))]
        if not writes:
            assert "Condition" not in statement, statement["Sid"]
            continue
        assert writes == statement["Action"], f"{statement['Sid']}: reads and writes in one statement"
        assert list(statement["Condition"]) == ["StringEquals"], statement["Sid"]
        condition = statement["Condition"]["StringEquals"]
        assert condition.get("aws:ResourceTag/KubernetesCluster") == cluster, statement["Sid"]
        role_keys = [key for key in condition if key != "aws:ResourceTag/KubernetesCluster"]
        assert len(role_keys) == 1 and role_keys[0].removeprefix("aws:ResourceTag/") in ROLE_TAGS, statement["Sid"]
        values = condition[role_keys[0]]
        assert isinstance(values, list) and set(values) == MANAGED_ROLES, statement["Sid"]
        for action in writes:
            write_role_tags.setdefault(action, set()).add(role_keys[0].removeprefix("aws:ResourceTag/"))
    assert write_role_tags, "no write statement"
    for action, tags in write_role_tags.items():
        assert tags == set(ROLE_TAGS), f"{action} is allowed with the role in {sorted(tags)} only, not {list(ROLE_TAGS)}"
    # Every action the code writes with is among them.
    writes_in_code = {action for action in boto3_calls_in_code() if not action.split(":")[1].startswith(("Describe", "Get"))}
    assert writes_in_code == write_role_tags.keys()
