"""Graceful shutdown: SIGTERM during a loop lets the action under way finish, applies nothing
more, releases the lease and exits 0. The fake API server holds the first node write until the
test has sent the signal, so "during a loop" is certain, not a matter of timing."""
import threading
from datetime import datetime, timedelta, timezone

import pytest

from autoscaler.fakes.kube_api import FakeKubeApi
from autoscaler.fakes.kube_objects import make_node
from autoscaler.run.leader import LEASE_NAME
from daemon_process import poll

REGION = "us-west-2"
IDLE_AT_ONCE = ("--idle-threshold", "0", "--type-idle-threshold", "0", "--max-scale-in-fraction", "1",
                "--over-provision", "0")


class GatedKubeApi(FakeKubeApi):
    """Node writes wait at the gate until the test opens it."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()
        self.node_write_arrived = threading.Event()

    def handle(self, method, path, query, content_type, body):
        if method == "PATCH" and path.startswith("/api/v1/nodes/"):
            self.node_write_arrived.set()
            self.gate.wait(60)
        return super().handle(method, path, query, content_type, body)


@pytest.fixture
def fake_kube(tmp_path):
    """Overrides conftest's: the gated server, which start_autoscaler then uses."""
    with GatedKubeApi() as server:
        server.kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        yield server
        server.gate.set()


def idle_nodes(fake_aws, fake_kube, count):
    """``count`` instances launched two hours ago, each a Ready node running nothing."""
    now = datetime.now(timezone.utc)
    fake_aws.set_clock(now - timedelta(hours=2))
    fake_aws.create_group(REGION, "workers", "e2e", instance_type="m5.xlarge", desired=count, max_size=20)
    fake_aws.set_clock(None)
    group = fake_aws.client("autoscaling", REGION).describe_auto_scaling_groups(AutoScalingGroupNames=["workers"])
    stamp = lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    for index, instance in enumerate(sorted(group["AutoScalingGroups"][0]["Instances"], key=lambda i: i["InstanceId"])):
        zone = instance["AvailabilityZone"]
        fake_kube.add(make_node(f"node-{index}", instance_type="m5.xlarge", zone=zone,
                                provider_id=f"aws:///{zone}/{instance['InstanceId']}",
                                creation_timestamp=stamp(now - timedelta(hours=2)), heartbeat_timestamp=stamp(now)))


def node_writes(fake_kube):
    return [r for r in fake_kube.requests if r.method == "PATCH" and r.path.startswith("/api/v1/nodes/")]


def test_sigterm_during_a_loop_finishes_the_action_applies_nothing_more_and_releases_the_lease(
        fake_aws, fake_kube, start_autoscaler):
    idle_nodes(fake_aws, fake_kube, 4)  # four idle nodes: four cordons in one plan
    process = start_autoscaler("--regions", REGION, *IDLE_AT_ONCE, "--sleep", "1", "--metrics-port", "0",
                               "--leader-elect", "-vv")
    poll(fake_kube.node_write_arrived.is_set, 60, "the first cordon to reach the API server")
    process.popen.terminate()  # SIGTERM
    process.wait_for_log("received SIGTERM")
    fake_kube.gate.set()  # the cordon under way completes

    assert process.wait(30) == 0, process.log()
    assert len(node_writes(fake_kube)) == 1, "nothing is applied after SIGTERM"
    cordoned = [n["metadata"]["name"] for n in fake_kube.list("Node") if n["spec"].get("unschedulable")]
    assert len(cordoned) == 1
    assert "3 action(s) of this loop not applied" in process.log()
    assert fake_kube.get("Lease", LEASE_NAME, "kube-system")["spec"].get("holderIdentity") is None
    assert fake_kube.list("events") == [], "a stopping autoscaler posts no more events"
    assert "Traceback" not in process.log()

