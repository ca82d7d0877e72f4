"""One error type for every failed Kubernetes API call, with a message an operator can act on."""
from __future__ import annotations

import json
from typing import Callable, Optional

import pydantic
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException


class KubeError(RuntimeError):
    """A Kubernetes API call failed. ``status`` is the HTTP status, or None for a network error."""

    def __init__(self, message: str, status: Optional[int] = None, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason


def kube_call(what: str, function: Callable, *args, **kwargs):
    """Call the client, turning its exceptions into KubeError naming ``what`` was attempted."""
    try:
        return function(*args, **kwargs)
    except ApiException as error:
        reason, message = _status_details(error)
        hint = " (the autoscaler's service account lacks this permission)" if error.status == 403 else ""
        raise KubeError(f"{what}: HTTP {error.status} {reason}: {message}{hint}", error.status, reason) from None
    except (urllib3.exceptions.HTTPError, OSError) as error:
        raise KubeError(f"{what}: cannot reach the Kubernetes API server ({error})") from None
    except ConfigException as error:
        # Raised while the client refreshes its token (an exec plugin such as `aws eks get-token`
        # failed or was throttled): no request was sent; the next call tries again.
        raise KubeError(f"{what}: could not get Kubernetes credentials ({error})") from None
    except pydantic.ValidationError as error:
        # The client (kubernetes >= 35) validates arguments and answers against its models.
        detail = " ".join(str(error).split())
        raise KubeError(f"{what}: the Kubernetes client rejected the request or the server's answer ({detail})") from None


def _status_details(error: ApiException) -> tuple[str, str]:
    try:
        body = json.loads(error.body or "{}")
    except (ValueError, TypeError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    return body.get("reason") or error.reason or "", body.get("message") or (error.body or "").strip()[:200]
