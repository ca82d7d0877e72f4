"""Placement predicates: selectors, node affinity, taints, anti-affinity, mixed-instances shapes;
first fit over many rooms."""
import random

import pytest

from autoscaler.decide.packing import FirstFit
from autoscaler.decide.scheduling import (
    anti_affinity_conflict,
    group_capacity_for,
    largest_shape,
    placement_matches,
    pod_matches_node,
    selector_matches,
    tolerates,
)
from autoscaler.model.objects import LabelSelector, Taint, Toleration, extreme_sizes, sort_shapes
from builders import (
    anti_affinity,
    make_group,
    make_node,
    make_placement,
    make_pod,
    make_resources,
    make_shape,
    requirement,
)

GPU_TAINT = Taint("nvidia.com/gpu", "true", "NoSchedule")


@pytest.mark.parametrize("tolerations, taints, expected", [
    pytest.param((), (), True, id="no-taints"),
    pytest.param((), (Taint("dedicated", "gpu", "NoSchedule"),), False, id="noschedule-untolerated"),
    pytest.param((), (Taint("dedicated", "gpu", "NoExecute"),), False, id="noexecute-untolerated"),
    pytest.param((), (Taint("dedicated", "gpu", "PreferNoSchedule"),), True, id="prefernoschedule-ignored"),
    pytest.param((Toleration("dedicated", "Equal", "gpu", "NoSchedule"),), (Taint("dedicated", "gpu", "NoSchedule"),), True, id="equal-match"),
    pytest.param((Toleration("dedicated", "Equal", "cpu", "NoSchedule"),), (Taint("dedicated", "gpu", "NoSchedule"),), False, id="equal-wrong-value"),
    pytest.param((Toleration("dedicated", "Equal", "gpu", "NoExecute"),), (Taint("dedicated", "gpu", "NoSchedule"),), False, id="equal-wrong-effect"),
    pytest.param((Toleration("dedicated", "Equal", "gpu", ""),), (Taint("dedicated", "gpu", "NoExecute"),), True, id="empty-effect-matches-all"),
    pytest.param((Toleration("dedicated", "Exists"),), (Taint("dedicated", "anything", "NoSchedule"),), True, id="exists-any-value"),
    pytest.param((Toleration("other", "Exists"),), (Taint("dedicated", "gpu", "NoSchedule"),), False, id="exists-other-key"),
    pytest.param((Toleration("", "Exists"),), (Taint("a", "1", "NoSchedule"), Taint("b", "2", "NoExecute")), True, id="empty-key-exists-tolerates-all"),
    pytest.param((Toleration("", "Exists", effect="NoSchedule"),), (Taint("b", "2", "NoExecute"),), False, id="empty-key-exists-one-effect"),
    pytest.param((Toleration("a", "Exists"),), (Taint("a", "1"), Taint("b", "2")), False, id="every-taint-needs-a-toleration"),
])
def test_tolerates(tolerations, taints, expected):
    assert tolerates(tolerations, taints) is expected


LABELS = {"aws/type": "p3.2xlarge", "zone": "a", "gpus": "8", "team": "ml"}


@pytest.mark.parametrize("placement, expected", [
    pytest.param(make_placement(), True, id="no-constraints"),
    pytest.param(make_placement({"aws/type": "p3.2xlarge"}), True, id="selector-match"),
    pytest.param(make_placement({"aws/type": "m5.large"}), False, id="selector-other-value"),
    pytest.param(make_placement({"aws/type": "p3.2xlarge", "missing": "x"}), False, id="selector-missing-label"),
    pytest.param(make_placement(affinity=[[requirement("zone", "In", "a", "b")]]), True, id="in"),
    pytest.param(make_placement(affinity=[[requirement("zone", "In", "b")]]), False, id="in-other"),
    pytest.param(make_placement(affinity=[[requirement("nope", "In", "a")]]), False, id="in-absent"),
    pytest.param(make_placement(affinity=[[requirement("zone", "NotIn", "b")]]), True, id="notin"),
    pytest.param(make_placement(affinity=[[requirement("zone", "NotIn", "a")]]), False, id="notin-listed"),
    pytest.param(make_placement(affinity=[[requirement("nope", "NotIn", "a")]]), True, id="notin-absent"),
    pytest.param(make_placement(affinity=[[requirement("team", "Exists")]]), True, id="exists"),
    pytest.param(make_placement(affinity=[[requirement("nope", "Exists")]]), False, id="exists-absent"),
    pytest.param(make_placement(affinity=[[requirement("nope", "DoesNotExist")]]), True, id="doesnotexist"),
    pytest.param(make_placement(affinity=[[requirement("team", "DoesNotExist")]]), False, id="doesnotexist-present"),
    pytest.param(make_placement(affinity=[[requirement("gpus", "Gt", "4")]]), True, id="gt"),
    pytest.param(make_placement(affinity=[[requirement("gpus", "Gt", "8")]]), False, id="gt-equal"),
    pytest.param(make_placement(affinity=[[requirement("gpus", "Lt", "9")]]), True, id="lt"),
    pytest.param(make_placement(affinity=[[requirement("gpus", "Lt", "8")]]), False, id="lt-equal"),
    pytest.param(make_placement(affinity=[[requirement("team", "Gt", "1")]]), False, id="gt-not-a-number"),
    pytest.param(make_placement(affinity=[[requirement("nope", "Lt", "1")]]), False, id="lt-absent"),
    pytest.param(make_placement(affinity=[[requirement("zone", "In", "a"), requirement("team", "In", "web")]]), False, id="term-requirements-anded"),
    pytest.param(make_placement(affinity=[[requirement("zone", "In", "b")], [requirement("team", "In", "ml")]]), True, id="terms-ored"),
    pytest.param(make_placement(affinity=[[]]), False, id="empty-term-matches-nothing"),
    pytest.param(make_placement({"zone": "a"}, affinity=[[requirement("zone", "In", "b")]]), False, id="selector-and-affinity-both-needed"),
])
def test_placement_matches_labels(placement, expected):
    assert placement_matches(placement, LABELS, ()) is expected


