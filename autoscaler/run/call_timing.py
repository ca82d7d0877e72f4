"""How long each AWS and Kubernetes API call takes, by operation, for
``kubernetes_ec2_autoscaler_api_request_duration_seconds``.

AWS: botocore's own event hooks on the session, so every client made from it is timed (retries
included: ``before-call`` fires once per API call, whatever botocore retries inside it). Kubernetes:
a wrapper around the client's ``call_api``, the one method every request of the generated client
goes through; the operation is what RBAC would call it (``list nodes``, ``create pods/eviction``),
so the label stays bounded however many objects there are.
"""
from __future__ import annotations

import time
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

# (service, operation, seconds)
Observe = Callable[[str, str, float], None]

_CONTEXT_KEY = "autoscaler_call_started"
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def time_aws_calls(session: Any, observe: Observe) -> None:
    """Time every call of every client later made from this boto3 session."""
    events = session.events

    def started(model: Any, context: dict, **_: Any) -> None:
        context[_CONTEXT_KEY] = (f"{model.service_model.endpoint_prefix}:{model.name}", time.monotonic())

    def finished(context: dict, **_: Any) -> None:
        begun = context.pop(_CONTEXT_KEY, None)
        if begun is not None:
            observe("aws", begun[0], time.monotonic() - begun[1])

    events.register("before-call", started, unique_id="autoscaler-call-timing-start")
    events.register("after-call", finished, unique_id="autoscaler-call-timing-end")
    events.register("after-call-error", finished, unique_id="autoscaler-call-timing-error")


def kube_operation(method: str, url: str) -> str:
    """``GET https://host/api/v1/nodes`` -> ``list nodes``: the verb and resource RBAC checks."""
    parts = urlsplit(url)
    segments = [segment for segment in parts.path.split("/") if segment]
    if segments[:2] == ["api", "v1"]:
        rest = segments[2:]
    elif segments[:1] == ["apis"] and len(segments) >= 3:
        rest = segments[3:]
    else:
        return f"{method.lower()} {parts.path or '/'}"
    if len(rest) > 2 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return f"{method.lower()} {parts.path}"
    resource = rest[0] if len(rest) < 3 else f"{rest[0]}/{rest[2]}"
    collection = len(rest) == 1
    if method.upper() == "GET":
        watching = parse_qs(parts.query).get("watch", [""])[0].lower() == "true"
        verb = "watch" if watching else ("list" if collection else "get")
    else:
        verb = _VERBS.get(method.upper(), method.lower())
    return f"{verb} {resource}"


def time_kube_calls(api_client: Any, observe: Observe) -> None:
    """Time every request this Kubernetes ApiClient sends, failed ones included."""
    call_api = api_client.call_api

    def timed_call_api(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return call_api(method, url, *args, **kwargs)
        finally:
            observe("kubernetes", kube_operation(method, url), time.monotonic() - started)

    api_client.call_api = timed_call_api
