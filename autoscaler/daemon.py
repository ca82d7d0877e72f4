"""Wire the production path together: logging, clients, world, actuator, loop, and the operational
companions (metrics and health server, leader election, events); signals; exit codes."""
from __future__ import annotations

import logging
import signal
import sys
import threading
from datetime import datetime
from typing import Callable, Optional

from .actuator import Actuator
from .aws_actuator import AwsActuator
from .aws_reader import AwsClients, make_session
from .call_timing import time_aws_calls, time_kube_calls
from .config import Settings
from .events import EventRecorder
from .kube_actuator import KubeActuator
from .kube_connect import KubeConfigError, connect
from .kube_reader import KubeReader
from .leader import LeaderElector
from .logs import TEXT_FORMAT, configure_logging as configure_log_output, secret_values
from .loop import Loop, utc_now
from .metrics import Liveness, Metrics, MetricsServer, health_window
from .notifier import SlackNotifier
from .world import World

LOG_FORMAT = TEXT_FORMAT
log = logging.getLogger("autoscaler.cluster")


def configure_logging(settings: Settings) -> None:
    """The chosen format at the original's levels; every credential of ``settings`` redacted."""
    configure_log_output(settings.verbosity, settings.log_format,
                         secret_values(settings.aws_access_key, settings.aws_secret_key, settings.slack_hook))


def build_loop(settings: Settings, stop: threading.Event, api_client=None, *, leader: Optional[LeaderElector] = None,
               metrics: Optional[Metrics] = None, liveness: Optional[Liveness] = None,
               clock: Callable[[], datetime] = utc_now, wait: Optional[Callable[[float], object]] = None) -> Loop:
    """The production wiring. The sandbox passes its simulated clock and wait; nothing else differs."""
    api_client = api_client or connect(settings.kubeconfig)
    session = make_session(settings)
    if metrics is not None:  # autoscaler_api_request_duration_seconds
        time_kube_calls(api_client, metrics.observe_call)
        time_aws_calls(session, metrics.observe_call)
    aws = AwsClients(settings, session)
    world = World(KubeReader(api_client, settings.pod_namespace), aws, settings)
    actuator = Actuator(AwsActuator(aws), KubeActuator(api_client), SlackNotifier(settings.slack_hook), settings.dry_run)
    on_error = metrics.record_api_error if metrics is not None else None
    events = None if settings.dry_run else EventRecorder(api_client, on_api_error=on_error)
    return Loop(world, actuator, settings, clock=clock, stop=stop, wait=wait, leader=leader, metrics=metrics,
                liveness=liveness, events=events)


def run(settings: Settings) -> int:
    configure_logging(settings)
    stop = threading.Event()

    def request_stop(signum, _frame):
        log.warning("received %s; finishing the current action, then stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    metrics = Metrics()
    liveness = Liveness(health_window(settings.sleep))
    try:
        api_client = connect(settings.kubeconfig)
        leader = None
        if settings.leader_election:
            # Its own client: renewals must not queue behind a loop's long list of pods.
            lease_client = connect(settings.kubeconfig)
            time_kube_calls(lease_client, metrics.observe_call)
            leader = LeaderElector(lease_client, settings.leader_elect_namespace, on_api_error=metrics.record_api_error)
    except KubeConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    loop = build_loop(settings, stop, api_client, leader=leader, metrics=metrics, liveness=liveness)
    if settings.dry_run:
        log.warning("Dry run: decisions are logged, nothing in AWS or Kubernetes is changed")
    if settings.once:
        return _run_once(loop, leader, stop)

    server = None
    if settings.metrics_port:
        try:
            server = MetricsServer(metrics, liveness, settings.metrics_port).start()
        except OSError as error:
            print(f"error: --metrics-port {settings.metrics_port}: cannot serve metrics ({error})", file=sys.stderr)
            return 2
    if leader is None:
        metrics.leader.set(1)
    else:
        log.warning("leader election on: lease %s/%s, identity %s", leader.namespace, leader.name, leader.identity)
        leader.start(stop)
    try:
        loop.run_forever()
    finally:
        stop.set()
        if leader is not None:
            leader.join()
            leader.release()
        if server is not None:
            server.stop()
    log.warning("stopped")
    return 0


def _run_once(loop: Loop, leader: Optional[LeaderElector], stop: threading.Event) -> int:
    """One loop; with leader election, only once this run holds the lease (a one-off run must not
    act beside the running Deployment), renewed in the background while it runs. A lease left by a
    holder that died is taken once it has expired, so that is how long this waits for it."""
    if leader is not None:
        if not leader.acquire(stop):
            print(f"error: another replica holds the lease {leader.namespace}/{leader.name}; nothing done "
                  "(--no-leader-elect to run anyway)", file=sys.stderr)
            return 1
        leader.start(stop)
    try:
        report = loop.run_once()
    finally:
        if leader is not None:
            stop.set()
            leader.join()
            leader.release()
    # A one-off run exits 1 for a failed action too: its operator wants to know, and no loop follows.
    if not report.ok:
        print(f"error: the loop failed: {report.error}", file=sys.stderr)
    elif report.failed_actions:
        print(f"error: {report.failed_actions} action(s) failed: {report.error}", file=sys.stderr)
    return 0 if report.ok and not report.failed_actions else 1
