"""The Kubernetes reader sees pods as the scheduler does (issue 17, "Buy only what the scheduler
will use"): requests with sidecars and pod-level resources, scheduling gates, host ports, pod
affinity and anti-affinity on any topology key, topology spread constraints, the scheduler's own
message. Each case is a pod added to the fake API server and read back through the official
client; the expected figures are worked out by hand from the Kubernetes rules, in the comments."""
from __future__ import annotations

import pytest

from autoscaler.clients.kube_connect import connect
from autoscaler.fakes.kube_objects import make_pod
from autoscaler.model.objects import (
    ALL_NAMESPACES,
    HOSTNAME_LABEL,
    ZONE_LABEL,
    LabelSelector,
    PodAffinityTerm,
    Requirement,
    Resources,
    SpreadConstraint,
)
from autoscaler.read.kube_reader import KubeReader

GI = 1 << 30


def reader(fake_kube, namespace=None):
    return KubeReader(connect(fake_kube.kubeconfig), namespace)


def read_one(fake_kube, item):
    fake_kube.add(item)
    pods = reader(fake_kube).read_pods()
    assert len(pods) == 1, "the pod was skipped: see the log"
    return pods[0]


def container(name, cpu=None, memory=None, sidecar=False, ports=()):
    requests = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    raw = {"name": name, "image": "busybox", "resources": {"requests": requests} if requests else {}}
    if sidecar:
        raw["restartPolicy"] = "Always"
    if ports:
        raw["ports"] = [dict(port) for port in ports]
    return raw


def pod_with(name="p", containers=(), init=(), labels=None, namespace="default", **spec):
    item = make_pod(name, namespace=namespace, labels=labels)
    item["spec"]["containers"] = [dict(c) for c in containers] or item["spec"]["containers"]
    if init:
        item["spec"]["initContainers"] = [dict(c) for c in init]
    item["spec"].update(spec)
    return item


def cpu_memory(cpu_milli, memory_gi=0):
    return Resources({"cpu": cpu_milli, "memory": memory_gi * GI * 1000, "pods": 1000})


# --- requests: KEP-753 sidecars, pod-level resources, overhead -------------------------------------

REQUESTS = {
    # app 1 + sidecar 1 run together: 2. The sidecar's own init term is 1.
    "a-sidecar-adds-to-the-app": (dict(containers=[container("app", "1")], init=[container("side", "1", sidecar=True)]),
                                  cpu_memory(2000)),
    # An init container of 2 before the sidecar runs alone: max(app 1 + sidecar 1, 2 + 0, sidecar 1) = 2.
    "init-before-the-sidecar": (dict(containers=[container("app", "1")],
                                     init=[container("init", "2"), container("side", "1", sidecar=True)]),
                                cpu_memory(2000)),
    # The "2 CPU where Kubernetes needs 3": the sidecar starts first and keeps running while
    # the init container of 2 runs: max(app 1 + sidecar 1, init 2 + sidecar 1) = 3. Read as a
    # plain init container (max of each), it was max(1, 1, 2) = 2.
    "init-after-the-sidecar-runs-beside-it": (dict(containers=[container("app", "1")],
                                                   init=[container("side", "1", sidecar=True), container("init", "2")]),
                                              cpu_memory(3000)),
    # Per resource. cpu: app 1 + sidecars 1 + 2 = 4; init 3 + sidecar A 1 = 4; A alone 1; A+B 3 -> 4.
    # memory: app 2Gi + A 1Gi + B 0 = 3Gi; init 4Gi + A 1Gi = 5Gi -> 5Gi.
    "two-sidecars-and-an-init-between": (dict(containers=[container("app", "1", "2Gi")],
                                              init=[container("a", "1", "1Gi", sidecar=True), container("init", "3", "4Gi"),
                                                    container("b", "2", sidecar=True)]),
                                         cpu_memory(4000, 5)),
    # An init container with restartPolicy other than Always is a plain one: max(1, 2) = 2.
    "restart-policy-never-is-no-sidecar": (dict(containers=[container("app", "1")],
                                                init=[dict(container("init", "2"), restartPolicy="Never")]),
                                           cpu_memory(2000)),
    # Overhead comes on top of the sidecar sum: 1 + 500m + 100m.
    "sidecar-and-overhead": (dict(containers=[container("app", "1")], init=[container("side", "500m", sidecar=True)],
                                  overhead={"cpu": "100m"}), cpu_memory(1600)),
    # Pod-level cpu 4 replaces the containers' 1 + 1; memory, which it does not name, stays theirs.
    "pod-level-cpu-replaces-the-container-sum": (dict(containers=[container("a", "1", "1Gi"), container("b", "1")],
                                                      resources={"requests": {"cpu": "4"}}), cpu_memory(4000, 1)),
    # Pod-level requests, then overhead: 2 + 250m, 2Gi.
    "pod-level-then-overhead": (dict(containers=[container("a", "1", "1Gi")],
                                     resources={"requests": {"cpu": "2", "memory": "2Gi"}}, overhead={"cpu": "250m"}),
                                cpu_memory(2250, 2)),
    # Pod-level limits alone stand for its requests, as the API server defaults them.
    "pod-level-limits-stand-for-requests": (dict(containers=[container("a", "1")], resources={"limits": {"cpu": "3"}}),
                                            cpu_memory(3000)),
    # Pod-level resources over sidecars too: the pod's 5 whatever its init containers ask (3 + 1).
    "pod-level-over-sidecars": (dict(containers=[container("app", "1")],
                                     init=[container("side", "1", sidecar=True), container("init", "3")],
                                     resources={"requests": {"cpu": "5"}}), cpu_memory(5000)),
}


