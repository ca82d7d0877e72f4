"""Kubernetes Events for what the autoscaler did and did not do, where `kubectl describe` shows them.

On pending pods: ``TriggeredScaleUp`` (which group, to what size) and ``NotTriggerScaleUp`` (why
not: infeasible, or every matching group timed out, full or unusable). On nodes: cordoned,
uncordoned, drained, terminated or deleted by the autoscaler, with the reason; and two warnings,
``DrainBlocked`` (a PodDisruptionBudget refused an eviction) and ``ScaleDownFailed`` (terminating
its instance or deleting it failed).

Bounded by design: a loop names at most a few pods per raised group and a capped number of pods
it could not serve (10,000 pending pods do not make 10,000 events), one event per object and
reason per loop, and an event already posted is only counted again (a PATCH of ``count`` and
``lastTimestamp``, as the kubelet does) after ``repeat_seconds``. Posting never fails the loop.
"""
from __future__ import annotations

import logging
import socket
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterable, Optional

from kubernetes import client as kube_client

from ..clients.kube_errors import KubeError, kube_call
from ..model import plan as p
from ..model.text import named_list, utc_text

log = logging.getLogger(__name__)

COMPONENT = "kubernetes-ec2-autoscaler"
NODE_EVENT_NAMESPACE = "default"  # where Kubernetes puts events of cluster-scoped objects
MAX_PODS_PER_SCALE_UP = 10  # pods named with TriggeredScaleUp per raised group
MAX_PODS_NOT_TRIGGERED = 50  # pods given NotTriggerScaleUp per loop
MAX_EVENTS_PER_LOOP = 200
MAX_MESSAGE_LENGTH = 1024
REPEAT_SECONDS = 300
REMEMBERED_EVENTS = 4096
MAX_FAILURES_PER_LOOP = 3  # an API server that refuses events is not asked 200 times a loop
REQUEST_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class ClusterEvent:
    kind: str  # Pod or Node
    namespace: str  # the object's; "" for nodes
    name: str
    reason: str
    message: str
    type: str = "Normal"  # or Warning
    uid: str = ""


def events_for_loop(snapshot, decision, applied: Iterable, failed: Iterable = (),
                    refused: Iterable = ()) -> list[ClusterEvent]:
    """The events of one loop, from what was decided, what was actually ``applied``, what ``failed``
    ((action, error) pairs) and the evictions ``refused``; deduplicated per object and reason, and capped."""
    applied = list(applied)
    pods_by_key = {pod.key: pod for pod in snapshot.pods if pod.is_pending_unassigned}
    events: list[ClusterEvent] = []
    events.extend(_scale_up_events(applied, pods_by_key, snapshot))
    events.extend(_not_triggered_events(decision, applied, snapshot))
    events.extend(_mismatch_events(decision, pods_by_key))
    events.extend(_node_events(applied))
    events.extend(_scale_down_warnings(list(failed), list(refused)))
    unique: dict[tuple, ClusterEvent] = {}
    for event in events:
        unique.setdefault((event.kind, event.namespace, event.name, event.reason), event)
    return list(unique.values())[:MAX_EVENTS_PER_LOOP]


def _pod_event(pod, reason: str, message: str, type_: str) -> ClusterEvent:
    return ClusterEvent("Pod", pod.namespace, pod.name, reason, message, type_, pod.uid)


def _scale_up_events(applied, pods_by_key, snapshot) -> list[ClusterEvent]:
    max_size = {group.key: group.max_size for group in snapshot.groups}
    events = []
    for action in applied:
        if not isinstance(action, p.SetDesiredCapacity) or action.desired <= action.previous:
            continue
        size = max_size.get((action.region, action.group))
        message = (f"pod triggered scale-up: group {action.group} ({action.region}) from {action.previous} to "
                   f"{action.desired} instances" + (f" (max {size})" if size is not None else ""))
        if action.reason:  # which pods, and why this group (price against the next candidate)
            message += f": {action.reason}"
        for key in action.pods[:MAX_PODS_PER_SCALE_UP]:
            pod = pods_by_key.get(key)
            if pod is not None:
                events.append(_pod_event(pod, "TriggeredScaleUp", message, "Normal"))
    return events


