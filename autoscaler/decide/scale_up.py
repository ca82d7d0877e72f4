"""Scale up: pending pods -> live nodes -> cordoned nodes taken back -> infeasible set apart ->
groups chosen and packed -> over-provision -> actions.

Pure; each stage is a function of its own module with its own tests (docs/decisions.md#scale-up):
pending_shapes (identical pods placed by count), live_fit (stages 1 and 2), infeasible (3),
offers, choose, greedy and improve (4: what each group offers and the expander's choice),
over_provision (5), scale_up_actions (6). This module only runs them in order and sums up: each
stage gets the pods still waiting (ledger.Waiting) and returns a frozen result whose ledger says
how many of each shape's first waiting pods it placed; pods are handed out by those ledgers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Optional, Union

from ..model.config import Settings
from ..model.objects import Pod, Resources, Snapshot
from ..model.plan import Notify, SetDesiredCapacity, Uncordon
from .choose import choose
from .infeasible import set_apart
from .initialized import readiness_of_nodes
from .ledger import Waiting, after, waiting_of
from .live_fit import booting_nodes, build_rooms, place_on_live_nodes, take_back
from .offers import make_offers
from .over_provision import over_provision
from .packing import NodeIndex
from .pending_shapes import group_into_shapes, pending_demand
from .scale_up_actions import failure_notices, infeasible_notice, pods_by_group, raises
from .topology import Topology

ScaleUpAction = Union[Uncordon, SetDesiredCapacity, Notify]


@dataclass(frozen=True)
class ScaleUpResult:
    actions: tuple[ScaleUpAction, ...] = ()  # Uncordon..., SetDesiredCapacity..., Notify...
    placed_on_nodes: int = 0  # pending pods that fit existing nodes (uncordoned ones included)
    pods_for_new_instances: int = 0  # pending pods booting or new instances of the plan take
    unaccounted: tuple[Pod, ...] = ()  # nothing takes them: no live node, booting instance or new one
    infeasible: tuple[tuple[Pod, Resources], ...] = ()  # with the largest capacity each could get
    pending: int = 0
    constraint_sets: int = 0  # distinct placements among the pending pods
    new_instances: int = 0  # sum of the desired-capacity increases
    uncordoned: int = 0
    why_unaccounted: Mapping[str, str] = field(default_factory=dict)  # pod key -> why no group took it
    # pod key -> Group.key of the group whose booting or new instances the plan puts it on
    planned_groups: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # Pending pods held back from the scheduler (scheduling gates, unbound claims): not demand.
    gated: int = 0

    def summary(self) -> str:
        return (
            f"scale up: {self.pending} pending pods in {self.constraint_sets} constraint sets, "
            f"{self.placed_on_nodes} fit existing nodes ({self.uncordoned} uncordoned), "
            f"{self.pods_for_new_instances} need new instances (+{self.new_instances} desired), "
            f"{len(self.unaccounted)} unaccounted, {len(self.infeasible)} infeasible, "
            f"{self.gated} gated (scheduling gates or unbound claims: not demand)"
        )


def plan_scale_up(snapshot: Snapshot, settings: Settings, now: datetime,
                  timed_out: frozenset[tuple[str, str]] = frozenset(),
                  booting: Optional[frozenset[str]] = None) -> ScaleUpResult:
    """Decide the scale up of one loop. ``timed_out`` holds the ``Group.key`` of groups that
    scale up skips (launch failures), so their pods overflow to the next candidate. ``now``
    tells starting nodes from broken ones; ``booting`` names the nodes that are not initialized yet
    (initialized.py; worked out here when not given): they are booting instances of their group."""
    pending = pending_demand(snapshot)
    gated = sum(1 for pod in snapshot.pods if pod.is_pending_unassigned and not pod.is_daemonset and pod.is_gated)
    if not pending:
        return ScaleUpResult(gated=gated)
    shapes, dimensions = group_into_shapes(pending, snapshot)
    width = len(dimensions)
    if booting is None:
        booting = booting_nodes(snapshot, {name: state for name, (state, _)
                                           in readiness_of_nodes(snapshot, settings, now).items()})
    rooms = build_rooms(snapshot, settings, now, dimensions, booting)
    # Pods per topology domain, only when some pending pod has inter-pod rules (else: the fast path).
    topology = (Topology(snapshot.nodes, snapshot.pods, snapshot.groups, [shape.representative for shape in shapes if shape.rules])
                if any(shape.rules for shape in shapes) else None)
    # Each stage starts from the pods still waiting and returns what it placed (ledger.py).
    waiting: Waiting = waiting_of(shapes)
    on_nodes = place_on_live_nodes(waiting, rooms, width, topology)
    waiting = after(waiting, on_nodes)
    taken_back = take_back(waiting, rooms, width, topology)
    waiting = after(waiting, taken_back.placed)

    every_node = NodeIndex(list(rooms.schedulable + rooms.cordoned), {shape.placement for shape in waiting})
    apart = set_apart(waiting, snapshot.groups, every_node)
    waiting = apart.left

    offers = make_offers(snapshot, settings, timed_out, booting)
    chosen = choose(waiting, offers, dimensions, settings.expander, topology)
    plans = chosen.plans
    pods_of = pods_by_group(plans, waiting)
    left = after(waiting, chosen.placed)
    extra = over_provision(plans, settings.over_provision, sum(len(pods) for pods in left.values()))
    raised = raises(plans, pods_of, extra)
    failures, why = failure_notices(left, offers, {plan.offer.key: plan for plan in plans})

    uncordons = taken_back.uncordons
    actions: list[ScaleUpAction] = [*uncordons, *raised, *infeasible_notice(apart.pods), *failures]
    unaccounted = sorted((pod for pods in left.values() for pod in pods), key=lambda pod: (pod.namespace, pod.name))
    return ScaleUpResult(
        actions=tuple(actions),
        placed_on_nodes=on_nodes.total + taken_back.placed.total,
        pods_for_new_instances=sum(len(on_booting) + len(on_new) for on_booting, on_new in pods_of.values()),
        unaccounted=tuple(unaccounted),
        infeasible=apart.pods,
        pending=len(pending),
        constraint_sets=len({pod.placement for pod in pending}),
        new_instances=sum(action.desired - action.previous for action in raised),
        uncordoned=len(uncordons),
        why_unaccounted=why,
        planned_groups={pod.key: key for key, (on_booting, on_new) in pods_of.items() for pod in (*on_booting, *on_new)},
        gated=gated,
    )
