"""PURE: scale in. Snapshot + settings + now -> one verdict per managed node and the actions.

What each state does (docs/decisions.md#scale-in):
- instance-terminated: delete the Node. dead: terminate the instance and delete the Node (only
  the Node when it belongs to no managed group).
- idle-schedulable: cordon (the actuator labels it as cordoned by the autoscaler).
- idle-unschedulable: terminate through the ASG, lowering desired capacity, then delete the Node.
  This holds whoever cordoned the node, as in the original (a person keeps a node with
  ``openai/detached=true``). An idle node the autoscaler cordoned that a pending pod fits is
  pod-pending instead: scale up uncordons it in the same plan, which must not also remove it
  (both ask node_state.can_be_taken_back and match with the same taints, so they agree).
- under-utilized-drainable: cordon, evict its busy pods, notify which (once, when the drain
  starts; later loops retry evictions a PodDisruptionBudget refused).
- busy-unschedulable, asg-min-size, under-utilized-undrainable: a node the autoscaler cordoned is
  given back (uncordoned); one a person cordoned is never touched.
- Busy nodes get the last-busy annotation, refreshed at most once a minute.

Rules settled here:
- Min size: a group loses at most ``min(desired, nodes) - min size`` instances this loop. Dead
  nodes go first; they are still replaced at min size (terminated without lowering desired). Idle
  nodes beyond that budget are kept, longest idle removed first, and reported as asg-min-size.
- Spares: idle nodes of a group are walked most recently busy first; grace-period ones count as
  kept, and type-grace-period keeps more until 5 are kept.
- Scale-in cap, limit = ceil(--max-scale-in-fraction x instances of managed groups):
  --scale-in-cap=rate (default) makes at most that many instance terminations (idle, dead,
  unregistered) a loop: dead and never-registered instances first, then the longest idle; the
  rest stay as they are (cordoned) for the next loops, so a large idle fleet drains over a few
  loops. --scale-in-cap=brake is the original's rule: more than the limit, and none happen, with
  a ``scale-in-capped`` error notice. Cordons, uncordons, evictions and the deletion of Nodes
  whose instance is already gone still happen: they remove no instance, and a cordoned node is
  only removed a loop later, under the cap again.
- Nodes outside every managed group are classified for the log but never cordoned, drained or
  terminated.
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Mapping, Optional, Sequence

from ..model.config import Settings
from ..model.objects import LAST_BUSY_ANNOTATION, Group, Node, NodeState, Pod, Resources, Snapshot, Taint, extreme_sizes
from .node_state import NodeVerdict, can_be_taken_back, classify, idle_since, is_busy_pod, taints_for_pending_pods
from ..model.plan import Action, AnnotateNode, Cordon, DeleteNode, EvictPod, Notify, Plan, TerminateInstance, Uncordon, terminations_message
from ..model.text import named_list, utc_text
from .placement_rules import has_topology_rules, placement_matches, ports_free
from .topology import Topology

# A busy node's last-busy annotation is rewritten only when older than this, so busy nodes do not
# cost one patch each per loop; idle time is then at most this much too long.
LAST_BUSY_REFRESH_SECONDS = 60
# How many names a notification lists before it says "and N more".
NOTIFY_NAMES = 10

KEPT_IDLE_STATES = (NodeState.GRACE_PERIOD, NodeState.TYPE_GRACE_PERIOD)
GIVE_BACK_STATES = (NodeState.BUSY_UNSCHEDULABLE, NodeState.ASG_MIN_SIZE, NodeState.UNDER_UTILIZED_UNDRAINABLE)


@dataclass(frozen=True)
class ScaleDownResult:
    verdicts: tuple[NodeVerdict, ...]  # one per managed node, by name
    actions: Plan  # in the order they are to be applied
    state_counts: Mapping[NodeState, int]  # every state, in the order of NodeState
    unregistered_instances: tuple[str, ...]  # instances past --instance-init-time without a Node
    capped: bool  # the scale-in cap held back terminations (all of them with --scale-in-cap=brake)


class PendingDemand:
    """Pending, unassigned pods folded into distinct shapes, so that asking whether any of them
    could run on a node costs the number of distinct placements, not the number of pods.
    DaemonSet pods are no demand: their controller binds each to its own node (as in scale up).
    The same placement rules as scale up's (placement_rules.py): resources, node and volume
    affinity, taints, host ports, and, when a pod has inter-pod rules or another pod's
    anti-affinity could select it, those rules counted per domain (topology.py)."""

    def __init__(self, pods: Sequence[Pod], nodes: Sequence[Node] = (), groups: Sequence[Group] = ()):
        anti = any(pod.anti_affinity for pod in pods)
        # Gated pods (scheduling gates, unbound claims) are no demand: no node is held for them.
        pending = [pod for pod in pods if pod.is_pending_unassigned and not pod.is_daemonset and not pod.is_gated]
        self._topology = Topology(nodes, pods, groups) if anti or any(has_topology_rules(pod) for pod in pending) else None
        by_placement: dict[tuple[object, ...], list[Pod]] = defaultdict(list)
        for pod in pending:
            # With inter-pod rules about, a pod's own rules, labels and namespace count too.
            who: tuple[object, ...] = ((pod.namespace, tuple(sorted(pod.labels.items())), pod.anti_affinity, pod.affinity,
                                        pod.spread) if self._topology is not None else ())
            by_placement[(pod.placement, pod.host_ports, who)].append(pod)
        self._shapes: list[tuple[Pod, tuple[Resources, ...]]] = []
        for placement_pods in by_placement.values():
            representative = min(placement_pods, key=lambda pod: pod.key)
            self._shapes.append((representative, extreme_sizes((pod.requests for pod in placement_pods), largest=False)))

    def __bool__(self) -> bool:
        return bool(self._shapes)

    def fits(self, node: Node, taints: Sequence[Taint], free: Resources, on_node: Sequence[Pod] = ()) -> bool:
        held = {port for pod in on_node for port in pod.host_ports}
        topology = self._topology
        return any(
            any(requests.fits_in(free) for requests in sizes) and placement_matches(pod.placement, node.labels, taints)
            and ports_free(pod.host_ports, held)
            and (topology is None or topology.node_copies(pod, node, 1) > 0)
            for pod, sizes in self._shapes
        )


def _instance_of(node: Node) -> str:
    """The node's instance id, or "" for a node without one (no map here has that key)."""
    return node.instance_id or ""


