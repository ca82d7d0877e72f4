"""A total deadline for one API call, whatever the server does.

The clients' connect and read timeouts bound each wait for a byte, not the call: a server (or a
proxy) that sends one byte every few seconds keeps a call alive for ever. So each Kubernetes and
AWS call runs on a fresh daemon thread, and the caller waits for it at most ``seconds``; past
that it raises DeadlineExceeded (a TimeoutError, weather like a read timeout), and the loop logs
it, backs off and reads the world again (README "Timeouts and signals").

The abandoned thread is left to finish or fail on its own (its read timeout, the server closing;
a Kubernetes call given up while its body trickles in is ended at once, kube_connect): Python
cannot interrupt a thread, and botocore gives no hold on the socket of a request under way. That
is acceptable because its effect, if any, is the one a call that timed out would have had (a
write that reached the server may still apply, as it may after a read timeout), its answer is
dropped, and the next loop reads the world afresh. It is a daemon thread, so it never holds up
the process's exit nor a signal's (run/daemon.py). The thread costs about 0.1 ms a call alone,
0.5 ms a call over HTTP on a busy machine: under 1 % of a loop's time.
"""
from __future__ import annotations

import contextvars
import threading
from typing import Any, Callable, TypeVar

from botocore.exceptions import HTTPClientError

Result = TypeVar("Result")


class DeadlineExceeded(TimeoutError):
    """No complete answer within the call's total deadline."""

    def __init__(self, what: str, seconds: float):
        super().__init__(f"{what}: no complete answer within {seconds:g} s")
        self.what = what
        self.seconds = seconds


class AwsDeadlineExceeded(HTTPClientError):
    """DeadlineExceeded as botocore's own kind, so that every handler of AWS errors treats it as
    it treats a read timeout (aws_errors.botocore_error: CloudUnreachable)."""

    fmt = "{operation}: no complete answer within {seconds:g} s, all retries and any credential fetch included"


def call_with_deadline(seconds: float, what: str, function: Callable[..., Result], *args: Any, **kwargs: Any) -> Result:
    """``function(*args, **kwargs)``, or DeadlineExceeded naming ``what`` when it has not returned
    within ``seconds``. Its own exception is raised as it is."""
    outcome: dict[str, Any] = {}
    done = threading.Event()
    # The caller's context variables go along (botocore keeps per-call state in them).
    context = contextvars.copy_context()

    def run() -> None:
        try:
            outcome["result"] = context.run(function, *args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - handed to the caller as is
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=run, name=f"call {what}", daemon=True).start()
    if not done.wait(seconds):
        raise DeadlineExceeded(what, seconds)
    if "error" in outcome:
        raise outcome.pop("error")
    return outcome["result"]


def bound_aws_client(client: Any, seconds: float) -> Any:
    """Give every call of a botocore client a total deadline of ``seconds``, and return it.

    Every operation, paginated or not, goes through the client's ``_make_api_call`` (the generated
    methods call ``self._make_api_call``; paginators call those methods), and so do botocore's
    retries and the credential fetch or refresh that signing a request may need (the STS call of
    IAM roles for service accounts, instance metadata): an instance attribute wrapping it bounds
    them all."""
    make_api_call = client._make_api_call

    def _make_api_call(operation_name: str, api_params: Any) -> Any:
        try:
            return call_with_deadline(seconds, operation_name, make_api_call, operation_name, api_params)
        except DeadlineExceeded:
            raise AwsDeadlineExceeded(operation=operation_name, seconds=seconds) from None

    client._make_api_call = _make_api_call
    return client
