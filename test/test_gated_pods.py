"""Gated pods are not demand (issue 17): a pod with scheduling gates (a queue such as Kueue has not
admitted it) or with a claim that must bind before it is scheduled is not looked at by the
scheduler, so no instance is bought for it; scale up counts it apart (gated=N)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from autoscaler.decide.decision import decide
from autoscaler.decide.group_health import GroupHealthState
from autoscaler.decide.pending_shapes import pending_demand
from autoscaler.decide.scale_up import plan_scale_up
from autoscaler.model.config import Settings
from autoscaler.model.plan import SetDesiredCapacity
from builders import NOW, make_group, make_pod, make_snapshot

SETTINGS = Settings(cluster_name="gated", regions=("us-west-2",), over_provision=0)


def gated(pod, gates=(), claims=()):
    return replace(pod, scheduling_gates=tuple(gates), unbound_claims=tuple(claims))


CASES = {
    # (pods, pending demand, gated count, instances bought)
    "scheduling-gates-are-not-demand": ([gated(make_pod("q", cpu="2"), gates=["kueue.x-k8s.io/admission"])], 0, 1, 0),
    "an-unbound-claim-is-not-demand": ([gated(make_pod("c", cpu="2"), claims=["data"])], 0, 1, 0),
    "ungated-pods-still-are": ([make_pod("a", cpu="2"), gated(make_pod("q", cpu="2"), gates=["x"])], 1, 1, 1),
    "a-gated-daemonset-pod-is-neither": ([gated(make_pod("d", cpu="2", owner_kinds=("DaemonSet",)), gates=["x"])], 0, 0, 0),
    "a-running-pod-is-neither": ([gated(make_pod("r", cpu="2", node="n1"), claims=["data"])], 0, 0, 0),
}


@pytest.mark.parametrize("pods, demand, gated_count, bought", CASES.values(), ids=CASES.keys())
def test_gated_pods_are_counted_not_bought_for(pods, demand, gated_count, bought):
    snapshot = make_snapshot(pods=pods, groups=[make_group("workers", max_size=5, desired=0)])
    assert len(pending_demand(snapshot)) == demand
    result = plan_scale_up(snapshot, SETTINGS, NOW)
    assert (result.pending, result.gated) == (demand, gated_count)
    assert sum(a.desired - a.previous for a in result.actions if isinstance(a, SetDesiredCapacity)) == bought
    assert f"{gated_count} gated" in result.summary()
    counts = decide(snapshot, SETTINGS, NOW, GroupHealthState()).counts
    assert counts.fields()["gated"] == gated_count and counts.fields()["pending"] == demand
