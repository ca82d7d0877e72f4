"""The placement rules, one table per rule (placement_rules.py). Expected results are the
Kubernetes scheduler's: its filter plugins NodeResourcesFit, NodeAffinity, VolumeBinding (a bound
volume's node affinity), TaintToleration, NodePorts, InterPodAffinity and PodTopologySpread."""
from __future__ import annotations

import pytest

from autoscaler.decide.placement_rules import (
    UNBOUNDED,
    affinity_copies,
    anti_affinity_conflict,
    anti_affinity_copies,
    dimension_capacity,
    node_affinity_matches,
    placement_matches,
    port_dimension,
    ports_free,
    requirement_matches,
    resources_fit,
    spread_copies,
    term_selects,
    tolerates,
    unpromised_zone,
    volume_affinity_matches,
)
from autoscaler.model.objects import ZONE_LABEL, Placement, Taint, Toleration
from builders import make_group, make_placement, make_pod, make_resources, pod_term, requirement

ZONE_A, ZONE_B = "us-west-2a", "us-west-2b"


@pytest.mark.parametrize("requests, free, expected", [
    pytest.param(make_resources(cpu="1"), make_resources(cpu="1"), True, id="exactly-fits"),
    pytest.param(make_resources(cpu="1001m"), make_resources(cpu="1"), False, id="one-millicore-short"),
    pytest.param(make_resources(cpu="1", gpu=1), make_resources(cpu="4"), False, id="extended-resource-absent"),
    pytest.param(make_resources(), make_resources(), True, id="nothing-asked"),
])
def test_resources_fit(requests, free, expected):
    assert resources_fit(requests, free) is expected


NO_SCHEDULE = Taint("dedicated", "gpu", "NoSchedule")


@pytest.mark.parametrize("tolerations, taints, expected", [
    pytest.param((), (NO_SCHEDULE,), False, id="untolerated-noschedule"),
    pytest.param((), (Taint("k", "v", "PreferNoSchedule"),), True, id="prefer-noschedule-is-a-hint"),
    pytest.param((Toleration("dedicated", "Equal", "gpu", "NoSchedule"),), (NO_SCHEDULE,), True, id="equal-match"),
    pytest.param((Toleration("dedicated", "Equal", "cpu"),), (NO_SCHEDULE,), False, id="equal-other-value"),
    pytest.param((Toleration("dedicated", "Exists"),), (NO_SCHEDULE,), True, id="exists-key"),
    pytest.param((Toleration("", "Exists"),), (NO_SCHEDULE, Taint("x", "", "NoExecute")), True, id="exists-everything"),
    pytest.param((Toleration("dedicated", "Exists", effect="NoExecute"),), (NO_SCHEDULE,), False, id="other-effect"),
])
def test_taints(tolerations, taints, expected):
    assert tolerates(tolerations, taints) is expected


@pytest.mark.parametrize("operator, values, labels, expected", [
    pytest.param("In", ("a", "b"), {"k": "b"}, True, id="in"),
    pytest.param("In", ("a",), {}, False, id="in-absent"),
    pytest.param("NotIn", ("a",), {}, True, id="notin-absent-matches"),
    pytest.param("NotIn", ("a",), {"k": "a"}, False, id="notin-present"),
    pytest.param("Exists", (), {"k": ""}, True, id="exists-empty-value"),
    pytest.param("DoesNotExist", (), {"k": "x"}, False, id="doesnotexist-present"),
    pytest.param("Gt", ("3",), {"k": "4"}, True, id="gt"),
    pytest.param("Lt", ("3",), {"k": "3"}, False, id="lt-equal"),
    pytest.param("Gt", ("3",), {"k": "four"}, False, id="gt-not-a-number"),
    pytest.param("Near", ("a",), {"k": "a"}, False, id="unknown-operator"),
])
def test_requirement(operator, values, labels, expected):
    assert requirement_matches(requirement("k", operator, *values), labels) is expected


