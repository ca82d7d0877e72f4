"""What a loop tells the companions that watch it: the metrics and the liveness check (/healthz).

``LoopObserver``'s methods do nothing, so a loop wired without companions (``--once``, the tests)
calls them all the same; ``Observers`` hands each call to several in turn. A companion's exception
propagates: the loop treats it like any bug after the read (logged with its traceback, the loop
failed, the daemon goes on).
"""
from __future__ import annotations

from typing import Optional


class LoopObserver:
    def phase_done(self, phase: str, seconds: float) -> None:
        """A phase of a loop (read, decide, act) ended after ``seconds``."""

    def loop_failed(self, seconds: float, error: Optional[BaseException]) -> None:
        """A loop could not read the world (``error``), or failed for a bug (None)."""

    def loop_done(self, seconds: float, snapshot, decision, result) -> None:
        """A loop read the world, decided and applied its plan (some actions may have failed)."""

    def acting(self) -> None:
        """This replica acts: it holds the lease, or runs without leader election."""

    def became_leader(self) -> None:
        """This replica took the lease after standing by."""

    def standing_by(self, seconds_since_lease_contact: Optional[float]) -> None:
        """Another replica holds the lease; this one last reached the lease that long ago (None:
        never)."""


class Observers(LoopObserver):
    """Several observers, called in the order given."""

    def __init__(self, *observers: LoopObserver):
        self.observers = observers

    def phase_done(self, phase: str, seconds: float) -> None:
        for observer in self.observers:
            observer.phase_done(phase, seconds)

    def loop_failed(self, seconds: float, error: Optional[BaseException]) -> None:
        for observer in self.observers:
            observer.loop_failed(seconds, error)

    def loop_done(self, seconds: float, snapshot, decision, result) -> None:
        for observer in self.observers:
            observer.loop_done(seconds, snapshot, decision, result)

    def acting(self) -> None:
        for observer in self.observers:
            observer.acting()

    def became_leader(self) -> None:
        for observer in self.observers:
            observer.became_leader()

    def standing_by(self, seconds_since_lease_contact: Optional[float]) -> None:
        for observer in self.observers:
            observer.standing_by(seconds_since_lease_contact)
