"""The one place a plan is applied, and the only code that knows about --dry-run.

Each action is applied on its own: a failure is logged and counted, and the rest of the plan still
runs, so one missing permission or one vanished node cannot hold back every other decision. The
loop's Kubernetes Events are posted here too: they are writes, which a dry run only logs.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Optional, Sequence

from ..clients.aws_errors import CloudUnreachable
from ..clients.kube_errors import KubeUnreachable
from ..model import plan as p
from ..model.text import named_list
from .events import ClusterEvent, EventRecorder
from .kube_actuator import EvictionRefused
from .notifier import SlackNotifier, scale_up_message

log = logging.getLogger(__name__)


UNANSWERED_CALLS_TO_STOP = 2

# Actions whose success is announced on Slack: their failure is announced too. (A termination is
# announced by the notice that follows it, which reports its failure: see _notify_what_was_done.)
NOTIFIED_ON_FAILURE = (p.SetDesiredCapacity, p.CancelSpotRequest)


def _log_notice(notice: p.Notify) -> None:
    log.log(logging.ERROR if notice.error else logging.WARNING, "%s", notice.message)


@dataclass
class ApplyResult:
    # Action type -> how many were applied (in a dry run: logged, as what would have been done).
    applied: Counter[type] = field(default_factory=Counter)
    failed: Counter[type] = field(default_factory=Counter)
    errors: list = field(default_factory=list)
    cloud_errors: int = 0  # failures of AWS or Kubernetes calls, for the loop's backoff
    done: list = field(default_factory=list)  # the actions applied, in order (events, metrics)
    failures: list = field(default_factory=list)  # (action, exception) of each failed action
    not_attempted: int = 0  # actions left unapplied because should_stop said so
    refused: list = field(default_factory=list)  # evictions a PodDisruptionBudget refused (not failures)
    dry_run: bool = False  # nothing was changed: ``applied`` counts what would have been
    would_have_done: list = field(default_factory=list)  # a dry run's actions, in order

    @property
    def outcome(self) -> list:
        """The actions applied, or in a dry run those that would have been: what Events report."""
        return self.would_have_done if self.dry_run else self.done


class Actuator:
    def __init__(self, aws, kube, notifier: SlackNotifier, dry_run: bool, events: Optional[EventRecorder] = None):
        self.aws = aws
        self.kube = kube
        self.notifier = notifier
        self.dry_run = dry_run
        self.events = events  # None: this autoscaler posts no Kubernetes Events

    def announce_mode(self) -> None:
        """Say at the start, whatever the verbosity shows, when nothing will be changed."""
        if self.dry_run:
            log.warning("Dry run: decisions are logged, nothing in AWS or Kubernetes is changed")

    def post_events(self, events: Sequence[ClusterEvent], now: datetime) -> Optional[int]:
        """Post the loop's Events; how many were written (in a dry run, how many would have been
        posted, and none is; None without a recorder). Never raises: an Event is not worth failing
        a loop for."""
        if self.dry_run:
            for event in events:
                log.debug("[dry-run] would post event %s on %s %s: %s", event.reason, event.kind, event.name,
                          event.message)
            return len(events)
        return self.events.record(events, now) if self.events is not None else None

    def apply(self, actions, should_stop: Optional[Callable[[], bool]] = None) -> ApplyResult:
        """``should_stop`` is asked before each action (SIGTERM, a lost lease): the action under
        way always finishes, and nothing more is applied once it says True."""
        result = ApplyResult(dry_run=self.dry_run)
        actions = list(actions)
        unanswered = 0  # calls in a row that got no answer
        for position, action in enumerate(actions):
            if should_stop is not None and should_stop():
                result.not_attempted = len(actions) - position
                log.warning("stopping: %d action(s) of this loop not applied", result.not_attempted)
                break
            if unanswered >= UNANSWERED_CALLS_TO_STOP:
                # Each call waits out its timeout: a plan of many actions against a server that
                # stopped answering would hold the loop for minutes. The next loop decides again.
                result.not_attempted = len(actions) - position
                log.warning("stopping this loop's plan: %d calls in a row got no answer; %d action(s) left for the "
                            "next loop", unanswered, result.not_attempted)
                break
            kind = type(action)
            if self.dry_run:
                if isinstance(action, p.Notify):
                    _log_notice(action)  # the operator still sees it; Slack does not
                log.info("[dry-run] would %s", action.describe())
                result.applied[kind] += 1
                result.would_have_done.append(action)
                continue
            try:
                if isinstance(action, p.Notify) and action.about:
                    self._notify_what_was_done(action, result)
                    result.applied[kind] += 1
                    continue
                self._apply_one(action)
            except EvictionRefused as error:
                # A disruption budget said not yet: the node stays cordoned and we retry next loop.
                log.info("eviction refused, will retry next loop: %s", error)
                result.failed[kind] += 1
                result.refused.append(action)
            except Exception as error:  # noqa: BLE001 - one failed call must not stop the plan
                unanswered = unanswered + 1 if isinstance(error, (KubeUnreachable, CloudUnreachable)) else 0
                log.error("failed to %s: %s", action.describe(), error)
                if isinstance(action, NOTIFIED_ON_FAILURE):
                    self.notifier.post(f"Failed to {action.describe()}: {error}")
                result.failed[kind] += 1
                result.errors.append(f"{action.describe()}: {error}")
                result.failures.append((action, error))
                result.cloud_errors += 1
            else:
                unanswered = 0
                result.applied[kind] += 1
                result.done.append(action)
        return result

    def _notify_what_was_done(self, notice: p.Notify, result: ApplyResult) -> None:
        """A notice about earlier actions of the plan: sent for those that were done (its own text
        when all were), and one message naming those that failed, with why."""
        # Sets: a scale-in notice may be about a thousand terminations.
        done_now, about = set(result.done), set(notice.about)
        done = [action for action in notice.about if action in done_now]
        failed = [(action, error) for action, error in result.failures if action in about]
        if done:
            message = notice.message if len(done) == len(notice.about) else p.NOTICE_MESSAGES.get(
                notice.kind, lambda actions: f"{notice.kind}: {len(actions)} of {len(notice.about)} done")(done)
            _log_notice(p.Notify(notice.kind, message, notice.error))
            self.notifier.post(message)
        if failed:
            shown = named_list([f"{action.describe()}: {error}" for action, error in failed[:3]], 3, total=len(failed),
                               separator="; ")
            message = f"{len(failed)} of {len(notice.about)} action(s) failed ({notice.kind}): {shown}"
            log.error("%s", message)
            self.notifier.post(message)

    def _apply_one(self, action) -> None:
        if isinstance(action, p.Notify):
            _log_notice(action)
            self.notifier.post(action.message)
            return
        log.info("%s", action.describe()[:1].upper() + action.describe()[1:])
        if isinstance(action, p.SetDesiredCapacity):
            self.aws.set_desired_capacity(action.group, action.region, action.desired)
            if action.desired > action.previous:
                self.notifier.post(scale_up_message(action.group, action.region, action.previous, action.desired,
                                                    action.pods, action.pod_count))
            else:
                # Only group health lowers desired capacity: a launch that cannot succeed is set back.
                self.notifier.post(f"Capacity correction: set {action.group} ({action.region}) desired capacity back from "
                                   f"{action.previous} to {action.desired}: {action.reason}")
        elif isinstance(action, p.Cordon):
            self.kube.cordon(action.node)
        elif isinstance(action, p.Uncordon):
            self.kube.uncordon(action.node)
        elif isinstance(action, p.AnnotateNode):
            self.kube.annotate(action.node, action.key, action.value)
        elif isinstance(action, p.EvictPod):
            if not self.kube.evict(action.namespace, action.name):
                log.info("pod %s/%s was already gone", action.namespace, action.name)
        elif isinstance(action, p.TerminateInstance):
            self.aws.terminate_instance(action.instance_id, action.region, action.decrement_desired)
            if action.node:
                self.kube.delete_node(action.node)
        elif isinstance(action, p.DeleteNode):
            self.kube.delete_node(action.node)
        elif isinstance(action, p.CancelSpotRequest):
            self.aws.cancel_spot_request(action.region, action.request_id)
            self.notifier.post(f"Capacity correction: cancelled spot request {action.request_id} of {action.group} "
                               f"({action.region}): {action.reason}")
        else:
            raise TypeError(f"unknown action {action!r}")
