"""One error type for every failed Kubernetes API call, with a message an operator can act on, and
its configuration kind (KubeConfigurationError) for answers no retry can fix."""
from __future__ import annotations

import json
import ssl
from typing import Callable, Optional

import pydantic
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from ..model.config import ConfigurationError
from .deadline import DeadlineExceeded
from .http_summary import describe_answer, first_line


class KubeError(RuntimeError):
    """A Kubernetes API call failed. ``status`` is the HTTP status, or None for a network error."""

    def __init__(self, message: str, status: Optional[int] = None, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason


class KubeConfigurationError(KubeError, ConfigurationError):
    """A failed call that no retry fixes: credentials refused (401), a permission missing (403), a
    server that is not a Kubernetes API server, a host name that does not resolve, a certificate
    that does not verify."""


class KubeUnreachable(KubeError):
    """No answer: the API server refused, dropped or did not answer in time. Weather, retried next
    loop; the actuator stops a plan after two in a row."""


def kube_call(what: str, function: Callable, *args, **kwargs):
    """Call the client, turning its exceptions into KubeError naming ``what`` was attempted."""
    try:
        return function(*args, **kwargs)
    except ApiException as error:
        raise api_error(what, error) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise network_error(what, error) from None
    except ConfigException as error:
        # Raised while the client refreshes its token (an exec plugin such as `aws eks get-token`
        # failed or was throttled): no request was sent; the next call tries again.
        raise KubeError(f"{what}: could not get Kubernetes credentials ({_one_line(error)})") from None
    except pydantic.ValidationError as error:
        # The client (kubernetes >= 35) validates arguments and answers against its models.
        detail = " ".join(str(error).split())
        raise KubeError(f"{what}: the Kubernetes client rejected the request or the server's answer ({detail})") from None


def api_error(what: str, error: ApiException) -> KubeError:
    """An HTTP error answer. A real API server answers errors with a JSON Status; anything else
    (an HTML page) is summarised in one line, and a 404 that is not a Status means the address is
    not a Kubernetes API server."""
    status = error.status
    is_status, reason, message = _status_details(error)
    if status == 401:
        return KubeConfigurationError(
            f"{what}: the Kubernetes API server refused the credentials (HTTP 401 {reason or 'Unauthorized'}); "
            "check the kubeconfig's user (token, certificate, exec plugin) or the service account token",
            status, reason)
    if status == 403:
        return KubeConfigurationError(
            f"{what}: HTTP 403 {reason or 'Forbidden'}: {message} (the autoscaler's service account lacks this "
            "permission; see README \"Setup\" for the RBAC it needs)", status, reason)
    if not is_status and status in (404, 405):
        return KubeConfigurationError(
            f"{what}: the server is not a Kubernetes API server ({describe_answer(status, error.body, error.reason or '')}); "
            "check the server address in the kubeconfig", status, reason)
    return KubeError(f"{what}: HTTP {status} {reason}: {message}", status, reason)


def network_error(what: str, error: BaseException) -> KubeError:
    """No answer: a name that does not resolve, a certificate that does not verify or an address
    that is not a URL are configuration; a refused connection or a timeout is weather."""
    cause = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason else error
    if isinstance(cause, DeadlineExceeded):
        return KubeUnreachable(f"{what}: the Kubernetes API server timed out: no complete answer within "
                               f"{cause.seconds:g} s")
    if isinstance(cause, urllib3.exceptions.NameResolutionError):
        host = getattr(cause, "host", None) or getattr(getattr(cause, "conn", None), "host", "")
        return KubeConfigurationError(f"{what}: cannot resolve the Kubernetes API server's host name {host!r}; "
                                      "check the server address in the kubeconfig")
    if isinstance(cause, (urllib3.exceptions.SSLError, ssl.SSLError)):
        return KubeConfigurationError(f"{what}: TLS with the Kubernetes API server failed ({_one_line(cause)}); "
                                      "check the kubeconfig's certificate-authority and server address")
    if isinstance(cause, (urllib3.exceptions.LocationValueError, urllib3.exceptions.LocationParseError)):
        return KubeConfigurationError(f"{what}: the Kubernetes API server address is not a URL ({_one_line(cause)}); "
                                      "check the server address in the kubeconfig")
    return KubeUnreachable(f"{what}: cannot reach the Kubernetes API server ({_network_detail(cause)})")


def _network_detail(cause: BaseException) -> str:
    # NewConnectionError is a ConnectTimeoutError to urllib3, though it is mostly a refusal.
    if isinstance(cause, (urllib3.exceptions.NewConnectionError, ConnectionError)):
        return f"connection failed: {_one_line(cause)}"
    if isinstance(cause, (urllib3.exceptions.TimeoutError, TimeoutError)):
        return f"timed out: {_one_line(cause)}"
    return _one_line(cause)


def _one_line(error: BaseException, limit: int = 240) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _status_details(error: ApiException) -> tuple[bool, str, str]:
    """(whether the body is a Kubernetes Status, reason, message): the Status' own, else the HTTP
    reason and the first line of the body."""
    body = error.body
    try:
        status = json.loads(body or "")
    except (ValueError, TypeError):
        status = None
    if isinstance(status, dict) and (status.get("kind") == "Status" or "message" in status or "reason" in status):
        return True, _first(status.get("reason")) or error.reason or "", _first(status.get("message")) or first_line(body)
    return False, error.reason or "", first_line(body)


def _first(text) -> str:
    return first_line(text) if isinstance(text, str) else ""
