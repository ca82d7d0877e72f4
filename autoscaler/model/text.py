"""Text every layer writes the same way: lists that name a few and count the rest, UTC timestamps.

Pure: decide writes them into actions and notices, act into Slack messages and Events, the fakes
and the sandbox into the objects they serve.
"""
from __future__ import annotations

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