def _group_of_instance(snapshot: Snapshot) -> dict[str, Group]:
    by_instance: dict[str, Group] = {}
    by_key = {group.key: group for group in snapshot.groups}
    for group in sorted(snapshot.groups, key=lambda g: g.key):
        for instance_id in group.instance_ids:
            by_instance.setdefault(instance_id, group)
    # An instance the group listing missed (it raced the read) still names its group.
    for instance_id, instance in snapshot.instances.items():
        if instance_id not in by_instance and instance.group_name:
            named = by_key.get((instance.region, instance.group_name))
            if named is not None:
                by_instance[instance_id] = named
    return by_instance


def plan_scale_down(snapshot: Snapshot, settings: Settings, now: datetime,
                    booting: frozenset[str] = frozenset()) -> ScaleDownResult:
    """``booting``: names of nodes that are not initialized yet (initialized.py); they are kept."""
    group_of = _group_of_instance(snapshot)
    # Only nodes in --regions: their instances were read, so a missing one really is gone.
    nodes = sorted((node for node in snapshot.nodes if node.is_managed and node.region in settings.regions),
                   key=lambda node: node.name)
    pods_by_node: dict[str, list[Pod]] = defaultdict(list)
    for pod in snapshot.pods:
        if pod.occupies_node and pod.node_name is not None:
            pods_by_node[pod.node_name].append(pod)
    group_node_count = Counter(group_of[_instance_of(node)].key for node in nodes if _instance_of(node) in group_of)
    demand = PendingDemand(snapshot.pods, snapshot.nodes, snapshot.groups)

    def pending_fits(node: Node) -> bool:
        on_node = pods_by_node.get(node.name, ())
        if not demand:
            return False
        # Only nodes that could reach the pod-pending check are worth the match: schedulable ones,
        # and idle ones the autoscaler cordoned (scale up takes those back for pending pods).
        busy = any(is_busy_pod(pod) for pod in on_node)
        if node.unschedulable:
            if settings.no_scale or not can_be_taken_back(node, on_node, settings, now):
                return False
        elif busy and settings.drain_utilization <= 0:
            return False
        used = sum((pod.requests for pod in on_node), Resources())
        return demand.fits(node, taints_for_pending_pods(node, settings, now), node.allocatable - used, on_node)

    # Within a group, most recently busy first, so spares are the nodes that worked last.
    def walk_order(node: Node) -> tuple[tuple[str, str], bool, float, str]:
        group = group_of.get(_instance_of(node))
        since = idle_since(node, snapshot.instances.get(_instance_of(node)))
        return (group.key if group else ("", ""), since is not None, -since.timestamp() if since else 0.0, node.name)

    kept_idle: Counter[tuple[str, str]] = Counter()
    verdict_of: dict[str, NodeVerdict] = {}
    for node in sorted(nodes, key=walk_order):
        group = group_of.get(_instance_of(node))
        verdict = classify(
            node,
            pods_on_node=pods_by_node.get(node.name, ()),
            instance=snapshot.instances.get(_instance_of(node)),
            group=group,
            group_node_count=group_node_count[group.key] if group else 0,
            pending_pods_fitting=pending_fits(node),
            idle_nodes_kept_in_group=kept_idle[group.key] if group else 0,
            settings=settings,
            now=now,
            booting=node.name in booting,
        )
        if group is not None and verdict.state in KEPT_IDLE_STATES:
            kept_idle[group.key] += 1
        verdict_of[node.name] = verdict

    decrement = _apply_min_size(verdict_of, group_of, group_node_count)
    actions: list[Action] = []
    for node in nodes:
        verdict = verdict_of[node.name]
        group = group_of.get(_instance_of(node))
        node_actions, note = _node_actions(verdict, group, pods_by_node.get(node.name, ()), decrement, now)
        if note:
            verdict_of[node.name] = replace(verdict, reason=f"{verdict.reason}; {note}")
        actions.extend(node_actions)

    registered = {node.instance_id for node in snapshot.nodes if node.instance_id}
    unregistered = _unregistered_terminations(snapshot, settings, registered, now)
    actions.extend(unregistered)

    held_back = _apply_cap(actions, verdict_of, snapshot, settings)
    terminated = [a for a in actions if isinstance(a, TerminateInstance)]
    if terminated:
        message = terminations_message(terminated)
        if held_back:
            message += (f"; {held_back} more wait for later loops (--max-scale-in-fraction "
                        f"{settings.max_scale_in_fraction:g} a loop)")
        actions.append(Notify("nodes-terminated", message, about=tuple(terminated)))

    verdicts = tuple(verdict_of[node.name] for node in nodes)
    counts = Counter(verdict.state for verdict in verdicts)
    return ScaleDownResult(
        verdicts=verdicts,
        actions=tuple(actions),
        state_counts={state: counts[state] for state in NodeState},
        unregistered_instances=tuple(a.instance_id for a in unregistered),
        capped=held_back > 0,
    )


