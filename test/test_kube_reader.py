"""The Kubernetes reader against the fake API server, over HTTP, through the official client."""
import threading
from datetime import datetime, timezone

import pytest
from kubernetes import client as kube_client
from kubernetes.config.config_exception import ConfigException

from autoscaler.clients import kube_connect
from autoscaler.clients.kube_connect import BoundedApiClient, connect
from autoscaler.clients.kube_errors import KubeError, KubeUnreachable, kube_call
from autoscaler.decide.scheduling import placement_matches
from autoscaler.fakes.kube_objects import make_node, make_pdb, make_pod
from autoscaler.model.objects import HOSTNAME_LABEL, LAST_BUSY_ANNOTATION, PodPhase, Resources
from autoscaler.read import kube_reader
from autoscaler.read.kube_reader import KubeReader, parse_provider_id, pod_from_api, pod_requests
from daemon_process import poll
from silent_server import DrippingServer, SilentServer

GI = 1 << 30


def reader(fake_kube, namespace=None):
    return KubeReader(connect(fake_kube.kubeconfig), namespace)


def milli(**amounts):
    return Resources({name.replace("_", "/").replace("nvidia/gpu", "nvidia.com/gpu"): value for name, value in amounts.items()})


def test_nodes_become_model_nodes_with_instance_region_and_heartbeat(fake_kube):
    fake_kube.add(make_node("n1", cpu="8", memory="32Gi", gpu=1, provider_id="aws:///us-west-2b/i-0abc",
                            heartbeat_timestamp="2026-11-27T10:00:00Z", annotations={LAST_BUSY_ANNOTATION: "2026-11-27T09:00:00Z"},
                            taints=["dedicated=gpu:NoSchedule"], unschedulable=True))
    fake_kube.add(make_node("unmanaged"))
    nodes = {node.name: node for node in reader(fake_kube).read_nodes()}
    n1 = nodes["n1"]
    assert (n1.instance_id, n1.zone, n1.region) == ("i-0abc", "us-west-2b", "us-west-2")
    assert n1.allocatable.get("cpu") == 8000 and n1.allocatable.get("memory") == 32 * GI * 1000
    assert n1.allocatable.get("nvidia.com/gpu") == 1000
    assert n1.unschedulable and n1.taints[0].key == "dedicated" and n1.taints[0].effect == "NoSchedule"
    assert n1.last_heartbeat == datetime(2026, 11, 27, 10, tzinfo=timezone.utc)
    assert n1.last_busy == datetime(2026, 11, 27, 9, tzinfo=timezone.utc)
    assert not nodes["unmanaged"].is_managed


def test_pods_are_read_across_pages_and_finished_pods_are_left_out(fake_kube):
    for index in range(1203):
        fake_kube.add(make_pod(f"p{index:04d}", cpu="250m", memory="1Gi"))
    fake_kube.add(make_pod("done", phase="Succeeded", node_name="n1"))
    fake_kube.add(make_pod("crashed", phase="Failed", node_name="n1"))
    fake_kube.add(make_pod("running", phase="Running", node_name="n1", namespace="batch"))
    fake_kube.clear_requests()
    pods = reader(fake_kube).read_pods()
    names = {pod.name for pod in pods}
    assert len(pods) == 1204 and "running" in names and not names & {"done", "crashed"}
    assert sum(1 for r in fake_kube.requests if r.path == "/api/v1/pods") == 3  # pages of 500
    assert next(p for p in pods if p.name == "running").phase is PodPhase.RUNNING


def test_pod_namespace_limits_the_read(fake_kube):
    fake_kube.add(make_pod("a", namespace="batch"))
    fake_kube.add(make_pod("b", namespace="other"))
    assert [pod.key for pod in reader(fake_kube, "batch").read_pods()] == ["batch/a"]


def test_a_pod_with_an_unparseable_quantity_is_skipped_with_a_warning(fake_kube, caplog):
    fake_kube.add(make_pod("good", cpu="1"))
    bad = make_pod("bad", cpu="1")
    bad["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    fake_kube.add(bad)
    pods = reader(fake_kube).read_pods()
    assert [pod.name for pod in pods] == ["good"]
    assert "skipping pod default/bad" in caplog.text and "lots" in caplog.text


def test_budgets_are_read(fake_kube):
    fake_kube.add(make_pdb("web", namespace="default", min_available=1, match_labels={"app": "web"}))
    budgets = reader(fake_kube).read_budgets()
    assert [(b.namespace, b.name, b.selector.match_labels) for b in budgets] == [("default", "web", (("app", "web"),))]


def test_api_errors_become_kube_errors_with_the_status(fake_kube):
    fake_kube.fail_next("GET", r"^/api/v1/nodes", status=403, count=1)
    with pytest.raises(KubeError) as raised:
        reader(fake_kube).read_nodes()
    assert raised.value.status == 403 and "permission" in str(raised.value)


@pytest.mark.parametrize(
    "spec, expected",
    [
        pytest.param({"containers": [{"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
                                     {"resources": {"requests": {"cpu": "500m"}}}]},
                     {"cpu": 1500, "memory": GI * 1000}, id="containers-add-up"),
        pytest.param({"containers": [{"resources": {"requests": {"cpu": "1"}}}],
                      "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}]},
                     {"cpu": 2000, "memory": GI * 1000}, id="larger-init-container-wins-per-resource"),
        pytest.param({"containers": [{"resources": {"limits": {"cpu": "2", "nvidia.com/gpu": "1"}}}]},
                     {"cpu": 2000, "nvidia.com/gpu": 1000}, id="limits-stand-for-missing-requests"),
        pytest.param({"containers": [{"resources": {"requests": {"cpu": "1"}}}], "overhead": {"cpu": "250m"}},
                     {"cpu": 1250}, id="overhead-is-added"),
        pytest.param({"containers": [{}]}, {}, id="no-requests-still-takes-a-pod-slot"),
    ],
)
def test_pod_requests(spec, expected):
    assert pod_requests(spec) == Resources(dict(expected, pods=1000))


@pytest.mark.parametrize(
    "provider_id, expected",
    [
        pytest.param("aws:///us-west-2a/i-0123", ("i-0123", "us-west-2a"), id="usual"),
        pytest.param("aws:///i-0123", ("i-0123", None), id="no-zone"),
        pytest.param("gce://project/zone/name", (None, None), id="not-aws"),
        pytest.param("", (None, None), id="empty"),
    ],
)
def test_parse_provider_id(provider_id, expected):
    assert parse_provider_id(provider_id) == expected


def test_pod_constraints_are_converted():
    item = make_pod("p", node_selector={"aws/type": "p3.2xlarge"}, owner_kind="Job",
                    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    annotations={"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"},
                    labels={"app": "train"},
                    affinity={
                        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                            {"matchExpressions": [{"key": "aws/class", "operator": "In", "values": ["p", "g"]}]}]}},
                        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                            {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "train"}}},
                            {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"app": "x"}}}]},
                    })
    pod = pod_from_api(item)
    assert pod.placement.node_selector == (("aws/type", "p3.2xlarge"),)
    assert pod.placement.tolerations[0].operator == "Exists"
    assert pod.placement.node_affinity[0][0].values == ("p", "g")
    # Terms on any topology key are read, each with its key.
    assert [(t.topology_key, t.namespaces) for t in pod.anti_affinity] == [
        ("kubernetes.io/hostname", ("default",)), ("topology.kubernetes.io/zone", ("default",))]
    assert pod.owner_kinds == ("Job",) and pod.safe_to_evict is False and pod.is_pending_unassigned


