"""Prometheus metrics and the liveness check, served on one port: ``/metrics`` and ``/healthz``.

Each ``Metrics`` has its own ``CollectorRegistry`` (not prometheus_client's global one), so tests
and the sandbox can run several autoscalers in one process; the registry gets the same process,
platform and garbage-collector collectors the global one has (``process_*``, ``python_*``).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .. import __version__
from ..clients.aws_errors import CloudError
from ..clients.kube_errors import KubeError
from ..model import plan as p
from ..decide.group_health import FailureKind
from .backoff import backoff_cap, is_throttling
from .observer import LoopObserver
from ..model.objects import NodeState

# No `_created` series beside every counter and histogram: nobody alerts on them, and they double
# the series a scrape returns. Process-wide, as prometheus_client offers it.
disable_created_metrics()

log = logging.getLogger(__name__)

LOOP_SECONDS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
CALL_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
PHASES = ("read", "decide", "act")
EVICTION_RESULTS = ("evicted", "blocked", "failed")  # blocked: a PodDisruptionBudget said not now (429)
# failed_scale_ups_total{reason}: why a group was timed out (group_health), or the call failed.
SCALE_UP_FAILURE_REASONS = (*(kind.value for kind in FailureKind), "silent-launch-failure", "spot-outbid", "api-error")
LOOPS_ALLOWANCE_SECONDS = 180  # the time two loops themselves may take (a large cluster's reads)
SCALE_IN_ACTIONS = (p.Cordon, p.EvictPod, p.TerminateInstance, p.DeleteNode)


def health_window(sleep: float) -> float:
    """How long the autoscaler may go without a successful loop and still be healthy: the longest
    gap one failed loop makes between two successful ones -- ``--sleep``, the failed loop, the
    longest wait of the backoff (its cap), the next loop -- with three minutes for the two loops."""
    return sleep + backoff_cap(sleep) + LOOPS_ALLOWANCE_SECONDS


_NODE_STATES = frozenset(state.value for state in NodeState)


def scale_in_reason(action) -> str:
    """The node state scale in acted on (its reasons start with it), for a bounded label; an
    instance that never became a node has none."""
    state = action.reason.split(":", 1)[0]
    if state in _NODE_STATES:
        return state
    return "no-node" if isinstance(action, p.TerminateInstance) and not action.node else "other"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def service_of(error: BaseException) -> str:
    """Which API an exception came from, for ``kubernetes_ec2_autoscaler_api_errors_total{service}``."""
    if isinstance(error, KubeError):
        return "kubernetes"
    if isinstance(error, CloudError):
        return "aws"
    # What the clients' own wrappers did not translate: by the library that raised it.
    for cls in type(error).__mro__:
        if cls.__module__.startswith(("kubernetes", "urllib3")):
            return "kubernetes"
        if cls.__module__.startswith(("botocore", "boto3")):
            return "aws"
        if cls.__module__.startswith("requests"):
            return "slack"
    return "other"


class Metrics(LoopObserver):
    def __init__(self, registry: Optional[CollectorRegistry] = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            r.register(collector)
        self.build_info = Gauge("kubernetes_ec2_autoscaler_build_info", "Always 1; the version of the running autoscaler.",
                                ["version"], registry=r)
        self.build_info.labels(__version__).set(1)
        self.phase_seconds = Histogram("kubernetes_ec2_autoscaler_loop_phase_duration_seconds",
                                       "Time each phase of a loop took: read the world, decide, act.", ["phase"],
                                       buckets=LOOP_SECONDS_BUCKETS, registry=r)
        self.call_seconds = Histogram("kubernetes_ec2_autoscaler_api_request_duration_seconds",
                                      "Time one API call took (AWS: retries included), by service and operation.",
                                      ["service", "operation"], buckets=CALL_SECONDS_BUCKETS, registry=r)
        self.failed_scale_ups = Counter("kubernetes_ec2_autoscaler_failed_scale_ups",
                                        "Scale ups that failed: a group timed out after its launch failed (by why), "
                                        "or raising it failed (api-error).", ["reason"], registry=r)
        self.evicted_pods = Counter("kubernetes_ec2_autoscaler_evicted_pods", "Evictions of a drain, by result.", ["result"], registry=r)
        self.scaled_in = Counter("kubernetes_ec2_autoscaler_scaled_in_nodes",
                                 "Instances terminated or Node objects deleted by scale in, by the node's state.",
                                 ["reason"], registry=r)
        for phase in PHASES:
            self.phase_seconds.labels(phase)
        for reason in SCALE_UP_FAILURE_REASONS:
            self.failed_scale_ups.labels(reason)
        for result in EVICTION_RESULTS:
            self.evicted_pods.labels(result)
        self._timed_out_before: dict = {}  # Group.key -> kind, as of the previous loop
        self.loop_seconds = Histogram("kubernetes_ec2_autoscaler_loop_duration_seconds", "Time one loop took: read, decide, act.",
                                      buckets=LOOP_SECONDS_BUCKETS, registry=r)
        self.loops = Counter("kubernetes_ec2_autoscaler_loops", "Loops run, by result.", ["result"], registry=r)
        self.last_success = Gauge("kubernetes_ec2_autoscaler_last_successful_loop_timestamp_seconds",
                                  "Unix time the last successful loop ended.", registry=r)
        self.pending = Gauge("kubernetes_ec2_autoscaler_pending_pods", "Pending pods without a node, at the last loop.", registry=r)
        self.infeasible = Gauge("kubernetes_ec2_autoscaler_pending_pods_infeasible",
                                "Pending pods that fit no instance type their placement allows.", registry=r)
        self.unaccounted = Gauge("kubernetes_ec2_autoscaler_pending_pods_unaccounted",
                                 "Pending pods no group could take (timed out, full, too small).", registry=r)
        self.model_mismatches = Counter(
            "kubernetes_ec2_autoscaler_model_mismatches", "Pending pods found waiting where the model says they fit (the scheduler "
            "disagrees): no more instances are bought for them there.", registry=r)
        self.gated = Gauge("kubernetes_ec2_autoscaler_pending_pods_gated",
                           "Pending pods with scheduling gates or unbound claims: not demand, not in "
                           "kubernetes_ec2_autoscaler_pending_pods.", registry=r)
        self.nodes = Gauge("kubernetes_ec2_autoscaler_nodes", "Nodes by the scale-in state of the last loop.", ["state"], registry=r)
        self.desired = Gauge("kubernetes_ec2_autoscaler_group_desired_capacity", "Desired capacity after the last loop.",
                             ["group", "region"], registry=r)
        self.actual = Gauge("kubernetes_ec2_autoscaler_group_instances", "Instances in the group at the last loop.",
                            ["group", "region"], registry=r)
        self.max_size = Gauge("kubernetes_ec2_autoscaler_group_max_size", "Max size of the group.", ["group", "region"], registry=r)
        self.timed_out = Gauge("kubernetes_ec2_autoscaler_group_timed_out",
                               "1 while scale up skips the group after launch failures.", ["group", "region"], registry=r)
        self.timed_out_total = Gauge("kubernetes_ec2_autoscaler_groups_timed_out", "Groups scale up skips after launch failures.",
                                     registry=r)
        self.actions = Counter("kubernetes_ec2_autoscaler_actions", "Actions applied (or, in a dry run, logged), by type.",
                               ["action"], registry=r)
        self.failed_actions = Counter("kubernetes_ec2_autoscaler_failed_actions", "Actions that failed, by type.", ["action"], registry=r)
        self.scaled_up = Counter("kubernetes_ec2_autoscaler_scale_up_instances", "Instances added to desired capacity by scale up.",
                                 ["group", "region"], registry=r)
        self.scale_in_actions = Counter("kubernetes_ec2_autoscaler_scale_in_actions",
                                        "Cordons, evictions, terminations and node deletions applied.",
                                        ["action"], registry=r)
        self.api_errors = Counter("kubernetes_ec2_autoscaler_api_errors", "Failed API calls, by service.", ["service"], registry=r)
        self.throttled = Counter("kubernetes_ec2_autoscaler_api_throttled", "API calls refused for rate (also API errors), by service.",
                                 ["service"], registry=r)
        self.leader = Gauge("kubernetes_ec2_autoscaler_leader", "1 while this replica holds the lease (or runs without election).",
                            registry=r)
        # From the start, not 0: a process that has just started (or a standby replica) is not one
        # that has failed for 50 years. The health window gives its first loop time the same way.
        self.last_success.set_to_current_time()

    def observe_call(self, service: str, operation: str, seconds: float) -> None:
        """One API call (call_timing calls this for every AWS and Kubernetes request)."""
        self.call_seconds.labels(service, operation).observe(seconds)

    def phase_done(self, phase: str, seconds: float) -> None:
        self.phase_seconds.labels(phase).observe(seconds)

    def record_api_error(self, error: BaseException) -> None:
        self.api_errors.labels(service_of(error)).inc()
        if is_throttling(error):
            self.throttled.labels(service_of(error)).inc()

    def loop_failed(self, seconds: float, error: Optional[BaseException] = None) -> None:
        """A loop that could not read the world (``error``), or that failed for a bug (None)."""
        self.loop_seconds.observe(seconds)
        self.loops.labels("failure").inc()
        if error is not None:
            self.record_api_error(error)

    def loop_done(self, seconds: float, snapshot, decision, result) -> None:
        """One finished loop: the snapshot as read, the decision, and what the actuator did. Failed
        actions are counted by type; they do not make the loop a failure."""
        self.loop_seconds.observe(seconds)
        self.loops.labels("success").inc()
        self.last_success.set(time.time())
        up = decision.counts.scale_up
        # Under --no-scale scale up counted nothing: count as it would (DaemonSet pods are no demand,
        # gated ones neither).
        waiting = [pod for pod in snapshot.pods if pod.is_pending_unassigned and not pod.is_daemonset] if up is None else []
        self.pending.set(up.pending if up is not None else sum(1 for pod in waiting if not pod.is_gated))
        self.gated.set(up.gated if up is not None else sum(1 for pod in waiting if pod.is_gated))
        self.infeasible.set(up.infeasible if up is not None else 0)
        self.unaccounted.set(up.unaccounted if up is not None else 0)
        self.model_mismatches.inc(decision.counts.model_mismatches)
        self.nodes.clear()  # a state no node is in any more must not keep its old value
        for state, count in decision.counts.nodes_by_state.items():
            self.nodes.labels(state.snake).set(count)

        desired = {group.key: group.desired for group in snapshot.groups}
        for action in result.done:
            if isinstance(action, p.SetDesiredCapacity):
                desired[(action.region, action.group)] = action.desired
                if action.desired > action.previous:
                    self.scaled_up.labels(action.group, action.region).inc(action.desired - action.previous)
            if isinstance(action, SCALE_IN_ACTIONS):
                self.scale_in_actions.labels(_snake(type(action).__name__)).inc()
        for gauge in (self.desired, self.actual, self.max_size, self.timed_out):
            gauge.clear()  # groups that were deleted or untagged disappear
        for group in snapshot.groups:
            self.desired.labels(group.name, group.region).set(desired[group.key])
            self.actual.labels(group.name, group.region).set(len(group.instance_ids))
            self.max_size.labels(group.name, group.region).set(group.max_size)
            self.timed_out.labels(group.name, group.region).set(1 if group.key in decision.timed_out else 0)
        self.timed_out_total.set(len(decision.timed_out))

        for kind, count in result.applied.items():
            self.actions.labels(_snake(kind.__name__)).inc(count)
        for kind, count in result.failed.items():
            self.failed_actions.labels(_snake(kind.__name__)).inc(count)
        for _, error in result.failures:
            self.record_api_error(error)
        self._record_scale_up_failures(decision, result)
        self._record_scale_in(result)

    def _record_scale_up_failures(self, decision, result) -> None:
        """A group newly timed out counts once, with why; so does a raise whose call failed."""
        timeouts = decision.health.timeouts
        now_timed_out = {key: timeouts[key].kind if key in timeouts else "" for key in decision.timed_out}
        for key, kind in sorted(now_timed_out.items()):
            if key not in self._timed_out_before:
                self.failed_scale_ups.labels(kind or "other").inc()
        self._timed_out_before = now_timed_out
        for action, _ in result.failures:
            if isinstance(action, p.SetDesiredCapacity) and action.desired > action.previous:
                self.failed_scale_ups.labels("api-error").inc()

    def _record_scale_in(self, result) -> None:
        for action in result.done:
            if isinstance(action, p.EvictPod):
                self.evicted_pods.labels("evicted").inc()
            elif isinstance(action, (p.TerminateInstance, p.DeleteNode)):
                self.scaled_in.labels(scale_in_reason(action)).inc()
        self.evicted_pods.labels("blocked").inc(len(result.refused))
        self.evicted_pods.labels("failed").inc(sum(1 for action, _ in result.failures if isinstance(action, p.EvictPod)))

    def acting(self) -> None:
        self.leader.set(1)

    def became_leader(self) -> None:
        self.leader.set(1)

    def standing_by(self, seconds_since_lease_contact: Optional[float]) -> None:
        self.leader.set(0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class Liveness(LoopObserver):
    """Healthy while a loop has succeeded within the window; also during a grace period of the
    same length after start (or after becoming leader), so a slow first loop over a big cluster
    does not get the pod restarted; and while it is a standby replica that keeps reaching the
    lease (it runs no loops by design)."""

    def __init__(self, window_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.window = window_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._grace_from = clock()
        self._last_success: Optional[float] = None
        self._last_standby: Optional[float] = None

    def loop_done(self, seconds: float, snapshot, decision, result) -> None:
        self.loop_succeeded()

    def loop_succeeded(self) -> None:
        with self._lock:
            self._last_success = self.clock()

    def became_leader(self) -> None:
        with self._lock:
            self._grace_from = self.clock()
            self._last_standby = None

    def standing_by(self, seconds_since_lease_contact: Optional[float] = 0.0) -> None:
        """A standby replica is healthy while it keeps reaching the lease within the window."""
        if seconds_since_lease_contact is None or seconds_since_lease_contact >= self.window:
            return
        with self._lock:
            self._last_standby = self.clock()

    def check(self) -> tuple[bool, str]:
        with self._lock:
            now = self.clock()
            if self._last_success is not None and now - self._last_success <= self.window:
                return True, f"ok: last successful loop {now - self._last_success:.0f} s ago"
            if self._last_standby is not None and now - self._last_standby <= self.window:
                return True, "ok: standby, another replica holds the lease"
            if now - self._grace_from <= self.window:
                return True, f"ok: starting, {self.window - (now - self._grace_from):.0f} s of grace left"
            since = "ever" if self._last_success is None else f"{now - self._last_success:.0f} s"
            return False, f"unhealthy: no successful loop for {since} (limit {self.window:.0f} s)"


class MetricsServer:
    """``/metrics`` (Prometheus text format) and ``/healthz`` (200 or 503) over HTTP.
    ``port=0`` picks a free port (tests read ``.port``); the CLI treats 0 as off instead."""

    def __init__(self, metrics: Metrics, liveness: Liveness, port: int, host: str = "0.0.0.0"):
        self.metrics = metrics
        self.liveness = liveness
        self._server = _Server((host, port), _Handler)
        self._server.daemon_threads = True
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="metrics-server", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "MetricsServer":
        self._thread.start()
        log.info("serving /metrics and /healthz on port %d", self.port)
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Server(ThreadingHTTPServer):
    owner: MetricsServer  # what the handler serves


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format, *args) -> None:  # scrapes every 15 s are not worth a log line
        pass

    def do_GET(self):
        assert isinstance(self.server, _Server)
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, owner.metrics.exposition(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            healthy, text = owner.liveness.check()
            self._send(200 if healthy else 503, (text + "\n").encode(), "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found: /metrics and /healthz are served\n", "text/plain; charset=utf-8")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
