"""A fake Kubernetes API server on 127.0.0.1: real HTTP, real JSON, stateful, strict.

The official ``kubernetes`` client and ``kubectl`` reach it through an ordinary kubeconfig
(``write_kubeconfig``); tests and simulators also drive it directly through its Python API
(``add``, ``get``, ``list``, ``update``, ``delete``), record what clients sent (``requests``,
``mutating_requests``) and inject failures (``fail_next``).

    with FakeKubeApi() as api:
        api.add(make_node("n1"))
        kubeconfig = api.write_kubeconfig(tmp_path / "kubeconfig")

Served: discovery (``/version``, ``/api``, ``/api/v1``, ``/apis``, ``/apis/{group}[/{version}]``),
the resource types of kube_resources, GET/LIST/POST/PUT/PATCH/DELETE on them, and the
``status``, ``eviction`` and ``binding`` subresources. Not served: watch (405), deletecollection
(405), OpenAPI (404), server-side apply (415). Lists are plain JSON even when a client asks for
a Table; kubectl falls back to printing them itself.
"""
from __future__ import annotations

import builtins
import json
import logging
import re
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, NamedTuple, Optional, Union
from urllib.parse import parse_qs, urlsplit

from .net import send_small_replies_at_once
from .kube_patch import PATCH_TYPES
from .kube_resources import (
    REASONS_BY_CODE, SERVER_VERSION, KubeApiError, ResourceType, api_group_document,
    api_group_list_document, api_resource_list_document, api_versions_document, bad_request,
    find_resource_type, group_versions, method_not_allowed, path_not_found, resource_type_named,
    resource_type_of,
)
from .kube_selectors import SelectorError, parse_field_selector, parse_label_selector
from .kube_store import KubeStore, clone
from .kube_subresources import bind, evict

log = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz"})


class RecordedRequest(NamedTuple):
    method: str
    path: str
    query: dict  # parameter -> last value


@dataclass
class _Fault:
    method: str
    path_pattern: re.Pattern
    status: int
    remaining: int
    message: str
    retry_after_seconds: Optional[int]

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and bool(self.path_pattern.search(path))


@dataclass(frozen=True)
class _Target:
    """What a resource path names."""
    resource_type: ResourceType
    namespace: Optional[str]
    name: Optional[str]
    subresource: Optional[str]


