"""PURE: never a buy loop. When the scheduler does not place a pod where the model says it fits,
the model is wrong for that pod: stop buying for it (docs/decisions.md#when-the-model-is-wrong).

The model of a node (decide/node_template.py, initialized.py, the placement rules) is good, not
perfect: a rule it does not know (an admission webhook's, a scheduler plugin's), a label the kubelet
sets otherwise, a DaemonSet that appeared between two loops. Where it is wrong, buying again is the
worst answer: the next instance is just as useless, and every loop buys one more up to max size.
The scheduler is the judge, so its verdict is read back:

- **bought for, and left waiting**: a pending pod was planned onto a new or booting instance of a
  group; since then a node of that group launched, became initialized, has run no busy pod for the
  grace below, and the pod is still pending. The scheduler had an empty node of that group and did
  not take it: the model of that group is wrong for the pod.
- **waiting beside a node that fits**: a node has been held by scale in as ``pod-pending`` (a
  pending pod fits it, says the model) for the grace below, and the pods that fit it are still
  pending: the model of that node is wrong for them.

Either way the pod is not planned onto that group or that node again (as long as it is pending and
the process lives), scale in treats the node as any other idle node, and a notice (a warning, and a
pod Event) says so once, with the scheduler's own words for why the pod waits. The grace is a few
loops: three --sleep, and at least ``Settings.mismatch_min_seconds``, enough for the scheduler's
retry after a node changes.

The exclusions are applied as node affinity the pod does not really have: ``kubernetes.io/hostname
NotIn [node]`` and ``GROUP_KEY_LABEL NotIn [group]``, a label only the groups' templates carry while
deciding. So every stage (live fit, packing, scale in's pod-pending check) honours them without
knowing about this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Iterable, Mapping, Optional

from ..model.config import Settings
from ..model.objects import HOSTNAME_LABEL, Node, NodeState, Placement, Pod, Requirement, Resources, Snapshot
from ..model.plan import Notify
from .initialized import Readiness
from .node_state import is_busy_pod
from .scheduling import pod_matches_node

GroupKey = tuple[str, str]
# Carried by the groups' templates while deciding, never by a node: "NotIn [group]" keeps a pod
# off the group's new instances and matches every live node.
GROUP_KEY_LABEL = "autoscaler.openai.com/group-while-deciding"


@dataclass(frozen=True)
class Mismatch:
    """The model said ``node`` (of ``group``) fits the pod; the scheduler did not place it there."""

    pod: str  # namespace/name
    node: str
    group: Optional[GroupKey]
    why: str  # what the model saw, and what the scheduler said


@dataclass(frozen=True)
class GuardState:
    """What the guard remembers between loops (in the process; a restart starts it afresh)."""

    # pod key -> group key -> when it was first planned onto that group's new or booting instances
    bought: Mapping[str, Mapping[GroupKey, datetime]] = field(default_factory=dict)
    # node name -> since when scale in has held it pod-pending without a break
    pod_pending_since: Mapping[str, datetime] = field(default_factory=dict)
    # node name -> the first loop that saw it initialized
    initialized_since: Mapping[str, datetime] = field(default_factory=dict)
    # pod key -> what the model is wrong about for it, kept while it is pending
    mismatches: Mapping[str, tuple[Mismatch, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Guarded:
    snapshot: Snapshot  # pending pods kept off where the model was wrong for them
    state: GuardState
    new: tuple[Mismatch, ...] = ()  # found this loop
    notices: tuple[Notify, ...] = ()


def grace_seconds(settings: Settings) -> float:
    return max(3 * settings.sleep, settings.mismatch_min_seconds)


def guard(state: GuardState, snapshot: Snapshot, readiness: Mapping[str, Readiness], settings: Settings,
          now: datetime) -> Guarded:
    """Find this loop's mismatches and keep every known one out of the snapshot's pending pods."""
    pending = {pod.key: pod for pod in snapshot.pods
               if pod.is_pending_unassigned and not pod.is_daemonset and not pod.is_gated}
    initialized_since = {name: state.initialized_since.get(name, now)
                         for name, ready in readiness.items() if ready is Readiness.INITIALIZED}
    group_of_instance = {instance_id: group for group in snapshot.groups for instance_id in group.instance_ids}
    nodes = {node.name: node for node in snapshot.nodes}
    pods_by_node: dict[str, list[Pod]] = {}
    for pod in snapshot.pods:
        if pod.occupies_node and pod.node_name:
            pods_by_node.setdefault(pod.node_name, []).append(pod)
    grace = grace_seconds(settings)
    known = {key: mismatches for key, mismatches in state.mismatches.items() if key in pending}
    found: list[Mismatch] = []

    def add(mismatch: Mismatch) -> None:
        found.append(mismatch)
        known[mismatch.pod] = (*known.get(mismatch.pod, ()), mismatch)

    def waited(node_name: str) -> bool:
        since = initialized_since.get(node_name)
        return since is not None and (now - since).total_seconds() >= grace

    # Bought for, and left waiting beside an empty initialized node of the group: per group, the
    # latest-created such node, so each (pod, group) is one comparison.
    latest_empty: dict[GroupKey, Node] = {}
    for node in snapshot.nodes:
        group = group_of_instance.get(node.instance_id or "")
        if (group is None or node.created is None or node.unschedulable or not waited(node.name)
                or any(is_busy_pod(p) for p in pods_by_node.get(node.name, ()))):
            continue
        seen = latest_empty.get(group.key)
        if seen is None or seen.created is None or (node.created, node.name) > (seen.created, seen.name):
            latest_empty[group.key] = node
    for key, groups in sorted(state.bought.items()) if latest_empty else ():
        waiting = pending.get(key)
        if waiting is None:
            continue
        for group_key, planned_at in sorted(groups.items()):
            empty = latest_empty.get(group_key)
            if (empty is not None and empty.created is not None and empty.created >= planned_at
                    and not any(m.group == group_key for m in known.get(key, ()))):
                add(Mismatch(key, empty.name, group_key, _why(waiting, empty, pods_by_node, "an instance was bought "
                                                              "for it and came up empty")))

    # Waiting beside a node that the model says fits, past the grace: the hold ends.
    released = sorted(name for name, since in state.pod_pending_since.items()
                      if (now - since).total_seconds() >= grace and name in nodes and waited(name))
    for name in released:
        node = nodes[name]
        group = group_of_instance.get(node.instance_id or "")
        free = node.allocatable - sum((p.requests for p in pods_by_node.get(name, ())), Resources())
        for pod in _fitting(pending.values(), node, free):
            if not any(m.node == name for m in known.get(pod.key, ())):
                add(Mismatch(pod.key, name, group.key if group else None,
                                      _why(pod, node, pods_by_node, f"it waited {grace:.0f}s beside this node")))

    guarded = _exclude(snapshot, known) if known else snapshot
    bought = {key: groups for key, groups in state.bought.items() if key in pending}
    pod_pending_since = {name: since for name, since in state.pod_pending_since.items() if name not in released}
    new_state = GuardState(bought, pod_pending_since, initialized_since, known)
    return Guarded(guarded, new_state, tuple(found), tuple(_notices(found, grace)))


def remember(state: GuardState, planned: Mapping[str, GroupKey], verdicts: Iterable[tuple[str, NodeState]],
             now: datetime) -> GuardState:
    """After deciding: ``planned`` pod key -> the group whose new or booting instances the plan put
    it on; ``verdicts``: scale in's (node name, state) of this loop."""
    bought = {key: dict(groups) for key, groups in state.bought.items()}
    for key, group_key in planned.items():
        bought.setdefault(key, {}).setdefault(group_key, now)
    holding = {name for name, node_state in verdicts if node_state is NodeState.POD_PENDING}
    since = {name: state.pod_pending_since.get(name, now) for name in holding}
    return replace(state, bought=bought, pod_pending_since=since)


