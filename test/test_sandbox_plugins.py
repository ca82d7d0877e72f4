"""The sandbox scheduler's filters (autoscaler/sandbox/plugins.py), by table, on API-shaped dicts:
each case is what the Kubernetes scheduler's plugin of that name decides."""
from __future__ import annotations

from decimal import Decimal

import pytest

from autoscaler.fakes.kube_objects import make_node, make_pod
from autoscaler.sandbox.daemonsets import admits, daemon_pod_template, make_daemonset
from autoscaler.sandbox.plugins import Cluster, pod_requests, unfit_reason

ZONE = "topology.kubernetes.io/zone"


def container(cpu: str, restart: str = "") -> dict:
    return {"name": f"c{cpu}", "image": "x", "resources": {"requests": {"cpu": cpu}},
            **({"restartPolicy": restart} if restart else {})}


def with_spec(pod: dict, **spec) -> dict:
    pod["spec"].update(spec)
    return pod


@pytest.mark.parametrize("spec, cpu", [
    pytest.param({"containers": [container("1"), container("500m")]}, "1.5", id="app-containers-add-up"),
    pytest.param({"containers": [container("2")], "initContainers": [container("1", "Always")]}, "3",
                 id="a-sidecar-runs-beside-the-app"),
    pytest.param({"containers": [container("1")], "initContainers": [container("4")]}, "4",
                 id="a-larger-init-container-wins"),
    pytest.param({"containers": [container("1")], "initContainers": [container("1", "Always"), container("2")]}, "3",
                 id="an-init-container-after-a-sidecar-runs-with-it"),
    pytest.param({"containers": [container("1")], "initContainers": [container("2"), container("1", "Always")]}, "2",
                 id="an-init-container-before-a-sidecar-runs-alone"),
    pytest.param({"containers": [container("1")], "resources": {"requests": {"cpu": "3"}}}, "3",
                 id="pod-level-requests-win"),
    pytest.param({"containers": [container("1")], "overhead": {"cpu": "250m"}}, "1.25", id="overhead-adds"),
])
def test_requests_as_kubernetes_computes_them(spec, cpu):
    pod = with_spec(make_pod("p", cpu=None, memory=None), **spec)
    assert pod_requests(pod)["cpu"] == Decimal(cpu)
    assert pod_requests(pod)["pods"] == 1


def cluster(*nodes: dict, bound: tuple = (), **extra) -> Cluster:
    result = Cluster(nodes={node["metadata"]["name"]: node for node in nodes}, **extra)
    for pod in bound:
        result.pods_on[pod["spec"]["nodeName"]].append(pod)
    return result


def anti(key: str, app: str) -> dict:
    return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}}]}}


def affinity(key: str, app: str) -> dict:
    return {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}}]}}


def spread(key: str, skew: int = 1, min_domains: int = 0) -> list:
    return [{"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": "DoNotSchedule",
             "labelSelector": {"matchLabels": {"app": "s"}}, **({"minDomains": min_domains} if min_domains else {})}]


def ports(*numbers: int, protocol: str = "TCP") -> list:
    return [{"name": "main", "image": "x", "resources": {"requests": {"cpu": "100m"}},
             "ports": [{"containerPort": n, "hostPort": n, "protocol": protocol} for n in numbers]}]


A = make_node("a", cpu="2", memory="4Gi", zone="us-west-2a")
B = make_node("b", cpu="2", memory="4Gi", zone="us-west-2b")
PV_B = {"metadata": {"name": "pv", "labels": {ZONE: "us-west-2b"}}, "spec": {"nodeAffinity": {"required": {
    "nodeSelectorTerms": [{"matchExpressions": [{"key": ZONE, "operator": "In", "values": ["us-west-2b"]}]}]}}}}
CLAIM = {"metadata": {"name": "data", "namespace": "default"}, "spec": {"volumeName": "pv"}}
WITH_CLAIM = [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]


