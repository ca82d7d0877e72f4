"""Scale up with the placement rules of issue 17 (placement_rules.py, topology.py): host ports,
the node affinity of bound volumes, pod affinity and anti-affinity on the hostname and zone keys,
topology spread. Each case is a small cluster and what one loop must buy for it; the expected
plans are worked out from the Kubernetes scheduler's rules."""
from __future__ import annotations

import pytest

from autoscaler.decide.scale_up import plan_scale_up
from autoscaler.model.config import Settings
from autoscaler.model.objects import ZONE_LABEL
from autoscaler.model.plan import Notify, SetDesiredCapacity
from builders import NOW, make_group, make_group_nodes, make_node, make_pod, make_pods, make_snapshot, pod_term, spread

ZONES = ("us-west-2a", "us-west-2b", "us-west-2c")


def settings() -> Settings:
    return Settings(cluster_name="test", regions=("us-west-2",), over_provision=0)


def raised(result) -> dict:
    return {action.group: action.desired for action in result.actions if isinstance(action, SetDesiredCapacity)}


def zone_groups(*zones, **options):
    return [make_group(f"z-{zone[-1]}", zones=(zone,), **options) for zone in zones]


def test_three_pods_on_one_host_port_need_three_instances():
    pods = make_pods(3, cpu="100m", host_ports=("TCP/9000",))
    result = plan_scale_up(make_snapshot(pods, groups=[make_group()]), settings(), NOW)
    assert raised(result) == {"workers": 3}


def test_host_port_pods_beside_others_share_instances():
    pods = make_pods(2, cpu="100m", host_ports=("TCP/9000",)) + make_pods(6, cpu="100m")
    result = plan_scale_up(make_snapshot(pods, groups=[make_group()]), settings(), NOW)
    assert raised(result) == {"workers": 2}


def test_host_port_held_on_a_live_node_sends_the_pod_to_a_new_instance():
    group, nodes = make_group_nodes(make_group(), 1)
    holder = make_pod(cpu="100m", node=nodes[0].name, host_ports=("TCP/9000",))
    pending = make_pod(cpu="100m", host_ports=("TCP/9000",))
    other_port = make_pod(cpu="100m", host_ports=("TCP/9001",))
    result = plan_scale_up(make_snapshot([holder, pending, other_port], nodes, [group]), settings(), NOW)
    assert result.placed_on_nodes == 1  # the pod on port 9001 fits beside the holder
    assert raised(result) == {"workers": 2}


def test_zone_b_volume_buys_in_the_zone_b_group():
    pod = make_pod(cpu="1", volume_zones=("us-west-2b",))
    result = plan_scale_up(make_snapshot([pod], groups=zone_groups("us-west-2a", "us-west-2b")), settings(), NOW)
    assert raised(result) == {"z-b": 1}


def test_zone_b_volume_and_only_a_multi_zone_group_buys_nothing_and_says_why():
    pod = make_pod(cpu="1", volume_zones=("us-west-2b",))
    group = make_group("spread", zones=("us-west-2a", "us-west-2b"))
    result = plan_scale_up(make_snapshot([pod], groups=[group]), settings(), NOW)
    assert raised(result) == {}
    assert not result.infeasible
    why = result.why_unaccounted[pod.key]
    assert "spans zones us-west-2a, us-west-2b" in why and "cannot promise" in why, why
    notices = [action for action in result.actions if isinstance(action, Notify) and action.kind == "scale-up-failed"]
    assert notices and "cannot promise" in notices[0].message


def test_zone_anti_affinity_puts_one_pod_in_each_zone():
    term = pod_term({"app": "db"}, ZONE_LABEL)
    pods = make_pods(3, cpu="100m", labels={"app": "db"}, anti=[term])
    result = plan_scale_up(make_snapshot(pods, groups=zone_groups(*ZONES)), settings(), NOW)
    assert raised(result) == {"z-a": 1, "z-b": 1, "z-c": 1}
    assert not result.unaccounted


def test_zone_anti_affinity_is_not_placed_on_a_multi_zone_group():
    term = pod_term({"app": "db"}, ZONE_LABEL)
    pods = make_pods(2, cpu="100m", labels={"app": "db"}, anti=[term])
    group = make_group("spread", zones=ZONES)
    result = plan_scale_up(make_snapshot(pods, groups=[group]), settings(), NOW)
    assert raised(result) == {}
    assert "cannot promise" in result.why_unaccounted[pods[0].key]


