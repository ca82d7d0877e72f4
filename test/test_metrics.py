"""Metrics and health: what one loop records, the liveness rule, and the HTTP endpoints, in
process and on a running autoscaler."""
import time
from dataclasses import replace
from datetime import timedelta

import pytest
import requests

from autoscaler import __version__
from autoscaler.act.kube_actuator import EvictionRefused
from autoscaler.clients.aws_errors import CloudError
from autoscaler.clients.kube_errors import KubeError
from autoscaler.fakes.kube_objects import make_pod as make_kube_pod
from autoscaler.model.objects import ScalingActivity
from autoscaler.model.plan import SetDesiredCapacity
from autoscaler.run.call_timing import kube_operation, time_aws_calls, time_kube_calls
from autoscaler.run.metrics import Liveness, Metrics, MetricsServer, health_window
from builders import NOW, make_group, make_group_nodes, make_pod, make_snapshot
from daemon_process import free_port, poll
from loop_stubs import RecordingAdapter, StubWorld, make_loop, make_settings


def cluster_snapshot():
    """2 nodes of a 4-CPU group (max 10), one of them busy; 4 three-CPU pending pods (one fits the
    free node, three need new instances) and one that fits no instance."""
    group, nodes = make_group_nodes(make_group("workers", max_size=10), 2)
    running = [make_pod("busy", cpu="3", node=nodes[0].name)]
    pending = [make_pod(f"job-{i}", cpu="3") for i in range(4)] + [make_pod("huge", cpu="64")]
    return make_snapshot(pods=running + pending, nodes=nodes, groups=[group])


def sample(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


def test_one_loop_records_pods_nodes_groups_actions_and_time():
    metrics, liveness = Metrics(), Liveness(180)
    loop = make_loop(StubWorld(cluster_snapshot()), metrics=metrics, liveness=liveness)
    report = loop.run_once()
    assert report.ok
    assert sample(metrics, "kubernetes_ec2_autoscaler_pending_pods") == 5
    assert sample(metrics, "kubernetes_ec2_autoscaler_pending_pods_infeasible") == 1
    raised = report.counters.by_action[SetDesiredCapacity]
    assert raised == 1
    desired = sample(metrics, "kubernetes_ec2_autoscaler_group_desired_capacity", group="workers", region="us-west-2")
    assert desired > 2, "desired capacity is the value after this loop's scale up"
    assert sample(metrics, "kubernetes_ec2_autoscaler_group_instances", group="workers", region="us-west-2") == 2
    assert sample(metrics, "kubernetes_ec2_autoscaler_group_max_size", group="workers", region="us-west-2") == 10
    assert sample(metrics, "kubernetes_ec2_autoscaler_scale_up_instances_total", group="workers", region="us-west-2") == desired - 2
    assert sample(metrics, "kubernetes_ec2_autoscaler_actions_total", action="set_desired_capacity") == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_group_timed_out", group="workers", region="us-west-2") == 0
    assert sample(metrics, "kubernetes_ec2_autoscaler_groups_timed_out") == 0
    states = {s.labels["state"]: s.value for family in metrics.registry.collect() if family.name == "kubernetes_ec2_autoscaler_nodes"
              for s in family.samples}
    assert sum(states.values()) == 2
    assert sample(metrics, "kubernetes_ec2_autoscaler_loops_total", result="success") == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_loop_duration_seconds_count") == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_last_successful_loop_timestamp_seconds") > 0
    assert liveness.check()[0]


@pytest.mark.parametrize("no_scale", [False, True], ids=["scale-up-on", "no-scale"])
def test_pending_pods_leave_out_daemonset_pods_as_scale_up_does(no_scale):
    pending = [make_pod("job", cpu="1"), make_pod("agent", cpu="100m", owner_kinds=("DaemonSet",))]
    metrics = Metrics()
    make_loop(StubWorld(make_snapshot(pods=pending, groups=[make_group("workers")])),
              make_settings(no_scale=no_scale), metrics=metrics).run_once()
    assert sample(metrics, "kubernetes_ec2_autoscaler_pending_pods") == 1


@pytest.mark.parametrize("no_scale", [False, True], ids=["scale-up-on", "no-scale"])
def test_gated_pods_are_counted_apart_from_the_pending_ones(no_scale):
    """Scheduling gates or a claim that must bind first: the scheduler does not look at them, so
    they are not demand; kubernetes_ec2_autoscaler_pending_pods_gated counts them, under --no-scale too."""
    pending = [make_pod("job", cpu="1"), replace(make_pod("queued", cpu="1"), scheduling_gates=("kueue",)),
               replace(make_pod("claim", cpu="1"), unbound_claims=("data",)),
               replace(make_pod("agent", cpu="100m", owner_kinds=("DaemonSet",)), scheduling_gates=("x",))]
    metrics = Metrics()
    make_loop(StubWorld(make_snapshot(pods=pending, groups=[make_group("workers")])),
              make_settings(no_scale=no_scale), metrics=metrics).run_once()
    assert sample(metrics, "kubernetes_ec2_autoscaler_pending_pods") == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_pending_pods_gated") == 2


