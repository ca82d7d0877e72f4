"""Build the Kubernetes API client: --kubeconfig, else the in-cluster service account.

Every call of the client is bounded twice: REQUEST_TIMEOUT (connect, read) unless the caller gives
its own, and a stalled read is not retried, so a server that accepts a connection and never answers
fails the call in seconds; and CALL_DEADLINE_SECONDS for the whole call, its answer's body
included, so a server that drips bytes fails it too (README "Timeouts and signals").
"""
from __future__ import annotations

import logging
import shutil
from numbers import Real
from typing import Any, NoReturn, Optional
from urllib.parse import urlsplit

import urllib3
import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from kubernetes.config.config_exception import ConfigException

from .deadline import DeadlineExceeded, call_with_deadline

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = (5, 10)  # seconds: to connect, and between two reads of one answer
# A refused or failed connection is tried once more; a read that timed out is not (it waited
# long enough), nor an error status (the loop decides what to do with it).
RETRIES = urllib3.Retry(total=1, connect=1, read=0, status=0, other=0, redirect=0, raise_on_status=False)
# Seconds for a whole call, connecting, the answer's body and the retried connection included:
# twice the read timeout, so an answer arriving slowly but steadily (a page of 500 pods takes
# well under a second) is never cut, and a dripping one costs the loop 20 s, not for ever.
CALL_DEADLINE_SECONDS = 20
# Seconds to load a kubeconfig, its credential command included (aws eks get-token takes 1-2 s).
LOAD_DEADLINE_SECONDS = 30


class KubeConfigError(ValueError):
    """The kubeconfig or the in-cluster environment cannot give a usable client."""


class BoundedApiClient(kube_client.ApiClient):
    """The official client, with REQUEST_TIMEOUT on every call that does not set its own, and a
    total deadline on every call: CALL_DEADLINE_SECONDS, or the caller's own timeout when it is
    one number (the client's "in all": Events and the Lease give 5 s, a release at exit less)."""

    def call_api(self, method, url, *args, **kwargs):
        if kwargs.get("_request_timeout") is None and len(args) < 4:
            kwargs["_request_timeout"] = REQUEST_TIMEOUT
        timeout = kwargs["_request_timeout"] if len(args) < 4 else args[3]
        seconds = min(float(timeout), CALL_DEADLINE_SECONDS) if isinstance(timeout, Real) else CALL_DEADLINE_SECONDS
        call = super().call_api  # type: ignore[misc]  # the stubs do not list it
        answered: list = []

        def call_and_read():
            response = call(method, url, *args, **kwargs)
            answered.append(response)
            # The client reads the body after call_api returns (RESTResponse.read caches it, and
            # so does the raw response a _preload_content=False caller reads): read it here, within
            # the deadline. Nothing here streams a body (no watch) that would need it left unread.
            response.read()
            return response

        try:
            return call_with_deadline(seconds, f"{method} {urlsplit(url).path}", call_and_read)
        except DeadlineExceeded:
            for response in answered:
                _stop_reading(response)
            raise


def _stop_reading(response) -> None:
    """The call was given up while its thread read a body that trickles in: shut the socket down
    for reading, so that the thread ends now (urllib3's HTTPResponse.shutdown exists for this)
    rather than keep a thread and a connection for as long as the server drips. A call whose
    headers never came still waits out its read timeout, or the server."""
    try:
        response.response.shutdown()
    except (AttributeError, ValueError, RuntimeError, OSError):
        pass  # already read to the end and released to the pool, or the socket is gone: nothing to stop


