"""Scale up (docs/decisions.md#scale-up), including the original's defects (a cluster with no nodes,
no scaling history, launch templates, mixed instances, minutes per decision): each case is a small
cluster and what one loop must decide for it."""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import timedelta

import pytest

import autoscaler.decide.packing as packing
import autoscaler.decide.pending_shapes as pending_shapes
from autoscaler.decide.scale_up import plan_scale_up
from autoscaler.model.config import Settings
from autoscaler.model.objects import DETACHED_LABEL, PodPhase, Taint, Toleration
from autoscaler.model.plan import Notify, SetDesiredCapacity, Uncordon
from builders import (
    NOW,
    anti_affinity,
    make_group,
    make_group_nodes,
    make_node,
    make_pod,
    make_pods,
    make_resources,
    make_shape,
    make_snapshot,
    requirement,
)

REGIONS = ("us-west-2", "us-east-1")


def settings(over_provision=0) -> Settings:
    return Settings(cluster_name="test", regions=REGIONS, over_provision=over_provision)



def raised(result) -> dict:
    """group name -> new desired capacity, for every SetDesiredCapacity."""
    return {action.group: action.desired for action in result.actions if isinstance(action, SetDesiredCapacity)}


def uncordoned(result) -> list:
    return [action.node for action in result.actions if isinstance(action, Uncordon)]


def notified(result) -> list:
    return [action.kind for action in result.actions if isinstance(action, Notify)]


@dataclass
class Case:
    snapshot: object
    raised: dict
    placed: int = 0
    unaccounted: int = 0
    infeasible: int = 0
    uncordoned: list = field(default_factory=list)
    over_provision: int = 0
    timed_out: frozenset = frozenset()


def _one_group_with_nodes(count, group=None, **node_options):
    return make_group_nodes(group or make_group(), count, **node_options)


def _existing_node_cases():
    group, nodes = _one_group_with_nodes(1)
    busy = make_pod(cpu="1", node=nodes[0].name)
    yield "fits-existing-node", Case(make_snapshot([busy] + make_pods(3, cpu="1"), nodes, [group]), {}, placed=3)
    yield "room-consumed-rest-launches", Case(make_snapshot(make_pods(6, cpu="1"), nodes, [group]), {"workers": 2}, placed=4)
    yield "room-not-double-counted", Case(make_snapshot(make_pods(2, cpu="3"), nodes, [group]), {"workers": 2}, placed=1)
    yield "room-not-double-counted-across-shapes", Case(make_snapshot(make_pods(1, cpu="3") + make_pods(1, cpu="2", memory="1Gi"), nodes, [group]), {"workers": 2}, placed=1)
    done = make_pod(cpu="4", node=nodes[0].name, phase=PodPhase.SUCCEEDED)
    yield "finished-pods-occupy-nothing", Case(make_snapshot([done] + make_pods(4, cpu="1"), nodes, [group]), {}, placed=4)
    yield "stopped-instance-not-live", Case(make_snapshot(make_pods(1, cpu="1"), nodes, [group], not_running=[nodes[0].instance_id]), {"workers": 2})
    person_cordoned = replace(nodes[0], unschedulable=True)
    yield "person-cordoned-never-uncordoned", Case(make_snapshot(make_pods(1, cpu="1"), [person_cordoned], [group]), {"workers": 2})
    full = replace(group, max_size=1)
    cordoned = make_node(nodes[0].name, labels=dict(nodes[0].labels), instance_id=nodes[0].instance_id, cordoned_by_autoscaler=True)
    yield "autoscaler-cordoned-uncordoned-at-max", Case(make_snapshot(make_pods(2, cpu="1"), [cordoned], [full]), {}, placed=2, uncordoned=[cordoned.name])
    yield "autoscaler-cordoned-used-before-launch", Case(make_snapshot(make_pods(6, cpu="1"), [cordoned], [group]), {"workers": 2}, placed=4, uncordoned=[cordoned.name])
    unmanaged = make_node("laptop", cpu="8")
    yield "unmanaged-node-used", Case(make_snapshot(make_pods(8, cpu="1"), [unmanaged], [make_group()]), {}, placed=8)
    db = make_pod(labels={"app": "db"}, node=nodes[0].name)
    spread = dict(labels={"app": "db"}, anti=[anti_affinity({"app": "db"})])
    yield "anti-affinity-with-running-pod", Case(make_snapshot([db] + make_pods(1, **spread), nodes, [group]), {"workers": 2})
    yield "anti-affinity-among-placed", Case(make_snapshot(make_pods(2, **spread), nodes, [group]), {"workers": 2}, placed=1)


