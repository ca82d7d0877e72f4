"""node_template: a group's shapes with its initialized nodes' allocatable in place of the estimate,
and the decisions made on the corrected snapshot."""
from dataclasses import replace
from datetime import timedelta

import pytest

from autoscaler.decide.decision import decide
from autoscaler.decide.group_health import GroupHealthState
from autoscaler.decide.initialized import Readiness, is_startup_taint, readiness
from autoscaler.decide.node_template import effective_shapes, with_node_templates
from autoscaler.model.config import Settings
from autoscaler.model.objects import DaemonSet, InstanceShape, NodeState, Resources, Taint, Toleration
from autoscaler.model.plan import SetDesiredCapacity
from builders import (
    NOW, make_group, make_group_nodes, make_node, make_placement, make_pod, make_resources, make_shape, make_snapshot,
)

GIB = (1 << 30) * 1000


def shape(instance_type, cpu, memory_gib, gpu=0):
    return InstanceShape(instance_type, Resources({"cpu": cpu * 1000, "memory": memory_gib * GIB, "nvidia.com/gpu": gpu * 1000}))


def group_of(*shapes):
    return make_group("g", shapes=shapes)


def node_of(name, cpu, memory_gib, instance_type=None, beta=False, gpu=0, ready=True):
    labels = {}
    if instance_type:
        labels["beta.kubernetes.io/instance-type" if beta else "node.kubernetes.io/instance-type"] = instance_type
    allocatable = Resources({"cpu": cpu * 1000, "memory": memory_gib * GIB, "nvidia.com/gpu": gpu * 1000})
    return make_node(name, allocatable=allocatable, labels=labels, ready=ready)


GPU = shape("p3.2xlarge", 8, 61, 1)


SMALL, LARGE = shape("m5.large", 2, 8), shape("m5.xlarge", 4, 16)


@pytest.mark.parametrize("group, nodes, expected", [
    (group_of(SMALL, LARGE), [], [SMALL, LARGE]),
    (group_of(SMALL, LARGE), [node_of("n1", 1, 7, "m5.large")],
     [InstanceShape("m5.large", Resources({"cpu": 1000, "memory": 7 * GIB})), LARGE]),
    (group_of(SMALL, LARGE), [node_of("n1", 1, 7, "m5.large", beta=True)],
     [InstanceShape("m5.large", Resources({"cpu": 1000, "memory": 7 * GIB})), LARGE]),
    # the smallest of several real nodes of a type
    (group_of(SMALL), [node_of("a", 2, 7, "m5.large"), node_of("b", 2, 6, "m5.large")],
     [InstanceShape("m5.large", Resources({"cpu": 2000, "memory": 6 * GIB}))]),
    # an unlabelled node stands for the only type
    (group_of(SMALL), [node_of("a", 1, 6)], [InstanceShape("m5.large", Resources({"cpu": 1000, "memory": 6 * GIB}))]),
    # ... but not when the group has several
    (group_of(SMALL, LARGE), [node_of("a", 1, 6)], [SMALL, LARGE]),
    # a type the group does not launch (any more) changes nothing
    (group_of(SMALL), [node_of("a", 1, 6, "c5.large")], [SMALL]),
    # re-sorted when a real node is bigger than the estimate of a bigger type
    (group_of(SMALL, LARGE), [node_of("a", 8, 32, "m5.large")],
     [LARGE, InstanceShape("m5.large", Resources({"cpu": 8000, "memory": 32 * GIB}))]),
    # a GPU node whose device plugin has not registered keeps the estimated GPU, takes real cpu/memory
    (group_of(GPU), [node_of("g", 7, 59, "p3.2xlarge")],
     [InstanceShape("p3.2xlarge", Resources({"cpu": 7000, "memory": 59 * GIB, "nvidia.com/gpu": 1000}))]),
    # ... and one that reports it is believed
    (group_of(GPU), [node_of("g", 7, 59, "p3.2xlarge", gpu=1), node_of("h", 7, 59, "p3.2xlarge")],
     [InstanceShape("p3.2xlarge", Resources({"cpu": 7000, "memory": 59 * GIB, "nvidia.com/gpu": 1000}))]),
    # a node that is not Ready says nothing yet about what its type offers
    (group_of(SMALL), [node_of("a", 1, 1, "m5.large", ready=False)], [SMALL]),
], ids=["no-nodes", "real-wins", "beta-label", "smallest-node", "unlabelled-single", "unlabelled-mixed",
        "foreign-type", "resorted", "gpu-not-reported", "gpu-reported-by-one", "not-ready-ignored"])
