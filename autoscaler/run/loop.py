"""The loop: read the world, decide, act; sleep; back off when an API fails. The only clock read.

``run_once`` is one loop and returns its report; ``run_forever`` repeats it until stopped, doubling
the sleep after a loop that could not read the world (or failed for a bug) or that an API throttled
(up to a cap), and going back to ``--sleep`` after a loop without either.

A loop that read the world and applied its plan is a successful loop even when some of its actions
failed: one node whose deletion is refused every loop (a 403, an admission webhook) must not slow
scale up for everyone else, nor fail /healthz. Failed actions are logged, counted by type in the
metrics, decided again next loop, and make ``--once`` exit 1.

Optional companions, each None when not wired (the sandbox and --once go without some):
``leader`` (only the lease holder acts; a lost lease stops the plan between two actions),
``metrics`` and ``liveness`` (what /metrics and /healthz serve), ``events`` (Kubernetes Events).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, Optional

from ..act.actuator import Actuator, ApplyResult
from ..act.events import events_for_loop
from ..clients.aws_errors import CloudError
from ..clients.kube_errors import KubeError
from ..decide.decision import BANNER, decide, remember_last_busy, remember_seen_busy, with_remembered_last_busy, with_seen_busy
from ..decide.group_health import GroupHealthState
from ..decide.notices import RepeatedNotices
from ..model.config import ConfigurationError, Settings
from ..read.world import World
from .backoff import backoff_cap, is_throttling
from .logs import ALWAYS_SHOWN, COUNTERS_ATTRIBUTE

log = logging.getLogger("autoscaler.cluster")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class LoopReport:
    ok: bool  # the world was read and the plan applied; some of its actions may still have failed
    counters: dict = field(default_factory=dict)
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
                 wait: Optional[Callable[[float], object]] = None, *, leader=None, metrics=None,
                 liveness=None, events=None):
        self.world = world
        self.actuator = actuator
        self.settings = settings
        self.clock = clock
        self.stop = stop or threading.Event()
        # How to pause between loops; the sandbox passes one that follows its simulated clock.
        self.wait = wait or self.stop.wait
        self.leader = leader  # leader.LeaderElector, or None: always act
        self.metrics = metrics  # metrics.Metrics
        self.liveness = liveness  # metrics.Liveness
        self.events = events  # events.EventRecorder; None in a dry run (events are writes)
        self.notices = RepeatedNotices()  # a notice about the same pods is not sent again every loop
        self.health = GroupHealthState()
        # Node name -> the last-busy time this loop's plans last wrote (decide.remember_last_busy).
        self.last_busy: dict = {}
        # Node name -> the last loop that saw it busy: idle time runs from it (decide.remember_seen_busy).
        self.seen_busy: dict = {}
        self.loops = 0
        self.succeeded = 0  # loops that read the world
        # Set when the process should end: a configuration error before any loop succeeded.
        self.fatal: Optional[ConfigurationError] = None
        self._warned_no_groups = False

    def should_stop(self) -> bool:
        """Asked before each action: SIGTERM, or the lease is no longer ours."""
        return self.stop.is_set() or (self.leader is not None and not self.leader.is_leader())

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
            return LoopReport(False, {"loop": self.loops}, str(error), throttled=int(is_throttling(error)),
                              configuration_error=configuration)
        self.succeeded += 1
        self._warn_if_no_groups(snapshot)
        self._observe_phase("read", started)
        try:
            return self._decide_and_act(snapshot, now, started)
        except Exception as error:  # noqa: BLE001 - a bug in decision code must not kill the daemon
            log.exception("the loop failed after reading the cluster (a bug; the next loop starts afresh): %s", error)
            self._record_failed_loop(started)
            return LoopReport(False, {"loop": self.loops}, f"{type(error).__name__}: {error}")

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

    def _record_failed_loop(self, started: float, api_error: Optional[BaseException] = None) -> None:
        if self.metrics is None:
            return
        try:
            self.metrics.record_failed_loop(time.monotonic() - started, api_error)
        except Exception:  # noqa: BLE001 - the metrics are what failed; the log line says so
            log.exception("recording the failed loop in the metrics failed")

    def _observe_phase(self, phase: str, since: float) -> float:
        """autoscaler_loop_phase_duration_seconds{phase}; returns the time it ended."""
        ended = time.monotonic()
        if self.metrics is not None:
            self.metrics.observe_phase(phase, ended - since)
        return ended

    def _decide_and_act(self, snapshot, now: datetime, started: float) -> LoopReport:
        deciding = time.monotonic()
        snapshot = with_seen_busy(with_remembered_last_busy(snapshot, self.last_busy), self.seen_busy)
        decision = decide(snapshot, self.settings, now, self.health)
        decision = replace(decision, actions=self.notices.filter(decision.actions))
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
        counters: dict[str, float] = dict(decision.counts.fields())
        counters.update(
            loop=self.loops,
            nodes=len(snapshot.nodes),
            pods=len(snapshot.pods),
            groups=len(snapshot.groups),
            actions=sum(result.applied.values()),
            failed_actions=sum(result.failed.values()),
        )
        if throttled:
            counters["throttled"] = throttled
        if result.not_attempted:
            counters["not_applied"] = result.not_attempted
        for name, count in sorted(result.applied.items()):
            counters[f"applied_{name}"] = count
        if self.events is not None and not self.settings.dry_run and not self.should_stop():
            counters["events"] = self.events.record(events_for_loop(snapshot, decision, result.done,
                                                                 failed=result.failures, refused=result.refused), now)
        seconds = time.monotonic() - started
        counters["seconds"] = round(seconds, 3)
        log.info("Loop done: %s", " ".join(f"{k}={v}" for k, v in counters.items()),
                 extra={COUNTERS_ATTRIBUTE: counters})
        if result.failures:
            log.warning("%d action(s) failed this loop (decided again next loop%s): %s", len(result.failures),
                        "; the API throttled us, backing off" if throttled else "", "; ".join(result.errors))
        if self.metrics is not None:
            self.metrics.record_loop(seconds, True, snapshot, decision, result)
        if self.liveness is not None:
            self.liveness.loop_succeeded()
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
            if self.leader is not None and not self._await_leadership():
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
            if self.metrics is not None:
                self.metrics.leader.set(1)
            return True
        if self.metrics is not None:
            self.metrics.leader.set(0)
        log.info("standing by: another replica holds the lease")
        while not self.stop.is_set():
            if self.leader.startup_error is not None and not self.succeeded:
                self.fatal = self.leader.startup_error  # e.g. no permission on Leases: waiting never ends
                return False
            if self.liveness is not None and self.leader.contact_at is not None \
                    and time.monotonic() - self.leader.contact_at < self.liveness.window:
                self.liveness.standing_by()
            if self.leader.wait_for_leadership(self.stop, timeout=self.leader.retry_period):
                if self.liveness is not None:
                    self.liveness.became_leader()
                if self.metrics is not None:
                    self.metrics.leader.set(1)
                return True
        return False