def _packing_cases():
    group = make_group()  # 4 cpu, 16Gi, 110 pods
    yield "cpu-bound", Case(make_snapshot(make_pods(10, cpu="1"), groups=[group]), {"workers": 3})
    yield "memory-bound", Case(make_snapshot(make_pods(5, cpu="100m", memory="6Gi"), groups=[group]), {"workers": 3})
    yield "pod-count-bound", Case(make_snapshot(make_pods(9, cpu="10m"), groups=[make_group(pods=4)]), {"workers": 3})
    gpu_group = make_group("gpu", instance_type="p3.2xlarge", cpu="8", memory="61Gi", gpu=1)
    yield "gpu-bound", Case(make_snapshot(make_pods(3, cpu="1", gpu=1), groups=[gpu_group]), {"gpu": 3})
    init_sized = make_resources(cpu="3", pods=1)  # largest init container beats the containers' sum
    yield "init-container-sized", Case(make_snapshot([make_pod(requests=init_sized) for _ in range(2)], groups=[group]), {"workers": 2})
    mixed_sizes = make_pods(2, cpu="3") + make_pods(2, cpu="1")  # first fit decreasing: 3+1, 3+1
    yield "first-fit-decreasing", Case(make_snapshot(mixed_sizes, groups=[group]), {"workers": 2})
    # 4 bins of 3 cpu leave 1 cpu each; the five 1-cpu pods fill them and open a fifth.
    split_bins = make_pods(4, cpu="3") + make_pods(2, cpu="1") + make_pods(3, cpu="1", memory="1Gi")
    yield "first-fit-fills-earlier-bins", Case(make_snapshot(split_bins, groups=[group]), {"workers": 5})
    # 4 bins of 5 cpu leave 3 cpu each: two 1.5-cpu pods fill the first, one goes to the second.
    big = make_group("big", cpu="8", memory="32Gi")
    yield "first-fit-part-fills-a-bin", Case(make_snapshot(make_pods(4, cpu="5") + make_pods(3, cpu="1500m"), groups=[big]), {"big": 4})
    yield "anti-affinity-one-per-bin", Case(make_snapshot(make_pods(3, cpu="100m", labels={"app": "db"}, anti=[anti_affinity({"app": "db"})]), groups=[group]), {"workers": 3})
    mixed = make_group(shapes=[make_shape("m5.4xlarge", cpu="16", memory="64Gi"), make_shape("m5.large", cpu="2", memory="8Gi")])
    yield "mixed-instances-smallest-fitting", Case(make_snapshot(make_pods(4, cpu="1"), groups=[mixed]), {"workers": 2})
    yield "scale-from-zero-nodes", Case(make_snapshot(make_pods(1), groups=[group]), {"workers": 1})


