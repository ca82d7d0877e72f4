"""Properties of the scale-up plan over random clusters (issue 9, point 9): every placement is
sound, nothing goes above max size or lowers desired capacity, the plan is the same under
shuffled input and renamed groups, no pod is left out that an instance of the plan (or one more
within max size) could take; and on small clusters its $/h stays near the exact optimum."""
from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from dataclasses import replace

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from autoscaler.decide.choose import choose_and_pack
from autoscaler.decide.offers import make_offers
from autoscaler.decide.pending_shapes import group_into_shapes, pending_demand
from autoscaler.decide.scale_up import plan_scale_up
from autoscaler.decide.scheduling import placement_matches
from autoscaler.model.config import Settings
from autoscaler.model.objects import Snapshot, Toleration
from autoscaler.model.plan import SetDesiredCapacity
from builders import NOW, make_pod, make_snapshot
from exact_plan import cheapest_cost
from random_clusters import TEAM_TAINT, TYPES, priced_group, random_cluster, renamed

ROOT = pathlib.Path(__file__).resolve().parent.parent
SETTINGS = Settings(cluster_name="test", regions=("us-east-1",), over_provision=0)


@st.composite
def clusters(draw) -> Snapshot:
    types = draw(st.lists(st.sampled_from(sorted(TYPES)), min_size=1, max_size=4, unique=True))
    groups = []
    for index, instance_type in enumerate(types):
        team = draw(st.booleans())
        desired = draw(st.integers(0, 2))
        groups.append(priced_group(
            f"g{index}", instance_type, max_size=draw(st.integers(desired, 8)), desired=desired,
            labels={"team": "ml"} if team else {}, taints=[TEAM_TAINT] if team and draw(st.booleans()) else [],
            priority=draw(st.sampled_from([0, 0, 0, 1])), spot=draw(st.booleans())))
    pods = []
    for number in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["any", "any", "team", "tolerates"]))
        options: dict[str, object] = {}
        if kind == "team":
            options = {"selector": {"team": "ml"}, "tolerations": [Toleration("team", "Exists")]}
        elif kind == "tolerates":
            options = {"tolerations": [Toleration("team", "Exists")]}
        pods.append(make_pod(f"p{number:02}", cpu=f"{draw(st.integers(1, 40)) * 100}m",
                             memory=f"{draw(st.integers(1, 64)) * 512}Mi", **options))
    return make_snapshot(pods, groups=groups)


@hypothesis_settings(max_examples=150, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters())
def test_every_plan_is_sound_and_leaves_out_no_pod_it_could_take(snapshot):
    pending = pending_demand(snapshot)
    shapes, dimensions = group_into_shapes(pending, snapshot)
    offers = make_offers(snapshot, SETTINGS, frozenset())
    plans = choose_and_pack(shapes, offers, dimensions, "price")
    placed = 0
    for plan in plans:
        group = plan.offer.group
        assert 0 <= plan.new <= plan.offer.room
        for entry in plan.open_bins():
            for dimension, capacity in enumerate(plan.empty):
                used = sum(dict(shape.needs).get(dimension, 0) * copies for shape, copies in entry.contents.items())
                assert used <= capacity
                assert entry.free[dimension] == capacity - used
            for shape, copies in entry.contents.items():
                assert placement_matches(shape.placement, group.labels, group.taints)
                placed += copies
        assert sum(1 for entry in plan.open_bins() if entry.booting) == plan.offer.booting
    assert placed == sum(shape.taken for shape in shapes)
    for shape in shapes:
        if not shape.remaining:
            continue
        for plan in plans:
            if plan.takes(shape):
                assert plan.room == 0, f"{shape.representative.key} left out while {plan.name} may still grow"
                assert plan.bins.first(shape.needs) == -1, f"{shape.representative.key} fits an instance of the plan"


@hypothesis_settings(max_examples=60, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), st.randoms(use_true_random=False))
def test_plan_is_within_max_size_and_the_same_under_shuffles_and_renames(snapshot, chance):
    result = plan_scale_up(snapshot, SETTINGS, NOW)
    groups = {group.name: group for group in snapshot.groups}
    for action in result.actions:
        if isinstance(action, SetDesiredCapacity):
            group = groups[action.group]
            assert group.desired < action.desired <= group.max_size
    assert result.placed_on_nodes + result.pods_for_new_instances + len(result.unaccounted) + len(result.infeasible) == result.pending
    shuffled = replace(snapshot, pods=tuple(chance.sample(snapshot.pods, len(snapshot.pods))),
                       groups=tuple(chance.sample(snapshot.groups, len(snapshot.groups))))
    assert plan_scale_up(shuffled, SETTINGS, NOW).actions == result.actions
    # Renamed groups: the same $/h (a name only breaks an exact tie, and either side of it costs the same).
    swapped = plan_scale_up(renamed(snapshot), SETTINGS, NOW)
    assert round(_hourly(renamed(snapshot), swapped), 6) == round(_hourly(snapshot, result), 6)


def _hourly(snapshot: Snapshot, result) -> float:
    prices = {group.name: group.shapes[0].hourly_price for group in snapshot.groups}
    return sum((action.desired - action.previous) * prices[action.group]
               for action in result.actions if isinstance(action, SetDesiredCapacity))


OPTIMUM_SEEDS = range(40)


def test_price_stays_near_the_exact_optimum_on_small_clusters():
    """Over a fixed set of random clusters (<= 40 pods, 2-4 groups, one region), the plan's $/h
    against the cheapest new instances that run the same pods (CP-SAT): within 1.10x on average
    and 1.5x at worst. Clusters the solver cannot prove optimal within its time are left out;
    most must count."""
    ratios = []
    for seed in OPTIMUM_SEEDS:
        snapshot = random_cluster(seed)
        result = plan_scale_up(snapshot, SETTINGS, NOW)
        cost = _hourly(snapshot, result)
        left = {pod.key for pod in result.unaccounted} | {pod.key for pod, _ in result.infeasible}
        served = [pod for pod in snapshot.pods if pod.key not in left]
        best = cheapest_cost(served, snapshot.groups, at_most=cost, seconds=2.0)
        if best:
            ratios.append(cost / best)
    assert len(ratios) >= 0.75 * len(OPTIMUM_SEEDS)
    assert sum(ratios) / len(ratios) <= 1.10, ratios
    assert max(ratios) <= 1.5, ratios



PLAN_SCRIPT = """
import sys
sys.path[:0] = ["test", "."]
from autoscaler.model.config import Settings
from autoscaler.decide.scale_up import plan_scale_up
from builders import NOW
from random_clusters import random_cluster
settings = Settings(cluster_name="test", regions=("us-east-1",), over_provision=1)
for seed in range(12):
    for action in plan_scale_up(random_cluster(seed), settings, NOW).actions:
        print(action.describe())
"""


def test_the_same_plan_under_any_hash_seed():
    outputs = set()
    for hash_seed in ("0", "1", "12345"):
        result = subprocess.run([sys.executable, "-c", PLAN_SCRIPT], capture_output=True, text=True, cwd=ROOT,
                                env={**os.environ, "PYTHONHASHSEED": hash_seed}, timeout=120)
        assert result.returncode == 0, result.stderr
        outputs.add(result.stdout)
    assert len(outputs) == 1 and "set desired capacity" in outputs.pop()
