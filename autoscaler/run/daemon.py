"""Wire the production path together: logging, clients, world, actuator, loop, and the operational
companions (metrics and health server, leader election, events); signals; exit codes."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import datetime
from typing import Callable, Optional, cast

from ..act.actuator import Actuator
from ..act.aws_actuator import AwsActuator
from ..read.aws_reader import AwsClients, ClientSetupError, make_session
from ..read.price_list import PriceList
from .call_timing import time_aws_calls, time_kube_calls
from ..model.config import ConfigurationError, Settings
from ..act.events import EventRecorder
from ..act.kube_actuator import KubeActuator
from ..clients.kube_connect import KubeConfigError, connect
from ..read.kube_reader import KubeReader
from .leader import LeaderElector
from .preflight import check_credentials
from .logs import ALWAYS_SHOWN, COUNTERS_ATTRIBUTE, TEXT_FORMAT, configure_logging as configure_log_output, secret_values
from .loop import Loop, LoopCounters, LoopReport, utc_now
from .metrics import Liveness, Metrics, MetricsServer, health_window
from .observer import LoopObserver, Observers
from ..act.notifier import SlackNotifier
from ..read.world import World

LOG_FORMAT = TEXT_FORMAT
log = logging.getLogger("autoscaler.cluster")


def configure_logging(settings: Settings) -> None:
    """The chosen format at the original's levels; every credential of ``settings`` redacted."""
    configure_log_output(settings.verbosity, settings.log_format,
                         secret_values(settings.aws_access_key, settings.aws_secret_key, settings.slack_hook))


class _RefreshPrices(LoopObserver):
    """After each loop that read the world: the live on-demand prices, refreshed when due."""

    def __init__(self, price_list: PriceList):
        self.price_list = price_list

    def loop_done(self, seconds: float, snapshot, decision, result) -> None:
        self.price_list.after_loop(group.region for group in snapshot.groups)


def build_loop(settings: Settings, stop: threading.Event, api_client=None, *, leader: Optional[LeaderElector] = None,
               metrics: Optional[Metrics] = None, liveness: Optional[Liveness] = None,
               clock: Callable[[], datetime] = utc_now, wait: Optional[Callable[[float], object]] = None,
               live_prices: bool = False) -> Loop:
    """The production wiring. The sandbox passes its simulated clock and wait; nothing else differs
    but ``live_prices`` (the daemon's: prices from the Price List API, read/price_list.py)."""
    api_client = api_client or connect(settings.kubeconfig)
    session = make_session(settings)
    if metrics is not None:  # kubernetes_ec2_autoscaler_api_request_duration_seconds
        time_kube_calls(api_client, metrics.observe_call)
        time_aws_calls(session, metrics.observe_call)
    aws = AwsClients(settings, session)
    world = World(KubeReader(api_client, settings.pod_namespace), aws, settings)
    on_error = metrics.record_api_error if metrics is not None else None
    actuator = Actuator(AwsActuator(aws), KubeActuator(api_client), SlackNotifier(settings.slack_hook), settings.dry_run,
                        events=EventRecorder(api_client, on_api_error=on_error))
    companions: list[LoopObserver] = [companion for companion in (metrics, liveness) if companion is not None]
    if live_prices:
        price_list = PriceList(aws.pricing(), settings.regions)
        price_list.announce()
        companions.append(_RefreshPrices(price_list))
    observer = Observers(*companions)
    return Loop(world, actuator, settings, clock=clock, stop=stop, wait=wait, leader=leader, observer=observer)


# After SIGTERM or SIGINT, the action in flight has this long to finish; a call still waiting for a
# stalled server is then abandoned, so the process always ends within 5 s (README "Configuration").
SHUTDOWN_GRACE_SECONDS = 3.0
# After the grace, what is left of the 5 s: for the renewing thread to end, and for each of the
# lease release's two calls (3 + 0.5 + 2 x 0.6 < 5).
LEADER_JOIN_SECONDS = 0.5
RELEASE_TIMEOUT_SECONDS = 0.6


