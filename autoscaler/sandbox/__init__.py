"""The embedded sandbox: the real autoscaler loop against a simulated cluster, replaying a job trace.

    python main.py --sandbox [--sandbox-trace FILE] [--sandbox-speed N] [--sandbox-out DIR]

Never imported by the production path (main.py imports it only for --sandbox). ``Sandbox`` is
the API tests use in-process; ``run`` is the command's entry point.
"""
from .cli import run
from .runner import Sandbox, SandboxSetupError, sandbox_settings
from .trace import Trace, TraceError, load_trace, parse_trace

__all__ = ["Sandbox", "SandboxSetupError", "Trace", "TraceError", "load_trace", "parse_trace", "run",
           "sandbox_settings"]
