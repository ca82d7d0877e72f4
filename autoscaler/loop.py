"""The loop: read the world, decide, act; sleep; back off when an API fails. The only clock read.

``run_once`` is one loop and returns its report; ``run_forever`` repeats it until stopped, doubling
the sleep after each failed loop (up to a cap) and going back to ``--sleep`` once a loop succeeds.

Optional companions, each None when not wired (the sandbox and --once go without some):
``leader`` (only the lease holder acts; a lost lease stops the plan between two actions),
``metrics`` and ``liveness`` (what /metrics and /healthz serve), ``events`` (Kubernetes Events).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

from .actuator import Actuator, ApplyResult
from .config import Settings
from .decide import BANNER, decide, remember_last_busy, with_remembered_last_busy
from .events import events_for_loop
from .group_health import GroupHealthState
from .logs import COUNTERS_ATTRIBUTE
from .world import World

log = logging.getLogger("autoscaler.cluster")

MAX_BACKOFF_SECONDS = 600


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class LoopReport:
    ok: bool
    counters: dict = field(default_factory=dict)
    error: str = ""


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
        self.health = GroupHealthState()
        # Node name -> when this loop's plans last saw it busy (decide.remember_last_busy).
        self.last_busy: dict = {}
        self.loops = 0

    def should_stop(self) -> bool:
        """Asked before each action: SIGTERM, or the lease is no longer ours."""
        return self.stop.is_set() or (self.leader is not None and not self.leader.is_leader())

    def run_once(self) -> LoopReport:
        """Read, decide, act. An API failure while reading ends the loop with ok=False; failed
        actions are counted and make the loop count as failed too, so the daemon backs off."""
        self.loops += 1
        started = time.monotonic()
        now = self.clock()
        log.info(BANNER.format("Running Scaling Loop"))
        try:
            snapshot = self.world.read(now)
        except Exception as error:  # noqa: BLE001 - any read failure: report, back off, retry
            log.error("reading the cluster failed: %s", error)
            if self.metrics is not None:
                self.metrics.record_failed_loop(time.monotonic() - started, error)
            return LoopReport(False, {"loop": self.loops}, str(error))
        snapshot = with_remembered_last_busy(snapshot, self.last_busy)
        decision = decide(snapshot, self.settings, now, self.health)
        self.last_busy = remember_last_busy(self.last_busy, snapshot, decision.actions)
        if self.should_stop():
            # Checked once more after the (possibly long) read: a lease lost meanwhile means
            # another replica may already be acting on the same world.
            log.warning("not applying this loop's plan: %s", "stopping" if self.stop.is_set() else "not the leader")
            result = ApplyResult(not_attempted=len(decision.actions))
        else:
            result = self.actuator.apply(decision.actions, should_stop=self.should_stop)
        # Corrections that failed or were never tried are decided again next loop.
        self.health = decision.health.with_unapplied(decision.origins, _unapplied(decision.actions, result))
        counters = dict(decision.counters)
        counters.update(
            loop=self.loops,
            nodes=len(snapshot.nodes),
            pods=len(snapshot.pods),
            groups=len(snapshot.groups),
            actions=sum(result.applied.values()),
            failed_actions=sum(result.failed.values()),
        )
        if result.not_attempted:
            counters["not_applied"] = result.not_attempted
        for name, count in sorted(result.applied.items()):
            counters[f"applied_{name}"] = count
        ok = result.cloud_errors == 0
        if self.events is not None and not self.settings.dry_run and not self.should_stop():
            counters["events"] = self.events.record(events_for_loop(snapshot, decision, result.done), now)
        seconds = time.monotonic() - started
        counters["seconds"] = round(seconds, 3)
        log.info("Loop done: %s", " ".join(f"{k}={v}" for k, v in counters.items()),
                 extra={COUNTERS_ATTRIBUTE: counters})
        if self.metrics is not None:
            self.metrics.record_loop(seconds, ok, snapshot, decision, result)
        if ok and self.liveness is not None:
            self.liveness.loop_succeeded()
        return LoopReport(ok, counters, "; ".join(result.errors))

    def next_wait(self, report: LoopReport, previous_wait: float) -> float:
        """--sleep after a success; after a failure double the last wait, up to the cap."""
        if report.ok:
            return self.settings.sleep
        return min(previous_wait * 2, max(MAX_BACKOFF_SECONDS, self.settings.sleep))

    def run_forever(self) -> None:
        interval = self.settings.sleep
        while not self.stop.is_set():
            if self.leader is not None and not self._await_leadership():
                continue
            report = self.run_once()
            interval = self.next_wait(report, interval)
            if not report.ok:
                log.warning("loop failed; next try in %.0f s", interval)
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