@pytest.mark.parametrize("terms, labels, expected", [
    pytest.param([[requirement("a", "In", "1")], [requirement("b", "In", "2")]], {"b": "2"}, True, id="terms-ored"),
    pytest.param([[requirement("a", "In", "1"), requirement("b", "In", "2")]], {"b": "2"}, False, id="requirements-anded"),
    pytest.param([[]], {"a": "1"}, False, id="empty-term-matches-nothing"),
])
def test_node_affinity(terms, labels, expected):
    assert node_affinity_matches(terms, labels) is expected


@pytest.mark.parametrize("zones, labels, expected", [
    pytest.param((), {}, True, id="no-volumes"),
    pytest.param((ZONE_B,), {ZONE_LABEL: ZONE_B}, True, id="volume-zone-matches"),
    pytest.param((ZONE_B,), {ZONE_LABEL: ZONE_A}, False, id="volume-other-zone"),
    pytest.param((ZONE_B,), {}, False, id="no-zone-label"),
    pytest.param((ZONE_A, ZONE_B), {ZONE_LABEL: ZONE_A}, False, id="every-volume-must-hold"),
])
def test_volume_affinity(zones, labels, expected):
    placement = make_placement(volume_zones=zones)
    assert volume_affinity_matches(placement, labels) is expected
    assert placement_matches(placement, labels, ()) is expected


def test_placement_is_selector_and_affinity_and_volumes_and_taints():
    placement = make_placement({"pool": "db"}, affinity=[[requirement("aws/type", "In", "m5.large")]], volume_zones=(ZONE_A,))
    labels = {"pool": "db", "aws/type": "m5.large", ZONE_LABEL: ZONE_A}
    assert placement_matches(placement, labels, ())
    assert not placement_matches(placement, {**labels, "pool": "web"}, ())
    assert not placement_matches(placement, {**labels, "aws/type": "m5.xlarge"}, ())
    assert not placement_matches(placement, {**labels, ZONE_LABEL: ZONE_B}, ())
    assert not placement_matches(placement, labels, (NO_SCHEDULE,))


@pytest.mark.parametrize("placement, zones, expected", [
    pytest.param(make_placement(volume_zones=(ZONE_B,)), (ZONE_A, ZONE_B), True, id="zonal-volume-multi-zone-group"),
    pytest.param(make_placement(volume_zones=(ZONE_B,)), (ZONE_B,), False, id="single-zone-group-promises"),
    pytest.param(make_placement(volume_zones=(ZONE_B,)), (ZONE_A, "us-west-2c"), False, id="zone-not-among-its-zones"),
    pytest.param(make_placement(affinity=[[requirement(ZONE_LABEL, "In", ZONE_A)]]), (ZONE_A, ZONE_B), True, id="zone-in-node-affinity"),
    pytest.param(Placement(), (ZONE_A, ZONE_B), False, id="no-zone-needed"),
    pytest.param(make_placement({"pool": "x"}, volume_zones=(ZONE_A,)), (ZONE_A, ZONE_B), False, id="fails-for-another-reason"),
])
def test_unpromised_zone(placement, zones, expected):
    assert unpromised_zone(placement, make_group(zones=zones)) is expected


@pytest.mark.parametrize("wanted, held, expected", [
    pytest.param(("TCP/9000",), set(), True, id="free-node"),
    pytest.param(("TCP/9000",), {"TCP/9000"}, False, id="port-held"),
    pytest.param(("TCP/9000",), {"UDP/9000"}, True, id="other-protocol"),
    pytest.param(("TCP/9000", "TCP/9001"), {"TCP/9001"}, False, id="any-port-held"),
    pytest.param((), {"TCP/9000"}, True, id="no-ports-asked"),
])
def test_ports(wanted, held, expected):
    assert ports_free(wanted, held) is expected


