"""Leader election on a coordination.k8s.io/v1 Lease, so two replicas never both act.

The algorithm of client-go's leaderelection, reduced to what one autoscaler needs:

- A replica holds the lease while it renews ``spec.renewTime`` every ``retry_period`` seconds.
- Another replica takes the lease over when it is released (empty holder) or when it has seen the
  same renewTime for ``lease_duration`` seconds of its *own* monotonic clock: expiry is judged by
  observation, never by comparing our clock with the holder's timestamps (clock skew).
- The holder counts itself leader only while its last successful renewal is younger than
  ``renew_deadline`` (< ``lease_duration``), so it stops acting before anyone else may start.
- Writes carry the resourceVersion read, so two replicas racing for the lease cannot both win.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Callable, Optional, Protocol

from kubernetes import client as kube_client

from ..clients.kube_errors import KubeConfigurationError, KubeError, kube_call

log = logging.getLogger(__name__)

LEASE_NAME = "kubernetes-ec2-autoscaler"
DEFAULT_NAMESPACE = "kube-system"
LEASE_DURATION_SECONDS = 15
RENEW_DEADLINE_SECONDS = 10
RETRY_PERIOD_SECONDS = 2
REQUEST_TIMEOUT_SECONDS = 5  # one stuck call must not outlive the renew deadline


def default_identity() -> str:
    """hostname + pid, readable in the lease (the pod name is the hostname), and a short random
    suffix as client-go adds: two containers with hostNetwork and PID 1 share the first two."""
    return f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"


class Leadership(Protocol):
    """What the loop asks of leader election (``LeaderElector``, or ``NoElection``)."""

    retry_period: float
    contact_at: Optional[float]
    startup_error: Optional[KubeConfigurationError]

    def is_leader(self) -> bool: ...

    def wait_for_leadership(self, stop: threading.Event, timeout: float) -> bool: ...


class NoElection:
    """Without leader election this replica always acts."""

    retry_period = 0.0
    contact_at: Optional[float] = None
    startup_error: Optional[KubeConfigurationError] = None

    def is_leader(self) -> bool:
        return True

    def wait_for_leadership(self, stop: threading.Event, timeout: float) -> bool:
        return True


class LeaderElector:
    def __init__(self, api_client: kube_client.ApiClient, namespace: str = DEFAULT_NAMESPACE,
                 name: str = LEASE_NAME, identity: Optional[str] = None,
                 lease_duration: float = LEASE_DURATION_SECONDS, renew_deadline: float = RENEW_DEADLINE_SECONDS,
                 retry_period: float = RETRY_PERIOD_SECONDS, monotonic: Callable[[], float] = time.monotonic,
                 on_api_error: Optional[Callable[[BaseException], None]] = None):
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < lease duration")
        self.api = kube_client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.monotonic = monotonic
        self.on_api_error = on_api_error
        self._lock = threading.Lock()
        self._renewed_at: Optional[float] = None  # monotonic time of our last successful write
        self._observed: Optional[tuple] = None  # (holder, renewTime) last seen on someone else's lease
        self._observed_at = 0.0
        self._observed_duration = 0.0  # leaseDurationSeconds of someone else's lease, last seen
        self.contact_at: Optional[float] = None  # monotonic time the lease was last read or written
        # A configuration error (401, 403 on Leases...) before the lease was ever read: waiting for
        # leadership would never end, so the daemon ends instead (README "Configuration").
        self.startup_error: Optional[KubeConfigurationError] = None
        self.leadership = threading.Event()  # set while we hold the lease; waiters wake at once
        self._thread: Optional[threading.Thread] = None

    # -- state -------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            held = self._renewed_at is not None and self.monotonic() - self._renewed_at < self.renew_deadline
        if not held and self.leadership.is_set():
            self._lose("the lease was not renewed within the renew deadline")
        return held

    def wait_for_leadership(self, stop: threading.Event, timeout: float) -> bool:
        """Block until this replica leads, ``stop`` is set, or ``timeout`` passes."""
        deadline = self.monotonic() + timeout
        while not stop.is_set():
            if self.is_leader():
                return True
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                return False
            # Short slices: SIGTERM sets ``stop``, which this wait must notice promptly.
            self.leadership.wait(min(remaining, 0.25))
        return False

    # -- one round: acquire or renew ---------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the lease afterwards. Any error counts as not held: the
        renewing thread must outlive a failed token refresh or a bug in one round."""
        try:
            held = self._attempt()
        except KubeError as error:
            log.warning("leader election: %s", error)
            if isinstance(error, KubeConfigurationError) and self.contact_at is None:
                self.startup_error = error
            if self.on_api_error:
                self.on_api_error(error)
            self.is_leader()  # steps down once the renew deadline has passed
            return False
        except Exception:  # noqa: BLE001 - not an API answer: log it loudly, treat it as a failed renewal
            log.exception("leader election: acquiring or renewing the lease failed unexpectedly")
            self.is_leader()
            return False
        self.contact_at = self.monotonic()
        return held

    def acquire(self, stop: threading.Event, wait: Optional[Callable[[float], object]] = None) -> bool:
        """Try every retry period until we hold the lease, ``stop`` is set, or the lease has had time
        to expire: its duration (the longer of ours and the holder's) plus one retry period. Expiry
        is judged by watching the lease, so a lease left by a dead holder needs that long to be taken.
        ``wait`` pauses between tries (``stop.wait`` unless given)."""
        wait = wait or stop.wait
        started = self.monotonic()
        while not stop.is_set():
            if self.try_acquire_or_renew():
                return True
            if self.startup_error is not None:
                return False
            deadline = started + max(self.lease_duration, self._observed_duration) + self.retry_period
            remaining = deadline - self.monotonic()
            if remaining <= 0:
                return False
            wait(min(self.retry_period, remaining))
        return False

    def _attempt(self) -> bool:
        now = self.monotonic()
        wall = datetime.now(timezone.utc)
        where = f"lease {self.namespace}/{self.name}"
        try:
            lease = kube_call(f"read {where}", self.api.read_namespaced_lease, self.name, self.namespace,
                              _request_timeout=REQUEST_TIMEOUT_SECONDS)
        except KubeError as error:
            if error.status != 404:
                raise
            body = kube_client.V1Lease(
                metadata=kube_client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(wall, acquire_time=wall, transitions=0))
            try:
                kube_call(f"create {where}", self.api.create_namespaced_lease, self.namespace, body,
                          _request_timeout=REQUEST_TIMEOUT_SECONDS)
            except KubeError as create_error:
                if create_error.status == 409:
                    return False  # another replica created it first
                raise
            return self._won(now, "created the lease")

        spec = lease.spec or kube_client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        if holder == self.identity:
            lease.spec = self._spec(wall, acquire_time=spec.acquire_time or wall,
                                    transitions=spec.lease_transitions or 0)
            return self._write(lease, now, "renewed")

        observation = (holder, spec.renew_time)
        if observation != self._observed:
            self._observed, self._observed_at = observation, now
        duration = spec.lease_duration_seconds or self.lease_duration
        self._observed_duration = duration
        expired = not holder or now - self._observed_at >= duration
        if not expired:
            self._lose(f"{holder} holds the lease")
            return False
        log.warning("leader election: taking over the lease from %s", holder or "nobody (released)")
        lease.spec = self._spec(wall, acquire_time=wall, transitions=(spec.lease_transitions or 0) + 1)
        return self._write(lease, now, "acquired the lease")

    def _spec(self, wall: datetime, acquire_time: datetime, transitions: int) -> kube_client.V1LeaseSpec:
        return kube_client.V1LeaseSpec(holder_identity=self.identity, lease_duration_seconds=int(self.lease_duration),
                                       acquire_time=acquire_time, renew_time=wall, lease_transitions=transitions)

    def _write(self, lease, now: float, what: str) -> bool:
        try:
            kube_call(f"update lease {self.namespace}/{self.name}", self.api.replace_namespaced_lease,
                      self.name, self.namespace, lease, _request_timeout=REQUEST_TIMEOUT_SECONDS)
        except KubeError as error:
            if error.status == 409:  # someone wrote it since we read it; look again next round
                self._lose("the lease changed while we wrote it")
                return False
            raise
        return self._won(now, what)

    def _won(self, now: float, what: str) -> bool:
        with self._lock:
            self._renewed_at = now
        if not self.leadership.is_set():
            log.warning("leader election: %s %s/%s as %s; this replica acts now", what, self.namespace,
                        self.name, self.identity)
            self.leadership.set()
        return True

    def _lose(self, why: str) -> None:
        with self._lock:
            self._renewed_at = None
        if self.leadership.is_set():
            log.warning("leader election: lost the lease (%s); this replica stops acting", why)
            self.leadership.clear()

    # -- release and the background thread ---------------------------------------------------

    def release(self, request_timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        """Give the lease up (empty holder), so a standby takes over within one retry period
        instead of waiting for the lease to expire. Only if we still hold it. ``request_timeout``
        bounds each of its two calls (a stopping process has seconds, not minutes)."""
        if not self.leadership.is_set() and self._renewed_at is None:
            return
        self._lose("released")
        try:
            lease = kube_call("read lease", self.api.read_namespaced_lease, self.name, self.namespace,
                              _request_timeout=request_timeout)
            if lease.spec is None or lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            lease.spec.renew_time = datetime.now(timezone.utc)
            kube_call("release lease", self.api.replace_namespaced_lease, self.name, self.namespace, lease,
                      _request_timeout=request_timeout)
            log.warning("leader election: released the lease %s/%s", self.namespace, self.name)
        except Exception as error:  # noqa: BLE001 - stopping must go on; the lease expires on its own
            log.warning("leader election: could not release the lease (it expires on its own): %s", error)

    def start(self, stop: threading.Event) -> "LeaderElector":
        """Acquire and renew in a background thread until ``stop`` is set."""
        def run():
            while not stop.is_set():
                try:
                    self.try_acquire_or_renew()
                except Exception:  # noqa: BLE001 - e.g. on_api_error failing: the thread must not die
                    log.exception("leader election: one round failed; trying again")
                stop.wait(self.retry_period)

        self._thread = threading.Thread(target=run, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: Optional[float] = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