def test_zone_anti_affinity_against_a_running_pod_avoids_its_zone():
    groups = zone_groups("us-west-2a", "us-west-2b")
    group_a, nodes = make_group_nodes(groups[0], 1)
    running = make_pod(cpu="3900m", node=nodes[0].name, labels={"app": "db"})
    pending = make_pod(cpu="100m", labels={"app": "web"}, anti=[pod_term({"app": "db"}, ZONE_LABEL)])
    result = plan_scale_up(make_snapshot([running, pending], nodes, [group_a, groups[1]]), settings(), NOW)
    assert raised(result) == {"z-b": 1}


def test_existing_pods_zone_anti_affinity_keeps_selected_pods_out_of_its_zone():
    groups = zone_groups("us-west-2a", "us-west-2b")
    group_a, nodes = make_group_nodes(groups[0], 1)
    guard = make_pod(cpu="100m", node=nodes[0].name, labels={"app": "guard"}, anti=[pod_term({"app": "web"}, ZONE_LABEL)])
    pending = make_pod(cpu="100m", labels={"app": "web"})
    result = plan_scale_up(make_snapshot([guard, pending], nodes, [group_a, groups[1]]), settings(), NOW)
    assert result.placed_on_nodes == 0  # the live node in zone a has room but the guard refuses it
    assert raised(result) == {"z-b": 1}


def test_hostname_spread_max_skew_one_puts_four_pods_on_four_instances():
    pods = make_pods(4, cpu="100m", labels={"app": "web"}, spread_constraints=[spread({"app": "web"}, max_skew=1)])
    result = plan_scale_up(make_snapshot(pods, groups=[make_group()]), settings(), NOW)
    assert raised(result) == {"workers": 4}


def test_hostname_spread_max_skew_two_puts_two_per_instance():
    pods = make_pods(4, cpu="100m", labels={"app": "web"}, spread_constraints=[spread({"app": "web"}, max_skew=2)])
    result = plan_scale_up(make_snapshot(pods, groups=[make_group()]), settings(), NOW)
    assert raised(result) == {"workers": 2}


def test_zone_spread_balances_over_the_zones():
    pods = make_pods(3, cpu="100m", labels={"app": "web"},
                     spread_constraints=[spread({"app": "web"}, ZONE_LABEL, max_skew=1)])
    result = plan_scale_up(make_snapshot(pods, groups=zone_groups(*ZONES)), settings(), NOW)
    assert raised(result) == {"z-a": 1, "z-b": 1, "z-c": 1}


def test_pod_affinity_to_a_running_pods_zone_buys_in_that_zone():
    groups = zone_groups("us-west-2a", "us-west-2b")
    group_b, nodes = make_group_nodes(groups[1], 1)
    cache = make_pod(cpu="3900m", node=nodes[0].name, labels={"app": "cache"})
    pending = make_pod(cpu="1", pod_affinity=[pod_term({"app": "cache"}, ZONE_LABEL)])
    result = plan_scale_up(make_snapshot([cache, pending], nodes, [groups[0], group_b]), settings(), NOW)
    assert raised(result) == {"z-b": 2}


def test_hostname_pod_affinity_to_a_running_pod_goes_to_its_node_or_nowhere():
    group, nodes = make_group_nodes(make_group(), 2)
    cache = make_pod(cpu="100m", node=nodes[1].name, labels={"app": "cache"})
    fits = make_pod(cpu="1", pod_affinity=[pod_term({"app": "cache"})])
    too_big = make_pod(cpu="3950m", pod_affinity=[pod_term({"app": "cache"})])
    result = plan_scale_up(make_snapshot([cache, fits, too_big], nodes, [group]), settings(), NOW)
    assert result.placed_on_nodes == 1
    assert raised(result) == {}  # a new instance holds no cache pod


def test_self_affine_pods_without_a_match_go_together():
    term = pod_term({"app": "gang"})
    pods = make_pods(3, cpu="1", labels={"app": "gang"}, pod_affinity=[term])
    result = plan_scale_up(make_snapshot(pods, groups=[make_group()]), settings(), NOW)
    assert raised(result) == {"workers": 1}


def test_self_affine_pods_that_outgrow_one_instance_wait():
    term = pod_term({"app": "gang"})
    pods = make_pods(6, cpu="1", labels={"app": "gang"}, pod_affinity=[term])
    result = plan_scale_up(make_snapshot(pods, groups=[make_group()]), settings(), NOW)
    assert raised(result) == {"workers": 1}
    assert len(result.unaccounted) == 2