@pytest.mark.parametrize("error, service", [
    (KubeError("list pods: HTTP 500"), "kubernetes"),
    (CloudError("Throttling", "describe groups: Throttling"), "aws"),
    (ValueError("a bug"), "other"),
], ids=["kubernetes", "aws", "other"])
def test_a_failed_read_counts_an_api_error_of_its_service(error, service):
    metrics = Metrics()
    started = sample(metrics, "kubernetes_ec2_autoscaler_last_successful_loop_timestamp_seconds")
    report = make_loop(StubWorld(error), metrics=metrics).run_once()
    assert not report.ok
    assert sample(metrics, "kubernetes_ec2_autoscaler_api_errors_total", service=service) == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_loops_total", result="failure") == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_last_successful_loop_timestamp_seconds") == started, "only a success moves it"


@pytest.mark.parametrize("error, throttled", [
    (CloudError("AccessDenied", "denied"), None),
    (CloudError("Throttling", "Rate exceeded"), 1),
], ids=["denied", "throttled"])
def test_a_failed_action_is_counted_in_a_successful_loop(error, throttled):
    metrics, liveness = Metrics(), Liveness(180)
    aws = RecordingAdapter(fail={"set_desired_capacity": error})
    report = make_loop(StubWorld(cluster_snapshot()), aws=aws, metrics=metrics, liveness=liveness).run_once()
    assert report.ok and report.failed_actions == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_loops_total", result="success") == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_last_successful_loop_timestamp_seconds") > 0
    assert sample(metrics, "kubernetes_ec2_autoscaler_api_errors_total", service="aws") == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_api_throttled_total", service="aws") == throttled
    assert sample(metrics, "kubernetes_ec2_autoscaler_failed_actions_total", action="set_desired_capacity") == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_scale_up_instances_total", group="workers", region="us-west-2") is None


def test_each_metrics_object_has_its_own_registry():
    first, second = Metrics(), Metrics()
    first.pending.set(7)
    assert sample(first, "kubernetes_ec2_autoscaler_pending_pods") == 7
    assert sample(second, "kubernetes_ec2_autoscaler_pending_pods") == 0


@pytest.mark.parametrize("sleep, window", [(60, 840), (10, 790), (900, 1980)],
                         ids=["default", "short", "above-the-backoff-cap"])
def test_health_window_is_a_sleep_the_backoff_cap_and_three_minutes(sleep, window):
    assert health_window(sleep) == window


class FakeMonotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


# name -> (steps: ("advance", s) | "success" | "standby" | "leader", healthy)
LIVENESS_CASES = {
    "starting-within-grace": ([("advance", 179)], True),
    "first-loop-too-slow": ([("advance", 181)], False),
    "recent-success": ([("advance", 500), "success", ("advance", 100)], True),
    "success-too-old": ([("advance", 10), "success", ("advance", 181)], False),
    "standby-reaching-the-lease": ([("advance", 500), "standby", ("advance", 60)], True),
    "standby-lost-contact": ([("advance", 10), "standby", ("advance", 181)], False),
    "new-leader-gets-grace": ([("advance", 500), "standby", "leader", ("advance", 100)], True),
    "new-leader-grace-ends": ([("advance", 500), "standby", "leader", ("advance", 181)], False),
}


@pytest.mark.parametrize("steps, healthy", LIVENESS_CASES.values(), ids=LIVENESS_CASES.keys())
def test_liveness(steps, healthy):
    clock = FakeMonotonic()
    liveness = Liveness(180, clock=clock)
    for step in steps:
        if step == "success":
            liveness.loop_succeeded()
        elif step == "standby":
            liveness.standing_by(0)
        elif step == "leader":
            liveness.became_leader()
        else:
            clock.now += step[1]
    assert liveness.check()[0] is healthy


def test_the_server_serves_metrics_and_health():
    clock = FakeMonotonic()
    metrics, liveness = Metrics(), Liveness(180, clock=clock)
    metrics.pending.set(3)
    server = MetricsServer(metrics, liveness, port=0, host="127.0.0.1").start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        scrape = requests.get(f"{base}/metrics", timeout=5)
        assert scrape.status_code == 200 and scrape.headers["Content-Type"].startswith("text/plain")
        assert "kubernetes_ec2_autoscaler_pending_pods 3.0" in scrape.text
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        clock.now += 181
        unhealthy = requests.get(f"{base}/healthz", timeout=5)
        assert unhealthy.status_code == 503 and "no successful loop" in unhealthy.text
        assert requests.get(f"{base}/other", timeout=5).status_code == 404
    finally:
        server.stop()