def _fitting(pods: Iterable[Pod], node: Node, free: Resources) -> list[Pod]:
    """The pods that the model says fit ``node``'s free room, each alone (pods are matched once per
    distinct placement and requests)."""
    verdict: dict[tuple[Placement, Resources], bool] = {}
    fitting = []
    for pod in sorted(pods, key=lambda p: p.key):
        key = (pod.placement, pod.requests)
        if key not in verdict:
            verdict[key] = (not node.unschedulable and pod_matches_node(pod, node) and pod.requests.fits_in(free))
        if verdict[key]:
            fitting.append(pod)
    return fitting


def _why(pod: Pod, node: Node, pods_by_node: Mapping[str, list[Pod]], what: str) -> str:
    used = sum((p.requests for p in pods_by_node.get(node.name, ())), Resources())
    free = node.allocatable - used
    room = Resources({name: max(0, free.get(name)) for name in pod.requests.names()}).describe()
    said = pod.unschedulable_message or "nothing yet"
    return (f"{what}; node {node.name} has {room or 'room'} free and matches its selectors and taints, the pod asks "
            f"{pod.requests.describe()}; the scheduler says: {said}")


def _exclude(snapshot: Snapshot, known: Mapping[str, tuple[Mismatch, ...]]) -> Snapshot:
    """Pending pods with their mismatches as node affinity; groups labelled with their key."""
    pods = []
    for pod in snapshot.pods:
        mismatches = known.get(pod.key) if pod.is_pending_unassigned else None
        pods.append(replace(pod, placement=_kept_off(pod.placement, mismatches)) if mismatches else pod)
    groups = tuple(replace(group, labels={**group.labels, GROUP_KEY_LABEL: _group_value(group.key)})
                   for group in snapshot.groups)
    return replace(snapshot, pods=tuple(pods), groups=groups)


def _group_value(key: GroupKey) -> str:
    return f"{key[0]}.{key[1]}"


def _kept_off(placement: Placement, mismatches: tuple[Mismatch, ...]) -> Placement:
    requirements = [Requirement(HOSTNAME_LABEL, "NotIn", tuple(sorted({m.node for m in mismatches})))]
    groups = sorted({_group_value(m.group) for m in mismatches if m.group is not None})
    if groups:
        requirements.append(Requirement(GROUP_KEY_LABEL, "NotIn", tuple(groups)))
    terms = placement.node_affinity or ((),)
    return replace(placement, node_affinity=tuple((*term, *requirements) for term in terms))


def _notices(found: Iterable[Mismatch], grace: float) -> list[Notify]:
    notices = []
    for mismatch in found:
        where = f"group {mismatch.group[1]} ({mismatch.group[0]})" if mismatch.group else f"node {mismatch.node}"
        notices.append(Notify(
            "model-mismatch",
            f"pod {mismatch.pod} still pending where the autoscaler's model says it fits: {mismatch.why}. No more "
            f"instances of {where} are bought for it, and node {mismatch.node} is not held for it "
            f"(waited past {grace:.0f}s)", pods=(mismatch.pod,)))
    return notices