@pytest.mark.parametrize("pod, node, expected", [
    pytest.param(make_pod(selector={"aws/type": "p3.2xlarge"}), make_node(labels={"aws/type": "p3.2xlarge"}), True, id="selector"),
    pytest.param(make_pod(), make_node(taints=[GPU_TAINT]), False, id="tainted-node"),
    pytest.param(make_pod(tolerations=[Toleration("nvidia.com/gpu", "Exists")]), make_node(taints=[GPU_TAINT]), True, id="tolerated"),
    pytest.param(make_pod(cpu="64"), make_node(cpu="1", unschedulable=True), True, id="ignores-room-and-cordon"),
])
def test_pod_matches_node(pod, node, expected):
    assert pod_matches_node(pod, node) is expected


@pytest.mark.parametrize("selector, labels, expected", [
    pytest.param(LabelSelector(), {"app": "x"}, True, id="empty-matches-all"),
    pytest.param(LabelSelector((("app", "x"),)), {"app": "x", "tier": "1"}, True, id="match-labels"),
    pytest.param(LabelSelector((("app", "x"),)), {"app": "y"}, False, id="match-labels-other"),
    pytest.param(LabelSelector(match_expressions=(requirement("app", "In", "x", "y"),)), {"app": "y"}, True, id="expression-in"),
    pytest.param(LabelSelector(match_expressions=(requirement("app", "NotIn", "x"),)), {}, True, id="expression-notin-absent"),
    pytest.param(LabelSelector((("app", "x"),), (requirement("tier", "Exists"),)), {"app": "x"}, False, id="labels-and-expressions-anded"),
])
def test_selector_matches(selector, labels, expected):
    assert selector_matches(selector, labels) is expected


SPREAD = anti_affinity({"app": "db"})


@pytest.mark.parametrize("pod, others, expected", [
    pytest.param(make_pod(labels={"app": "db"}), [make_pod(labels={"app": "web"})], False, id="no-terms"),
    pytest.param(make_pod(labels={"app": "db"}, anti=[SPREAD]), [make_pod(labels={"app": "db"}, node="n")], True, id="own-term-selects-other"),
    pytest.param(make_pod(labels={"app": "db"}, anti=[SPREAD]), [make_pod(labels={"app": "web"}, node="n")], False, id="own-term-selects-nothing"),
    pytest.param(make_pod(labels={"app": "db"}), [make_pod(labels={"app": "x"}, anti=[SPREAD], node="n")], True, id="other-term-selects-pod"),
    pytest.param(make_pod(labels={"app": "db"}, anti=[SPREAD]), [make_pod(labels={"app": "db"}, namespace="other", node="n")], False, id="own-term-other-namespace"),
    pytest.param(make_pod(labels={"app": "db"}, namespace="other"), [make_pod(anti=[SPREAD], node="n")], False, id="other-term-other-namespace"),
    pytest.param(make_pod(labels={"app": "db"}, namespace="other"), [make_pod(anti=[anti_affinity({"app": "db"}, ["other", "default"])], node="n")], True, id="term-lists-namespace"),
    pytest.param(make_pod(labels={"app": "db"}, anti=[SPREAD]), [], False, id="empty-node"),
])
def test_anti_affinity_conflict(pod, others, expected):
    assert anti_affinity_conflict(pod, others) is expected


MIXED = make_group(shapes=[
    make_shape("m5.4xlarge", cpu="16", memory="64Gi"),  # first override is not the smallest
    make_shape("m5.large", cpu="2", memory="8Gi"),
    make_shape("r5.xlarge", cpu="4", memory="32Gi"),
    make_shape("m5.xlarge", cpu="4", memory="16Gi"),
])