def test_a_running_autoscaler_serves_its_metrics(fake_aws, fake_kube, start_autoscaler):
    fake_aws.create_group("us-west-2", "cpu-west", "e2e", instance_type="m5.xlarge", max_size=20)
    for index in range(3):
        fake_kube.add(make_kube_pod(f"job-{index}", cpu="1", memory="1Gi"))
    port = free_port()
    process = start_autoscaler("--regions", "us-west-2", "--over-provision", "0", "--sleep", "1",
                               "--metrics-port", str(port), "-vv")
    base = f"http://127.0.0.1:{port}"

    def scrape():
        try:
            response = requests.get(f"{base}/metrics", timeout=2)
        except requests.ConnectionError:
            return None
        return response.text if 'kubernetes_ec2_autoscaler_loops_total{result="success"}' in response.text else None

    text = poll(scrape, 60, "a scrape after the first loop")
    assert "kubernetes_ec2_autoscaler_pending_pods 3.0" in text
    assert 'kubernetes_ec2_autoscaler_group_desired_capacity{group="cpu-west",region="us-west-2"} 1.0' in text
    assert "kubernetes_ec2_autoscaler_leader 1.0" in text  # --kubeconfig given: no election, always acts
    assert f'kubernetes_ec2_autoscaler_build_info{{version="{__version__}"}} 1.0' in text and "\nprocess_cpu_seconds_total " in text
    # Every call of the real clients is timed, AWS and Kubernetes alike.
    assert 'operation="autoscaling:DescribeAutoScalingGroups",service="aws"' in text
    assert 'operation="list pods",service="kubernetes"' in text
    assert "_created" not in text
    assert requests.get(f"{base}/healthz", timeout=2).status_code == 200
    assert process.terminate() == 0, process.log()


# ---- what operators alert on ----------------------------------------------------------------------

def busy_and_underused_snapshot(pods_on_underused=3):
    """Two nodes of a group, up for 3 hours: one busy, one running a few small Job pods (drainable
    under --drain-utilization 0.5)."""
    group, nodes = make_group_nodes(make_group("workers"), 2, created=NOW - timedelta(hours=3))
    pods = [replace(make_pod(f"job-{i}", cpu="100m", node=nodes[0].name), scheduled_at=NOW - timedelta(hours=3))
            for i in range(pods_on_underused)]
    pods.append(replace(make_pod("busy", cpu="3", node=nodes[1].name), scheduled_at=NOW - timedelta(hours=3)))
    return make_snapshot(pods=pods, nodes=nodes, groups=[group])


def test_the_exposition_has_process_series_the_version_and_no_created_series():
    text = Metrics().exposition().decode()
    assert "\nprocess_cpu_seconds_total " in text and "\nprocess_resident_memory_bytes " in text
    assert "\npython_info{" in text
    assert f'\nkubernetes_ec2_autoscaler_build_info{{version="{__version__}"}} 1.0' in text
    assert "_created" not in text


def test_the_last_success_gauge_starts_at_the_start_not_at_zero():
    """A new process (or a standby replica) has not been failing since 1970: no alert at start."""
    before = time.time()
    metrics = Metrics()
    assert before <= sample(metrics, "kubernetes_ec2_autoscaler_last_successful_loop_timestamp_seconds") <= time.time()


def test_each_phase_of_a_loop_is_timed():
    metrics = Metrics()
    assert make_loop(StubWorld(cluster_snapshot()), metrics=metrics).run_once().ok
    for phase in ("read", "decide", "act"):
        assert sample(metrics, "kubernetes_ec2_autoscaler_loop_phase_duration_seconds_count", phase=phase) == 1, phase
    make_loop(StubWorld(KubeError("list pods: HTTP 500")), metrics=metrics).run_once()
    assert sample(metrics, "kubernetes_ec2_autoscaler_loop_phase_duration_seconds_count", phase="read") == 1, "a failed read is no read"


def test_evictions_are_counted_by_result():
    def evict(name, args):
        if args[1] == "job-1":
            raise EvictionRefused("evict pod default/job-1: HTTP 429", 429)
        if args[1] == "job-2":
            raise KubeError("evict pod default/job-2: HTTP 500", 500)

    metrics = Metrics()
    kube = RecordingAdapter(before_call=lambda name, args: evict(name, args) if name == "evict" else None)
    make_loop(StubWorld(busy_and_underused_snapshot(4)), make_settings(drain_utilization=0.5), kube=kube,
              metrics=metrics).run_once()
    assert [args[1] for name, args in kube.calls if name == "evict"] == ["job-0", "job-3"]  # recorded once passed
    assert sample(metrics, "kubernetes_ec2_autoscaler_evicted_pods_total", result="evicted") == 2
    assert sample(metrics, "kubernetes_ec2_autoscaler_evicted_pods_total", result="blocked") == 1
    assert sample(metrics, "kubernetes_ec2_autoscaler_evicted_pods_total", result="failed") == 1