def _limit_cases():
    group = make_group(max_size=5)
    yield "capped-at-max-size", Case(make_snapshot(make_pods(30, cpu="1"), groups=[group]), {"workers": 5}, unaccounted=10)
    yield "over-provision-added", Case(make_snapshot(make_pods(5, cpu="1"), groups=[make_group()]), {"workers": 4}, over_provision=2)
    yield "over-provision-capped", Case(make_snapshot(make_pods(5, cpu="1"), groups=[group]), {"workers": 5}, over_provision=9)
    with_node, nodes = _one_group_with_nodes(1)
    yield "no-over-provision-without-bins", Case(make_snapshot(make_pods(2, cpu="1"), nodes, [with_node]), {}, placed=2, over_provision=2)
    booting = replace(with_node, desired=3)  # one node, two instances still booting
    yield "booting-instances-count-as-spare", Case(make_snapshot(make_pods(12, cpu="1"), nodes, [booting]), {}, placed=4)
    yield "booting-instances-plus-more", Case(make_snapshot(make_pods(16, cpu="1"), nodes, [booting]), {"workers": 4}, placed=4)
    above = make_group(desired=7, max_size=10)
    yield "never-lowers-desired", Case(make_snapshot(make_pods(1), groups=[above]), {})
    yield "at-max-unaccounted", Case(make_snapshot(make_pods(1), groups=[make_group(max_size=0)]), {}, unaccounted=1)


def _candidate_cases():
    def pair(first, second, count=1):
        return make_snapshot(make_pods(count, cpu="1"), groups=[first, second])
    west, east = make_group("b-west", region="us-west-2"), make_group("a-east", region="us-east-1")
    yield "region-order-beats-name", Case(pair(east, west), {"b-west": 1})
    yield "priority-tag-beats-region", Case(pair(west, replace(east, priority=10)), {"a-east": 1})
    multi, single = make_group("a-multi", zones=("us-west-2a", "us-west-2b")), make_group("b-single")
    yield "single-az-first", Case(pair(multi, single), {"b-single": 1})
    spot, demand = make_group("b-spot", spot=True), make_group("a-demand")
    yield "spot-first", Case(pair(demand, spot), {"b-spot": 1})
    yield "name-last", Case(pair(make_group("b"), make_group("a")), {"a": 1})
    yield "timed-out-overflows-to-next-region", Case(pair(west, east), {"a-east": 1}, timed_out=frozenset({west.key}))
    yield "full-group-overflows", Case(pair(replace(west, max_size=1), east, count=8), {"b-west": 1, "a-east": 1})
    yield "all-timed-out-unaccounted", Case(pair(west, east), {}, unaccounted=1, timed_out=frozenset({west.key, east.key}))
    no_launch_settings = make_group("a-unknown", shapes=())
    yield "group-without-shapes-skipped", Case(pair(no_launch_settings, make_group("b-known")), {"b-known": 1})


def _placement_cases():
    gpu = make_group("gpu", instance_type="p3.2xlarge", cpu="8", memory="61Gi", gpu=1,
                     taints=[Taint("nvidia.com/gpu", "true", "NoSchedule")])
    cpu = make_group("cpu")
    tolerate = [Toleration("nvidia.com/gpu", "Exists")]
    yield "selector-picks-group", Case(make_snapshot(make_pods(2, gpu=1, tolerations=tolerate, selector={"aws/type": "p3.2xlarge"}), groups=[cpu, gpu]), {"gpu": 2})
    yield "tainted-group-needs-toleration", Case(make_snapshot(make_pods(1, selector={"aws/type": "p3.2xlarge"}), groups=[cpu, gpu]), {}, infeasible=1)
    yield "too-big-for-any-shape", Case(make_snapshot(make_pods(2, cpu="64"), groups=[cpu]), {}, infeasible=2)
    yield "no-group-matches", Case(make_snapshot(make_pods(1, selector={"team": "none"}), groups=[cpu]), {}, infeasible=1)
    mixed_load = make_pods(1, cpu="64") + make_pods(3, cpu="1")
    yield "infeasible-pod-does-not-block-others", Case(make_snapshot(mixed_load, groups=[cpu]), {"cpu": 1}, infeasible=1)
    shared = make_group("shared", labels={"team": "ml"}, max_size=20)
    two_sets = make_pods(8, cpu="1", selector={"team": "ml"}) + make_pods(12, cpu="1", selector={"aws/type": "m5.xlarge"})
    yield "two-sets-sharing-a-group-add-up", Case(make_snapshot(two_sets, groups=[shared]), {"shared": 5})
    yield "two-sets-add-up-capped", Case(make_snapshot(two_sets, groups=[replace(shared, max_size=4)]), {"shared": 4}, unaccounted=4)