def connect(kubeconfig: Optional[str]) -> kube_client.ApiClient:
    configuration = kube_client.Configuration()
    try:
        if kubeconfig:
            log.debug("Using kubeconfig %s", kubeconfig)
            check_kubeconfig(kubeconfig)
            # Loading runs the user's credential command, if any (aws eks get-token...), and the
            # client waits for it without a timeout: one that hangs or waits for input would hold
            # the start, signals included.
            call_with_deadline(LOAD_DEADLINE_SECONDS, "load the kubeconfig", kube_config.load_kube_config,
                               config_file=kubeconfig, client_configuration=configuration, persist_config=False)
        else:
            log.debug("Using kube service account")
            kube_config.load_incluster_config(client_configuration=configuration)
    except KubeConfigError:
        raise
    except DeadlineExceeded:
        raise KubeConfigError(f"--kubeconfig {kubeconfig}: loading it did not finish within {LOAD_DEADLINE_SECONDS:g} s; "
                              "its user's credential command (exec) may be hung or waiting for input") from None
    except ConfigException as error:
        where = f"--kubeconfig {kubeconfig}" if kubeconfig else "in-cluster service account (no --kubeconfig given)"
        raise KubeConfigError(f"{where}: {_one_line(error)}") from None
    except (yaml.YAMLError, OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        # The shape was checked; what is left fails inside the loader (a certificate file that is not one...).
        raise KubeConfigError(f"--kubeconfig {kubeconfig}: not a usable kubeconfig ({type(error).__name__}: "
                              f"{_one_line(error)})") from None
    # The client hands it to urllib3, which takes a Retry (the stubs say int).
    configuration.retries = RETRIES  # type: ignore[assignment]
    return BoundedApiClient(configuration)


def check_kubeconfig(path: str) -> None:
    """Raise KubeConfigError naming what is wrong when the file is not YAML or not shaped like a
    kubeconfig (the loader would fail with a TypeError or a KeyError deep inside)."""
    where = f"--kubeconfig {path}"
    try:
        with open(path, encoding="utf-8") as file:
            data = yaml.safe_load(file)
    except OSError as error:
        raise KubeConfigError(f"{where}: cannot read it ({error.strerror or error})") from None
    except UnicodeDecodeError:
        raise KubeConfigError(f"{where}: not a text file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or _one_line(error)
        raise KubeConfigError(f"{where}: not valid YAML{line} ({problem})") from None

    def fail(message: str) -> NoReturn:
        raise KubeConfigError(f"{where}: not a kubeconfig: {message}")

    if not isinstance(data, dict):
        fail(f"expected a mapping (apiVersion, clusters, contexts, users, current-context), got {_kind(data)}")
    entries: dict = {}
    for section, inner in (("clusters", "cluster"), ("contexts", "context"), ("users", "user")):
        value = data.get(section)
        if value is None:
            entries[section] = {}
            continue
        if not isinstance(value, list):
            fail(f"'{section}' must be a list, got {_kind(value)}")
        entries[section] = {}
        for index, entry in enumerate(value):
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                fail(f"{section}[{index}] must be a mapping with a 'name'")
            if not isinstance(entry.get(inner) or {}, dict):
                fail(f"{section}[{index}].{inner} must be a mapping, got {_kind(entry.get(inner))}")
            entries[section][entry["name"]] = entry.get(inner) or {}
    current = data.get("current-context")
    if current is None or current == "":
        return  # the loader says there is no current context, in one line
    if not isinstance(current, str):
        fail(f"'current-context' must be a name, got {_kind(current)}")
    context = entries["contexts"].get(current)
    if context is None:
        return  # the loader names the missing context
    for key in ("cluster", "user"):
        if context.get(key) is not None and not isinstance(context.get(key), str):
            fail(f"context {current!r}: '{key}' must be a name, got {_kind(context.get(key))}")
    cluster = entries["clusters"].get(context.get("cluster"))
    if cluster is not None:
        server = cluster.get("server")
        if not isinstance(server, str):
            fail(f"cluster {context.get('cluster')!r}: 'server' must be a URL like https://host:6443, got {_kind(server)}")
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            fail(f"cluster {context.get('cluster')!r}: server {server!r} is not a URL like https://host:6443")
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            fail(f"cluster {context.get('cluster')!r}: server {server!r} has a port that is not a number")
    user = entries["users"].get(context.get("user"))
    for key, value in (user or {}).items():
        if key in ("token", "tokenFile", "client-certificate", "client-key", "client-certificate-data",
                   "client-key-data", "username", "password") and not isinstance(value, str):
            fail(f"user {context.get('user')!r}: '{key}' must be a string, got {_kind(value)}")
    plugin = (user or {}).get("exec")
    if plugin is not None:
        # The loader logs a missing plugin and goes on without credentials: every call would then
        # be refused 401, which says nothing about the plugin.
        command = plugin.get("command") if isinstance(plugin, dict) else None
        if not isinstance(command, str) or not command:
            fail(f"user {context.get('user')!r}: 'exec' must be a mapping with a 'command'")
        if shutil.which(command) is None:
            raise KubeConfigError(f"{where}: user {context.get('user')!r} gets its credentials from the command "
                                  f"{command!r}, which is not installed here (not found on PATH); install it, or use "
                                  "a kubeconfig with a token")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: f"the text {str(value)[:40]!r}", bool: f"{value}",
            int: f"the number {value}", float: f"the number {value}"}.get(type(value), type(value).__name__)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:299] + "…"