@pytest.mark.parametrize("spec, expected", REQUESTS.values(), ids=REQUESTS.keys())
def test_requests_are_what_the_scheduler_reserves(fake_kube, spec, expected):
    assert read_one(fake_kube, pod_with(**spec)).requests == expected


# --- scheduling gates, host ports, the scheduler's message -----------------------------------------

def test_scheduling_gates_are_read_and_make_the_pod_gated(fake_kube):
    pod = read_one(fake_kube, pod_with(schedulingGates=[{"name": "kueue.x-k8s.io/admission"}, {"name": "other"}]))
    assert pod.scheduling_gates == ("kueue.x-k8s.io/admission", "other") and pod.is_gated


def test_a_pod_without_gates_is_not_gated(fake_kube):
    pod = read_one(fake_kube, pod_with())
    assert pod.scheduling_gates == () and not pod.is_gated


HOST_PORTS = {
    "host-port-tcp-by-default": (dict(containers=[container("a", ports=[{"containerPort": 80, "hostPort": 8080}])]),
                                 ("TCP/8080",)),
    "udp-and-a-port-without-host-port": (dict(containers=[container("a", ports=[
        {"containerPort": 53, "hostPort": 53, "protocol": "UDP"}, {"containerPort": 9090}])]), ("UDP/53",)),
    "several-containers-and-a-sidecar": (dict(
        containers=[container("a", ports=[{"containerPort": 1, "hostPort": 9000}]),
                    container("b", ports=[{"containerPort": 2, "hostPort": 9001, "protocol": "SCTP"}])],
        init=[container("side", sidecar=True, ports=[{"containerPort": 3, "hostPort": 9002}]),
              container("init", ports=[{"containerPort": 4, "hostPort": 9003}])]),  # a plain init container's port is gone when the pod runs
        ("SCTP/9001", "TCP/9000", "TCP/9002")),
    "host-network-takes-every-container-port": (dict(hostNetwork=True, containers=[container("a", ports=[
        {"containerPort": 10250}, {"containerPort": 8125, "protocol": "UDP"}])]), ("TCP/10250", "UDP/8125")),
    "no-ports": (dict(), ()),
}


@pytest.mark.parametrize("spec, expected", HOST_PORTS.values(), ids=HOST_PORTS.keys())
def test_host_ports(fake_kube, spec, expected):
    assert read_one(fake_kube, pod_with(**spec)).host_ports == expected


def test_the_schedulers_message_is_read_from_the_pod_scheduled_condition(fake_kube):
    item = pod_with()
    item["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": "0/3 nodes are available: 3 Insufficient cpu."}]
    assert read_one(fake_kube, item).unschedulable_message == "0/3 nodes are available: 3 Insufficient cpu."


def test_a_scheduled_pod_has_no_message(fake_kube):
    assert read_one(fake_kube, make_pod("p", node_name="n1", phase="Running")).unschedulable_message == ""


# --- pod affinity and anti-affinity, any topology key ----------------------------------------------

APP_WEB = LabelSelector(match_labels=(("app", "web"),))


def term(topology_key=HOSTNAME_LABEL, **fields):
    return {"topologyKey": topology_key, "labelSelector": {"matchLabels": {"app": "web"}}, **fields}