def test_self_affine_zone_pods_follow_the_first_into_one_zone():
    term = pod_term({"app": "gang"}, ZONE_LABEL)
    pods = make_pods(6, cpu="1", labels={"app": "gang"}, pod_affinity=[term])
    result = plan_scale_up(make_snapshot(pods, groups=zone_groups("us-west-2a", "us-west-2b")), settings(), NOW)
    assert len(raised(result)) == 1 and sum(raised(result).values()) == 2


def test_live_node_spread_counts_running_pods():
    group, nodes = make_group_nodes(make_group(cpu="8"), 2)
    running = [make_pod(cpu="100m", node=nodes[0].name, labels={"app": "web"})]
    pending = make_pods(3, cpu="100m", labels={"app": "web"}, spread_constraints=[spread({"app": "web"}, max_skew=1)])
    result = plan_scale_up(make_snapshot(running + pending, nodes, [group]), settings(), NOW)
    # node 0 has 1, node 1 has 0: one goes to node 1 (1, 1), then one to each (2, 2): the nodes the
    # rules held back are looked at again once the others have grown, as the scheduler would.
    assert result.placed_on_nodes == 3
    assert raised(result) == {}
    assert not result.unaccounted


def test_pods_without_rules_are_unaffected_by_a_live_node_without_zone_label():
    node = make_node("plain")
    pods = make_pods(2, cpu="100m")
    result = plan_scale_up(make_snapshot(pods, [node], [make_group()]), settings(), NOW)
    assert result.placed_on_nodes == 2


def _pod_pending_states(snapshot):
    from autoscaler.decide.scale_down import plan_scale_down
    from autoscaler.model.objects import NodeState
    from builders import NOW
    result = plan_scale_down(snapshot, Settings(cluster_name="test", regions=("us-west-2",)), NOW)
    return {verdict.node.name: verdict.state is NodeState.POD_PENDING for verdict in result.verdicts}


def test_scale_in_keeps_a_cordoned_node_only_if_the_pending_pods_port_is_free_there():
    from dataclasses import replace as _replace
    group, nodes = make_group_nodes(make_group(min_size=0), 2)
    nodes = [_replace(node, unschedulable=True, labels={**node.labels, "openai/cordoned-by-autoscaler": "true"})
             for node in nodes]
    holder = make_pod(cpu="100m", node=nodes[0].name, host_ports=("TCP/9000",), owner_kinds=("DaemonSet",))
    pending = make_pod(cpu="100m", host_ports=("TCP/9000",))
    states = _pod_pending_states(make_snapshot([holder, pending], nodes, [group]))
    assert states == {nodes[0].name: False, nodes[1].name: True}


def test_scale_in_and_scale_up_agree_on_zone_anti_affinity():
    from dataclasses import replace as _replace
    groups = zone_groups("us-west-2a", "us-west-2b")
    group_a, nodes_a = make_group_nodes(groups[0], 2)
    cordoned = _replace(nodes_a[1], unschedulable=True, labels={**nodes_a[1].labels, "openai/cordoned-by-autoscaler": "true"})
    guard = make_pod(cpu="3900m", node=nodes_a[0].name, labels={"app": "db"})
    pending = make_pod(cpu="100m", anti=[pod_term({"app": "db"}, ZONE_LABEL)])
    snapshot = make_snapshot([guard, pending], [nodes_a[0], cordoned], [group_a, groups[1]])
    assert _pod_pending_states(snapshot)[cordoned.name] is False
    result = plan_scale_up(snapshot, settings(), NOW)
    assert result.uncordoned == 0 and raised(result) == {"z-b": 1}


def test_pods_a_pending_spread_counts_keep_its_skew_whichever_is_bound_first():
    constrained = make_pod("r", cpu="100m", labels={"app": "web"},
                           spread_constraints=[spread({"app": "web"}, ZONE_LABEL, max_skew=1)])
    others = make_pods(3, cpu="100m", labels={"app": "web"})
    result = plan_scale_up(make_snapshot([constrained, *others], groups=zone_groups("us-west-2a", "us-west-2b")),
                           settings(), NOW)
    # All four in one zone would leave r's zone 4 above an empty one if r were bound last.
    assert raised(result) == {"z-a": 1, "z-b": 1}


def test_self_affine_gang_is_not_split_by_the_improvement_pass():
    term = pod_term({"app": "gang"})
    gang = make_pods(2, cpu="1", labels={"app": "gang"}, pod_affinity=[term])
    cheap = make_group("cheap", cpu="4")
    big = make_group("big", instance_type="m5.2xlarge", cpu="8", memory="32Gi")
    filler = make_pods(5, cpu="1500m")
    result = plan_scale_up(make_snapshot(gang + filler, groups=[cheap, big]), settings(), NOW)
    assert not result.unaccounted


