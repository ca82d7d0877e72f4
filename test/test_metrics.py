"""Metrics and health: what one loop records, the liveness rule, and the HTTP endpoints, in
process and on a running autoscaler."""
import pytest
import requests

from autoscaler.aws_errors import CloudError
from autoscaler.fakes.kube_objects import make_pod as make_kube_pod
from autoscaler.kube_errors import KubeError
from autoscaler.metrics import Liveness, Metrics, MetricsServer, health_window
from builders import make_group, make_group_nodes, make_pod, make_snapshot
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
    assert sample(metrics, "autoscaler_pending_pods") == 5
    assert sample(metrics, "autoscaler_pending_pods_infeasible") == 1
    raised = report.counters["applied_SetDesiredCapacity"]
    assert raised == 1
    desired = sample(metrics, "autoscaler_group_desired_capacity", group="workers", region="us-west-2")
    assert desired > 2, "desired capacity is the value after this loop's scale up"
    assert sample(metrics, "autoscaler_group_instances", group="workers", region="us-west-2") == 2
    assert sample(metrics, "autoscaler_group_max_size", group="workers", region="us-west-2") == 10
    assert sample(metrics, "autoscaler_scale_up_instances_total", group="workers", region="us-west-2") == desired - 2
    assert sample(metrics, "autoscaler_actions_total", action="set_desired_capacity") == 1
    assert sample(metrics, "autoscaler_group_timed_out", group="workers", region="us-west-2") == 0
    assert sample(metrics, "autoscaler_groups_timed_out") == 0
    states = {s.labels["state"]: s.value for family in metrics.registry.collect() if family.name == "autoscaler_nodes"
              for s in family.samples}
    assert sum(states.values()) == 2
    assert sample(metrics, "autoscaler_loops_total", result="success") == 1
    assert sample(metrics, "autoscaler_loop_duration_seconds_count") == 1
    assert sample(metrics, "autoscaler_last_successful_loop_timestamp_seconds") > 0
    assert liveness.check()[0]


@pytest.mark.parametrize("no_scale", [False, True], ids=["scale-up-on", "no-scale"])
def test_pending_pods_leave_out_daemonset_pods_as_scale_up_does(no_scale):
    pending = [make_pod("job", cpu="1"), make_pod("agent", cpu="100m", owner_kinds=("DaemonSet",))]
    metrics = Metrics()
    make_loop(StubWorld(make_snapshot(pods=pending, groups=[make_group("workers")])),
              make_settings(no_scale=no_scale), metrics=metrics).run_once()
    assert sample(metrics, "autoscaler_pending_pods") == 1


@pytest.mark.parametrize("error, service", [
    (KubeError("list pods: HTTP 500"), "kubernetes"),
    (CloudError("Throttling", "describe groups: Throttling"), "aws"),
    (ValueError("a bug"), "other"),
], ids=["kubernetes", "aws", "other"])
def test_a_failed_read_counts_an_api_error_of_its_service(error, service):
    metrics = Metrics()
    report = make_loop(StubWorld(error), metrics=metrics).run_once()
    assert not report.ok
    assert sample(metrics, "autoscaler_api_errors_total", service=service) == 1
    assert sample(metrics, "autoscaler_loops_total", result="failure") == 1
    assert sample(metrics, "autoscaler_last_successful_loop_timestamp_seconds") == 0


@pytest.mark.parametrize("error, throttled", [
    (CloudError("AccessDenied", "denied"), None),
    (CloudError("Throttling", "Rate exceeded"), 1),
], ids=["denied", "throttled"])
def test_a_failed_action_is_counted_in_a_successful_loop(error, throttled):
    metrics, liveness = Metrics(), Liveness(180)
    aws = RecordingAdapter(fail={"set_desired_capacity": error})
    report = make_loop(StubWorld(cluster_snapshot()), aws=aws, metrics=metrics, liveness=liveness).run_once()
    assert report.ok and report.failed_actions == 1
    assert sample(metrics, "autoscaler_loops_total", result="success") == 1
    assert sample(metrics, "autoscaler_last_successful_loop_timestamp_seconds") > 0
    assert sample(metrics, "autoscaler_api_errors_total", service="aws") == 1
    assert sample(metrics, "autoscaler_api_throttled_total", service="aws") == throttled
    assert sample(metrics, "autoscaler_failed_actions_total", action="set_desired_capacity") == 1
    assert sample(metrics, "autoscaler_scale_up_instances_total", group="workers", region="us-west-2") is None


def test_each_metrics_object_has_its_own_registry():
    first, second = Metrics(), Metrics()
    first.pending.set(7)
    assert sample(first, "autoscaler_pending_pods") == 7
    assert sample(second, "autoscaler_pending_pods") == 0


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
            liveness.standing_by()
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
        assert "autoscaler_pending_pods 3.0" in scrape.text
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
        return response.text if 'autoscaler_loops_total{result="success"}' in response.text else None

    text = poll(scrape, 60, "a scrape after the first loop")
    assert "autoscaler_pending_pods 3.0" in text
    assert 'autoscaler_group_desired_capacity{group="cpu-west",region="us-west-2"} 1.0' in text
    assert "autoscaler_leader 1.0" in text  # --kubeconfig given: no election, always acts
    assert requests.get(f"{base}/healthz", timeout=2).status_code == 200
    assert process.terminate() == 0, process.log()
