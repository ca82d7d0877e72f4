"""The loop: read the world, decide, act; sleep; back off when an API fails. The only clock read.

``run_once`` is one loop and returns its report; ``run_forever`` repeats it until stopped, doubling
the sleep after a loop that could not read the world (or failed for a bug) or that an API throttled
(up to a cap), and going back to ``--sleep`` after a loop without either.

A loop that read the world and applied its plan is a successful loop even when some of its actions
failed: one node whose deletion is refused every loop (a 403, an admission webhook) must not slow
scale up for everyone else, nor fail /healthz. Failed actions are logged, counted by type in the
metrics, decided again next loop, and make ``--once`` exit 1.

Companions, each with a do-nothing default (the sandbox, --once and the tests go without some):
``leader`` (only the lease holder acts; a lost lease stops the plan between two actions; default
``NoElection``), and ``observer``, told of each phase and loop (the metrics and /healthz; default
``LoopObserver``). Kubernetes Events go through the actuator, which alone knows about a dry run.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Mapping, Optional

from ..act.actuator import Actuator, ApplyResult
from ..act.events import events_for_loop
from ..clients.aws_errors import CloudError
from ..clients.kube_errors import KubeError
from ..decide.decision import BANNER, DecisionCounts, decide, remember_last_busy, remember_seen_busy, with_remembered_last_busy, with_seen_busy
from ..decide.buy_guard import GuardState
from ..decide.group_health import GroupHealthState
from ..decide.notices import RepeatedNotices
from ..model.config import ConfigurationError, Settings
from ..read.world import World
from .backoff import backoff_cap, is_throttling
from .leader import Leadership, NoElection
from .logs import ALWAYS_SHOWN, COUNTERS_ATTRIBUTE
from .observer import LoopObserver

log = logging.getLogger("autoscaler.cluster")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class LoopCounters:
    """One loop's figures: its summary line (``Loop done: ...``), the fields of that line in JSON
    logs, and what ``--once`` ends with."""

    loop: int
    decision: DecisionCounts = DecisionCounts()
    nodes: int = 0
    pods: int = 0
    groups: int = 0
    actions: int = 0  # applied, or in a dry run logged
    failed_actions: int = 0
    throttled: int = 0
    not_applied: int = 0  # left unapplied: a stop, a lost lease, a server that stopped answering
    by_action: Mapping[type, int] = field(default_factory=dict)  # ``actions`` by action type
    dry_run: bool = False  # ``actions``, ``by_action`` and ``events`` are what would have been done
    events: Optional[int] = None  # Kubernetes Events posted; None when none are posted
    seconds: float = 0.0

    @property
    def pending(self) -> int:
        return self.decision.scale_up.pending if self.decision.scale_up is not None else 0

    def fields(self) -> dict[str, float]:
        """The summary line's ``name=value`` pairs, in its order; a dry run's per-type counts are
        ``would_<Action>`` (``applied_<Action>`` otherwise)."""
        fields: dict[str, float] = dict(self.decision.fields())
        fields.update(loop=self.loop, nodes=self.nodes, pods=self.pods, groups=self.groups, actions=self.actions,
                      failed_actions=self.failed_actions)
        if self.throttled:
            fields["throttled"] = self.throttled
        if self.not_applied:
            fields["not_applied"] = self.not_applied
        done = "would" if self.dry_run else "applied"
        for kind, count in sorted(self.by_action.items(), key=lambda item: item[0].__name__):
            fields[f"{done}_{kind.__name__}"] = count
        if self.events is not None:
            fields["would_post_events" if self.dry_run else "events"] = self.events
        fields["seconds"] = round(self.seconds, 3)
        return fields


@dataclass
class LoopReport:
    ok: bool  # the world was read and the plan applied; some of its actions may still have failed
    counters: LoopCounters = LoopCounters(0)
    error: str = ""
    failed_actions: int = 0  # actions whose API call failed
    throttled: int = 0  # API calls of this loop refused for rate
    # The read failed for configuration (no credentials, access denied, not an API server...).
    configuration_error: Optional[ConfigurationError] = None

    @property
    def backs_off(self) -> bool:
        return not self.ok or self.throttled > 0


def _unapplied(actions: tuple, result: ApplyResult) -> list:
    """The actions of a plan that failed, and those left untried at its end when it was stopped."""
    unapplied = [action for action, _ in result.failures]
    if result.not_attempted:
        unapplied.extend(actions[len(actions) - result.not_attempted:])
    return unapplied


class Loop:
    def __init__(self, world: World, actuator: Actuator, settings: Settings,
                 clock: Callable[[], datetime] = utc_now, stop: Optional[threading.Event] = None,
                 wait: Optional[Callable[[float], object]] = None, *, leader: Optional[Leadership] = None,
                 observer: Optional[LoopObserver] = None):
        self.world = world
        self.actuator = actuator
        self.settings = settings
        self.clock = clock
        self.stop = stop or threading.Event()
        # How to pause between loops; the sandbox passes one that follows its simulated clock.
        self.wait = wait or self.stop.wait
        self.leader: Leadership = leader or NoElection()
        self.observer = observer or LoopObserver()
        self.notices = RepeatedNotices()  # a notice about the same pods is not sent again every loop
        self.health = GroupHealthState()
        self.guard = GuardState()  # what the buy-loop guard remembers (decide/buy_guard.py)
        # Node name -> the last-busy time this loop's plans last wrote (decide.remember_last_busy).
        self.last_busy: dict = {}
        # Node name -> the last loop that saw it busy: idle time runs from it (decide.remember_seen_busy).
        self.seen_busy: dict = {}
        self.loops = 0
        self.succeeded = 0  # loops that read the world
        # Set when the process should end: a configuration error before any loop succeeded.
        self.fatal: Optional[ConfigurationError] = None
        self._warned_no_groups = False
        self._warned_differences: set = set()  # template differences already warned about

    def should_stop(self) -> bool:
        """Asked before each action: SIGTERM, or the lease is no longer ours."""
        return self.stop.is_set() or not self.leader.is_leader()

    def run_once(self) -> LoopReport:
        """Read, decide, act. A failure to read ends the loop with ok=False. Failed actions do not:
        they are counted in the report. Any other exception is a bug: logged with its traceback,
        and the loop ends with ok=False instead of taking the daemon down."""
        self.loops += 1
        started = time.monotonic()
        now = self.clock()
        log.info(BANNER.format("Running Scaling Loop"))
        try:
            snapshot = self.world.read(now)
        except Exception as error:  # noqa: BLE001 - any read failure: report, back off, retry
            configuration = error if isinstance(error, ConfigurationError) else None
            is_api_error = isinstance(error, (KubeError, CloudError, ConfigurationError))
            if (configuration is not None and not self.succeeded) or (self.settings.once and is_api_error):
                # The process ends with one line that says it (daemon.py); the log would repeat it.
                log.info("reading the cluster failed: %s", error)
            else:
                # An API's error says enough; anything else is a bug in the reading code: show where.
                log.error("reading the cluster failed: %s", error, exc_info=not is_api_error)
            self._record_failed_loop(started, error)
            return LoopReport(False, LoopCounters(self.loops), str(error), throttled=int(is_throttling(error)),
                              configuration_error=configuration)
        self.succeeded += 1
        self._warn_if_no_groups(snapshot)
        self._observe_phase("read", started)
        try:
            return self._decide_and_act(snapshot, now, started)
        except Exception as error:  # noqa: BLE001 - a bug in decision code must not kill the daemon
            log.exception("the loop failed after reading the cluster (a bug; the next loop starts afresh): %s", error)
            self._record_failed_loop(started)
            return LoopReport(False, LoopCounters(self.loops), f"{type(error).__name__}: {error}")

    def _warn_if_no_groups(self, snapshot) -> None:
        """Once per process: a --cluster-name that matches no group anywhere is a typo more often
        than a cluster without groups, and nothing would ever scale."""
        if snapshot.groups or self._warned_no_groups:
            return
        self._warned_no_groups = True
        log.warning("--cluster-name %s matches no Auto Scaling group in %s: nothing can be scaled up or in. Groups "
                    "are managed when tagged KubernetesCluster=%s and Role (or KubernetesRole) minion, worker or "
                    "kubernetes-minion (README \"Setup\")", self.settings.cluster_name,
                    ", ".join(self.settings.regions), self.settings.cluster_name, extra={ALWAYS_SHOWN: True})

    def _warn_template_differences(self, differences) -> None:
        """Once per process and difference: a group's nodes that are not what its tags say."""
        for difference in differences:
            if difference not in self._warned_differences:
                self._warned_differences.add(difference)
                log.warning("%s", difference.describe())

    def _record_failed_loop(self, started: float, api_error: Optional[BaseException] = None) -> None:
        try:
            self.observer.loop_failed(time.monotonic() - started, api_error)
        except Exception:  # noqa: BLE001 - an observer is what failed; the log line says so
            log.exception("telling the observers of the failed loop failed")

    def _observe_phase(self, phase: str, since: float) -> float:
        """Tells the observers how long ``phase`` took; returns the time it ended."""
        ended = time.monotonic()
        self.observer.phase_done(phase, ended - since)
        return ended

    def _decide_and_act(self, snapshot, now: datetime, started: float) -> LoopReport:
        deciding = time.monotonic()
        snapshot = with_seen_busy(with_remembered_last_busy(snapshot, self.last_busy), self.seen_busy)
        decision = decide(snapshot, self.settings, now, self.health, self.guard)
        self.guard = decision.guard
        decision = replace(decision, actions=self.notices.filter(decision.actions))
        self._warn_template_differences(decision.template_differences)
        self.last_busy = remember_last_busy(self.last_busy, snapshot, decision.actions)
        self.seen_busy = remember_seen_busy(self.seen_busy, snapshot, now)
        acting = self._observe_phase("decide", deciding)
        if self.should_stop():
            # Checked once more after the (possibly long) read: a lease lost meanwhile means
            # another replica may already be acting on the same world.
            log.warning("not applying this loop's plan: %s", "stopping" if self.stop.is_set() else "not the leader")
            result = ApplyResult(not_attempted=len(decision.actions))
        else:
            result = self.actuator.apply(decision.actions, should_stop=self.should_stop)
            self._observe_phase("act", acting)
        # Corrections that failed or were never tried are decided again next loop.
        self.health = decision.health.with_unapplied(decision.origins, _unapplied(decision.actions, result))
        throttled = sum(1 for _, error in result.failures if is_throttling(error))
        events = None
        if not self.should_stop():
            events = self.actuator.post_events(events_for_loop(snapshot, decision, result.outcome, failed=result.failures,
                                                               refused=result.refused), now)
        seconds = time.monotonic() - started
        counters = LoopCounters(
            loop=self.loops, decision=decision.counts, nodes=len(snapshot.nodes), pods=len(snapshot.pods),
            groups=len(snapshot.groups), actions=sum(result.applied.values()),
            failed_actions=sum(result.failed.values()), throttled=throttled, not_applied=result.not_attempted,
            by_action=dict(result.applied), dry_run=result.dry_run, events=events, seconds=seconds)
        fields = counters.fields()
        log.info("Loop done: %s", " ".join(f"{k}={v}" for k, v in fields.items()), extra={COUNTERS_ATTRIBUTE: fields})
        if result.failures:
            log.warning("%d action(s) failed this loop (decided again next loop%s): %s", len(result.failures),
                        "; the API throttled us, backing off" if throttled else "", "; ".join(result.errors))
        self.observer.loop_done(seconds, snapshot, decision, result)
        return LoopReport(True, counters, "; ".join(result.errors), failed_actions=len(result.failures),
                          throttled=throttled)

    def next_wait(self, report: LoopReport, previous_wait: float) -> float:
        """--sleep after a loop that read the world and was not throttled (failed actions or not);
        otherwise double the last wait, up to the cap."""
        if not report.backs_off:
            return self.settings.sleep
        return min(previous_wait * 2, backoff_cap(self.settings.sleep))

    def run_forever(self) -> None:
        """Loops until stopped, or until ``fatal`` is set: a configuration error before any loop
        succeeded (README "Configuration": fail fast)."""
        interval = self.settings.sleep
        while not self.stop.is_set() and self.fatal is None:
            if not self._await_leadership():
                continue
            report = self.run_once()
            if report.configuration_error is not None and not self.succeeded:
                self.fatal = report.configuration_error
                return
            interval = self.next_wait(report, interval)
            if not report.ok:
                log.warning("loop failed; next try in %.0f s", interval)
            elif report.throttled:
                log.warning("%d API call(s) throttled; next loop in %.0f s", report.throttled, interval)
            # Event.wait, not sleep: SIGTERM sets the event and we leave between loops at once.
            self.wait(interval)

    def _await_leadership(self) -> bool:
        """True when this replica leads; otherwise waits up to one --sleep for it (standing by)."""
        if self.leader.is_leader():
            self.observer.acting()
            return True
        log.info("standing by: another replica holds the lease")
        while not self.stop.is_set():
            if self.leader.startup_error is not None and not self.succeeded:
                self.fatal = self.leader.startup_error  # e.g. no permission on Leases: waiting never ends
                return False
            contact_at = self.leader.contact_at
            self.observer.standing_by(None if contact_at is None else time.monotonic() - contact_at)
            if self.leader.wait_for_leadership(self.stop, timeout=self.leader.retry_period):
                self.observer.became_leader()
                return True
        return False