@pytest.mark.parametrize(
    "term, matches",
    [
        pytest.param({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
                     {"n1": True, "n2": False}, id="fields-only-as-the-daemonset-controller-writes"),
        pytest.param({"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}],
                      "matchExpressions": [{"key": "aws/class", "operator": "In", "values": ["m"]}]},
                     {"n1": False, "n2": True}, id="fields-and-expressions-are-anded"),
    ],
)
def test_match_fields_on_the_node_name_select_by_hostname(term, matches):
    item = make_pod("agent", owner_kind="DaemonSet", affinity={"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}})
    pod = pod_from_api(item)
    assert HOSTNAME_LABEL in [r.key for r in pod.placement.node_affinity[0]]
    for name, expected in matches.items():
        labels = {HOSTNAME_LABEL: name, "aws/class": "m"}
        assert placement_matches(pod.placement, labels, ()) is expected


# --- failures of the client itself, and a server that never answers --------------------------------

def stale_credentials(api_client):
    """The client refreshes its token before each call, as with an exec plugin; the plugin fails."""
    def refresh(_configuration):
        raise ConfigException("exec: process returned 255. stderr: Throttling: Rate exceeded")

    api_client.configuration.api_key["authorization"] = "Bearer stale"
    api_client.configuration.refresh_api_key_hook = refresh
    return api_client


def test_a_failed_credential_refresh_is_a_kube_error(fake_kube):
    api_client = stale_credentials(connect(fake_kube.kubeconfig))
    with pytest.raises(KubeError, match="could not get Kubernetes credentials .*Throttling"):
        KubeReader(api_client).read_nodes()


def test_a_request_the_client_rejects_is_a_kube_error(fake_kube):
    core = kube_client.CoreV1Api(connect(fake_kube.kubeconfig))
    with pytest.raises(KubeError, match="list nodes: the Kubernetes client rejected the request"):
        kube_call("list nodes", core.list_node, limit="many")


READS = {
    "nodes": lambda r: r.read_nodes(),
    "pods": lambda r: r.read_pods(),
    "pods-of-a-namespace": lambda r: KubeReader(r.core.api_client, "batch").read_pods(),
    "budgets": lambda r: r.read_budgets(),
    "daemonsets": lambda r: r.read_daemonsets(),  # optional, but a stalled server is weather: it fails the read
}


# A server that never answers fails a page by its read timeout; one that drips its answer a byte
# every 0.5 s (never long enough for a read timeout) by the call's total deadline, which covers
# the page's body too (the reader reads it after the client returns).
SERVERS = {
    "never-answers": (SilentServer, (1, 0.2), "timed out"),
    "drips-its-answer": (DrippingServer, (1, 2), "timed out: no complete answer within 1 s"),
}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
@pytest.mark.parametrize("server_kind, timeout, says", SERVERS.values(), ids=SERVERS.keys())
def test_a_read_from_a_server_that_never_finishes_its_answer_times_out(read, server_kind, timeout, says, monkeypatch):
    monkeypatch.setattr(kube_reader, "LIST_REQUEST_TIMEOUT", timeout)  # (connect, read)
    monkeypatch.setattr(kube_connect, "CALL_DEADLINE_SECONDS", 1)
    before = set(threading.enumerate())
    with server_kind(lifetime=60) as server:
        api_client = BoundedApiClient(kube_client.Configuration(host=server.url))
        with pytest.raises(KubeUnreachable, match=says):
            read(KubeReader(api_client))
        # The thread of the call given up ends too (its body read is shut down), while the server
        # still drips: it does not stay behind, one a loop, for as long as the server lives.
        calls = [thread for thread in set(threading.enumerate()) - before if thread.name.startswith("call ")]
        poll(lambda: not any(thread.is_alive() for thread in calls), 30, "the call given up to end")
