"""The loop: read the world, decide, act; sleep; back off when an API fails. The only clock read.

``run_once`` is one loop and returns its report; ``run_forever`` repeats it until stopped, doubling
the sleep after each failed loop (up to a cap) and going back to ``--sleep`` once a loop succeeds.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

from .actuator import Actuator
from .config import Settings
from .decide import BANNER, decide
from .group_health import GroupHealthState
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


class Loop:
    def __init__(self, world: World, actuator: Actuator, settings: Settings,
                 clock: Callable[[], datetime] = utc_now, stop: Optional[threading.Event] = None,
                 wait: Optional[Callable[[float], object]] = None):
        self.world = world
        self.actuator = actuator
        self.settings = settings
        self.clock = clock
        self.stop = stop or threading.Event()
        # How to pause between loops; the sandbox passes one that follows its simulated clock.
        self.wait = wait or self.stop.wait
        self.health = GroupHealthState()
        self.loops = 0

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
            return LoopReport(False, {"loop": self.loops}, str(error))
        decision = decide(snapshot, self.settings, now, self.health)
        self.health = decision.health
        result = self.actuator.apply(decision.actions)
        counters = dict(decision.counters)
        counters.update(
            loop=self.loops,
            nodes=len(snapshot.nodes),
            pods=len(snapshot.pods),
            groups=len(snapshot.groups),
            actions=sum(result.applied.values()),
            failed_actions=sum(result.failed.values()),
            seconds=round(time.monotonic() - started, 3),
        )
        for name, count in sorted(result.applied.items()):
            counters[f"applied_{name}"] = count
        log.info("Loop done: %s", " ".join(f"{k}={v}" for k, v in counters.items()))
        ok = result.cloud_errors == 0
        return LoopReport(ok, counters, "; ".join(result.errors))

    def run_forever(self) -> None:
        backoff = self.settings.sleep
        while not self.stop.is_set():
            report = self.run_once()
            if report.ok:
                backoff = self.settings.sleep
            else:
                backoff = min(backoff * 2, max(MAX_BACKOFF_SECONDS, self.settings.sleep))
                log.warning("loop failed; next try in %.0f s", backoff)
            # Event.wait, not sleep: SIGTERM sets the event and we leave between loops at once.
            self.wait(backoff if not report.ok else self.settings.sleep)
