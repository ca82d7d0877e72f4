"""Stage 5 of scale up: --over-provision, last.

Pure. Extra instances go only to groups this loop raises, only once every pending pod that anything
could run is served (none left unaccounted), and only into room real demand does not use: the
plan has already taken what it needs of each group's max size (docs/decisions.md#scale-up).
"""
from __future__ import annotations

from typing import Sequence

from .group_plan import GroupPlan


def over_provision(plans: Sequence[GroupPlan], extra: int, pods_left_out: int) -> dict[tuple[str, str], int]:
    """Group key -> extra instances."""
    if extra <= 0 or pods_left_out:
        return {}
    return {plan.offer.key: min(extra, plan.room) for plan in plans if plan.new > 0 and plan.room > 0}