def test_scale_in_is_counted_by_the_state_of_the_node():
    group, nodes = make_group_nodes(make_group("workers"), 2, created=NOW - timedelta(hours=3), cordoned_by_autoscaler=True)
    metrics = Metrics()
    make_loop(StubWorld(make_snapshot(nodes=nodes, groups=[group])),
              make_settings(idle_threshold=0, type_idle_threshold=0, max_scale_in_fraction=1), metrics=metrics).run_once()
    assert sample(metrics, "kubernetes_ec2_autoscaler_scaled_in_nodes_total", reason="idle-unschedulable") == 2


def failed_launch_snapshot():
    group = make_group("pool", desired=5)
    launch = ScalingActivity("a-1", "pool", "us-west-2", "Failed",
                             "You have requested more instances (11) than your current instance limit of 10 allows for "
                             "the specified instance type. Launching EC2 instance failed.",
                             "Launching a new EC2 instance",
                             "At 2026-11-27T09:50:00Z a user request explicitly set group desired capacity changing "
                             "the desired capacity from 1 to 5.", NOW - timedelta(minutes=10))
    return replace(make_snapshot(groups=[group]), activities=(launch,))


@pytest.mark.parametrize("reason, world, aws", [
    ("instance-limit", failed_launch_snapshot(), None),
    ("api-error", cluster_snapshot(), RecordingAdapter(fail={"set_desired_capacity": CloudError("AccessDenied", "denied")})),
], ids=["launch-failed", "raise-failed"])
def test_a_failed_scale_up_is_counted_once_with_why(reason, world, aws):
    metrics = Metrics()
    loop = make_loop(StubWorld(world), aws=aws, metrics=metrics)
    loop.run_once()
    assert sample(metrics, "kubernetes_ec2_autoscaler_failed_scale_ups_total", reason=reason) == 1
    if reason == "instance-limit":  # still timed out next loop: the same failure, not a new one
        loop.run_once()
        assert sample(metrics, "kubernetes_ec2_autoscaler_failed_scale_ups_total", reason=reason) == 1


@pytest.mark.parametrize("method, url, operation", [
    ("GET", "https://k8s:6443/api/v1/nodes?limit=500", "list nodes"),
    ("GET", "https://k8s:6443/api/v1/pods?watch=true&resourceVersion=5", "watch pods"),
    ("GET", "https://k8s:6443/api/v1/nodes/ip-10-0-0-1", "get nodes"),
    ("PATCH", "https://k8s:6443/api/v1/nodes/ip-10-0-0-1", "patch nodes"),
    ("POST", "https://k8s:6443/api/v1/namespaces/default/pods/job-1/eviction", "create pods/eviction"),
    ("PUT", "https://k8s:6443/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x", "update leases"),
    ("GET", "https://k8s:6443/apis/policy/v1/poddisruptionbudgets", "list poddisruptionbudgets"),
    ("GET", "https://k8s:6443/version", "get /version"),
], ids=lambda value: value if " " in str(value) else None)
def test_kubernetes_operations_are_named_by_verb_and_resource(method, url, operation):
    assert kube_operation(method, url) == operation


def test_kubernetes_calls_are_timed_by_operation_failed_ones_too(fake_kube):
    from kubernetes import client as kube_client

    from autoscaler.clients.kube_connect import connect

    metrics = Metrics()
    api_client = connect(fake_kube.kubeconfig)
    time_kube_calls(api_client, metrics.observe_call)
    core = kube_client.CoreV1Api(api_client)
    core.list_node()
    with pytest.raises(kube_client.ApiException):
        core.read_node("missing")
    count = "kubernetes_ec2_autoscaler_api_request_duration_seconds_count"
    assert sample(metrics, count, service="kubernetes", operation="list nodes") == 1
    assert sample(metrics, count, service="kubernetes", operation="get nodes") == 1


def test_aws_calls_are_timed_by_operation_failed_ones_too(fake_aws):
    import boto3
    from botocore.exceptions import ClientError

    metrics = Metrics()
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-west-2")
    time_aws_calls(session, metrics.observe_call)
    session.client("autoscaling", endpoint_url=fake_aws.url).describe_auto_scaling_groups()
    with pytest.raises(ClientError):
        session.client("ec2", endpoint_url=fake_aws.url).describe_instances(InstanceIds=["i-0123456789abcdef0"])
    count = "kubernetes_ec2_autoscaler_api_request_duration_seconds_count"
    assert sample(metrics, count, service="aws", operation="autoscaling:DescribeAutoScalingGroups") == 1
    assert sample(metrics, count, service="aws", operation="ec2:DescribeInstances") == 1
