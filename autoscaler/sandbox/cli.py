"""``python main.py --sandbox``: read the trace, run it, print the report and where the files are."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

from ..config import Settings
from ..daemon import LOG_FORMAT
from .clock import SimClock
from .report import clock_text, table
from .runner import INTERRUPTED, Sandbox, sandbox_settings
from .trace import TraceError, load_trace

DEFAULT_SPEED = 100.0  # simulated seconds per real second: the default trace in about a minute
DEFAULT_OUT_DIR = "out/sandbox"


class _SimulatedTimeFormatter(logging.Formatter):
    """The autoscaler's log format, stamped with simulated time (h:mm:ss into the run)."""

    def __init__(self, clock: SimClock):
        super().__init__(LOG_FORMAT)
        self.clock = clock

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's name
        seconds = int(self.clock.seconds)
        return f"{clock_text(seconds)}:{seconds % 60:02d}"


def _not_a_busy_mark(record: logging.LogRecord) -> bool:
    # Every busy node is re-annotated each minute; in a demo that drowns the decisions.
    return not record.getMessage().startswith("Annotate node")


def _configure_logging(verbosity: Optional[int], clock: SimClock) -> None:
    """Without -v: warnings, plus the actions the autoscaler applies (its actuator's info lines)
    except the per-minute last-busy annotations; -vv and up show everything."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SimulatedTimeFormatter(clock))
    if verbosity is None:
        handler.addFilter(_not_a_busy_mark)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = {None: logging.WARNING, 0: logging.WARNING, 1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    root.setLevel(level)
    logging.getLogger("autoscaler.actuator").setLevel(min(level, logging.INFO))
    for noisy in ("botocore", "boto3", "urllib3", "kubernetes", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def run(settings: Settings, given: frozenset = frozenset(), trace_path: Optional[str] = None,
        speed: Optional[float] = None, out_dir: Optional[str] = None) -> int:
    """The sandbox command. ``given``: the names of the flags given on the command line (they win
    over the demo's short durations). ``speed`` 0 runs as fast as the machine allows."""
    try:
        trace = load_trace(trace_path)
    except TraceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    speed = DEFAULT_SPEED if speed is None else speed
    out = Path(out_dir or DEFAULT_OUT_DIR)
    sandbox = Sandbox(trace, sandbox_settings(settings, given), speed=speed or None, out_dir=out,
                      status=lambda line: print(line, flush=True))
    _configure_logging(settings.verbosity if "verbose" in given else None, sandbox.clock)
    report = sandbox.run()
    print()
    print(table(report))
    print()
    print(f"report: {out / 'report.json'}")
    if report.chart:
        print(f"chart:  {report.chart}")
    return 130 if report.stopped == INTERRUPTED else 0
