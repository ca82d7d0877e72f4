"""Each stage of scale up on its own (docs/decisions.md#scale-up): pods into shapes, live nodes,
cordoned nodes taken back, infeasible pods, what groups offer, demand classes, the improvement
pass, over-provision, and the actions. test_scale_up and test_cost_aware run them together."""
from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler.decide.demand_classes import classify, instances_for
from autoscaler.decide.group_plan import GroupPlan
from autoscaler.decide.improve import improve
from autoscaler.decide.infeasible import set_apart_infeasible
from autoscaler.decide.live_fit import build_rooms, fit_on_live_nodes, take_back_cordoned
from autoscaler.decide.offers import make_offers
from autoscaler.decide.over_provision import over_provision
from autoscaler.decide.packing import NodeIndex
from autoscaler.decide.pending_shapes import group_into_shapes, pending_demand
from autoscaler.decide.scale_up_actions import hand_out, raises, why_not_taken
from autoscaler.model.config import Settings
from builders import NOW, make_group, make_group_nodes, make_node, make_pod, make_snapshot
from random_clusters import priced_group

SETTINGS = Settings(cluster_name="test", regions=("us-east-1", "us-west-2"), over_provision=0)


def shapes_of(snapshot, merge_above=2000):
    return group_into_shapes(pending_demand(snapshot), snapshot, merge_above)


# --- pods into shapes -------------------------------------------------------------------------

def test_identical_pods_are_one_shape_largest_first_daemonsets_aside():
    pods = [make_pod(cpu="1"), make_pod(cpu="1"), make_pod(cpu="2"), make_pod(cpu="1", owner_kinds=("DaemonSet",))]
    shapes, dimensions = shapes_of(make_snapshot(pods))
    assert [(shape.requests.get("cpu"), shape.remaining) for shape in shapes] == [(2000, 1), (1000, 2)]
    assert dimensions == ("cpu", "pods")


def test_at_scale_similar_requests_are_one_shape_at_their_largest():
    pods = [make_pod(cpu=f"{1024 + i}m") for i in range(10)] + [make_pod(cpu="2")]
    shapes, _ = shapes_of(make_snapshot(pods), merge_above=5)
    assert [(shape.requests.get("cpu"), shape.remaining) for shape in shapes] == [(2000, 1), (1033, 10)]
    exact, _ = shapes_of(make_snapshot(pods))
    assert len(exact) == 11


# --- live nodes and cordoned nodes --------------------------------------------------------------

def test_live_nodes_then_cordoned_nodes_in_name_order():
    group, nodes = make_group_nodes(make_group(), 1)
    cordoned = [make_node(name, cordoned_by_autoscaler=True) for name in ("c-2", "c-1")]
    snapshot = make_snapshot(pods=[make_pod(cpu="3") for _ in range(4)], nodes=nodes + cordoned, groups=[group])
    shapes, dimensions = shapes_of(snapshot)
    rooms = build_rooms(snapshot, SETTINGS, NOW, dimensions)
    assert fit_on_live_nodes(shapes, rooms, len(dimensions)) == 1
    placed, uncordons = take_back_cordoned(shapes, rooms, len(dimensions))
    assert placed == 2 and [action.node for action in uncordons] == ["c-1", "c-2"]
    assert sum(shape.remaining for shape in shapes) == 1


# --- infeasible ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cpu, selector, infeasible", [
    ("3", None, 0), ("8", None, 1), ("1", {"team": "none"}, 1),
])
def test_infeasible_pods_are_set_apart(cpu, selector, infeasible):
    snapshot = make_snapshot([make_pod(cpu=cpu, selector=selector)], groups=[make_group()])
    shapes, _ = shapes_of(snapshot)
    found = set_apart_infeasible(shapes, snapshot.groups, NodeIndex([], []))
    assert len(found) == infeasible and sum(shape.remaining for shape in shapes) == 1 - infeasible


def test_only_the_pods_of_a_merged_shape_that_fit_nowhere_are_infeasible():
    pods = [make_pod(f"p{i}", cpu=f"{3995 + i}m") for i in range(10)]  # 4 cpu instances: 3995m..4000m fit
    snapshot = make_snapshot(pods, groups=[make_group()])
    shapes, _ = shapes_of(snapshot, merge_above=1)
    found = set_apart_infeasible(shapes, snapshot.groups, NodeIndex([], []))
    assert sorted(pod.name for pod, _ in found) == [f"p{i}" for i in range(6, 10)]


# --- offers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("desired, nodes, max_size, booting, room", [
    (0, 0, 10, 0, 10), (3, 1, 10, 2, 7), (1, 2, 10, 0, 8), (5, 5, 5, 0, 0),
])
def test_offer_room_and_booting(desired, nodes, max_size, booting, room):
    group, node_list = make_group_nodes(make_group(max_size=max_size), nodes)
    group = replace(group, desired=desired)
    [offer] = make_offers(make_snapshot(nodes=node_list, groups=[group]), SETTINGS, frozenset())
    assert (offer.booting, offer.room) == (booting, room)


def test_offers_in_tier_order_and_timed_out_groups_unusable():
    west, east, tagged = make_group("a-west"), make_group("b-east", region="us-east-1"), make_group("c", priority=3)
    offers = make_offers(make_snapshot(groups=[west, east, tagged]), SETTINGS, frozenset({east.key}))
    assert [offer.group.name for offer in offers] == ["c", "b-east", "a-west"]
    assert [offer.usable for offer in offers] == [True, False, True]


# --- demand classes -----------------------------------------------------------------------------