@pytest.mark.parametrize("pod, node, world, fits", [
    pytest.param(make_pod("p", cpu="1500m"), A, cluster(A, bound=(make_pod("o", cpu="1", node_name="a"),)), False,
                 id="resources-minus-bound-pods"),
    pytest.param(make_pod("p", cpu="1"), A, cluster(A, bound=(make_pod("o", cpu="1", node_name="a"),)), True,
                 id="resources-exactly-fit"),
    pytest.param(make_pod("p", gpu=1), A, cluster(A), False, id="no-gpu-reported"),
    pytest.param(make_pod("p"), make_node("t", taints=["x=y:NoSchedule"]), None, False, id="untolerated-taint"),
    pytest.param(make_pod("p"), make_node("t", taints=["x=y:PreferNoSchedule"]), None, True, id="prefer-no-schedule"),
    pytest.param(make_pod("p", tolerations=[{"operator": "Exists"}]), make_node("t", taints=["x=y:NoExecute"]), None,
                 True, id="tolerate-everything"),
    pytest.param(make_pod("p", tolerations=[{"key": "x", "value": "z"}]), make_node("t", taints=["x=y:NoSchedule"]),
                 None, False, id="toleration-of-another-value"),
    pytest.param(make_pod("p"), make_node("n", ready=False), None, False, id="not-ready-node"),
    pytest.param(make_pod("p"), make_node("u", unschedulable=True), None, False, id="cordoned-node"),
    pytest.param(make_pod("p", node_selector={"pool": "x"}), A, None, False, id="node-selector"),
    pytest.param(make_pod("p", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["5"]}]}]}}}),
        make_node("g", labels={"gen": "6"}), None, True, id="affinity-gt"),
    pytest.param(make_pod("p", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "gen", "operator": "NotIn", "values": ["5"]}]}]}}}),
        A, None, True, id="affinity-not-in-without-the-label"),
    pytest.param(make_pod("p", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}),
        A, None, False, id="affinity-match-fields"),
    pytest.param(with_spec(make_pod("p"), containers=ports(9000)), A,
                 cluster(A, bound=(with_spec(make_pod("o", node_name="a"), containers=ports(9000)),)), False,
                 id="host-port-taken"),
    pytest.param(with_spec(make_pod("p"), containers=ports(9000, protocol="UDP")), A,
                 cluster(A, bound=(with_spec(make_pod("o", node_name="a"), containers=ports(9000)),)), True,
                 id="host-port-of-another-protocol"),
    pytest.param(with_spec(make_pod("p"), hostNetwork=True, containers=[{"name": "m", "image": "x",
                                                                         "ports": [{"containerPort": 9000}]}]),
                 A, cluster(A, bound=(with_spec(make_pod("o", node_name="a"), containers=ports(9000)),)), False,
                 id="host-network-container-port"),
    pytest.param(with_spec(make_pod("p"), volumes=WITH_CLAIM), A,
                 cluster(A, B, claims={("default", "data"): CLAIM}, volumes={"pv": PV_B}), False, id="volume-in-b-not-a"),
    pytest.param(with_spec(make_pod("p"), volumes=WITH_CLAIM), B,
                 cluster(A, B, claims={("default", "data"): CLAIM}, volumes={"pv": PV_B}), True, id="volume-in-b"),
    pytest.param(with_spec(make_pod("p"), volumes=WITH_CLAIM), B, cluster(A, B), False, id="claim-missing"),
    pytest.param(make_pod("p", labels={"app": "r"}, affinity=anti(ZONE, "r")), A,
                 cluster(A, B, bound=(make_pod("o", labels={"app": "r"}, node_name="a"),)), False,
                 id="zone-anti-affinity-same-zone"),
    pytest.param(make_pod("p", labels={"app": "r"}, affinity=anti(ZONE, "r")), B,
                 cluster(A, B, bound=(make_pod("o", labels={"app": "r"}, node_name="a"),)), True,
                 id="zone-anti-affinity-other-zone"),
    pytest.param(make_pod("p", labels={"app": "r"}), A,
                 cluster(A, B, bound=(make_pod("o", labels={"app": "x"}, node_name="a", affinity=anti(ZONE, "r")),)),
                 False, id="existing-pod-anti-affinity"),
    pytest.param(make_pod("p", labels={"app": "w"}, affinity=affinity(ZONE, "w")), A, cluster(A, B), True,
                 id="first-pod-matching-its-own-affinity"),
    pytest.param(make_pod("p", labels={"app": "x"}, affinity=affinity(ZONE, "w")), A, cluster(A, B), False,
                 id="affinity-to-pods-that-are-not-there"),
    pytest.param(make_pod("p", labels={"app": "w"}, affinity=affinity(ZONE, "w")), A,
                 cluster(A, B, bound=(make_pod("o", labels={"app": "w"}, node_name="b"),)), False,
                 id="affinity-to-a-pod-in-another-zone"),
    pytest.param(with_spec(make_pod("p", labels={"app": "s"}), topologySpreadConstraints=spread(ZONE)), A,
                 cluster(A, B, bound=(make_pod("o", labels={"app": "s"}, node_name="a"),)), False,
                 id="spread-skew-2"),
    pytest.param(with_spec(make_pod("p", labels={"app": "s"}), topologySpreadConstraints=spread("kubernetes.io/hostname")),
                 A, cluster(A, bound=(make_pod("o", labels={"app": "s"}, node_name="a"),)), True,
                 id="spread-over-the-only-node"),
    pytest.param(with_spec(make_pod("p", labels={"app": "s"}),
                           topologySpreadConstraints=spread("kubernetes.io/hostname", min_domains=3)),
                 A, cluster(A, bound=(make_pod("o", labels={"app": "s"}, node_name="a"),)), False,
                 id="spread-below-min-domains"),
])
def test_filters_as_the_scheduler_plugins(pod, node, world, fits):
    world = world or cluster(node)
    reason = unfit_reason(pod, node, world)
    assert (reason is None) == fits, reason


def test_a_daemonset_tolerates_what_its_controller_adds_and_nothing_else():
    template = daemon_pod_template(make_daemonset("agent", {"cpu": "200m"}))
    assert admits(template, make_node("u", unschedulable=True))
    assert not admits(template, make_node("c", taints=["node.cilium.io/agent-not-ready=true:NoSchedule"]))
    selective = daemon_pod_template(make_daemonset("gpu", {"cpu": "100m"}, node_selector={"hardware": "gpu"}))
    assert not admits(selective, make_node("n"))