def run(settings: Settings) -> int:
    """The daemon (or --once). Exit codes: 0 after a stop by signal; 1 for a configuration error
    found by the first loop (or a failed --once); 2 for bad input found before any API call."""
    configure_logging(settings)
    stop = threading.Event()
    signals: list = []

    def request_stop(signum, _frame):
        if not stop.is_set():
            log.warning("received %s; finishing the current action (at most %g s), then stopping",
                        signal.Signals(signum).name, SHUTDOWN_GRACE_SECONDS)
        signals.append(signum)
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
        loop = build_loop(settings, stop, api_client, leader=leader, metrics=metrics, liveness=liveness,
                          live_prices=not settings.once)  # a one-off run would not wait for them
        for region in settings.regions:
            loop.world.aws(region)  # made now: a malformed endpoint or profile is bad input, found before any call
    except (KubeConfigError, ClientSetupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # One authenticated call to each API before the Lease and the first loop: a rejected token or
    # key ends the process now, on a standby replica too (run/preflight.py).
    try:
        checked, _ = _in_worker(lambda: check_credentials(api_client, loop.world.aws, settings), stop)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if not checked:
        print(f"error: stopped by {_signal_name(signals)} while checking the credentials", file=sys.stderr)
        _exit_now(128 + (signals[0] if signals else signal.SIGTERM) if settings.once else 0)
    loop.actuator.announce_mode()
    if settings.once:
        return _run_once(loop, leader, stop, signals)

    server = None
    if settings.metrics_port:
        try:
            server = MetricsServer(metrics, liveness, settings.metrics_port).start()
        except OSError as error:
            print(f"error: --metrics-port {settings.metrics_port}: cannot serve metrics ({error})", file=sys.stderr)
            return 2
    if leader is None:
        metrics.acting()
    else:
        log.warning("leader election on: lease %s/%s, identity %s", leader.namespace, leader.name, leader.identity)
        leader.start(stop)
    finished, _ = _in_worker(loop.run_forever, stop)
    stop.set()
    if server is not None:
        server.stop()
    if not finished:
        # The lease is left to expire: releasing it while our call may still land would let
        # another replica act beside it.
        log.warning("stopped: a call still waiting for its server after %g s was abandoned", SHUTDOWN_GRACE_SECONDS)
        _exit_now(0)
    if leader is not None:
        leader.join(LEADER_JOIN_SECONDS)
        leader.release(RELEASE_TIMEOUT_SECONDS)
    if loop.fatal is not None:
        print(f"error: {loop.fatal}", file=sys.stderr)
        return 1
    log.warning("stopped")
    return 0


def _in_worker(work: Callable[[], object], stop: threading.Event) -> tuple[bool, object]:
    """Run ``work`` on a daemon thread, so that the main thread stays free to take signals whatever
    the work is waiting for. Returns (True, its result) when it ends, or (False, None) when it has
    not ended SHUTDOWN_GRACE_SECONDS after ``stop`` was set. Its exceptions are raised here."""
    outcome: dict = {}
    done = threading.Event()

    def target():
        try:
            outcome["result"] = work()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread as is
            outcome["error"] = error
        finally:
            done.set()

    threading.Thread(target=target, name="loop", daemon=True).start()
    while not done.wait(0.25):
        if stop.is_set():
            if not done.wait(SHUTDOWN_GRACE_SECONDS):
                return False, None
            break
    if "error" in outcome:
        raise outcome["error"]
    return True, outcome.get("result")


def _exit_now(code: int) -> None:
    """End the process at once: a worker thread may be blocked in a call, and the interpreter's
    normal exit would wait for the read threads of that loop."""
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_once(loop: Loop, leader: Optional[LeaderElector], stop: threading.Event, signals: Optional[list] = None) -> int:
    """One loop; with leader election, only once this run holds the lease (a one-off run must not
    act beside the running Deployment), renewed in the background while it runs. A lease left by a
    holder that died is taken once it has expired, so that is how long this waits for it.
    Ends with one line whatever the verbosity: the summary, logged, or ``error:``."""

    signals = signals if signals is not None else []

    def once():
        if leader is not None:
            if not leader.acquire(stop):
                return None
            leader.start(stop)
        return loop.run_once()

    finished, outcome = _in_worker(once, stop)
    report = cast(Optional[LoopReport], outcome)
    if not finished:
        print(f"error: stopped by {_signal_name(signals)} while a call was still waiting for its server; "
              "it was abandoned", file=sys.stderr)
        _exit_now(128 + (signals[0] if signals else signal.SIGTERM))
    if leader is not None:
        stop.set()
        leader.join(LEADER_JOIN_SECONDS)
        leader.release(RELEASE_TIMEOUT_SECONDS)
    if report is None:
        if leader is not None and leader.startup_error is not None:
            print(f"error: {leader.startup_error}", file=sys.stderr)
        elif stop.is_set() or leader is None:
            print(f"error: stopped by {_signal_name(signals)} before the loop started", file=sys.stderr)
            return 128 + (signals[0] if signals else signal.SIGTERM)
        else:
            print(f"error: another replica holds the lease {leader.namespace}/{leader.name}; nothing done "
                  "(--no-leader-elect to run anyway)", file=sys.stderr)
        return 1
    # A one-off run exits 1 for a failed action too: its operator wants to know, and no loop follows.
    if report.configuration_error is not None:
        print(f"error: {report.configuration_error}", file=sys.stderr)
    elif not report.ok:
        print(f"error: the loop failed: {report.error}", file=sys.stderr)
    elif report.failed_actions:
        print(f"error: {report.failed_actions} action(s) failed: {report.error}", file=sys.stderr)
    elif signals:
        print(f"error: stopped by {_signal_name(signals)}: {report.counters.not_applied} action(s) of the "
              "loop not applied", file=sys.stderr)
        return 128 + signals[0]
    else:
        log.warning("%s", once_summary(report.counters),
                    extra={ALWAYS_SHOWN: True, COUNTERS_ATTRIBUTE: report.counters.fields()})
    return 0 if report.ok and not report.failed_actions else 1


def once_summary(counters: LoopCounters) -> str:
    """The line --once ends with when the loop worked, whatever the verbosity."""
    done = "decided, nothing changed (dry run)" if counters.dry_run else "applied"
    return (f"done: read {counters.groups} group(s), {counters.nodes} node(s), {counters.pods} pod(s) "
            f"({counters.pending} pending); {counters.actions} action(s) {done}")


def _signal_name(signals: list) -> str:
    return signal.Signals(signals[0]).name if signals else "a signal"
