"""Text every layer writes the same way: lists that name a few and count the rest, UTC timestamps.

Pure: decide writes them into actions and notices, act into Slack messages and Events, the fakes
and the sandbox into the objects they serve.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional, Sequence


def named_list(names: Sequence[str], limit: int, total: Optional[int] = None, separator: str = ", ") -> str:
    """The first ``limit`` names joined by ``separator``, and how many more there are:
    ``a, b and 3 more``; with ``separator="; "``, ``a; b; and 3 more`` (each name may hold commas).
    ``total``: how many there are in all when ``names`` holds only the first of them (never
    fewer than ``names``)."""
    shown = min(limit, len(names))
    total = max(total or 0, len(names))
    text = separator.join(names[:limit])
    if total <= shown:
        return text
    # A comma list reads "a, b and 3 more"; any other separator comes before the "and".
    before_and = " " if separator == ", " else separator
    return f"{text}{before_and}and {total - shown} more"


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken to be UTC already, as every clock here and the
    Kubernetes timestamps are (never the host's local time)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def utc_text(moment: datetime) -> str:
    """``2026-11-27T10:00:00Z``: the second-precision UTC form Kubernetes writes and AWS writes
    in its activity causes."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")
