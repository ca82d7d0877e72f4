"""Pods per topology domain (topology.py): what the inter-pod rules count on live nodes and on a
plan's new instances. Expected counts follow the scheduler: InterPodAffinity counts pods on every
node; PodTopologySpread counts over the nodes the pod's node selector and affinity allow."""
from __future__ import annotations

from dataclasses import replace

from autoscaler.decide.packing import Bin, FirstFit
from autoscaler.decide.topology import UNKNOWN, LiveSpot, NewSpot, Topology
from autoscaler.model.objects import HOSTNAME_LABEL, ZONE_LABEL
from builders import make_group, make_node, make_pod, pod_term, spread

DB = {"app": "db"}


def _nodes():
    return [make_node("a1", labels={ZONE_LABEL: "a"}), make_node("a2", labels={ZONE_LABEL: "a"}),
            make_node("b1", labels={ZONE_LABEL: "b"}), make_node("bare", labels={})]


def test_a_new_instance_is_its_own_hostname_domain_and_its_zone_is_the_groups_label():
    entry = Bin([1])
    single, multi = make_group(zones=("a",)), make_group(zones=("a", "b"))
    assert NewSpot(entry, single.labels).domain(HOSTNAME_LABEL) is entry
    assert NewSpot(entry, single.labels).domain(ZONE_LABEL) == "a"
    assert NewSpot(entry, multi.labels).domain(ZONE_LABEL) is UNKNOWN


def test_a_live_node_without_the_label_is_in_no_domain_but_is_its_own_host():
    bare = replace(make_node("bare"), labels={})
    assert LiveSpot(bare).domain(ZONE_LABEL) is None
    assert LiveSpot(bare).domain(HOSTNAME_LABEL) == "bare"


def test_zone_anti_affinity_counts_pods_on_every_node_of_the_zone():
    nodes = _nodes()
    running = make_pod(node="a1", labels=DB)
    topology = Topology(nodes, [running])
    pod = make_pod(labels={"app": "web"}, anti=[pod_term(DB, ZONE_LABEL)])
    assert topology.node_copies(pod, nodes[1], 5) == 0  # a2 shares zone a with the db pod
    assert topology.node_copies(pod, nodes[2], 5) == 5
    assert topology.node_copies(pod, nodes[3], 5) == 5  # no zone label: in no domain of the term


def test_a_running_pods_term_bars_the_pods_it_selects_from_its_zone():
    nodes = _nodes()
    guard = make_pod(node="a1", anti=[pod_term(DB, ZONE_LABEL)])
    topology = Topology(nodes, [guard])
    assert topology.node_copies(make_pod(labels=DB), nodes[1], 1) == 0
    assert topology.node_copies(make_pod(labels={"app": "web"}), nodes[1], 1) == 1


def test_hostname_spread_on_live_nodes_counts_the_least_over_eligible_nodes():
    nodes = _nodes()
    pods = [make_pod(node="a1", labels=DB), make_pod(node="a2", labels=DB), make_pod(node="b1", labels=DB)]
    pending = make_pod(labels=DB, spread_constraints=[spread(DB, max_skew=1)], selector={ZONE_LABEL: "a"})
    topology = Topology(nodes, pods)
    # Eligible: a1 and a2 (the node selector), one each: the least is 1, so one more on either.
    assert topology.node_copies(pending, nodes[0], 3) == 1
    topology.add(pending, nodes[0], 1)
    assert topology.node_copies(pending, nodes[0], 3) == 0  # a1 has 2, a2 has 1
    assert topology.node_copies(pending, nodes[1], 3) == 1


def test_zone_spread_counts_the_zones_a_matching_group_may_launch_in():
    nodes = _nodes()[:3]
    pods = [make_pod(node="a1", labels=DB), make_pod(node="b1", labels=DB)]
    pending = make_pod(labels=DB, spread_constraints=[spread(DB, ZONE_LABEL, max_skew=1)])
    without = Topology(nodes, pods)
    assert without.node_copies(pending, nodes[0], 5) == 1  # a:1 b:1, least 1
    with_c = Topology(nodes, pods, [make_group(zones=("c",))])
    assert with_c.node_copies(pending, nodes[0], 5) == 0  # zone c may come with none


def test_pods_in_the_plans_bins_count_in_their_groups_zone():
    group = make_group(zones=("a",))
    entry = Bin([10])
    bins = FirstFit(1, [entry])

    class Shape:
        representative = make_pod(labels=DB)

    entry.contents[Shape()] = 2  # type: ignore[index]
    topology = Topology(_nodes(), []).with_plans([(group.labels, bins)])
    pod = make_pod(labels={"app": "web"}, anti=[pod_term(DB, ZONE_LABEL)])
    assert topology.node_copies(pod, _nodes()[0], 1) == 0  # zone a holds the plan's two db pods
    assert topology.copies_allowed(pod, NewSpot(Bin([10]), make_group(zones=("b",)).labels), 1) == 1
