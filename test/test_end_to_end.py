"""The real CLI as a subprocess against moto (through the shim) and the fake Kubernetes API."""
import os
import pathlib
import subprocess
import sys

from autoscaler.fakes.kube_objects import make_node, make_pod

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLUSTER = "e2e"


def run_autoscaler(fake_aws, fake_kube, *args, timeout=120):
    env = fake_aws.env(inherit=os.environ)
    command = [sys.executable, str(ROOT / "main.py"), "--cluster-name", CLUSTER, "--kubeconfig", fake_kube.kubeconfig,
               "--once", "-vvv", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def desired_of(fake_aws, region, name):
    groups = fake_aws.client("autoscaling", region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    return groups["AutoScalingGroups"][0]["DesiredCapacity"]


def make_cluster(fake_aws, fake_kube):
    fake_aws.create_group("us-west-2", "cpu-west", CLUSTER, instance_type="m5.xlarge", max_size=20)
    fake_aws.create_group("us-west-2", "gpu-west", CLUSTER, instance_type="p3.2xlarge", max_size=5,
                          tags={"kube/hardware": "gpu"})
    fake_aws.create_group("us-east-1", "cpu-east", CLUSTER, instance_type="m5.xlarge", max_size=20)
    fake_aws.create_group("us-west-2", "other-cluster", "someone-else", instance_type="m5.xlarge", max_size=20)
    # Two GPU jobs and a CPU job that fits on the only existing node.
    fake_kube.add(make_node("static-node", cpu="4", memory="16Gi"))
    fake_kube.add(make_pod("gpu-job-1", cpu="4", memory="8Gi", gpu=1, node_selector={"hardware": "gpu"}))
    fake_kube.add(make_pod("gpu-job-2", cpu="4", memory="8Gi", gpu=1, node_selector={"hardware": "gpu"}))
    fake_kube.add(make_pod("small-job", cpu="500m", memory="1Gi"))


def test_once_raises_only_the_group_the_pending_pods_need(fake_aws, fake_kube):
    make_cluster(fake_aws, fake_kube)
    result = run_autoscaler(fake_aws, fake_kube, "--regions", "us-west-2,us-east-1", "--over-provision", "0")
    assert result.returncode == 0, result.stderr
    # A p3.2xlarge has 8 vCPUs and one GPU: the two GPU jobs need one instance each.
    assert desired_of(fake_aws, "us-west-2", "gpu-west") == 2
    assert desired_of(fake_aws, "us-west-2", "cpu-west") == 0
    assert desired_of(fake_aws, "us-east-1", "cpu-east") == 0
    assert desired_of(fake_aws, "us-west-2", "other-cluster") == 0
    assert "Running Scaling Loop" in result.stderr and "Loop done:" in result.stderr
    assert "Traceback" not in result.stderr


def test_dry_run_decides_the_same_and_changes_nothing(fake_aws, fake_kube):
    make_cluster(fake_aws, fake_kube)
    fake_aws.clear_calls()
    fake_kube.clear_requests()
    result = run_autoscaler(fake_aws, fake_kube, "--regions", "us-west-2,us-east-1", "--over-provision", "0", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "[dry-run] would set desired capacity of gpu-west (us-west-2) from 0 to 2" in result.stderr
    # It says so at the start, and its summary says what it would have done, not what it did.
    assert "Dry run: decisions are logged, nothing in AWS or Kubernetes is changed" in result.stderr
    summary = next(line for line in result.stderr.splitlines() if "Loop done:" in line)
    assert "would_SetDesiredCapacity=" in summary and "applied_" not in summary, summary
    assert "action(s) decided, nothing changed (dry run)" in result.stderr
    assert fake_aws.mutating_calls() == []
    assert fake_kube.mutating_requests() == []
    assert desired_of(fake_aws, "us-west-2", "gpu-west") == 0


def test_scale_from_zero_nodes_with_over_provision(fake_aws, fake_kube):
    fake_aws.create_group("us-west-2", "cpu-west", CLUSTER, instance_type="m5.xlarge", max_size=20)
    for index in range(10):
        fake_kube.add(make_pod(f"job-{index}", cpu="1", memory="2Gi"))
    result = run_autoscaler(fake_aws, fake_kube, "--regions", "us-west-2", "--over-provision", "1")
    assert result.returncode == 0, result.stderr
    # m5.xlarge: 4 vCPU minus the kubelet reserve leaves 3 one-CPU jobs per instance -> 4 bins + 1.
    assert desired_of(fake_aws, "us-west-2", "cpu-west") == 5


def test_api_failure_exits_non_zero_without_traceback(fake_aws, fake_kube):
    make_cluster(fake_aws, fake_kube)
    fake_kube.fail_next("GET", r"/api/v1/nodes", status=500, count=10)
    result = run_autoscaler(fake_aws, fake_kube, "--regions", "us-west-2")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "reading the cluster failed" in result.stderr
