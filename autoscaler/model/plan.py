"""The actions a loop can decide on. Decision code returns them; one actuator applies them.

Every action carries the reason it was decided, and can describe itself in one log line, which is
also what a dry run prints after ``[dry-run] would``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Union

from .text import named_list


@dataclass(frozen=True)
class SetDesiredCapacity:
    group: str
    region: str
    desired: int
    previous: int
    reason: str
    pods: tuple[str, ...] = ()  # namespace/name of the pods that asked for it (scale up), at most a few
    pod_count: int = 0  # how many pods asked for it in all; ``pods`` names only the first of them

    def describe(self) -> str:
        return f"set desired capacity of {self.group} ({self.region}) from {self.previous} to {self.desired}: {self.reason}"


@dataclass(frozen=True)
class Cordon:
    node: str
    reason: str

    def describe(self) -> str:
        return f"cordon node {self.node}: {self.reason}"


@dataclass(frozen=True)
class Uncordon:
    node: str
    reason: str

    def describe(self) -> str:
        return f"uncordon node {self.node}: {self.reason}"


@dataclass(frozen=True)
class EvictPod:
    namespace: str
    name: str
    node: str
    reason: str

    def describe(self) -> str:
        return f"evict pod {self.namespace}/{self.name} from {self.node}: {self.reason}"


@dataclass(frozen=True)
class TerminateInstance:
    instance_id: str
    group: str
    region: str
    decrement_desired: bool
    reason: str
    node: str = ""  # the Node to delete once the instance is gone, if any

    def describe(self) -> str:
        how = "lowering desired capacity" if self.decrement_desired else "keeping desired capacity"
        return f"terminate instance {self.instance_id} in {self.group} ({self.region}), {how}: {self.reason}"


@dataclass(frozen=True)
class DeleteNode:
    node: str
    reason: str

    def describe(self) -> str:
        return f"delete node {self.node}: {self.reason}"


@dataclass(frozen=True)
class AnnotateNode:
    node: str
    key: str
    value: str
    reason: str

    def describe(self) -> str:
        return f"annotate node {self.node} {self.key}={self.value}: {self.reason}"


@dataclass(frozen=True)
class CancelSpotRequest:
    request_id: str
    region: str
    group: str
    reason: str

    def describe(self) -> str:
        return f"cancel spot request {self.request_id} of {self.group} ({self.region}): {self.reason}"


@dataclass(frozen=True)
class Notify:
    """An operator-facing event that changes nothing: logged as a warning and sent to Slack."""

    kind: str  # scale-up-failed, infeasible-pods, capacity-corrected, drained, ...
    message: str
    error: bool = False  # logged as an error, not a warning (the scale-in cap held everything back)
    pods: tuple[str, ...] = ()  # namespace/name of the pods it is about: the loop tells a repeat by them
    # The actions of the same plan this notice reports (before it in the plan). The actuator sends
    # it only for those that were done, and a message of its own for those that failed.
    about: tuple[Action, ...] = ()

    def describe(self) -> str:
        return f"notify ({self.kind}): {self.message}"


def terminations_message(actions: Iterable[Action]) -> str:
    """The notice of instances being terminated, naming the first few (of the terminations among
    ``actions``)."""
    names = [f"{a.node or a.instance_id} ({a.group})" for a in actions if isinstance(a, TerminateInstance)]
    return f"terminating {len(names)} instance(s): {named_list(names, NOTIFY_NAMES)}"


NOTIFY_NAMES = 10  # names in one notice; the rest are counted
# kind -> the message for a subset of a notice's actions (those that were done)
NOTICE_MESSAGES = {"nodes-terminated": terminations_message}


Action = Union[
    SetDesiredCapacity, Cordon, Uncordon, EvictPod, TerminateInstance, DeleteNode, AnnotateNode, CancelSpotRequest, Notify
]
Plan = tuple[Action, ...]  # in the order they are to be applied