class FakeKubeApi:
    def __init__(self, clock: Optional[Callable[[], datetime]] = None, request_log_limit: int = 100_000):
        """``clock`` stamps creationTimestamp (a simulator passes its simulated clock); the
        request log keeps the latest ``request_log_limit`` requests, so a long sandbox run
        does not grow without bound."""
        self.store = KubeStore(clock)
        self._log_lock = threading.Lock()
        self._requests: deque[RecordedRequest] = deque(maxlen=request_log_limit)
        self._faults: list[_Fault] = []
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "FakeKubeApi":
        server = _Server(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.api = self
        send_small_replies_at_once(server)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-kube-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def __enter__(self) -> "FakeKubeApi":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake API server is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def write_kubeconfig(self, path: Union[str, Path]) -> Path:
        """A kubeconfig (JSON is YAML) whose current context points at this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake-user", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake-user",
                                                      "namespace": "default"}}],
            "current-context": "fake",
            "preferences": {},
        }
        path = Path(path)
        path.write_text(json.dumps(config, indent=2))
        return path

    # -- Python API: objects are copies, the store is never exposed --------------------------

    def add(self, obj: dict) -> dict:
        """Create ``obj`` (its kind from apiVersion/kind); creates a missing namespace first.
        Raises KubeApiError (AlreadyExists) if the name is taken."""
        return clone(self.store.add(resource_type_of(obj), obj))

    def put(self, obj: dict) -> dict:
        """Create ``obj``, or replace the stored one of that name, status included."""
        return clone(self.store.put(resource_type_of(obj), obj))

    def get(self, kind: str, name: str, namespace: Optional[str] = None) -> Optional[dict]:
        """``kind`` as ``"Pod"``, ``"pods"`` or ``"po"``; None when absent. Namespaced kinds
        default to the ``default`` namespace."""
        resource_type = resource_type_named(kind)
        found = self.store.find(resource_type, _namespace_for(resource_type, namespace), name)
        return None if found is None else clone(found)

    def list(self, kind: str, namespace: Optional[str] = None, label_selector: Optional[str] = None,
             field_selector: Optional[str] = None) -> list[dict]:
        """All objects of a kind (all namespaces unless given), sorted by namespace and name."""
        resource_type = resource_type_named(kind)
        predicates = _predicates(resource_type, label_selector, field_selector)
        items, _, _ = self.store.list_page(resource_type, namespace, predicates)
        return clone(items)

    def update(self, kind: str, name: str, namespace: Optional[str],
               change: Callable[[dict], Optional[dict]]) -> dict:
        """Apply ``change`` to a copy (edit in place or return a new object) and store it with a
        new resourceVersion; unlike a client write, status changes are kept. NotFound raises."""
        resource_type = resource_type_named(kind)
        return clone(self.store.update(resource_type, _namespace_for(resource_type, namespace), name, change))

    def delete(self, kind: str, name: str, namespace: Optional[str] = None) -> Optional[dict]:
        """Remove an object; returns it, or None if there was none."""
        resource_type = resource_type_named(kind)
        try:
            return clone(self.store.delete(resource_type, _namespace_for(resource_type, namespace), name))
        except KubeApiError as error:
            if error.code == 404:
                return None
            raise

    @property
    def resource_version(self) -> int:
        return self.store.resource_version

    # -- request log and fault injection -----------------------------------------------------

    @property
    def requests(self) -> builtins.list[RecordedRequest]:
        """Every HTTP request received so far, in order (a copy)."""
        with self._log_lock:
            return list(self._requests)

    def mutating_requests(self) -> builtins.list[RecordedRequest]:
        """Requests that change something: a review (a POST that stores nothing) does not."""
        return [r for r in self.requests if r.method in MUTATING_METHODS and not r.path.endswith("reviews")]

    def clear_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    def fail_next(self, method: str, path_regex: str, status: int = 500, count: int = 1,
                  message: Optional[str] = None, retry_after_seconds: Optional[int] = None) -> None:
        """Answer the next ``count`` requests whose method matches (``"*"`` for any) and whose
        path matches ``path_regex`` (re.search) with an error Status of ``status``, and a
        ``Retry-After`` header when ``retry_after_seconds`` is given (clients then retry reads)."""
        fault = _Fault(method.upper(), re.compile(path_regex), status, count,
                       message or f"injected failure ({status}) for {method.upper()} {path_regex}",
                       retry_after_seconds)
        with self._log_lock:
            self._faults.append(fault)

    def _record(self, method: str, path: str, query: dict) -> Optional[KubeApiError]:
        """Log a request; the injected error to answer it with, if one matches."""
        with self._log_lock:
            self._requests.append(RecordedRequest(method, path, query))
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    headers = ({} if fault.retry_after_seconds is None
                               else {"Retry-After": str(fault.retry_after_seconds)})
                    return KubeApiError(fault.status, REASONS_BY_CODE.get(fault.status, "InternalError"),
                                        fault.message, headers=headers)
        return None

    # -- HTTP routing ------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, content_type: str,
               body: bytes) -> tuple[int, Union[dict, str]]:
        """(HTTP status, JSON document or plain text) for one request."""
        if path in HEALTH_PATHS:
            return 200, "ok"
        if path == "/version":
            return _read_only(method, SERVER_VERSION)
        if path == "/api":
            return _read_only(method, api_versions_document(self.url.split("//", 1)[1]))
        if path == "/apis":
            return _read_only(method, api_group_list_document())
        segments = path.strip("/").split("/")
        if segments[0] == "api" and len(segments) >= 2 and segments[1] == "v1":
            group, version, rest = "", "v1", segments[2:]
        elif segments[0] == "apis" and len(segments) == 2 and segments[1] in {g for g, _ in group_versions()}:
            return _read_only(method, api_group_document(segments[1]))
        elif segments[0] == "apis" and len(segments) >= 3 and (segments[1], segments[2]) in group_versions():
            group, version, rest = segments[1], segments[2], segments[3:]
        else:
            raise path_not_found()
        if not rest:
            return _read_only(method, api_resource_list_document(group, version))
        target = _resolve_target(group, version, rest)
        if target.name is None:
            return self._handle_collection(method, target, query, body)
        if target.subresource is None:
            return self._handle_object(method, target, query, content_type, body)
        return self._handle_subresource(method, target, content_type, body)

    def _handle_collection(self, method: str, target: _Target, query: dict, body: bytes):
        resource_type, namespace = target.resource_type, target.namespace
        if method == "GET":
            if query.get("watch") in ("true", "1"):
                raise method_not_allowed("watch")
            try:
                limit = int(query.get("limit") or 0)
            except ValueError:
                raise bad_request(f"limit must be an integer, not {query['limit']!r}") from None
            predicates = _predicates(resource_type, query.get("labelSelector"), query.get("fieldSelector"))
            items, resource_version, token = self.store.list_page(
                resource_type, namespace, predicates, max(limit, 0), query.get("continue"))
            metadata = {"resourceVersion": resource_version}
            if token:
                metadata["continue"] = token
            return 200, {"kind": resource_type.list_kind, "apiVersion": resource_type.api_version,
                         "metadata": metadata, "items": items}
        if method == "POST" and resource_type.kind == "SelfSubjectAccessReview":
            # Every authenticated user may ask; the fake has no RBAC, so the answer is yes.
            review = _json_body(body)
            return 201, {**review, "metadata": {}, "status": {"allowed": True}}
        if method == "POST" and (namespace is not None or not resource_type.namespaced):
            return 201, self.store.create(resource_type, namespace, _json_body(body))
        raise method_not_allowed(method)

    def _handle_object(self, method: str, target: _Target, query: dict, content_type: str, body: bytes):
        resource_type, namespace, name = target.resource_type, target.namespace, target.name
        assert name is not None, "an object path names its object"
        if method == "GET":
            return 200, self.store.get(resource_type, namespace, name)
        if method == "PUT":
            return 200, self.store.replace(resource_type, namespace, name, _json_body(body))
        if method == "PATCH":
            return 200, self.store.patch(resource_type, namespace, name, _patch_type(content_type),
                                         _json_body(body))
        if method == "DELETE":
            options = _json_body(body) if body.strip() else {}
            preconditions = options.get("preconditions") if isinstance(options, dict) else None
            return 200, self.store.delete(resource_type, namespace, name, preconditions)
        raise method_not_allowed(method)

    def _handle_subresource(self, method: str, target: _Target, content_type: str, body: bytes):
        resource_type, namespace, name = target.resource_type, target.namespace, target.name
        subresource = target.subresource
        assert name is not None, "a subresource path names its object"
        if subresource == "status":
            if method == "GET":
                return 200, self.store.get(resource_type, namespace, name)
            if method == "PUT":
                return 200, self.store.replace(resource_type, namespace, name, _json_body(body), "status")
            if method == "PATCH":
                return 200, self.store.patch(resource_type, namespace, name, _patch_type(content_type),
                                             _json_body(body), "status")
        elif method == "POST" and subresource == "eviction" and namespace is not None:
            return 201, evict(self.store, namespace, name, _json_body(body))
        elif method == "POST" and subresource == "binding" and namespace is not None:
            return 201, bind(self.store, namespace, name, _json_body(body))
        raise method_not_allowed(method)


def _namespace_for(resource_type: ResourceType, namespace: Optional[str]) -> Optional[str]:
    return (namespace or "default") if resource_type.namespaced else None


def _predicates(resource_type: ResourceType, label_selector: Optional[str],
                field_selector: Optional[str]) -> tuple:
    try:
        predicates = (parse_label_selector(label_selector),
                      parse_field_selector(field_selector, resource_type.kind))
    except SelectorError as error:
        raise bad_request(str(error)) from None
    return tuple(p for p in predicates if p is not None)


def _read_only(method: str, document: dict) -> tuple[int, dict]:
    if method != "GET":
        raise method_not_allowed(method)
    return 200, document


def _resolve_target(group: str, version: str, rest: list[str]) -> _Target:
    namespace = None
    if (rest[0] == "namespaces" and len(rest) >= 3
            and getattr(find_resource_type(group, version, rest[2]), "namespaced", False)):
        namespace, rest = rest[1], rest[2:]
    resource_type = find_resource_type(group, version, rest[0])
    if resource_type is None or len(rest) > 3 or any(not segment for segment in rest):
        raise path_not_found()
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if resource_type.namespaced and namespace is None and name is not None:
        raise path_not_found()
    if subresource is not None and resource_type.subresource(subresource) is None:
        raise path_not_found()
    return _Target(resource_type, namespace, name, subresource)


def _json_body(body: bytes):
    if not body.strip():
        raise bad_request("the request body is empty")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"couldn't get version/kind; json parse error: {error}") from None


def _patch_type(content_type: str) -> str:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in PATCH_TYPES:
        raise KubeApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted media types "
                           f"include: {', '.join(PATCH_TYPES)}")
    return media_type


class _Server(ThreadingHTTPServer):
    api: FakeKubeApi  # the fake this server answers for


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: paging through 15,000 pods reuses one connection
    server_version = "FakeKubeApi/1"
    timeout = 30  # idle keep-alive connections end instead of pinning a thread

    def log_message(self, format, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self):
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        # Always drained, whatever the method: kubectl sends DeleteOptions with DELETE, and an
        # unread body would corrupt the next request on this keep-alive connection.
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        assert isinstance(self.server, _Server)
        api = self.server.api
        body = self._read_body()
        parts = urlsplit(self.path)
        path = "/" + parts.path.strip("/")
        query = {key: values[-1] for key, values in parse_qs(parts.query, keep_blank_values=True).items()}
        headers = {}
        try:
            fault = api._record(self.command, path, query)
            if fault is not None:
                raise fault
            status, document = api.handle(self.command, path, query,
                                          self.headers.get("Content-Type", ""), body)
        except KubeApiError as error:
            status, document, headers = error.code, error.status(), error.headers
        except Exception as error:  # a bug in the fake must reach the client as a 500, not a hang
            log.exception("fake API server failed on %s %s", self.command, self.path)
            status, document = 500, KubeApiError(500, "InternalError", f"fake API server: {error!r}").status()
        self._send(status, document, headers)

    def _send(self, status: int, document: Union[dict, str], headers: dict) -> None:
        if isinstance(document, str):
            payload, content_type = document.encode(), "text/plain; charset=utf-8"
        else:
            payload, content_type = json.dumps(document).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
