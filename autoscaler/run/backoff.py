"""When the loop slows down: an API that asked us to (throttling), and the longest it waits.

Shared by the loop, which backs off, and the metrics, which count throttled calls and derive the
health window from the cap.
"""
from __future__ import annotations

from ..act.kube_actuator import EvictionRefused
from ..clients.aws_errors import CloudError
from ..clients.kube_errors import KubeError

MAX_BACKOFF_SECONDS = 600
# AWS's error codes for "slow down" (botocore's adaptive retries have already been spent on them).
THROTTLING_CODES = frozenset({"Throttling", "ThrottlingException", "RequestLimitExceeded"})


def backoff_cap(sleep: float) -> float:
    """The longest the loop ever waits: 600 s, or --sleep when that is longer."""
    return max(MAX_BACKOFF_SECONDS, sleep)


def is_throttling(error: BaseException) -> bool:
    """An API asked us to slow down: AWS's throttling codes, or Kubernetes' 429 other than an
    eviction's (there 429 means a disruption budget holds the pod, not a rate limit)."""
    if isinstance(error, CloudError):
        return error.code in THROTTLING_CODES
    return isinstance(error, KubeError) and error.status == 429 and not isinstance(error, EvictionRefused)