def test_effective_shapes(group, nodes, expected):
    assert list(effective_shapes(group, nodes)) == expected


ESTIMATE = make_shape("m5.xlarge", cpu="4", memory="16Gi", pods=110)
REAL = make_resources(cpu="2", memory="16Gi", pods=110)
TYPE_LABEL = {"node.kubernetes.io/instance-type": "m5.xlarge"}


def test_a_node_corrects_only_the_group_that_owns_its_instance():
    mine = make_group("mine", shapes=[ESTIMATE], instance_ids=["i-1"])
    other = make_group("other", shapes=[ESTIMATE])
    snapshot = make_snapshot(nodes=[make_node("n1", instance_id="i-1", labels=TYPE_LABEL, allocatable=REAL)],
                             groups=[mine, other])
    corrected = with_node_templates(snapshot, {"n1": Readiness.INITIALIZED}).snapshot
    assert [g.shapes for g in corrected.groups] == [(InstanceShape("m5.xlarge", REAL),), (ESTIMATE,)]


def test_a_snapshot_without_nodes_of_any_group_is_left_as_it_is():
    snapshot = make_snapshot(nodes=[make_node("n1", instance_id="i-9", allocatable=REAL)],
                             groups=[make_group("g", shapes=[ESTIMATE], instance_ids=["i-1"])])
    assert with_node_templates(snapshot, {"n1": Readiness.INITIALIZED}).snapshot is snapshot


@pytest.mark.parametrize("allocatable, raised", [(ESTIMATE.capacity, True), (REAL, False)], ids=["estimate", "real"])
def test_decisions_are_made_on_the_real_capacity(allocatable, raised):
    """A 3-CPU pod fits a new instance of the 4-CPU estimate (the one node has 2 CPUs left), but
    not the 2 CPUs that node really offers: scale up launches an instance for it only while the
    node agrees with the estimate."""
    group = make_group("g", shapes=[ESTIMATE], instance_ids=["i-1"], desired=1)
    snapshot = make_snapshot(pods=[make_pod(cpu="3"), make_pod(cpu="2", node="n1")], groups=[group],
                             nodes=[make_node("n1", instance_id="i-1", labels=TYPE_LABEL, allocatable=allocatable)])
    decision = decide(snapshot, Settings(cluster_name="test", regions=("us-west-2",), over_provision=0), NOW,
                      GroupHealthState())
    assert any(isinstance(a, SetDesiredCapacity) for a in decision.actions) is raised
    assert len(decision.scale_up.infeasible) == (0 if raised else 1)


def test_a_corrected_shape_keeps_its_price():
    priced = InstanceShape("m5.xlarge", ESTIMATE.capacity, hourly_price=0.192)
    [corrected] = effective_shapes(group_of(priced), [node_of("n1", 2, 15, "m5.xlarge")])
    assert (corrected.capacity.get("cpu"), corrected.hourly_price) == (2000, 0.192)


# ---- a new instance as Kubernetes will see it: DaemonSets, learned labels and taints, booting nodes ----

OLD = NOW - timedelta(hours=2)  # past --instance-init-time (1500 s by default)
SETTINGS = Settings(cluster_name="test", regions=("us-west-2",), over_provision=0)
LARGE_GROUP = dict(shapes=[make_shape("m5.large", cpu="2", memory="8Gi")], max_size=20)
XLARGE_GROUP = dict(shapes=[make_shape("m5.xlarge", cpu="4", memory="16Gi")], max_size=20)


def daemonset(cpu="300m", memory="0", selector=None, tolerations=(), name="agent") -> DaemonSet:
    return DaemonSet("kube-system", name, make_resources(cpu=cpu, memory=memory, pods=1),
                     make_placement(selector, tolerations))


def raised_groups(snapshot, settings=SETTINGS):
    decision = decide(snapshot, settings, NOW, GroupHealthState())
    return {a.group: a.desired - a.previous for a in decision.actions if isinstance(a, SetDesiredCapacity)}, decision


