"""PURE: one loop's decisions. Snapshot + settings + now (+ the health state carried between
loops) -> the plan, in the order it is to be applied.

Order matters: capacity corrections of failing groups first (so a group set back is not raised
again in the same breath), then scale up, then scale in.

The loop also remembers the last-busy times its plans write (``remember_last_busy``) and lays them
over each snapshot's nodes (``with_remembered_last_busy``): a dry run writes no annotation, and
without them it would measure idle time from the instance's launch, where a real run measures it
from the annotation it wrote, and the two would decide differently.

And it remembers when a loop last saw each node busy (``remember_seen_busy``), which is what an
idle node's idle time runs from (``with_seen_busy``): the annotation is rewritten at most once a
minute, so measured from it a node looked up to a minute more idle than it was. The annotation
stays the record that survives a restart.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Iterable, Mapping, Optional

from ..model.config import Settings
from ..model.objects import LAST_BUSY_ANNOTATION, NodeState, Snapshot
from ..model.plan import Action, AnnotateNode, Plan, SetDesiredCapacity
from .group_health import GroupHealthState, GroupKey, assess_groups
from .node_state import is_busy_pod
from .buy_guard import GuardState, Mismatch, guard, remember
from .initialized import readiness_of_nodes
from .live_fit import booting_nodes
from .node_template import TemplateDifference, with_node_templates
from .scale_down import plan_scale_down
from .scale_up import ScaleUpResult, plan_scale_up

log = logging.getLogger("autoscaler.cluster")

BANNER = "++++++++++++++ {} ++++++++++++++++"


@dataclass(frozen=True)
class ScaleUpCounts:
    pending: int  # DaemonSet pods are not demand
    placed_on_nodes: int
    pods_for_new_instances: int
    groups_raised: int
    infeasible: int
    unaccounted: int
    gated: int = 0  # pending pods with scheduling gates or unbound claims: not demand, not in pending


@dataclass(frozen=True)
class DecisionCounts:
    """What one decision counted, for the loop's summary line and the metrics."""

    groups_timed_out: int = 0
    scale_up: Optional[ScaleUpCounts] = None  # None under --no-scale
    nodes_by_state: Mapping[NodeState, int] = field(default_factory=dict)  # empty under --no-maintenance
    model_mismatches: int = 0  # pods found this loop waiting where the model says they fit (buy_guard.py)

    def fields(self) -> dict[str, int]:
        """As the summary line names them: ``pending=3 ... nodes_busy=2``."""
        fields = {"groups_timed_out": self.groups_timed_out}
        if self.scale_up is not None:
            fields.update(vars(self.scale_up))
        if self.model_mismatches:
            fields["model_mismatches"] = self.model_mismatches
        for state, count in sorted(self.nodes_by_state.items(), key=lambda item: item[0].value):
            fields[f"nodes_{state.snake}"] = count
        return fields


@dataclass(frozen=True)
class Decision:
    actions: Plan
    health: GroupHealthState
    counts: DecisionCounts = DecisionCounts()
    # For events and metrics: which pods scale up could not serve and why, which groups are out.
    scale_up: Optional[ScaleUpResult] = None
    timed_out: frozenset[GroupKey] = frozenset()  # Group.key of the groups timed out this loop
    # Capacity corrections and spot cancellations among ``actions`` -> the scaling activity each
    # answers, so that the loop can hand back to ``health`` those it did not make.
    origins: Mapping[Action, str] = field(default_factory=dict)
    # Where groups' initialized nodes differ from their tags; the loop warns about each once.
    template_differences: tuple[TemplateDifference, ...] = ()
    guard: GuardState = GuardState()  # for the next loop (buy_guard.py)
    mismatches: tuple[Mismatch, ...] = ()  # found this loop: a pod Event each