NOT_READY = Taint("node.kubernetes.io/not-ready", "", "NoSchedule")
NETWORK_UNAVAILABLE = Taint("node.kubernetes.io/network-unavailable", "", "NoSchedule")
UNINITIALIZED = Taint("node.cloudprovider.kubernetes.io/uninitialized", "true", "NoSchedule")


def _starting_node_cases():
    """Nodes that registered but are not initialized yet (not Ready, start-up taints, or a taint
    the group's template lacks) are booting instances of their group: pending pods are planned
    onto them with the template's room, and nothing is bought for those pods."""
    group, nodes = _one_group_with_nodes(2)
    starting = [replace(node, taints=(NOT_READY,), ready=False) for node in nodes]
    yield "starting-nodes-are-booting-capacity", Case(make_snapshot(make_pods(2, cpu="1"), starting, [group]), {}, placed=0)
    initializing = [replace(node, taints=(NETWORK_UNAVAILABLE, UNINITIALIZED)) for node in nodes]
    yield "initializing-nodes-are-booting-capacity", Case(make_snapshot(make_pods(2, cpu="1"), initializing, [group]), {}, placed=0)
    dedicated = [replace(node, taints=(NOT_READY, Taint("dedicated", "db")), ready=False) for node in nodes]
    yield "starting-node-with-an-untagged-taint-is-booting", Case(make_snapshot(make_pods(1, cpu="1"), dedicated, [group]), {})
    old = NOW - timedelta(hours=2)
    broken = [replace(node, created=old, ready=False) for node in nodes]
    yield "broken-node-offers-no-room", Case(make_snapshot(make_pods(1, cpu="1"), broken, [group]), {"workers": 3})
    lagging = [replace(node, created=old, taints=(NOT_READY,)) for node in nodes]
    yield "old-ready-node-keeps-start-up-taint", Case(make_snapshot(make_pods(1, cpu="1"), lagging, [group]), {"workers": 3})


def _take_back_cases():
    """Idle nodes the autoscaler cordoned are matched by their own labels, taints and room."""
    group = make_group()
    kubelet_labelled = make_node("w-0", labels={**group.labels, "team": "a"}, instance_id="i-w-0", cordoned_by_autoscaler=True)
    owned = replace(group, instance_ids=("i-w-0",), desired=1)
    team_a = dict(cpu="1", selector={"team": "a"})
    yield "kubelet-labelled-cordoned-node-taken-back", Case(make_snapshot(make_pods(1, **team_a), [kubelet_labelled], [owned]), {},
                                                           placed=1, uncordoned=["w-0"])
    unmanaged = make_node("laptop", labels={"team": "a"}, cordoned_by_autoscaler=True)
    yield "cordoned-node-outside-groups-taken-back", Case(make_snapshot(make_pods(1, **team_a), [unmanaged], [group]), {},
                                                         placed=1, uncordoned=["laptop"])
    draining = make_pod(cpu="1", node="w-0")
    yield "draining-node-not-taken-back", Case(make_snapshot([draining] + make_pods(1, cpu="1"), [kubelet_labelled], [owned]),
                                               {"workers": 2})
    detached = replace(kubelet_labelled, labels={**kubelet_labelled.labels, DETACHED_LABEL: "true"})
    yield "detached-node-not-taken-back", Case(make_snapshot(make_pods(1, cpu="1"), [detached], [owned]), {"workers": 2})
    two_sets = make_pods(1, **team_a) + make_pods(1, cpu="1", selector={"aws/type": "m5.xlarge"})
    yield "taken-back-once-for-two-sets", Case(make_snapshot(two_sets, [kubelet_labelled], [owned]), {},
                                               placed=2, uncordoned=["w-0"])
    full = make_node("w-0", labels={**group.labels, "team": "a"}, instance_id="i-w-0")
    busy = make_pod(cpu="4", node="w-0")
    yield "pod-waiting-for-a-busy-node-is-not-infeasible", Case(make_snapshot([busy] + make_pods(1, **team_a), [full], [owned]),
                                                                {}, unaccounted=1)
    yield "pod-too-big-for-nodes-and-groups-is-infeasible", Case(
        make_snapshot([busy] + make_pods(1, cpu="8", selector={"team": "a"}), [full], [owned]), {}, infeasible=1)