def _apply_min_size(verdict_of: dict[str, NodeVerdict], group_of: Mapping[str, Group],
                    group_node_count: Counter[tuple[str, str]]) -> dict[str, bool]:
    """Which removals lower desired capacity; idle nodes past a group's budget become asg-min-size."""
    budget = {group.key: max(0, min(group.desired, group_node_count[group.key]) - group.min_size)
              for group in group_of.values()}
    decrement: dict[str, bool] = {}
    for state in (NodeState.DEAD, NodeState.IDLE_UNSCHEDULABLE):
        candidates = [v for v in verdict_of.values() if v.state is state and v.node.instance_id in group_of]
        candidates.sort(key=lambda v: (-(v.idle_seconds or 0.0), v.node.name))
        for verdict in candidates:
            group = group_of[_instance_of(verdict.node)]
            if budget[group.key] > 0:
                budget[group.key] -= 1
                decrement[verdict.node.name] = True
            elif state is NodeState.DEAD:
                decrement[verdict.node.name] = False  # replaced by the group: a dead node is no spare
            else:
                verdict_of[verdict.node.name] = replace(
                    verdict,
                    state=NodeState.ASG_MIN_SIZE,
                    reason=f"{verdict.reason}, but removing it would take {group.name} below min size {group.min_size}",
                )
    return decrement


def _node_actions(verdict: NodeVerdict, group: Optional[Group], pods: Sequence[Pod], decrement: Mapping[str, bool],
                  now: datetime) -> tuple[list[Action], str]:
    """The actions for one node, and a note to add to its verdict's reason."""
    node, state = verdict.node, verdict.state
    reason = f"{state.value}: {verdict.reason}"
    actions: list[Action] = []
    if state is NodeState.INSTANCE_TERMINATED:
        return [DeleteNode(node.name, reason)], ""
    if state is NodeState.DETACHED:
        return [], ""
    if state is NodeState.DEAD:
        if group is None:
            return [DeleteNode(node.name, reason)], "not in a managed group, its instance is left alone"
        return [TerminateInstance(_instance_of(node), group.name, group.region, decrement[node.name], reason, node=node.name)], ""

    busy_pods = sorted((pod for pod in pods if is_busy_pod(pod)), key=lambda pod: pod.key)
    stale = node.last_busy is None or (now - node.last_busy).total_seconds() >= LAST_BUSY_REFRESH_SECONDS
    if busy_pods and stale:
        actions.append(AnnotateNode(node.name, LAST_BUSY_ANNOTATION, utc_text(now), f"runs {len(busy_pods)} busy pod(s)"))

    if state in GIVE_BACK_STATES and node.unschedulable and node.cordoned_by_autoscaler:
        actions.append(Uncordon(node.name, reason))
        return actions, ""
    if state not in (NodeState.UNDER_UTILIZED_DRAINABLE, NodeState.IDLE_SCHEDULABLE, NodeState.IDLE_UNSCHEDULABLE):
        return actions, ""
    if group is None:
        return actions, "not in a managed group, left alone"
    if state is NodeState.IDLE_SCHEDULABLE:
        actions.append(Cordon(node.name, reason))
    elif state is NodeState.IDLE_UNSCHEDULABLE:
        actions.append(TerminateInstance(_instance_of(node), group.name, group.region, decrement[node.name], reason,
                                         node=node.name))
    else:
        starting = not node.unschedulable
        if starting:
            actions.append(Cordon(node.name, reason))
        actions.extend(EvictPod(pod.namespace, pod.name, node.name, reason) for pod in busy_pods)
        if starting:  # later loops only retry refused evictions; one message per drain
            actions.append(Notify("drained", f"draining node {node.name} ({group.name}, {verdict.reason}): evicting "
                                  + named_list([pod.key for pod in busy_pods], NOTIFY_NAMES)))
    return actions, ""


