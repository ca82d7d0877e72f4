"""AWS's errors as one type, CloudError, with a message an operator can act on.

Readers and actuators both call AWS and both raise it; neither imports the other for it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

from botocore.exceptions import BotoCoreError, ClientError

ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"})


class CloudError(RuntimeError):
    """An AWS call failed. ``code`` is AWS's error code (or the botocore exception's name)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@contextmanager
def cloud_errors(client: Any, doing: str) -> Iterator[None]:
    """Turn botocore's exceptions into CloudError with a message an operator can act on."""
    try:
        yield
    except ClientError as error:
        details = error.response.get("Error", {})
        code = details.get("Code") or "Unknown"
        aws_message = details.get("Message") or ""
        if code in ACCESS_DENIED_CODES:
            action = f"{client.meta.service_model.signing_name}:{error.operation_name}"
            raise CloudError(code, f"{doing}: access denied; the AWS credentials need the IAM permission "
                                   f"{action} ({aws_message})") from error
        raise CloudError(code, f"{doing}: {code}: {aws_message}") from error
    except BotoCoreError as error:
        raise CloudError(type(error).__name__, f"{doing}: {error}") from error