def _demand_cases():
    group = make_group()
    pinned = [[requirement("kubernetes.io/hostname", "In", "gone")]]
    daemon = make_pod(cpu="1", affinity=pinned, owner_kinds=("DaemonSet",))
    yield "pending-daemonset-pod-is-not-demand", Case(make_snapshot([daemon] + make_pods(1, cpu="1"), groups=[group]), {"workers": 1})
    # A running db in namespace "a" keeps db pods of "a" off its node, not those of "b": pods
    # identical but for their namespace are different shapes once anti-affinity exists.
    group, nodes = make_group_nodes(group, 1)
    guard = make_pod(cpu="1", namespace="a", labels={"app": "db"}, anti=[anti_affinity({"app": "db"}, namespaces=("a",))],
                     node=nodes[0].name)
    replicas = [make_pod(cpu="1", namespace=ns, labels={"app": "db"}) for ns in ("a", "b")]
    yield "anti-affinity-namespaces-kept-apart", Case(make_snapshot([guard] + replicas, nodes, [group]), {"workers": 2}, placed=1)


CASES = [pytest.param(case, id=name) for cases in (_existing_node_cases, _packing_cases, _limit_cases, _candidate_cases,
                                                   _placement_cases, _starting_node_cases, _take_back_cases, _demand_cases)
         for name, case in cases()]


@pytest.mark.parametrize("case", CASES)
def test_plan_scale_up(case: Case):
    result = plan_scale_up(case.snapshot, settings(case.over_provision), NOW, case.timed_out)
    assert raised(result) == case.raised
    assert result.placed_on_nodes == case.placed
    assert len(result.unaccounted) == case.unaccounted
    assert len(result.infeasible) == case.infeasible
    assert uncordoned(result) == case.uncordoned
    pending = sum(1 for pod in case.snapshot.pods if pod.is_pending_unassigned and not pod.is_daemonset)
    assert result.pending == pending
    assert result.placed_on_nodes + result.pods_for_new_instances + case.unaccounted + case.infeasible == pending
    assert ("scale-up-failed" in notified(result)) == bool(case.unaccounted)
    assert ("infeasible-pods" in notified(result)) == bool(case.infeasible)
    for action in result.actions:
        if isinstance(action, SetDesiredCapacity):
            group = next(g for g in case.snapshot.groups if g.name == action.group)
            assert group.desired < action.desired <= group.max_size


def test_infeasible_reports_largest_capacity():
    small = make_group("small", cpu="2", memory="8Gi")
    big = make_group("big", shapes=[make_shape("m5.2xlarge", cpu="8", memory="32Gi"), make_shape("m5.large", cpu="2", memory="8Gi")])
    greedy = make_pod("greedy", cpu="16")
    result = plan_scale_up(make_snapshot([greedy], groups=[small, big]), settings(), NOW)
    assert result.infeasible == ((greedy, big.shapes[0].capacity),)
    [notice] = [a for a in result.actions if isinstance(a, Notify)]
    assert "default/greedy" in notice.message and "cpu=8" in notice.message