def _not_triggered_events(decision, applied, snapshot) -> list[ClusterEvent]:
    up = decision.scale_up
    if up is None:
        return []
    events = []
    for pod, capacity in up.infeasible[:MAX_PODS_NOT_TRIGGERED]:
        largest = capacity.describe() or "nothing: no group matches its placement"
        events.append(_pod_event(pod, "NotTriggerScaleUp", (
            f"pod didn't trigger scale-up: it fits no instance type its placement allows "
            f"(requests {pod.requests.describe()}; the largest it could get: {largest})"), "Warning"))
    room = MAX_PODS_NOT_TRIGGERED - len(events)
    if room <= 0 or not up.unaccounted:
        return events
    # Scale up says why no group took each pod (it knows: timed out, full, too small, ...).
    for pod in up.unaccounted[:room]:
        why = up.why_unaccounted.get(pod.key, "no matching group could take it in this loop")
        events.append(_pod_event(pod, "NotTriggerScaleUp", f"pod didn't trigger scale-up: {why}", "Warning"))
    return events


def _mismatch_events(decision, pods_by_key) -> list[ClusterEvent]:
    """Once per pod and node: the scheduler did not place it where the model says it fits."""
    events = []
    for mismatch in decision.mismatches[:MAX_PODS_NOT_TRIGGERED]:
        pod = pods_by_key.get(mismatch.pod)
        if pod is not None:
            events.append(_pod_event(pod, "AutoscalerModelMismatch", (
                f"pod is pending where the autoscaler's model says it fits: {mismatch.why}; no more instances are "
                "bought for it there"), "Warning"))
    return events


def _node_events(applied) -> list[ClusterEvent]:
    events = []
    evicted: dict[str, list] = {}
    for action in applied:
        if isinstance(action, p.Cordon):
            events.append(ClusterEvent("Node", "", action.node, "CordonedByAutoscaler",
                                       f"cordoned by the autoscaler: {action.reason}"))
        elif isinstance(action, p.Uncordon):
            events.append(ClusterEvent("Node", "", action.node, "UncordonedByAutoscaler",
                                       f"uncordoned by the autoscaler: {action.reason}"))
        elif isinstance(action, p.EvictPod):
            evicted.setdefault(action.node, []).append(action)
        elif isinstance(action, p.TerminateInstance) and action.node:
            events.append(ClusterEvent("Node", "", action.node, "TerminatedByAutoscaler",
                                       f"instance {action.instance_id} of {action.group} ({action.region}) "
                                       f"terminated by the autoscaler: {action.reason}"))
        elif isinstance(action, p.DeleteNode):
            events.append(ClusterEvent("Node", "", action.node, "DeletedByAutoscaler",
                                       f"node object deleted by the autoscaler: {action.reason}"))
    for node in sorted(evicted):
        evictions = evicted[node]
        names = named_list([f"{a.namespace}/{a.name}" for a in evictions[:5]], 5, total=len(evictions))
        events.append(ClusterEvent("Node", "", node, "DrainedByAutoscaler",
                                   f"drained by the autoscaler, evicted {len(evictions)} pod(s) ({names}): "
                                   f"{evictions[0].reason}", "Normal"))
    return events


def _scale_down_warnings(failed: list, refused: list) -> list[ClusterEvent]:
    """Warnings on the nodes scale in could not finish: what `kubectl describe node` should explain."""
    events = []
    blocked: dict[str, list] = {}
    for action in refused:
        if isinstance(action, p.EvictPod):
            blocked.setdefault(action.node, []).append(action)
    for node in sorted(blocked):
        names = named_list([f"{a.namespace}/{a.name}" for a in blocked[node][:5]], 5, total=len(blocked[node]))
        events.append(ClusterEvent("Node", "", node, "DrainBlocked",
                                   f"drain blocked: a PodDisruptionBudget refused the eviction of {len(blocked[node])} "
                                   f"pod(s) ({names}); the node stays cordoned and they are retried every loop",
                                   "Warning"))
    for action, error in failed:
        if isinstance(action, p.TerminateInstance) and action.node:
            what = f"terminating its instance {action.instance_id} of {action.group} ({action.region})"
        elif isinstance(action, p.DeleteNode):
            what = "deleting the node object"
        else:
            continue
        events.append(ClusterEvent("Node", "", action.node, "ScaleDownFailed",
                                   f"scale down failed: {what} failed, retried next loop: {error}", "Warning"))
    return events


