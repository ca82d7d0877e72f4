"""PURE: what scale in makes of one managed node, in the order of docs/decisions.md#scale-in.

``classify`` looks at one node and what the caller worked out about its surroundings (its pods,
its instance, its group, whether a pending pod fits it, how many idle nodes of its group are
already kept as spares) and returns the first state that applies, with the reason, so a log line
can say why a node was kept or removed.

Rules this port settles where the scale-in rules (docs/decisions.md#scale-in) are silent:
- Idle time runs from the latest of: the last-busy annotation the autoscaler writes, the
  instance's launch time, the Node's creation. With none of them known the node is kept.
- grace-period and type-grace-period need a schedulable node, as in the original: a cordoned idle
  node is idle-unschedulable at once, whoever cordoned it (set ``openai/detached=true`` to keep a
  node out of scale in).
- pod-pending also holds for an idle node the autoscaler cordoned (unless scale up is off): scale
  up takes such a node back for the pending pod, so scale in must not remove it in the same loop.
  Both sides ask ``can_be_taken_back`` and match with ``taints_for_pending_pods``, so they agree.
- A node younger than --instance-init-time is starting: NotReady and the start-up taints are
  expected, and its room counts for pending pods. Older and not Ready, it is broken: no room.
- Under-utilization is only considered with ``--drain-utilization`` above 0, and only for nodes
  that run a busy pod; an idle node is never "under-utilized".
- Utilization counts the busy pods (not DaemonSet or mirror pods, which run on every node and do
  not move when the node is drained), as the original did.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable, Optional

from ..model.config import Settings
from ..model.objects import Group, Instance, Node, NodeState, Pod, Resources, Taint
from .initialized import is_startup_taint

# The resources utilization is measured on; others (pods, ephemeral storage) rarely bind.
UTILIZATION_RESOURCES = ("cpu", "memory", "nvidia.com/gpu")

@dataclass(frozen=True)
class NodeVerdict:
    node: Node
    state: NodeState
    reason: str
    idle_seconds: Optional[float]  # 0 while busy; None when not known or not relevant

    def describe(self) -> str:
        return f"node {self.node.name}: {self.state.value} ({self.reason})"


def is_busy_pod(pod: Pod) -> bool:
    """Work that keeps a node: any pod on it except DaemonSet and mirror (static) pods."""
    return not (pod.is_daemonset or pod.is_mirror)


def why_undrainable(pod: Pod, now: datetime, grace_seconds: float) -> Optional[str]:
    """None when the pod may be evicted to drain its node, else why not. ``grace_seconds``: how
    long after being scheduled a pod is still protected (Settings.drain_grace_seconds).

    DaemonSet and mirror pods never block a drain (they are not evicted). An explicit
    ``safe-to-evict: "true"`` lets a bare or young pod go, as in cluster-autoscaler, but never
    overrides ``openai/do-not-drain=true``.
    """
    if not is_busy_pod(pod):
        return None
    if pod.do_not_drain:
        return f"pod {pod.key} is labelled openai/do-not-drain=true"
    if pod.safe_to_evict is False:
        return f"pod {pod.key} is annotated safe-to-evict: false"
    if pod.safe_to_evict is True:
        return None
    if not pod.owner_kinds:
        return f"pod {pod.key} has no owner, nothing would recreate it"
    scheduled = pod.scheduled_at or pod.created
    if scheduled is None:
        return f"pod {pod.key} has no known scheduling time"
    age = (now - scheduled).total_seconds()
    if age <= grace_seconds:
        return f"pod {pod.key} was scheduled {age:.0f}s ago, within the {grace_seconds:g}s drain grace"
    return None


def is_drainable(pod: Pod, now: datetime, grace_seconds: float) -> bool:
    return why_undrainable(pod, now, grace_seconds) is None


def utilization(node: Node, busy_pods: Iterable[Pod]) -> float:
    """Busy pods' requests over the node's allocatable, the highest ratio of cpu, memory and gpu."""
    requested = sum((pod.requests for pod in busy_pods), Resources())
    ratios = [
        requested.get(name) / node.allocatable.get(name)
        for name in UTILIZATION_RESOURCES
        if node.allocatable.get(name) > 0
    ]
    return max(ratios, default=0.0)


def idle_since(node: Node, instance: Optional[Instance]) -> Optional[datetime]:
    """When the node last had work, or came to be: the latest of what is known."""
    known = [t for t in (node.last_busy, instance.launch_time if instance else None, node.created) if t is not None]
    return max(known) if known else None


def is_starting(node: Node, settings: Settings, now: datetime) -> bool:
    """Registered less than --instance-init-time ago: NotReady and start-up taints are expected."""
    return node.created is not None and (now - node.created).total_seconds() < settings.instance_init_time


def is_broken(node: Node, settings: Settings, now: datetime) -> bool:
    """Not Ready although past --instance-init-time: it offers pending pods no room."""
    return not node.ready and not is_starting(node, settings, now)


def taints_for_pending_pods(node: Node, settings: Settings, now: datetime) -> tuple[Taint, ...]:
    """The taints that keep a pending pod off the node: a starting node's start-up taints go
    away by themselves, so they do not."""
    if not any(is_startup_taint(taint, settings) for taint in node.taints) or not is_starting(node, settings, now):
        return node.taints
    return tuple(taint for taint in node.taints if not is_startup_taint(taint, settings))


def can_be_taken_back(node: Node, pods_on_node: Iterable[Pod], settings: Settings, now: datetime) -> bool:
    """An idle node the autoscaler cordoned, neither detached nor broken. Scale up uncordons it for
    a pending pod that fits it (before launching anything); scale in keeps it as pod-pending
    rather than remove it in the same plan. A node being drained runs busy pods: not taken back."""
    return (node.unschedulable and node.cordoned_by_autoscaler and not node.detached
            and not is_broken(node, settings, now)
            and not any(pod.occupies_node and is_busy_pod(pod) for pod in pods_on_node))


def classify(
    node: Node,
    *,
    pods_on_node: Iterable[Pod],
    instance: Optional[Instance],
    group: Optional[Group],
    group_node_count: int,
    pending_pods_fitting: bool,
    idle_nodes_kept_in_group: int,
    settings: Settings,
    now: datetime,
    booting: bool = False,
) -> NodeVerdict:
    """The first state of docs/decisions.md#scale-in that applies to ``node``.

    ``pods_on_node``: the pods bound to it (finished ones are ignored here).
    ``group_node_count``: how many nodes its group has. ``pending_pods_fitting``: a pending,
    unassigned pod matches the node and fits its free room (the caller may skip the match for
    nodes where it cannot matter: cordoned by someone else, or busy without draining). ``idle_nodes_kept_in_group``: idle
    nodes of its group already kept this loop (grace-period or type-grace-period). ``booting``: not
    initialized yet (initialized.py): kept while it starts, idle or not.
    """
    if instance is None or not instance.is_running:
        what = f"instance {node.instance_id} is {instance.state}" if instance else f"instance {node.instance_id} not found"
        return NodeVerdict(node, NodeState.INSTANCE_TERMINATED, what, None)
    if node.detached:
        return NodeVerdict(node, NodeState.DETACHED, "labelled openai/detached=true", None)
    if node.last_heartbeat is not None:
        silent = (now - node.last_heartbeat).total_seconds()
        if silent > settings.dead_node_seconds:
            return NodeVerdict(node, NodeState.DEAD, f"no Ready heartbeat for {silent:.0f}s", None)
    if group is not None and group_node_count <= group.min_size:
        return NodeVerdict(
            node, NodeState.ASG_MIN_SIZE, f"group {group.name} has {group_node_count} node(s), min size {group.min_size}", None
        )

    busy_pods = [pod for pod in pods_on_node if pod.occupies_node and is_busy_pod(pod)]
    since = idle_since(node, instance)
    idle_seconds = None if since is None else max(0.0, (now - since).total_seconds())

    under_utilized = False
    if busy_pods:
        used = utilization(node, busy_pods)
        under_utilized = settings.drain_utilization > 0 and used < settings.drain_utilization
        if not under_utilized:
            state = NodeState.BUSY_UNSCHEDULABLE if node.unschedulable else NodeState.BUSY
            return NodeVerdict(node, state, f"runs {len(busy_pods)} busy pod(s), {used:.0%} utilized", 0.0)

    if booting and not busy_pods and not node.unschedulable:
        # Its group's pending pods are planned onto it (decide/initialized.py): removing it would
        # leave them to be bought for again.
        return NodeVerdict(node, NodeState.GRACE_PERIOD, "booting: not initialized yet, capacity on its way",
                           idle_seconds)
    if pending_pods_fitting and not node.unschedulable:
        return NodeVerdict(node, NodeState.POD_PENDING, "a pending pod could run here", idle_seconds if not busy_pods else 0.0)
    if pending_pods_fitting and node.cordoned_by_autoscaler and not busy_pods and not settings.no_scale:
        return NodeVerdict(node, NodeState.POD_PENDING, "a pending pod could run here; scale up takes it back", idle_seconds)

    if not busy_pods and not node.unschedulable:
        if idle_seconds is None:
            return NodeVerdict(node, NodeState.GRACE_PERIOD, "idle, since when is unknown", None)
        if idle_seconds < settings.idle_threshold:
            return NodeVerdict(
                node, NodeState.GRACE_PERIOD,
                f"idle {idle_seconds:.0f}s, under --idle-threshold {settings.idle_threshold:g}s", idle_seconds,
            )
        if (
            group is not None
            and idle_nodes_kept_in_group < settings.spare_idle_nodes
            and idle_seconds < settings.type_idle_threshold
        ):
            return NodeVerdict(
                node,
                NodeState.TYPE_GRACE_PERIOD,
                f"idle {idle_seconds:.0f}s, kept as spare {idle_nodes_kept_in_group + 1} of "
                f"{settings.spare_idle_nodes} in {group.name} (--type-idle-threshold {settings.type_idle_threshold:g}s)",
                idle_seconds,
            )

    if under_utilized:
        blockers = [reason for reason in (why_undrainable(pod, now, settings.drain_grace_seconds) for pod in busy_pods) if reason]
        used = utilization(node, busy_pods)
        summary = f"{used:.0%} utilized, under --drain-utilization {settings.drain_utilization:.0%}"
        if blockers:
            return NodeVerdict(node, NodeState.UNDER_UTILIZED_UNDRAINABLE, f"{summary}; {blockers[0]}", 0.0)
        return NodeVerdict(node, NodeState.UNDER_UTILIZED_DRAINABLE, f"{summary}; every pod drainable", 0.0)

    idle_text = "idle" if idle_seconds is None else f"idle {idle_seconds:.0f}s"
    if node.unschedulable:
        who = "the autoscaler" if node.cordoned_by_autoscaler else "someone else"
        return NodeVerdict(node, NodeState.IDLE_UNSCHEDULABLE, f"{idle_text}, cordoned by {who}", idle_seconds)
    return NodeVerdict(node, NodeState.IDLE_SCHEDULABLE, f"{idle_text}, past its grace periods", idle_seconds)
