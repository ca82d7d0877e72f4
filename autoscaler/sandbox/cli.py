"""``python main.py --sandbox``: read the trace, run it, print the report and where the files are.

Every flag of the daemon either applies in the sandbox as it does in production, is refused
(``--once``), or is announced as ignored in one line at the start (IGNORED_FLAGS): the sandbox
never drops a flag silently. A Slack hook is kept: the autoscaler's messages about the simulated
cluster are really posted, and the start says so.
Exit codes: 0 after a run in which every job finished, 1 when some could not (they can never run,
or the time limit came first), 2 for a bad trace or flag or a sandbox that cannot be set up (one
``error:`` line), 130 on Ctrl-C and 143 on SIGTERM (the report so far and the chart, or one line
when there is nothing yet).
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable, Optional

from ..model.config import Settings
from ..run.daemon import LOG_FORMAT
from ..run.logs import Redactor, secret_values
from .clock import SimClock
from .report import Report, clock_text, table
from .runner import INTERRUPTED, TERMINATED, Sandbox, SandboxSetupError, Terminated, interruption, sandbox_settings
from .trace import TraceError, load_trace

DEFAULT_SPEED = 100.0  # simulated seconds per real second: the default trace in about a minute
DEFAULT_OUT_DIR = "out/sandbox"

# Flags (Settings field names) the sandbox overrides, with why; given ones are announced at the start.
IGNORED_FLAGS = {
    "cluster_name": "the sandbox's groups come from the trace",
    "regions": "the sandbox's groups come from the trace",
    "kubeconfig": "the sandbox talks to its own fake AWS and Kubernetes API",
    "aws_access_key": "the sandbox talks to its own fake AWS and Kubernetes API",
    "aws_secret_key": "the sandbox talks to its own fake AWS and Kubernetes API",
    "leader_elect": "the sandbox runs one replica, with no leader election and no metrics server",
    "leader_elect_namespace": "the sandbox runs one replica, with no leader election and no metrics server",
    "metrics_port": "the sandbox runs one replica, with no leader election and no metrics server",
    "log_format": "the sandbox logs text lines stamped with simulated time",
}
REFUSED_FLAGS = {"once": "the sandbox replays a whole trace; leave --once out"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def refused_flag(given: frozenset) -> Optional[str]:
    """The one-line error for a given flag the sandbox cannot honour, or None."""
    refused = sorted(given & REFUSED_FLAGS.keys())
    return f"{_flag(refused[0])}: {REFUSED_FLAGS[refused[0]]}" if refused else None


def ignored_flags_notice(given: frozenset) -> Optional[str]:
    """One line naming every given flag the sandbox overrides, grouped by why; None if there is none.
    (A flag with an environment variable counts as given when the variable is set.)"""
    by_reason: dict = {}
    for name, reason in IGNORED_FLAGS.items():
        if name in given:
            by_reason.setdefault(reason, []).append(_flag(name))
    if not by_reason:
        return None
    return "sandbox: ignoring " + "; ".join(f"{', '.join(flags)} ({reason})" for reason, flags in by_reason.items())


class _SimulatedTimeFormatter(logging.Formatter):
    """The autoscaler's log format, stamped with simulated time (h:mm:ss into the run), with the
    Slack hook hidden as in production."""

    def __init__(self, clock: SimClock, redact: Redactor):
        super().__init__(LOG_FORMAT)
        self.clock = clock
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))

    def formatTime(self, record, datefmt=None):  # noqa: N802 - logging's name
        seconds = int(self.clock.seconds)
        return f"{clock_text(seconds)}:{seconds % 60:02d}"


def _not_a_busy_mark(record: logging.LogRecord) -> bool:
    # Every busy node is re-annotated each minute; in a demo that drowns the decisions.
    return not record.getMessage().startswith("Annotate node")


def _configure_logging(verbosity: Optional[int], clock: SimClock, secrets: tuple = ()) -> None:
    """Without -v: warnings, plus the actions the autoscaler applies (its actuator's info lines)
    except the per-minute last-busy annotations; -vv and up show everything."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SimulatedTimeFormatter(clock, Redactor(secrets)))
    if verbosity is None:
        handler.addFilter(_not_a_busy_mark)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    level = {None: logging.WARNING, 0: logging.WARNING, 1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    root.setLevel(level)
    logging.getLogger("autoscaler.act.actuator").setLevel(min(level, logging.INFO))
    for noisy in ("botocore", "boto3", "urllib3", "kubernetes", "werkzeug"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def run(settings: Settings, given: frozenset = frozenset(), trace_path: Optional[str] = None,
        speed: Optional[float] = None, out_dir: Optional[str] = None) -> int:
    """The sandbox command. ``given``: the names of the flags given on the command line (they win
    over the demo's short durations). ``speed`` 0 runs as fast as the machine allows."""
    out = Path(out_dir or DEFAULT_OUT_DIR)
    sandbox = None
    with _signals_end_the_run(lambda: sandbox):
        try:
            sandbox = _prepare(settings, given, trace_path, speed, out)
            report = sandbox.run()
        except (TraceError, SandboxSetupError, _Refused) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as interrupt:
            # Before the replay (nothing to report yet) or while tearing the fakes down after it.
            if sandbox is None or sandbox.report is None:
                print(f"{interruption(interrupt)}: stopped before the sandbox had anything to report", file=sys.stderr)
                return _INTERRUPTED_CODES[interruption(interrupt)]
            report = sandbox.report
            _print_report(report, out)
            return _INTERRUPTED_CODES[interruption(interrupt)]
    _print_report(report, out)
    if report.stopped in _INTERRUPTED_CODES:
        return _INTERRUPTED_CODES[report.stopped]
    return 1 if report.jobs_unfinished else 0


_INTERRUPTED_CODES = {INTERRUPTED: 130, TERMINATED: 128 + signal.SIGTERM}


@contextlib.contextmanager
def _signals_end_the_run(current: Callable[[], Optional[Sandbox]]):
    """SIGTERM (``timeout``, ``kill``, a container stopping) ends the run as Ctrl-C does, with the
    report so far and the chart, instead of killing the process with nothing written. During the
    replay both ask the sandbox to stop at its next step; before it (setting up) or after it
    (reporting) they interrupt at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def end(signum, _frame):
        sandbox = current()
        why = TERMINATED if signum == signal.SIGTERM else INTERRUPTED
        if sandbox is not None and sandbox.request_stop(why):
            return
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {signum: signal.signal(signum, end) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _check_out_dir(out: Path) -> None:
    """--sandbox-out must be a directory we can write, found now rather than after the run."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise _Refused(f"--sandbox-out {out}: cannot write there ({error.strerror or error})") from None


class _Refused(ValueError):
    """A given flag the sandbox cannot honour."""


def _prepare(settings: Settings, given: frozenset, trace_path: Optional[str], speed: Optional[float],
             out: Path) -> Sandbox:
    """Check the flags and the trace, make the sandbox, set up its logging, announce what it overrides."""
    refused = refused_flag(given)
    if refused:
        raise _Refused(refused)
    trace = load_trace(trace_path)
    _check_out_dir(out)
    speed = DEFAULT_SPEED if speed is None else speed

    def say(line: str) -> None:
        print(line, flush=True)

    sandbox = Sandbox(trace, sandbox_settings(settings, given), speed=speed or None, out_dir=out, status=say)
    _configure_logging(settings.verbosity if "verbose" in given else None, sandbox.clock,
                       secret_values(settings.slack_hook))
    notice = ignored_flags_notice(given)
    if notice:
        say(notice)
    if settings.slack_hook:
        say("sandbox: the autoscaler's Slack messages about this simulated cluster are posted to the given "
            "--slack-hook (or SLACK_HOOK); leave it out (unset SLACK_HOOK) to post nothing")
    return sandbox


def _print_report(report: Report, out: Path) -> None:
    print()
    print(table(report))
    print()
    print(f"report: {out / 'report.json'}")
    if report.chart:
        print(f"chart:  {report.chart}")
    if report.jobs_unfinished and report.stopped not in _INTERRUPTED_CODES:
        never = sum(entry["count"] for entry in report.unrunnable)
        parts = [f"{never} can never run (named above)"] if never else []
        if report.jobs_unfinished > never:
            parts.append(f"{report.jobs_unfinished - never} had not finished when the run {report.stopped}")
        print(f"error: {report.jobs_unfinished} job(s) did not finish: {'; '.join(parts)}", file=sys.stderr)