class EventRecorder:
    """Posts ClusterEvents as core/v1 Events; remembers recent ones to count repeats."""

    def __init__(self, api_client: kube_client.ApiClient, host: Optional[str] = None,
                 repeat_seconds: float = REPEAT_SECONDS,
                 on_api_error: Optional[Callable[[BaseException], None]] = None):
        self.core = kube_client.CoreV1Api(api_client)
        self.host = host or socket.gethostname()
        self.repeat_seconds = repeat_seconds
        self.on_api_error = on_api_error
        # (kind, namespace, name, uid, reason, message) -> [event namespace, event name, count, last posted]
        self._recent: OrderedDict = OrderedDict()

    def record(self, events: Iterable[ClusterEvent], now: datetime) -> int:
        """Post (or count again) each event; returns how many were written. Never raises."""
        written = failures = 0
        for event in events:
            if failures >= MAX_FAILURES_PER_LOOP:
                log.warning("events: giving up on this loop's remaining events after %d failures", failures)
                break
            try:
                written += self._record_one(event, now)
            except KubeError as error:
                failures += 1
                log.warning("events: could not post %s on %s %s: %s", event.reason, event.kind, event.name, error)
                if self.on_api_error:
                    self.on_api_error(error)
            except Exception:  # noqa: BLE001 - a bug here must not fail the loop; it is logged loudly
                failures += 1
                log.exception("events: could not post %s on %s %s", event.reason, event.kind, event.name)
        return written

    def _record_one(self, event: ClusterEvent, now: datetime) -> int:
        key = (event.kind, event.namespace, event.name, event.uid, event.reason, event.message)
        seen = self._recent.get(key)
        if seen is not None:
            namespace, name, count, last = seen
            if (now - last).total_seconds() < self.repeat_seconds:
                return 0
            patch = {"count": count + 1, "lastTimestamp": utc_text(now)}
            try:
                kube_call(f"update event {namespace}/{name}", self.core.patch_namespaced_event, name, namespace,
                          patch, _request_timeout=REQUEST_TIMEOUT_SECONDS)
            except KubeError as error:
                if error.status != 404:  # expired (events live an hour): post a new one below
                    raise
            else:
                self._remember(key, [namespace, name, count + 1, now])
                return 1
        namespace = event.namespace or NODE_EVENT_NAMESPACE
        name = f"{event.name[:200]}.{uuid.uuid4().hex[:16]}"
        kube_call(f"create event {namespace}/{name}", self.core.create_namespaced_event, namespace,
                  self._body(event, namespace, name, now), _request_timeout=REQUEST_TIMEOUT_SECONDS)
        self._remember(key, [namespace, name, 1, now])
        return 1

    def _remember(self, key: tuple, value: list) -> None:
        self._recent[key] = value
        self._recent.move_to_end(key)
        while len(self._recent) > REMEMBERED_EVENTS:
            self._recent.popitem(last=False)

    def _body(self, event: ClusterEvent, namespace: str, name: str, now: datetime) -> dict:
        involved = {"apiVersion": "v1", "kind": event.kind, "name": event.name}
        if event.namespace:
            involved["namespace"] = event.namespace
        if event.uid:
            involved["uid"] = event.uid
        stamp = utc_text(now)
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": involved,
            "reason": event.reason,
            "message": event.message[:MAX_MESSAGE_LENGTH],
            "type": event.type,
            "source": {"component": COMPONENT, "host": self.host},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.host,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
        }