@pytest.mark.parametrize("daemonsets, expected", [
    ((), {"large": 1}),  # 1.8 CPU fits the 2 CPUs of an m5.large
    ((daemonset(),), {"xlarge": 1}),  # 300m on every node leaves an m5.large 1.7
    ((daemonset(selector={"team": "other"}),), {"large": 1}),  # a DaemonSet for other nodes takes nothing
    ((daemonset(selector={"aws/type": "m5.large"}),), {"xlarge": 1}),  # one for this type does
], ids=["no-daemonset", "daemonset-everywhere", "daemonset-elsewhere", "daemonset-on-this-type"])
def test_daemonsets_take_their_requests_out_of_a_new_instance(daemonsets, expected):
    snapshot = replace(make_snapshot(pods=[make_pod(cpu="1800m")],
                                     groups=[make_group("large", **LARGE_GROUP), make_group("xlarge", **XLARGE_GROUP)]),
                       daemonsets=daemonsets)
    assert raised_groups(snapshot)[0] == expected


def test_a_daemonset_that_does_not_tolerate_the_groups_taint_stays_off_it():
    gpu_taint = Taint("nvidia.com/gpu", "true", "NoSchedule")
    tolerate = [Toleration("nvidia.com/gpu", "Exists")]
    tainted = make_group("large", taints=[gpu_taint], **LARGE_GROUP)
    pod = make_pod(cpu="1800m", tolerations=tolerate)
    snapshot = replace(make_snapshot(pods=[pod], groups=[tainted]), daemonsets=(daemonset(),))
    assert raised_groups(snapshot)[0] == {"large": 1}
    tolerant = replace(make_snapshot(pods=[pod], groups=[tainted]), daemonsets=(daemonset(tolerations=tolerate),))
    assert raised_groups(tolerant)[0] == {}  # 1.7 CPU left: the pod fits no shape


def test_daemonset_pods_seen_on_initialized_nodes_count_when_the_daemonsets_are_not_listed():
    """Without DaemonSets in the snapshot (a cluster whose RBAC does not allow listing them), the
    DaemonSet pods an initialized node of the group runs are the overhead of its next one."""
    group, [node] = make_group_nodes(make_group("large", **LARGE_GROUP), 1, created=OLD)
    busy = make_pod(cpu="1", node=node.name)
    agent = make_pod(cpu="300m", node=node.name, owner_kinds=("DaemonSet",))
    snapshot = make_snapshot(pods=[make_pod(cpu="1800m"), busy, agent], nodes=[node],
                             groups=[group, make_group("xlarge", **XLARGE_GROUP)])
    assert raised_groups(snapshot)[0] == {"xlarge": 1}


def test_a_label_the_tags_promise_but_the_nodes_lack_is_warned_about_and_not_planned_with():
    group = replace(make_group("ml", labels={"team": "ml"}, **LARGE_GROUP), tags={"kube/team": "ml"})
    group, nodes = make_group_nodes(group, 1, created=OLD)
    nodes = [replace(node, labels={k: v for k, v in node.labels.items() if k != "team"}) for node in nodes]
    pods = [make_pod(cpu="1800m", selector={"team": "ml"})]
    raised, decision = raised_groups(make_snapshot(pods=pods + [make_pod(cpu="1", node=nodes[0].name)], nodes=nodes,
                                                   groups=[group]))
    assert raised == {}  # the pod can never run on these nodes: nothing is bought for it
    assert [(d.group, d.tag) for d in decision.template_differences] == [("ml", "kube/team")]
    assert "its nodes do not have it" in decision.template_differences[0].describe()


def test_a_taint_the_nodes_keep_past_their_start_is_planned_with():
    group, nodes = make_group_nodes(make_group("large", **LARGE_GROUP), 1, created=OLD)
    nodes = [replace(node, taints=(Taint("dedicated", "db", "NoSchedule"),)) for node in nodes]
    pods = [make_pod(cpu="1800m"), make_pod(cpu="1", node=nodes[0].name)]
    raised, decision = raised_groups(make_snapshot(pods=pods, nodes=nodes, groups=[group]))
    assert raised == {}
    assert len(decision.scale_up.infeasible) == 1
    assert [d.difference for d in decision.template_differences] == ["its nodes keep taint dedicated=db:NoSchedule past "
                                                                     "their start"]


@pytest.mark.parametrize("node_options, expected", [
    (dict(ready=False), Readiness.BOOTING),
    (dict(ready=False, created=OLD), Readiness.BROKEN),
    (dict(), Readiness.INITIALIZED),
    (dict(taints=[Taint("node.cilium.io/agent-not-ready", "", "NoSchedule")]), Readiness.BOOTING),
    (dict(taints=[Taint("node.cilium.io/agent-not-ready", "", "NoSchedule")], created=OLD), Readiness.INITIALIZED),
    (dict(taints=[Taint("registered", "", "NoExecute")]), Readiness.BOOTING),  # --register-with-taints, no tag
    (dict(taints=[Taint("registered", "", "PreferNoSchedule")]), Readiness.INITIALIZED),  # keeps no pod off
    (dict(taints=[Taint("node.kubernetes.io/unschedulable", "", "NoSchedule")]), Readiness.INITIALIZED),  # a cordon
], ids=["not-ready", "not-ready-past-init-time", "ready", "cilium-start-up-taint", "start-up-taint-past-init-time",
        "untagged-taint", "prefer-no-schedule", "cordon-taint"])