@pytest.mark.parametrize("pods, expected", [
    pytest.param([make_pod(cpu="1", memory="1Gi")], "m5.large", id="small-pod-smallest-shape"),
    pytest.param([make_pod(cpu="3", memory="1Gi")], "m5.xlarge", id="cpu-needs-bigger"),
    pytest.param([make_pod(cpu="1", memory="20Gi")], "r5.xlarge", id="memory-needs-r5"),
    pytest.param([make_pod(cpu="1", memory="1Gi"), make_pod(cpu="8")], "m5.4xlarge", id="every-pod-must-fit"),
    pytest.param([make_pod(cpu="32")], None, id="fits-nothing"),
    pytest.param([make_pod(cpu="1", gpu=1)], None, id="gpu-on-cpu-group"),
])
def test_group_capacity_for_mixed_instances(pods, expected):
    shape = group_capacity_for(MIXED, pods)
    assert (shape.instance_type if shape else None) == expected


# Same cpu and memory: told apart by GPUs, then by name; pods and disk do not count.
TIED = [make_shape("g4dn.xlarge", cpu="4", memory="16Gi", gpu=1, pods=29),
        make_shape("m5d.xlarge", cpu="4", memory="16Gi", pods=58),
        make_shape("m5.xlarge", cpu="4", memory="16Gi", pods=110)]


def test_one_order_of_shapes_for_the_group_the_smallest_and_the_largest():
    """The group's shapes, the smallest that fits and the largest a pod could get follow one order."""
    ordered = [shape.instance_type for shape in sort_shapes(TIED)]
    assert ordered == ["m5.xlarge", "m5d.xlarge", "g4dn.xlarge"]
    assert group_capacity_for(make_group(shapes=TIED), [make_pod(cpu="1")]).instance_type == "m5.xlarge"
    assert largest_shape(TIED).instance_type == "g4dn.xlarge"
    assert largest_shape(TIED[1:]).instance_type == "m5d.xlarge"


SMALL, WIDE, TALL, BIG = (make_resources(cpu="1", memory="1Gi"), make_resources(cpu="4", memory="1Gi"),
                          make_resources(cpu="1", memory="8Gi"), make_resources(cpu="4", memory="8Gi"))


@pytest.mark.parametrize("sizes, largest, expected", [
    pytest.param([], True, (), id="none"),
    pytest.param([SMALL, SMALL], True, (SMALL,), id="duplicates-once"),
    pytest.param([SMALL, WIDE, TALL, BIG], True, (BIG,), id="largest-covers-all"),
    pytest.param([SMALL, WIDE, TALL, BIG], False, (SMALL,), id="smallest-covers-all"),
    # Neither fits in the other: both stay, the larger total first (or last).
    pytest.param([SMALL, WIDE, TALL], True, (TALL, WIDE), id="largest-keeps-incomparable"),
    pytest.param([BIG, WIDE, TALL], False, (WIDE, TALL), id="smallest-keeps-incomparable"),
    pytest.param([SMALL, make_resources(cpu="1", memory="1Gi", gpu=1)], True,
                 (make_resources(cpu="1", memory="1Gi", gpu=1),), id="another-resource-makes-it-larger"),
])
def test_extreme_sizes(sizes, largest, expected):
    assert extreme_sizes(sizes, largest=largest) == expected


class _Entry:
    def __init__(self, free):
        self.free = free


def _first_by_scan(entries, needs, start):
    return next((index for index in range(start, len(entries))
                 if all(entries[index].free[dimension] >= amount for dimension, amount in needs)), -1)


@pytest.mark.parametrize("seed", range(20))
def test_first_fit_finds_what_a_scan_finds(seed):
    """Random rooms in 3 dimensions, shrinking and growing in number: the tree answers as a scan
    from the same position does, whatever was marked changed, built, extended or grown."""
    chance = random.Random(seed)
    entries = [_Entry([chance.randint(0, 9) for _ in range(3)]) for _ in range(chance.randint(0, 40))]
    fit = FirstFit(3, entries)
    for _ in range(300):
        move = chance.random()
        if move < 0.15:
            fit.extend([_Entry([chance.randint(0, 9) for _ in range(3)]) for _ in range(chance.randint(1, 9))])
        elif move < 0.6 and fit.entries:
            index = chance.randrange(len(fit.entries))
            fit.entries[index].free[chance.randrange(3)] -= chance.randint(1, 4)
            fit.changed(index)
        else:
            needs = tuple((dimension, chance.randint(1, 9)) for dimension in range(3) if chance.random() < 0.8)
            start = chance.randint(0, len(fit.entries) + 1)
            assert fit.first(needs, start) == _first_by_scan(fit.entries, needs, start)


def test_first_fit_over_nothing_finds_nothing():
    assert FirstFit(2).first(((0, 1),)) == -1
    assert FirstFit(2).first(()) == -1
