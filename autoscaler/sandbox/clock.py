"""The sandbox's simulated clock: shared by the loop, the simulators, moto and the fake API.

Simulated time only moves when the sandbox advances it (between the autoscaler's loops), so one
loop's reads and decisions happen at one simulated instant, however long they take for real.
With a speed, advancing also waits until the real time that simulated moment corresponds to
(``speed`` simulated seconds per real second, counted from the start); when the work is slower
than that, the clock simply runs slower. Without a speed it runs as fast as the work allows.
"""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

# A fixed, round start: reports and charts read as hours into the run.
DEFAULT_START = datetime(2024, 1, 1, tzinfo=timezone.utc)


class SimClock:
    def __init__(self, speed: Optional[float] = None, start: datetime = DEFAULT_START):
        if speed is not None and speed <= 0:
            raise ValueError(f"speed must be more than 0 simulated seconds per real second (got {speed})")
        self.start = start
        self.speed = speed
        self._now = start
        self._real_start = time.monotonic()

    def now(self) -> datetime:
        return self._now

    @property
    def seconds(self) -> float:
        """Simulated seconds since the start."""
        return (self._now - self.start).total_seconds()

    def advance(self, seconds: float, stop: threading.Event) -> bool:
        """Move the clock ``seconds`` on, keeping pace with the speed; False if ``stop`` was set first."""
        target = self._now + timedelta(seconds=seconds)
        if self.speed is not None:
            due = self._real_start + (target - self.start).total_seconds() / self.speed
            if stop.wait(max(0.0, due - time.monotonic())):
                return False
        elif stop.is_set():
            return False
        self._now = target
        return True