def decide(snapshot: Snapshot, settings: Settings, now: datetime, health: GroupHealthState,
           guard_state: Optional[GuardState] = None) -> Decision:
    """``guard_state``: what the buy-loop guard remembered from the last loop (none at the start)."""
    readiness = readiness_of_nodes(snapshot, settings, now)
    for name, (state, why) in sorted(readiness.items()):
        if why:
            log.debug("node %s: %s (%s)", name, state.value, why)
    states = {name: state for name, (state, _) in readiness.items()}
    booting = booting_nodes(snapshot, states)  # the same nodes in the templated snapshot: groups keep their instances
    templates = with_node_templates(snapshot, states)
    guarded = guard(guard_state or GuardState(), templates.snapshot, states, settings, now)
    snapshot = guarded.snapshot
    assessment = assess_groups(health, snapshot, settings, now)
    actions = list(assessment.actions)
    # Every loop, not only when a group goes out: an operator reading any loop's log sees why a
    # group is being skipped and until when.
    for line in assessment.describe_timeouts():
        log.info("Timed out: %s", line)
    up = None
    up_counts = None
    nodes_by_state: Counter[NodeState] = Counter()
    verdicts: list[tuple[str, NodeState]] = []

    if settings.no_scale:
        log.info("Scale up is off (--no-scale)")
    else:
        log.info(BANNER.format("Scaling Up Begins"))
        up = plan_scale_up(snapshot, settings, now, timed_out=assessment.timed_out, booting=booting)
        actions.extend(up.actions)
        actions.extend(guarded.notices)
        up_counts = ScaleUpCounts(pending=up.pending, placed_on_nodes=up.placed_on_nodes,
                                  pods_for_new_instances=up.pods_for_new_instances,
                                  groups_raised=sum(1 for a in up.actions if isinstance(a, SetDesiredCapacity)),
                                  infeasible=len(up.infeasible), unaccounted=len(up.unaccounted), gated=up.gated)

    if settings.no_maintenance:
        log.info("Scale in is off (--no-maintenance)")
    else:
        log.info(BANNER.format("Maintenance Begins"))
        down = plan_scale_down(snapshot, settings, now, booting)
        for verdict in down.verdicts:
            log.debug("node %s: %s (%s)", verdict.node.name, verdict.state.value, verdict.reason)
        actions.extend(down.actions)
        nodes_by_state.update(verdict.state for verdict in down.verdicts)
        verdicts = [(verdict.node.name, verdict.state) for verdict in down.verdicts]

    counts = DecisionCounts(len(assessment.timed_out), up_counts, dict(nodes_by_state), len(guarded.new))
    next_guard = remember(guarded.state, up.planned_groups if up is not None else {}, verdicts, now)
    return Decision(tuple(actions), assessment.state, counts, up, frozenset(assessment.timed_out), assessment.origins,
                    templates.differences, next_guard, guarded.new)


def remember_last_busy(remembered: Mapping[str, datetime], snapshot: Snapshot,
                       actions: Iterable[Action]) -> dict[str, datetime]:
    """Node name -> last-busy time: what was remembered for the nodes still in ``snapshot``, then
    what ``actions`` annotate, applied or not."""
    names = {node.name for node in snapshot.nodes}
    kept = {name: moment for name, moment in remembered.items() if name in names}
    for action in actions:
        if isinstance(action, AnnotateNode) and action.key == LAST_BUSY_ANNOTATION and action.node in names:
            try:
                moment = datetime.fromisoformat(action.value)
            except ValueError:
                log.warning("node %s: not remembering unreadable last-busy time %r", action.node, action.value)
                continue
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)  # as the Kubernetes reader takes it
            if action.node not in kept or moment > kept[action.node]:
                kept[action.node] = moment
    return kept


def with_remembered_last_busy(snapshot: Snapshot, remembered: Mapping[str, datetime]) -> Snapshot:
    """The snapshot with each node's last-busy time the later of its annotation and what was
    remembered for it."""
    if not remembered:
        return snapshot
    nodes = []
    changed = False
    for node in snapshot.nodes:
        moment = remembered.get(node.name)
        if moment is not None and (node.last_busy is None or moment > node.last_busy):
            node = replace(node, last_busy=moment)
            changed = True
        nodes.append(node)
    return replace(snapshot, nodes=tuple(nodes)) if changed else snapshot


def busy_node_names(snapshot: Snapshot) -> frozenset[str]:
    """The nodes that run a busy pod (anything but DaemonSet and mirror pods) in this snapshot."""
    return frozenset(pod.node_name for pod in snapshot.pods
                     if pod.occupies_node and pod.node_name is not None and is_busy_pod(pod))


def remember_seen_busy(seen: Mapping[str, datetime], snapshot: Snapshot, now: datetime) -> dict[str, datetime]:
    """Node name -> the last loop time that saw it busy: ``now`` for the nodes busy in
    ``snapshot``, what was remembered for the other nodes still there."""
    names = {node.name for node in snapshot.nodes}
    kept = {name: moment for name, moment in seen.items() if name in names}
    kept.update((name, now) for name in busy_node_names(snapshot) if name in names)
    return kept


def with_seen_busy(snapshot: Snapshot, seen: Mapping[str, datetime]) -> Snapshot:
    """The snapshot with each idle node's last-busy time the later of its own and the last loop
    that saw it busy. Busy nodes keep theirs: it says when their annotation is due again."""
    if not seen:
        return snapshot
    busy = busy_node_names(snapshot)
    nodes, changed = [], False
    for node in snapshot.nodes:
        moment = seen.get(node.name)
        if node.name not in busy and moment is not None and (node.last_busy is None or moment > node.last_busy):
            node = replace(node, last_busy=moment)
            changed = True
        nodes.append(node)
    return replace(snapshot, nodes=tuple(nodes)) if changed else snapshot
