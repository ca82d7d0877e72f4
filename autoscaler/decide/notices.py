"""Notices not repeated while nothing changed: state the loop carries from one loop to the next.

A "failed to scale up" or "infeasible" notice about a set of pods is sent once; while the next
loops decide the same notice about the same pods, it is only logged at info level (no warning,
no Slack message). When the pods change (one is served, another joins) or the notice goes away
and comes back, it is sent again. Notices that name no pods are always sent.
"""
from __future__ import annotations

import logging
from typing import Iterable

from ..model.plan import Action, Notify

log = logging.getLogger(__name__)

REPEATABLE_KINDS = frozenset({"scale-up-failed", "infeasible-pods"})


class RepeatedNotices:
    def __init__(self) -> None:
        self._last: frozenset[tuple[str, frozenset[str]]] = frozenset()

    def filter(self, actions: Iterable[Action]) -> tuple[Action, ...]:
        """The actions, less the notices already sent about the same pods by the previous loop."""
        kept: list[Action] = []
        seen: set[tuple[str, frozenset[str]]] = set()
        for action in actions:
            if isinstance(action, Notify) and action.kind in REPEATABLE_KINDS and action.pods:
                key = (action.kind, frozenset(action.pods))
                seen.add(key)
                if key in self._last:
                    log.info("still (notice not repeated): %s", action.message)
                    continue
            kept.append(action)
        self._last = frozenset(seen)
        return tuple(kept)