def test_action_says_why_and_names_pods():
    snapshot = make_snapshot([make_pod(f"job-{i:02}", cpu="1", selector={"aws/type": "m5.xlarge"}) for i in range(30)],
                             groups=[make_group()])
    [action] = plan_scale_up(snapshot, settings(over_provision=2), NOW).actions
    # No price is known for the builders' groups: chosen by least waste (test_cost_aware has prices).
    assert action.reason.startswith("30 pending pods {aws/type=m5.xlarge} (default/job-00, default/job-01, default/job-02, "
                                    "default/job-03, default/job-04 and 25 more) need 8 new m5.xlarge instances (+2 over-provision), "
                                    "reaching max size 10: no known price, so chosen by least waste")
    assert action.pods == tuple(f"default/job-{i:02}" for i in range(20))
    assert (action.previous, action.desired) == (0, 10)


def test_shared_group_one_action_with_both_reasons():
    shared = make_group("shared", labels={"team": "ml"}, max_size=20)
    snapshot = make_snapshot(make_pods(8, cpu="1", selector={"team": "ml"}) + make_pods(4, cpu="1", selector={"aws/type": "m5.xlarge"}),
                             groups=[shared])
    [action] = plan_scale_up(snapshot, settings(over_provision=1), NOW).actions
    assert action.desired == 2 + 1 + 1  # over-provision once per group, not once per set
    # One decision over both sets: they share instances, and one reason names both.
    assert action.reason.startswith("12 pending pods {aws/type=m5.xlarge} {team=ml} (")
    assert "need 3 new m5.xlarge instances" in action.reason


def _contested_snapshot():
    """Three sets competing for a group too small for all of them, plus nodes, in a set order."""
    shared = make_group("shared", labels={"team": "ml"}, max_size=3)
    overflow = make_group("overflow", region="us-east-1", labels={"team": "ml"})
    shared, nodes = make_group_nodes(shared, 1)
    pending = (make_pods(6, cpu="1", selector={"team": "ml"}) + make_pods(6, cpu="2", selector={"aws/type": "m5.xlarge"})
               + make_pods(5, cpu="1", memory="3Gi", selector={"aws/region": "us-west-2"}))
    return pending, nodes, [shared, overflow]


def test_decisions_do_not_depend_on_insertion_order():
    pending, nodes, groups = _contested_snapshot()
    baseline = plan_scale_up(make_snapshot(pending, nodes, groups), settings(1), NOW)
    assert baseline.actions
    for seed in range(8):
        shuffle = random.Random(seed).sample
        snapshot = make_snapshot(shuffle(pending, len(pending)), nodes, shuffle(groups, len(groups)))
        result = plan_scale_up(snapshot, settings(1), NOW)
        assert result.actions == baseline.actions
        assert [p.key for p in result.unaccounted] == [p.key for p in baseline.unaccounted]


def test_no_pending_pods_no_actions():
    group, nodes = make_group_nodes(make_group(), 2)
    result = plan_scale_up(make_snapshot([make_pod(node=nodes[0].name)], nodes, [group]), settings(5), NOW)
    assert result.actions == () and result.pending == 0


def test_empty_cluster():
    result = plan_scale_up(make_snapshot(), settings(), NOW)
    assert result.actions == ()
    assert "0 pending pods" in result.summary()


def test_hostname_label_is_the_anti_affinity_topology():
    # Two placed replicas of a spread pod never share a node, even when that node has room.
    group, nodes = make_group_nodes(make_group(), 2)
    spread = make_pods(2, cpu="100m", labels={"app": "db"}, anti=[anti_affinity({"app": "db"})])
    result = plan_scale_up(make_snapshot(spread, nodes, [group]), settings(), NOW)
    assert result.placed_on_nodes == 2 and not result.actions


