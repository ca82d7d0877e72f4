"""Wire the production path together: logging, clients, world, actuator, loop; signals; exit codes."""
from __future__ import annotations

import logging
import signal
import sys
import threading

from .actuator import Actuator
from .aws_actuator import AwsActuator
from .aws_reader import AwsClients
from .config import Settings
from .kube_actuator import KubeActuator
from .kube_connect import KubeConfigError, connect
from .kube_reader import KubeReader
from .loop import Loop
from .notifier import SlackNotifier
from .world import World

LOG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
log = logging.getLogger("autoscaler.cluster")


def configure_logging(verbosity: int) -> None:
    """The original's levels: none -> errors only, -v warnings, -vv info, -vvv debug."""
    level = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Library debug output is noise at our -vvv, and botocore's can include request signatures.
    for noisy in ("botocore", "boto3", "urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def build_loop(settings: Settings, stop: threading.Event) -> Loop:
    api_client = connect(settings.kubeconfig)
    aws = AwsClients(settings)
    world = World(KubeReader(api_client, settings.pod_namespace), aws, settings)
    actuator = Actuator(AwsActuator(aws), KubeActuator(api_client), SlackNotifier(settings.slack_hook), settings.dry_run)
    return Loop(world, actuator, settings, stop=stop)


def run(settings: Settings) -> int:
    configure_logging(settings.verbosity)
    stop = threading.Event()
    try:
        loop = build_loop(settings, stop)
    except KubeConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if settings.dry_run:
        log.warning("Dry run: decisions are logged, nothing in AWS or Kubernetes is changed")
    if settings.once:
        report = loop.run_once()
        if not report.ok:
            print(f"error: the loop failed: {report.error}", file=sys.stderr)
        return 0 if report.ok else 1

    def request_stop(signum, _frame):
        log.warning("received %s; stopping after the current loop", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    loop.run_forever()
    log.warning("stopped")
    return 0
