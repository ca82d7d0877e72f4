"""real_capacity: a group's shapes with its Ready nodes' allocatable in place of the estimate, and
the decisions made on the corrected snapshot."""
import pytest

from autoscaler.decide.decision import decide
from autoscaler.decide.group_health import GroupHealthState
from autoscaler.decide.real_capacity import effective_shapes, with_real_capacity
from autoscaler.model.config import Settings
from autoscaler.model.objects import InstanceShape, Resources
from autoscaler.model.plan import SetDesiredCapacity
from builders import NOW, make_group, make_node, make_pod, make_resources, make_shape, make_snapshot

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
    corrected = with_real_capacity(snapshot)
    assert [g.shapes for g in corrected.groups] == [(InstanceShape("m5.xlarge", REAL),), (ESTIMATE,)]


def test_a_snapshot_without_nodes_of_any_group_is_left_as_it_is():
    snapshot = make_snapshot(nodes=[make_node("n1", instance_id="i-9", allocatable=REAL)],
                             groups=[make_group("g", shapes=[ESTIMATE], instance_ids=["i-1"])])
    assert with_real_capacity(snapshot) is snapshot


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
