"""The AWS wire protocol as far as the fake's middleware needs it.

Reads which service, region and action a WSGI request is for (without consuming its body), and
writes the error documents botocore parses for the Query, EC2 and JSON protocols.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from werkzeug.wrappers import Response

AUTOSCALING_XMLNS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"


@dataclass(frozen=True)
class AwsRequest:
    """One API request: service and region from the SigV4 credential scope, action from the body."""

    service: str | None
    region: str | None
    action: str | None
    params: dict[str, str]
    is_json: bool

    def param(self, name: str) -> str | None:
        return self.params.get(name)


def read_request(environ: dict[str, Any]) -> AwsRequest:
    """Parse a request and put its body back, so moto can read it again."""
    body = _read_body(environ)
    service, region = _credential_scope(environ.get("HTTP_AUTHORIZATION", ""))
    target = environ.get("HTTP_X_AMZ_TARGET")
    params: dict[str, str] = {}
    if target:
        action = target.rsplit(".", 1)[-1]
    else:
        content_type = environ.get("CONTENT_TYPE", "")
        form = body.decode("utf-8", "replace") if "x-www-form-urlencoded" in content_type else ""
        query = f"{environ.get('QUERY_STRING', '')}&{form}"
        params = {key: values[0] for key, values in parse_qs(query, keep_blank_values=True).items()}
        action = params.get("Action") or f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '/')}"
    return AwsRequest(service=service, region=region, action=action, params=params, is_json=bool(target))


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _credential_scope(authorization: str) -> tuple[str | None, str | None]:
    # "AWS4-HMAC-SHA256 Credential=KEY/20261127/us-east-1/autoscaling/aws4_request, ..."
    marker = "Credential="
    start = authorization.find(marker)
    if start < 0:
        return None, None
    scope = authorization[start + len(marker) :].split(",", 1)[0].split("/")
    if len(scope) != 5:
        return None, None
    return scope[3].lower(), scope[2]


def error_response(request: AwsRequest, status: int, code: str, message: str) -> Response:
    """An AWS error in the shape the request's protocol uses."""
    request_id = str(uuid.uuid4())
    if request.is_json:
        body = json.dumps({"__type": code, "message": message})
        return Response(
            body,
            status=status,
            content_type="application/x-amz-json-1.1",
            headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": code},
        )
    if request.service == "ec2":
        xml = (
            "<?xml version='1.0' encoding='UTF-8'?>"
            f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"</Error></Errors><RequestID>{request_id}</RequestID></Response>"
        )
    else:
        kind = "Receiver" if status >= 500 else "Sender"
        xml = (
            f'<ErrorResponse xmlns="{AUTOSCALING_XMLNS}"><Error><Type>{kind}</Type>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    return Response(xml, status=status, content_type="text/xml")


def xml_response(xml: str) -> Response:
    return Response(xml, status=200, content_type="text/xml")


def xml_element(name: str, value: object | None) -> str:
    """<Name>value</Name>, or nothing for a missing value (AWS omits empty optional fields)."""
    if value is None:
        return ""
    return f"<{name}>{escape(str(value))}</{name}>"


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