def _unregistered_terminations(snapshot: Snapshot, settings: Settings, registered: set[str],
                              now: datetime) -> list[TerminateInstance]:
    """Running instances of managed groups that never became a Node within --instance-init-time."""
    actions: list[TerminateInstance] = []
    seen: set[str] = set()
    for group in sorted(snapshot.groups, key=lambda g: g.key):
        for instance_id in sorted(group.instance_ids):
            instance = snapshot.instances.get(instance_id)
            if instance_id in registered or instance_id in seen or instance is None or not instance.is_running:
                continue
            if instance.launch_time is None:
                continue
            age = (now - instance.launch_time).total_seconds()
            if age > settings.instance_init_time:
                seen.add(instance_id)
                actions.append(TerminateInstance(
                    instance_id, group.name, group.region, False,
                    f"running {age:.0f}s without a Node (--instance-init-time {settings.instance_init_time:g}s); "
                    "the group replaces it",
                ))
    return actions


def scale_in_limit(settings: Settings, total_instances: int) -> int:
    # Rounded before ceil: 0.1 x 30 is 3.0000000000000004 in floating point, and must allow 3.
    return math.ceil(round(settings.max_scale_in_fraction * total_instances, 9))


def _removal_order(action: TerminateInstance, verdict_of: Mapping[str, NodeVerdict]) -> tuple[int, float, str]:
    """Dead and never-registered instances first (they run nothing and are replaced or gone), then
    idle nodes, longest idle first; by instance id last, so the order is stable."""
    verdict = verdict_of.get(action.node) if action.node else None
    if verdict is None or verdict.state is NodeState.DEAD:
        return (0, 0.0, action.instance_id)
    return (1, -(verdict.idle_seconds or 0.0), action.instance_id)


def _apply_cap(actions: list[Action], verdict_of: dict[str, NodeVerdict], snapshot: Snapshot, settings: Settings) -> int:
    """Keep the terminations within the scale-in cap; how many it held back. With
    --scale-in-cap=rate the first `limit` in removal order stay; with brake, more than the limit
    drops them all."""
    terminations = [a for a in actions if isinstance(a, TerminateInstance)]
    total = len({instance_id for group in snapshot.groups for instance_id in group.instance_ids})
    limit = scale_in_limit(settings, total)
    if len(terminations) <= limit:
        return 0
    if settings.scale_in_cap == "rate":
        kept = set(map(id, sorted(terminations, key=lambda a: _removal_order(a, verdict_of))[:limit]))
        held = [a for a in terminations if id(a) not in kept]
        actions[:] = [a for a in actions if not isinstance(a, TerminateInstance) or id(a) in kept]
        note = (f"held back to a later loop: --max-scale-in-fraction {settings.max_scale_in_fraction:g} allows "
                f"{limit} of {total} instances a loop, {len(terminations)} to remove")
    else:
        held = terminations
        actions[:] = [a for a in actions if not isinstance(a, TerminateInstance)]
        note = f"held back: {len(terminations)} removals exceed the scale-in cap of {limit}"
        actions.append(Notify(
            "scale-in-capped",
            f"scale in would remove {len(terminations)} of {total} instances, more than --max-scale-in-fraction "
            f"{settings.max_scale_in_fraction:g} allows ({limit}); removing none this loop (--scale-in-cap=brake)",
            error=True,
        ))
    for termination in held:
        if termination.node in verdict_of:
            verdict = verdict_of[termination.node]
            verdict_of[termination.node] = replace(verdict, reason=f"{verdict.reason}; {note}")
    return len(held)