def test_identical_pods_in_many_namespaces_are_one_shape(monkeypatch):
    """Without anti-affinity anywhere, a namespace changes nothing about where a pod fits."""
    built = []
    original = pending_shapes.PodShape

    def counting(*args, **kwargs):
        built.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pending_shapes, "PodShape", counting)
    spread = [make_pod(cpu="1", namespace=f"team-{i}") for i in range(50)]
    result = plan_scale_up(make_snapshot(spread, groups=[make_group(max_size=20)]), settings(), NOW)
    assert raised(result) == {"workers": 13} and len(built) == 1


def test_first_fit_work_grows_with_pods_and_nodes_not_their_product(monkeypatch):
    """Every pending pod with a request of its own (nothing placed by count), on nodes with a
    little room each: first fit must skip full nodes and full new instances wholesale."""
    calls = []
    original = packing._room_for

    def counting(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(packing, "_room_for", counting)
    group, nodes = make_group_nodes(make_group(max_size=1000), 300)
    running = [make_pod(cpu="3", node=node.name) for node in nodes]
    pending = [make_pod(cpu=f"{300 + i}m") for i in range(1500)]
    result = plan_scale_up(make_snapshot(running + pending, nodes, [group]), settings(), NOW)
    assert result.placed_on_nodes == 300 and result.pods_for_new_instances == 1200
    assert len(calls) <= 3 * (len(pending) + len(nodes))


def _reference_first_fit(pending, rooms, capacity):
    """One pod at a time, largest first (cpu, then memory): the first node in name order with
    room; then the pods left, largest share of a new instance first: the first new instance with
    room, else a new instance. Returns (placed on nodes, new instances)."""
    def size(pod):
        return (-pod.requests.get("cpu"), -pod.requests.get("memory"), sorted(pod.requests.items()))

    def share(pod):
        return max(amount / capacity.get(name) for name, amount in pod.requests.items())

    placed, bins, left = 0, [], []
    for pod in sorted(pending, key=size):
        for free in rooms:
            if pod.requests.fits_in(free[0]):
                free[0] = free[0] - pod.requests
                placed += 1
                break
        else:
            left.append(pod)
    for pod in sorted(left, key=lambda pod: (-share(pod), size(pod))):
        for free in bins:
            if pod.requests.fits_in(free[0]):
                free[0] = free[0] - pod.requests
                break
        else:
            bins.append([capacity - pod.requests])
    return placed, len(bins)


@pytest.mark.parametrize("seed", range(12))
def test_first_fit_matches_placing_pods_one_by_one(seed):
    chance = random.Random(seed)
    group, nodes = make_group_nodes(make_group(max_size=1000), chance.randint(0, 12))
    running = [make_pod(cpu=f"{chance.randint(0, 4000)}m", memory=f"{chance.randint(0, 16)}Gi", node=node.name)
               for node in nodes]
    running = [pod for pod in running if pod.requests.fits_in(group.shapes[0].capacity)]
    sizes = [(f"{chance.choice([250, 500, 1000, 1500, 3000])}m", f"{chance.randint(0, 12)}Gi") for _ in range(chance.randint(1, 8))]
    pending = [make_pod(cpu=cpu, memory=memory) for _ in range(chance.randint(1, 120)) for cpu, memory in [chance.choice(sizes)]]
    if chance.random() < 0.5:  # some runs with every request different
        pending = [make_pod(cpu=f"{chance.randint(100, 4000)}m", memory=f"{chance.randint(0, 16000)}Mi") for _ in range(80)]
    rooms = [[node.allocatable - sum((p.requests for p in running if p.node_name == node.name), make_resources())]
             for node in sorted(nodes, key=lambda n: n.name)]
    placed, instances = _reference_first_fit(pending, rooms, group.shapes[0].capacity)
    result = plan_scale_up(make_snapshot(running + pending, nodes, [group]), settings(), NOW)
    assert result.placed_on_nodes == placed
    assert raised(result) == ({"workers": group.desired + instances} if instances else {})