def test_similar_shapes_are_one_class_and_their_instances_are_estimated():
    pods = [make_pod(cpu="1000m"), make_pod(cpu="1010m"), make_pod(cpu="3")]
    shapes, dimensions = shapes_of(make_snapshot(pods))
    classes = classify(shapes, len(dimensions))
    assert [(demand.count, demand.largest[0]) for demand in classes] == [(1, 3000), (2, 1010)]
    empty = [4000, 110000]
    # 5.01 cpu on 4-cpu instances, but the 3-cpu pod shares with at most one 1-cpu pod: two.
    assert instances_for(((demand, 1 if demand.largest[0] == 3000 else 3) for demand in classes), empty) == pytest.approx(1 + 2 / 3)


# --- the improvement pass -----------------------------------------------------------------------

def test_improve_gives_up_an_instance_whose_pods_fit_elsewhere_for_less():
    snapshot = make_snapshot([make_pod(cpu="500m") for _ in range(3)],
                             groups=[priced_group("dear", "m5.4xlarge"), priced_group("cheap", "m5.large")])
    shapes, dimensions = shapes_of(snapshot)
    offers = {offer.group.name: offer for offer in make_offers(snapshot, SETTINGS, frozenset())}
    dear, cheap = GroupPlan(offers["dear"], dimensions), GroupPlan(offers["cheap"], dimensions)
    dear.place(shapes[0], 5)  # all three on one m5.4xlarge ($0.768/h)
    assert improve([dear, cheap]) == 1
    assert (dear.new, cheap.new) == (0, 1) and cheap.pods_placed() == 3


def test_improve_keeps_a_plan_no_move_makes_cheaper():
    snapshot = make_snapshot([make_pod(cpu="1900m") for _ in range(2)],
                             groups=[priced_group("xl", "m5.xlarge"), priced_group("l", "m5.large")])
    shapes, dimensions = shapes_of(snapshot)
    offers = {offer.group.name: offer for offer in make_offers(snapshot, SETTINGS, frozenset())}
    xl, large = GroupPlan(offers["xl"], dimensions), GroupPlan(offers["l"], dimensions)
    xl.place(shapes[0], 5)  # one m5.xlarge ($0.192) against two m5.large ($0.192): no gain
    assert improve([xl, large]) == 0 and (xl.new, large.new) == (1, 0)


# --- over-provision -----------------------------------------------------------------------------

@pytest.mark.parametrize("extra, left_out, room, expected", [
    (2, 0, 10, 2), (5, 0, 3, 3), (5, 1, 10, 0), (0, 0, 10, 0),
])
def test_over_provision_last_and_only_into_room_left(extra, left_out, room, expected):
    snapshot = make_snapshot([make_pod(cpu="1")], groups=[make_group(max_size=room + 1)])
    shapes, dimensions = shapes_of(snapshot)
    [offer] = make_offers(snapshot, SETTINGS, frozenset())
    plan = GroupPlan(offer, dimensions)
    plan.place(shapes[0], 1)
    assert over_provision([plan], extra, left_out).get(offer.key, 0) == expected


# --- actions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("desired, nodes, new, extra, target", [
    (0, 0, 2, 0, 2), (3, 1, 1, 0, 4), (1, 2, 1, 0, 3), (0, 0, 1, 2, 3),
])
def test_raise_target_is_beyond_nodes_and_booting_instances(desired, nodes, new, extra, target):
    group, node_list = make_group_nodes(make_group(max_size=10), nodes)
    group = replace(group, desired=desired)
    snapshot = make_snapshot([make_pod(cpu="4") for _ in range(new + max(0, desired - nodes))], node_list, [group])
    shapes, dimensions = shapes_of(snapshot)
    [offer] = make_offers(snapshot, SETTINGS, frozenset())
    plan = GroupPlan(offer, dimensions)
    plan.place(shapes[0], new)
    [action] = raises([plan], hand_out([plan], {shapes[0]: 0}), {offer.key: extra} if extra else {})
    assert (action.previous, action.desired, action.pod_count) == (desired, target, new)


def test_why_not_taken_names_each_matching_group():
    too_small = make_group("small", cpu="1")
    timed_out = make_group("out")
    snapshot = make_snapshot([make_pod(cpu="2")], groups=[too_small, timed_out, make_group("other", labels={"x": "y"}, taints=())])
    shapes, _ = shapes_of(snapshot)
    offers = make_offers(snapshot, SETTINGS, frozenset({timed_out.key}))
    why = why_not_taken(shapes[0], offers, {})
    assert why.startswith("none of the 3 matching groups could take it: ")
    assert "out (us-west-2): timed out after a failed launch" in why
    assert "small (us-west-2): too small (one instance offers cpu=1 " in why


def test_improve_hands_several_groups_over_to_one_when_that_costs_less():
    compute, memory = make_pod(cpu="2500m", memory="1Gi"), make_pod(cpu="300m", memory="10Gi")
    snapshot = make_snapshot([compute, memory], groups=[priced_group("c", "c5.xlarge"), priced_group("r", "r5.large"),
                                                        priced_group("m", "m5.xlarge")])
    shapes, dimensions = shapes_of(snapshot)
    offers = {offer.group.name: offer for offer in make_offers(snapshot, SETTINGS, frozenset())}
    plans = {name: GroupPlan(offers[name], dimensions) for name in ("c", "r", "m")}
    by_cpu = {shape.requests.get("cpu"): shape for shape in shapes}
    plans["c"].place(by_cpu[2500], 1)  # $0.17/h
    plans["r"].place(by_cpu[300], 1)  # $0.126/h; neither fits the other's room, and alone each is cheaper
    assert improve(list(plans.values())) == 1
    assert {name: plan.new for name, plan in plans.items()} == {"c": 0, "r": 0, "m": 1}  # both on one m5.xlarge, $0.192/h
    assert plans["m"].pods_placed() == 2