def test_readiness_of_a_node(node_options, expected):
    group, [node] = make_group_nodes(make_group("g"), 1, **node_options)
    state, _ = readiness(node, None, group, SETTINGS, NOW)
    assert state is expected


def test_a_gpu_node_is_booting_until_its_device_plugin_advertises_the_gpu():
    gpu_group = make_group("gpu", instance_type="p3.2xlarge", cpu="8", memory="61Gi", gpu=1)
    group, [node] = make_group_nodes(gpu_group, 1, allocatable=make_resources(cpu="8", memory="61Gi", pods=110))
    state, why = readiness(node, None, group, SETTINGS, NOW)
    assert (state, why) == (Readiness.BOOTING, "nvidia.com/gpu not advertised yet")
    assert readiness(node, None, group, SETTINGS, NOW + timedelta(hours=1))[0] is Readiness.INITIALIZED


@pytest.mark.parametrize("node_options", [
    dict(ready=False),
    dict(taints=[Taint("node.cilium.io/agent-not-ready", "", "NoSchedule")]),
    dict(taints=[Taint("registered", "", "NoSchedule")]),
    dict(allocatable=make_resources(cpu="8", memory="61Gi", pods=110)),  # the GPU is not advertised yet
], ids=["not-ready", "start-up-taint", "untagged-taint", "late-gpu"])
def test_pods_waiting_for_a_booting_node_are_not_bought_for_again(node_options):
    gpu_group = make_group("gpu", instance_type="p3.2xlarge", cpu="8", memory="61Gi", gpu=1)
    group, nodes = make_group_nodes(gpu_group, 1, **node_options)
    snapshot = make_snapshot(pods=[make_pod(cpu="4", gpu=1)], nodes=nodes, groups=[group])
    raised, decision = raised_groups(snapshot)
    assert raised == {}
    assert decision.scale_up.pods_for_new_instances == 1  # planned onto the booting node


def test_a_start_up_taint_flag_names_a_taint_that_goes_away_by_itself():
    taint = Taint("example.com/bootstrapping", "", "NoSchedule")
    assert not is_startup_taint(taint, SETTINGS)
    assert is_startup_taint(taint, replace(SETTINGS, startup_taints=("example.com/bootstrapping",)))
    assert is_startup_taint(Taint("startup-taint.cluster-autoscaler.kubernetes.io/cni", "", "NoSchedule"), SETTINGS)


def test_a_host_port_a_daemonset_holds_is_not_free_on_a_new_instance():
    """A node exporter on hostPort 9100 everywhere: a pod asking for the same port can never run
    on a new instance of the group, so none is bought for it; a pod on another port gets one."""
    exporter = replace(daemonset(cpu="100m"), host_ports=("TCP/9100",))
    for port, expected in (("TCP/9100", {}), ("TCP/9200", {"xlarge": 1})):
        pod = replace(make_pod(cpu="1"), host_ports=(port,))
        snapshot = replace(make_snapshot(pods=[pod], groups=[make_group("xlarge", **XLARGE_GROUP)]), daemonsets=(exporter,))
        assert raised_groups(snapshot)[0] == expected, port


def test_scale_in_keeps_a_booting_node_that_its_pods_wait_for():
    """A node still carrying a start-up taint is idle, and past a short --idle-threshold, but a
    pending pod is planned onto it: it is kept (grace-period), not cordoned, until initialized."""
    settings = replace(SETTINGS, idle_threshold=3)
    group, nodes = make_group_nodes(make_group("large", **LARGE_GROUP), 1, created=NOW - timedelta(seconds=60),
                                    taints=[Taint("example.com/initializing", "", "NoSchedule")])
    decision = decide(make_snapshot(pods=[make_pod(cpu="1")], nodes=nodes, groups=[group]), settings, NOW,
                      GroupHealthState())
    assert decision.counts.nodes_by_state == {NodeState.GRACE_PERIOD: 1}
    assert not any(isinstance(a, SetDesiredCapacity) for a in decision.actions)
