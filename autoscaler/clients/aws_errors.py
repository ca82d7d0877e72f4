"""One error type for every failed AWS call, with a message an operator can act on, and its
configuration kind (CloudConfigurationError) for answers no retry can fix; and the botocore hook
that turns a web page answered in place of the API into one line."""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
    SSLError,
)
from urllib3.exceptions import NameResolutionError

from ..model.config import ConfigurationError
from .http_summary import describe_answer, first_line, looks_like_html

ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnauthorizedAccess"})
# Codes of credentials AWS does not accept: unknown, expired, wrongly signed, or for a region the
# account has not opted in to. No retry fixes them.
CREDENTIAL_CODES = frozenset({
    "InvalidClientTokenId", "UnrecognizedClientException", "AuthFailure", "SignatureDoesNotMatch",
    "IncompleteSignature", "InvalidSignatureException", "MissingAuthenticationToken", "ExpiredToken",
    "ExpiredTokenException", "RequestExpired", "InvalidAccessKeyId", "OptInRequired", "InvalidToken",
})
CREDENTIALS_HINT = ("give --aws-access-key and --aws-secret-key, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                    "a profile (AWS_PROFILE), or an instance or service-account role")
ENDPOINT_HINT = "check AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_EC2, AWS_ENDPOINT_URL_AUTO_SCALING), or unset it"


class CloudError(RuntimeError):
    """An AWS call failed. ``code`` is AWS's error code (or the botocore exception's name)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class CloudConfigurationError(CloudError, ConfigurationError):
    """A failed AWS call that no retry fixes: no credentials or refused ones, a missing permission,
    an endpoint that does not resolve or is not an AWS API."""


class CloudUnreachable(CloudError):
    """No answer: the endpoint refused, dropped or did not answer in time (botocore's own retries
    included). Weather, retried next loop; the actuator stops a plan after two in a row."""


class NotAnAwsAnswer(BotoCoreError):
    """The endpoint answered with a web page, not an AWS API response."""

    fmt = "{description}"


def refuse_web_pages(**event: Any) -> None:
    """botocore's before-parse hook: an HTML answer would otherwise fail deep in the parser (a
    KeyError, or "invalid XML received" followed by the whole page)."""
    response_dict: Mapping[str, Any] = event.get("response_dict") or {}
    body = response_dict.get("body") or b""
    headers: Mapping[str, Any] = response_dict.get("headers") or {}
    content_type = str(headers.get("content-type", "")).lower()
    if "text/html" in content_type or looks_like_html(body):
        raise NotAnAwsAnswer(description=describe_answer(response_dict.get("status_code"), body))


@contextmanager
def cloud_errors(client: Any, doing: str) -> Iterator[None]:
    """Turn botocore's exceptions into CloudError with a message an operator can act on, and
    CloudConfigurationError for those no retry fixes."""
    try:
        yield
    except ClientError as error:
        raise client_error(client, doing, error) from error
    except BotoCoreError as error:
        raise botocore_error(doing, error) from error


def client_error(client: Any, doing: str, error: ClientError) -> CloudError:
    details = error.response.get("Error") or {}
    code = details.get("Code") or "Unknown"
    aws_message = first_line(details.get("Message") or "")
    metadata: Mapping[str, Any] = error.response.get("ResponseMetadata") or {}
    status = metadata.get("HTTPStatusCode")
    if code in ACCESS_DENIED_CODES:
        action = f"{client.meta.service_model.signing_name}:{error.operation_name}"
        return CloudConfigurationError(code, f"{doing}: access denied; the AWS credentials need the IAM permission "
                                             f"{action} ({aws_message})")
    if code in CREDENTIAL_CODES:
        return CloudConfigurationError(code, f"{doing}: AWS refused the credentials ({code}: {aws_message}); "
                                             + CREDENTIALS_HINT)
    if code == "Unknown" and status is not None and 400 <= status < 500 and status != 429:
        # An error body that is not AWS's: the endpoint is something else (a web server, a proxy).
        return CloudConfigurationError(code, f"{doing}: the endpoint is not an AWS API (it answered HTTP {status} "
                                             f"without an AWS error); {ENDPOINT_HINT}")
    return CloudError(code, f"{doing}: {code}: {aws_message}" + (f" (HTTP {status})" if code == "Unknown" and status else ""))


def botocore_error(doing: str, error: BotoCoreError) -> CloudError:
    name = type(error).__name__
    text = first_line(str(error), 240)
    if isinstance(error, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, ProfileNotFound)):
        return CloudConfigurationError(name, f"{doing}: no usable AWS credentials ({text}); {CREDENTIALS_HINT}")
    if isinstance(error, SSLError):
        return CloudConfigurationError(name, f"{doing}: TLS failed ({text}); check AWS_CA_BUNDLE and the endpoint")
    if isinstance(error, NotAnAwsAnswer):
        return CloudConfigurationError(name, f"{doing}: the endpoint is not an AWS API (it answered {text}); {ENDPOINT_HINT}")
    if isinstance(error, EndpointConnectionError) and _is_name_resolution(error):
        hint = ENDPOINT_HINT if any(key.startswith("AWS_ENDPOINT_URL") for key in os.environ) else \
            "check the DNS and network of the autoscaler (or HTTPS_PROXY)"
        return CloudConfigurationError(name, f"{doing}: {text}: the host name does not resolve; {hint}")
    if isinstance(error, HTTPClientError):
        return CloudUnreachable(name, f"{doing}: {text}")
    return CloudError(name, f"{doing}: {text}")


def _is_name_resolution(error: EndpointConnectionError) -> bool:
    cause = error.kwargs.get("error")
    return isinstance(cause, (NameResolutionError, socket.gaierror)) or isinstance(
        getattr(cause, "__context__", None), socket.gaierror)