def test_a_port_is_a_dimension_of_capacity_one():
    capacity = make_resources(cpu="4", pods=110)
    assert dimension_capacity(port_dimension("TCP/9000"), capacity) == 1
    assert dimension_capacity("cpu", capacity) == 4000


DB = {"app": "db"}


@pytest.mark.parametrize("term, pod, expected", [
    pytest.param(pod_term(DB), make_pod(labels=DB), True, id="same-namespace-labels"),
    pytest.param(pod_term(DB), make_pod(labels={"app": "web"}), False, id="other-labels"),
    pytest.param(pod_term(DB), make_pod(labels=DB, namespace="other"), False, id="other-namespace"),
    pytest.param(pod_term(DB, namespaces=("*",)), make_pod(labels=DB, namespace="other"), True, id="all-namespaces"),
    pytest.param(pod_term({}), make_pod(labels={"x": "y"}), True, id="empty-selector-selects-all"),
    pytest.param(pod_term(expressions=[requirement("app", "Exists")]), make_pod(labels={}), False, id="expression"),
])
def test_term_selects(term, pod, expected):
    assert term_selects(term, pod) is expected


@pytest.mark.parametrize("matching, self_match, expected", [
    pytest.param(0, False, UNBOUNDED, id="nothing-to-avoid"),
    pytest.param(1, False, 0, id="a-selected-pod-in-the-domain"),
    pytest.param(0, True, 1, id="selects-itself-one-per-domain"),
    pytest.param(2, True, 0, id="selects-itself-domain-taken"),
])
def test_anti_affinity_copies(matching, self_match, expected):
    assert anti_affinity_copies(matching, self_match) == expected


@pytest.mark.parametrize("in_domain, anywhere, self_match, expected", [
    pytest.param([1], 1, False, UNBOUNDED, id="a-match-in-the-domain"),
    pytest.param([0], 1, False, 0, id="match-elsewhere-only"),
    pytest.param([0], 1, True, 0, id="self-match-but-a-match-elsewhere"),
    pytest.param([0], 0, True, UNBOUNDED, id="first-of-a-self-affine-group-goes-anywhere"),
    pytest.param([0], 0, False, 0, id="no-match-anywhere-and-not-self"),
    pytest.param([1, 0], 1, False, 0, id="every-term-must-hold"),
])
def test_affinity_copies(in_domain, anywhere, self_match, expected):
    assert affinity_copies(in_domain, anywhere, self_match) == expected


@pytest.mark.parametrize("max_skew, in_domain, least, self_match, expected", [
    pytest.param(1, 0, 0, True, 1, id="empty-domain-skew-one"),
    pytest.param(1, 1, 0, True, 0, id="domain-one-above-the-least"),
    pytest.param(2, 1, 1, True, 2, id="skew-two-level-domains"),
    pytest.param(1, 3, 3, True, 1, id="balanced-domains"),
    pytest.param(1, 2, 0, False, 0, id="not-self-matching-skew-already-broken"),
    pytest.param(1, 1, 0, False, UNBOUNDED, id="not-self-matching-adds-nothing"),
])
def test_spread_copies(max_skew, in_domain, least, self_match, expected):
    assert spread_copies(max_skew, in_domain, least, self_match) == expected


@pytest.mark.parametrize("pod, others, expected", [
    pytest.param(make_pod(labels=DB, anti=[pod_term(DB)]), [make_pod(labels=DB, node="n")], True, id="own-term"),
    pytest.param(make_pod(labels=DB), [make_pod(anti=[pod_term(DB)], node="n")], True, id="their-term"),
    pytest.param(make_pod(labels=DB), [make_pod(labels=DB, node="n")], False, id="no-terms"),
    pytest.param(make_pod(labels=DB, anti=[pod_term(DB, ZONE_LABEL)]), [make_pod(labels=DB, node="n")], True,
                 id="zone-term-on-one-node"),
])
def test_anti_affinity_conflict_on_one_node(pod, others, expected):
    assert anti_affinity_conflict(pod, others) is expected