AFFINITY_TERMS = {
    "own-namespace-by-default": (term(), PodAffinityTerm(APP_WEB, ("team",), HOSTNAME_LABEL)),
    "zone-key": (term(ZONE_LABEL), PodAffinityTerm(APP_WEB, ("team",), ZONE_LABEL)),
    "any-other-key": (term("rack"), PodAffinityTerm(APP_WEB, ("team",), "rack")),
    "listed-namespaces-sorted": (term(namespaces=["b", "a"]), PodAffinityTerm(APP_WEB, ("a", "b"), HOSTNAME_LABEL)),
    # An empty namespaceSelector is every namespace.
    "empty-namespace-selector-is-every-namespace": (term(namespaceSelector={}),
                                                    PodAffinityTerm(APP_WEB, ALL_NAMESPACES, HOSTNAME_LABEL)),
    # A non-empty one needs the namespaces' labels, which are not read: every namespace too.
    "namespace-selector-is-taken-as-every-namespace": (term(namespaceSelector={"matchLabels": {"env": "prod"}},
                                                            namespaces=["a"]),
                                                       PodAffinityTerm(APP_WEB, ALL_NAMESPACES, HOSTNAME_LABEL)),
    # matchLabelKeys: the pod's own value of "version" joins the selector; a key it lacks does not.
    "match-label-keys-add-the-pods-values": (term(matchLabelKeys=["version", "absent"]), PodAffinityTerm(
        LabelSelector((("app", "web"),), (Requirement("version", "In", ("v2",)),)), ("team",), HOSTNAME_LABEL)),
    "mismatch-label-keys-exclude-the-pods-values": (term(mismatchLabelKeys=["version"]), PodAffinityTerm(
        LabelSelector((("app", "web"),), (Requirement("version", "NotIn", ("v2",)),)), ("team",), HOSTNAME_LABEL)),
}


@pytest.mark.parametrize("kind", ["podAffinity", "podAntiAffinity"])
@pytest.mark.parametrize("raw, expected", AFFINITY_TERMS.values(), ids=AFFINITY_TERMS.keys())
def test_required_pod_affinity_terms(fake_kube, kind, raw, expected):
    preferred = {"weight": 10, "podAffinityTerm": term("other")}
    item = pod_with(namespace="team", labels={"app": "web", "version": "v2"},
                    affinity={kind: {"requiredDuringSchedulingIgnoredDuringExecution": [raw],
                                     "preferredDuringSchedulingIgnoredDuringExecution": [preferred]}})
    pod = read_one(fake_kube, item)
    read_terms, other = (pod.affinity, pod.anti_affinity) if kind == "podAffinity" else (pod.anti_affinity, pod.affinity)
    assert read_terms == (expected,) and other == ()  # preferred terms are hints: not read


# --- topology spread constraints -------------------------------------------------------------------

def constraint(when="DoNotSchedule", **fields):
    return {"maxSkew": 1, "topologyKey": ZONE_LABEL, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}, **fields}


SPREAD = {
    "do-not-schedule": ([constraint()], (SpreadConstraint(ZONE_LABEL, 1, APP_WEB, 1),)),
    "schedule-anyway-is-a-hint": ([constraint("ScheduleAnyway")], ()),
    "skew-and-min-domains": ([constraint(maxSkew=2, minDomains=3, topologyKey=HOSTNAME_LABEL)],
                             (SpreadConstraint(HOSTNAME_LABEL, 2, APP_WEB, 3),)),
    # matchLabelKeys: the pod's own pod-template-hash joins the selector; a key it lacks does not.
    "match-label-keys-add-the-pods-values": ([constraint(matchLabelKeys=["pod-template-hash", "absent"])], (
        SpreadConstraint(ZONE_LABEL, 1, LabelSelector((("app", "web"), ("pod-template-hash", "abc"))), 1),)),
    # Without a selector it counts no pod: it spreads nothing.
    "no-selector-spreads-nothing": ([{k: v for k, v in constraint().items() if k != "labelSelector"}], ()),
    "two-kept-in-order": ([constraint(), constraint(topologyKey=HOSTNAME_LABEL)],
                          (SpreadConstraint(ZONE_LABEL, 1, APP_WEB, 1), SpreadConstraint(HOSTNAME_LABEL, 1, APP_WEB, 1))),
}


@pytest.mark.parametrize("raw, expected", SPREAD.values(), ids=SPREAD.keys())
def test_topology_spread_constraints(fake_kube, raw, expected):
    item = pod_with(labels={"app": "web", "pod-template-hash": "abc"}, topologySpreadConstraints=raw)
    assert read_one(fake_kube, item).spread == expected