def test_two_pending_shapes_that_exclude_each_other_by_zone_go_to_different_zones():
    web = make_pod("web", cpu="100m", labels={"app": "web"}, anti=[pod_term({"app": "db"}, ZONE_LABEL)])
    db = make_pod("db", cpu="100m", labels={"app": "db"})
    result = plan_scale_up(make_snapshot([web, db], groups=zone_groups("us-west-2a", "us-west-2b")), settings(), NOW)
    assert raised(result) == {"z-a": 1, "z-b": 1}


def test_zone_anti_affinity_counts_pods_placed_on_live_nodes_this_loop():
    groups = zone_groups("us-west-2a", "us-west-2b")
    group_a, nodes = make_group_nodes(groups[0], 2)
    first = make_pod("a-first", cpu="100m", labels={"app": "db"}, anti=[pod_term({"app": "db"}, ZONE_LABEL)])
    second = make_pod("b-second", cpu="100m", labels={"app": "db"}, anti=[pod_term({"app": "db"}, ZONE_LABEL)])
    result = plan_scale_up(make_snapshot([first, second], nodes, [group_a, groups[1]]), settings(), NOW)
    assert result.placed_on_nodes == 1  # one on a live node of zone a; the other may not join it there
    assert raised(result) == {"z-b": 1}


def test_booting_instance_of_a_multi_zone_group_takes_no_zone_rule_pod():
    group = make_group("spread", zones=ZONES, desired=1)
    pod = make_pod(cpu="100m", labels={"app": "db"}, anti=[pod_term({"app": "db"}, ZONE_LABEL)])
    result = plan_scale_up(make_snapshot([pod], groups=[group]), settings(), NOW)
    assert result.pods_for_new_instances == 0 and len(result.unaccounted) == 1


# The fidelity world "topology-spread" (test/realk8s): Job pods of 1 CPU with a zone spread of
# maxSkew 1, groups of m5.xlarge (4 CPUs here) in us-west-2a and us-west-2b. Each row is a loop's
# snapshot: (nodes per zone group, Ready?, desired per zone group, pending pods) -> raises, pods
# placed on live nodes. The rules allow a zone more pods only as the other zone grows, so room the
# rules held back must be looked at again once it has: on live nodes (the scheduler binds pod by
# pod), in a new instance already planned before another is opened, and across groups.
EVEN = {"app": "even"}


def _even_pods(count: int) -> list:
    return make_pods(count, cpu="1", labels=EVEN, spread_constraints=[spread(EVEN, ZONE_LABEL, max_skew=1)])


def _two_zone_world(nodes: tuple[int, int], ready: bool, desired: tuple[int, int], pending: int):
    groups, all_nodes = [], []
    for name, zone, count, wanted in zip(("west-a", "west-b"), ("us-west-2a", "us-west-2b"), nodes, desired, strict=True):
        group, members = make_group_nodes(make_group(name, zones=(zone,), desired=wanted), count, ready=ready)
        groups.append(group)
        all_nodes.extend(members)
    return make_snapshot(_even_pods(pending), all_nodes, groups)


@pytest.mark.parametrize("nodes, ready, desired, pending, raises, on_nodes", [
    # loop 1 of the run: one instance per zone, 2 pods each (it bought a 2nd in west-b for 1 pod)
    ((0, 0), True, (0, 0), 4, {"west-a": 1, "west-b": 1}, 0),
    ((0, 0), True, (0, 0), 6, {"west-a": 1, "west-b": 1}, 0),
    ((0, 0), True, (0, 0), 8, {"west-a": 1, "west-b": 1}, 0),
    # the run's next raise: its three nodes live, the pods not bound yet; all 4 fit them (it bought
    # a 2nd west-a instance: node order gave west-a's node one pod before west-b's grew)
    ((1, 2), True, (1, 2), 4, {}, 4),
    ((1, 1), True, (1, 1), 4, {}, 4),
    # instances asked for that are not nodes yet, or nodes not Ready yet: they take the pods
    ((0, 0), True, (1, 1), 8, {}, 0),
    ((1, 1), False, (1, 1), 6, {}, 0),
])
def test_zone_spread_uses_the_room_its_rules_allow_once_other_zones_grow(nodes, ready, desired, pending, raises, on_nodes):
    result = plan_scale_up(_two_zone_world(nodes, ready, desired, pending), settings(), NOW)
    assert raised(result) == raises
    assert result.placed_on_nodes == on_nodes
    assert not result.unaccounted
