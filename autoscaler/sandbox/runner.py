"""Run the unmodified autoscaler loop against a simulated cluster, and report what it cost.

One process: FakeAws (moto with its shims) and FakeKubeApi on 127.0.0.1, the demo cluster (or
the trace's), and the production wiring (``daemon.build_loop``: World, Actuator, Events, Loop)
reaching both over real HTTP through AWS_ENDPOINT_URL and a kubeconfig. The loop's ``wait`` is
where simulated time passes: between two loops the sandbox advances the shared clock step by
step, and at each step the workload submits the jobs that arrived, the node simulator turns
instances into Nodes (and back), and the scheduler binds, runs and finishes pods.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from ..fakes.aws import FakeAws
from ..fakes.kube_api import FakeKubeApi
from ..model.config import Settings, validate
from ..run.daemon import build_loop
from ..run.loop import Loop
from .clock import SimClock
from .daemonsets import DaemonSetController, make_daemonset
from .nodes import NodeBehaviour, NodeSimulator
from .report import (
    Recorder,
    Report,
    build_report,
    clock_text,
    draw_chart,
    lower_bound_dollars,
    lower_bound_hours,
    unrunnable_jobs,
)
from .scheduler import Scheduler
from .trace import Trace
from .workload import Workload

log = logging.getLogger(__name__)

CLUSTER_NAME = "sandbox"


class SandboxSetupError(RuntimeError):
    """The simulated cluster could not be set up; the message is one line saying what failed."""

INTERRUPTED = "interrupted (Ctrl-C)"
TERMINATED = "interrupted (SIGTERM)"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the main thread is, so that it ends the run as Ctrl-C does: with the
    report so far and the chart (cli.py installs the handler)."""


def interruption(error: KeyboardInterrupt) -> str:
    return TERMINATED if isinstance(error, Terminated) else INTERRUPTED


# Every run stops here unless its trace sets `duration` (docs/sandbox.md): a job that never
# ends, or one that can never run, must not keep the sandbox going for ever.
DEFAULT_TIME_LIMIT_SECONDS = 12 * 3600
STEP_SECONDS = 10  # simulated seconds between two steps of the simulators
BOOT_SECONDS = 90  # an instance becomes a Ready node this long after its group launched it
STATUS_EVERY_SECONDS = 60

# Short durations for a demo that shows scale up and scale in within simulated hours; a flag
# given on the command line wins over these (see sandbox_settings).
DEMO_FLAG_DEFAULTS: dict[str, Any] = {
    "sleep": 30,
    "idle_threshold": 300,
    "type_idle_threshold": 600,
    "instance_init_time": 600,
    "over_provision": 1,
    "group_timeout": 600,
}
DEMO_FIXED: dict[str, Any] = {"dead_node_seconds": 600, "drain_grace_seconds": 600, "spot_wait_seconds": 120, "spare_idle_nodes": 1}


def sandbox_settings(settings: Settings, given: frozenset = frozenset()) -> Settings:
    """The CLI's settings with the demo's short durations for every flag not given."""
    shortened = {name: value for name, value in DEMO_FLAG_DEFAULTS.items() if name not in given}
    return replace(settings, **shortened, **DEMO_FIXED)


def describe_settings(settings: Settings) -> dict:
    names = ("sleep", "idle_threshold", "type_idle_threshold", "instance_init_time", "over_provision",
             "max_scale_in_fraction", "drain_utilization", "group_timeout", "spare_idle_nodes", "dry_run")
    return {name: getattr(settings, name) for name in names}


@contextlib.contextmanager
def environment(variables: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (boto3 reads AWS_ENDPOINT_URL when a client is made)."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class Sandbox:
    """One run of a trace. ``speed``: simulated seconds per real second (None: as fast as it goes).
    ``aws``: a started FakeAws to reuse (tests share one per session; it is reset first), else one
    is started and stopped. ``status``: where the one-line status per simulated minute goes."""

    def __init__(self, trace: Trace, settings: Settings, *, speed: Optional[float] = None,
                 out_dir: Optional[Path] = None, aws: Optional[FakeAws] = None,
                 status: Optional[Callable[[str], None]] = print, boot_seconds: float = BOOT_SECONDS,
                 step_seconds: float = STEP_SECONDS, chart: bool = True):
        self.trace = trace
        # The cluster and the credentials are the fakes'; the Slack hook, if any, is kept (README).
        self.settings = replace(settings, cluster_name=CLUSTER_NAME, regions=trace.regions, once=False,
                                aws_access_key=None, aws_secret_key=None, leader_elect=False, metrics_port=0)
        validate(self.settings)
        self.clock = SimClock(speed)
        self.out_dir = Path(out_dir) if out_dir else None
        self.status = status
        self.boot_seconds = boot_seconds
        self.step_seconds = step_seconds
        self.chart = chart
        self.stop = threading.Event()
        self.stopped = ""
        self._replaying = False  # between the first step and the end of the loop: stop by request_stop
        self._never_runs: dict = {}  # job name -> its count, for the jobs in ``unrunnable``
        self.report: Optional[Report] = None  # set as soon as there is one, even if Ctrl-C comes later
        self._given_aws = aws
        self.recorder = Recorder()
        self._failing: set = set()
        self._next_status = 0.0
        self._time_limit = trace.duration or self._default_time_limit()
        self.unrunnable: dict = {}  # job name -> why it can never run; known once the catalogue is

    def request_stop(self, why: str) -> bool:
        """End the replay at its next step (between two actions at most) with ``why`` as the
        reason; False when it is not replaying (setting up, or reporting). A signal handler asks
        this instead of raising into whatever the main thread holds (a lock of a fake, say)."""
        if not self._replaying:
            return False
        self.stopped = why
        self.stop.set()
        return True

    def _default_time_limit(self) -> float:
        """Time for the last job to end and its nodes to be removed, at most DEFAULT_TIME_LIMIT_SECONDS."""
        settings = self.settings
        tail = settings.idle_threshold + settings.type_idle_threshold + settings.instance_init_time + 3600
        needed = max(max(job.last_arrival, job.gated_until or 0) + job.duration for job in self.trace.jobs) + tail
        return min(needed, DEFAULT_TIME_LIMIT_SECONDS)

    # ---- the run ----------------------------------------------------------------------------------

    def run(self) -> Report:
        """Set up, replay the trace, report. Raises SandboxSetupError (one line) when the fakes or
        the cluster cannot be set up. Ctrl-C during the replay or the report ends the run with the
        report so far (stopped INTERRUPTED); Ctrl-C before there is anything to report, or while
        tearing down after it, propagates as KeyboardInterrupt (``self.report`` then holds the report
        if there is one)."""
        started = time.monotonic()
        try:
            aws = self._given_aws or FakeAws()
            kube = FakeKubeApi(clock=self.clock.now)
        except Exception as error:
            raise SandboxSetupError(f"cannot make the fake AWS and Kubernetes servers: {_one_line(error)}") from error
        try:
            self._start_fakes(aws, kube)
            with environment(aws.env()), _scratch_dir(self.out_dir) as scratch:
                loop = self._set_up(aws, kube, scratch)
                self._say(f"sandbox: {self.trace.job_count} jobs from {self.trace.source}; groups "
                          + ", ".join(f"{g.name} ({g.region}, {g.instance_type}, max {g.max_size})" for g in self.trace.groups))
                self._say("sandbox: demo settings " + " ".join(f"{k}={v}" for k, v in describe_settings(self.settings).items())
                          + f"; nodes boot in {self.boot_seconds:g}s; speed "
                          + (f"{self.clock.speed:g}x" if self.clock.speed else "unlimited"))
                if self.unrunnable:
                    self._say(f"sandbox: {sum(self._never_runs.values())} job(s) can never run: " + "; ".join(
                        f"{name} ({reason})" for name, reason in self.unrunnable.items()))
                self._say(f"sandbox: the run stops at {clock_text(self._time_limit)} (h:mm) of simulated time at the latest"
                          + ("" if self.trace.duration else "; set duration: in the trace to change it"))
                try:
                    self._replaying = True
                    self._step()
                    loop.run_forever()
                    if loop.fatal is not None:  # a configuration error before any loop worked
                        self.stopped = f"the autoscaler ended at its first loop: {loop.fatal}"
                except KeyboardInterrupt as interrupt:
                    self.stopped = interruption(interrupt)
                finally:
                    self._replaying = False
                self._report(aws, time.monotonic() - started)
        finally:
            kube.stop()  # both stops do nothing for a server that never started
            if self._given_aws is None:
                aws.stop()
            else:
                aws.set_clock(None)
        if self.report is None:  # _report always sets it; reaching here without one is a bug
            raise RuntimeError("the sandbox ended without a report")
        return self.report

    def _start_fakes(self, aws: FakeAws, kube: FakeKubeApi) -> None:
        try:
            if aws is self._given_aws:
                aws.reset()
            else:
                aws.start()
            aws.set_clock(self.clock.now)
            kube.start()
        except Exception as error:
            raise SandboxSetupError(f"cannot start the fake AWS and Kubernetes servers: {_one_line(error)}") from error

    def _set_up(self, aws: FakeAws, kube: FakeKubeApi, scratch: Path) -> Loop:
        """The trace's groups in moto, the kubeconfig, the simulators and the production loop."""
        try:
            self._create_groups(aws)
            kubeconfig = kube.write_kubeconfig(scratch / "kubeconfig")
            self.settings = replace(self.settings, kubeconfig=str(kubeconfig))
            self.aws, self.kube = aws, kube
            behaviour = {(g.region, g.name): NodeBehaviour(g.startup_taints, g.gpu_after, g.unset_labels, g.node_labels)
                         for g in self.trace.groups}
            self.nodes = NodeSimulator(aws, kube, self.trace.regions, self.boot_seconds, behaviour)
            for daemonset in self.trace.daemonsets:
                kube.add(make_daemonset(daemonset.name, daemonset.requests, daemonset.node_selector,
                                        daemonset.tolerations, daemonset.host_ports))
            self.daemonsets = DaemonSetController(kube)
            self.scheduler = Scheduler(kube)
            self.workload = Workload(kube, self.trace)
            self.unrunnable = unrunnable_jobs(self.trace, self.nodes.allocatable)
            self._never_runs = {job.name: job.count for job in self.trace.jobs if job.name in self.unrunnable}
            return build_loop(self.settings, self.stop, clock=self.clock.now, wait=self._wait)
        except SandboxSetupError:
            raise
        except Exception as error:
            raise SandboxSetupError(f"cannot set up the simulated cluster: {_one_line(error)}") from error

    def _create_groups(self, aws: FakeAws) -> None:
        for group in self.trace.groups:
            try:
                aws.create_group(group.region, group.name, CLUSTER_NAME, instance_type=group.instance_type,
                                 min_size=group.min_size, max_size=group.max_size, desired=group.min_size,
                                 tags={f"kube/{key}": value for key, value in group.labels.items()},
                                 zones=group.zones or None)
            except Exception as error:
                raise SandboxSetupError(f"cannot create group {group.name} ({group.region}, {group.instance_type}) "
                                        f"in moto: {_one_line(error)}") from error

    def _wait(self, seconds: float) -> None:
        """The loop's pause: simulated time passes here, in steps."""
        remaining, after_loop = seconds, True
        while remaining > 0 and not self.stop.is_set():
            step = min(self.step_seconds, remaining)
            if not self.clock.advance(step, self.stop):
                return
            remaining -= step
            self._step(groups_changed=after_loop)
            after_loop = False

    def _step(self, groups_changed: bool = True) -> None:
        seconds = self.clock.seconds
        now = self.clock.now()
        self._apply_launch_failures(seconds)
        self.workload.submit_due(seconds)
        self.workload.release_gates(seconds)
        groups = self.nodes.step(now, refresh=groups_changed)
        self.daemonsets.step(now)
        result = self.scheduler.step(now)
        for pod in result.finished:
            self.workload.finished(pod, seconds)
        for pod in result.started:
            self.workload.started(pod, seconds)
        self.workload.resubmit_lost(result.present + result.finished, seconds)
        self.recorder.record(seconds, groups, result.pending, result.running)
        if seconds >= self._next_status:
            self._next_status = (seconds // STATUS_EVERY_SECONDS + 1) * STATUS_EVERY_SECONDS
            nodes = " ".join(f"{g.name}={g.nodes}" + (f"(+{g.instances - g.nodes})" if g.instances > g.nodes else "")
                             for g in groups)
            self._say(f"[{clock_text(seconds)}] pending={result.pending} running={result.running} "
                      f"done={self.workload.finished_count}"
                      f"/{self.trace.job_count} nodes: {nodes}")
        minimum = {(g.region, g.name): g.min_size for g in self.trace.groups}
        never = sum(self._never_runs.values())
        if self.workload.unfinished <= never and all(g.instances <= minimum.get((g.region, g.name), 0) for g in groups):
            self.stopped = ("every job finished and every group is back to its minimum size" if not never else
                            f"every job that can run finished ({never} can never run) and every group is back to "
                            "its minimum size")
            self.stop.set()
        elif seconds >= self._time_limit:
            self.stopped = (f"reached the time limit of {clock_text(self._time_limit)} (h:mm) with "
                            f"{self.workload.unfinished} jobs unfinished")
            self.stop.set()

    def unused_instances(self) -> list[dict]:
        """Every instance a group held that no pod other than a DaemonSet's ever ran on, by group
        and node name (None: it never became a node)."""
        unused = []
        for instance, (_, group) in self.nodes.group_of.items():
            node = self.nodes.nodes_ever.get(instance)
            if node not in self.scheduler.used_nodes:
                unused.append({"group": group, "node": node})
        return sorted(unused, key=lambda u: (u["group"], u["node"] or "~"))

    def _apply_launch_failures(self, seconds: float) -> None:
        for failure in self.trace.launch_failures:
            key = (failure.region, failure.group)
            if failure.active(seconds) and key not in self._failing:
                self.aws.fail_launches(failure.region, failure.group)
                self._failing.add(key)
                self._say(f"[{clock_text(seconds)}] sandbox: launches of {failure.group} ({failure.region}) now fail "
                          "(insufficient capacity)")
            elif not failure.active(seconds) and key in self._failing:
                self.aws.stop_failing(failure.region, failure.group)
                self._failing.discard(key)
                self._say(f"[{clock_text(seconds)}] sandbox: launches of {failure.group} ({failure.region}) work again")

    def _say(self, line: str) -> None:
        if self.status is not None:
            self.status(line)

    def _report(self, aws: FakeAws, real_seconds: float) -> None:
        """Sets ``self.report``; Ctrl-C while the chart is drawn keeps the report, without the chart."""
        failed = sum(1 for region in self.trace.regions for activity in aws.activities.newest_first(region)
                     if activity.status_code == "Failed")
        self.report = build_report(
            trace=self.trace, stopped=self.stopped or "stopped", simulated_seconds=self.clock.seconds,
            real_seconds=real_seconds, settings=describe_settings(self.settings),
            jobs=list(self.workload.jobs.values()), recorder=self.recorder,
            lower_bound=lower_bound_hours(self.trace, self.nodes.allocatable), failed_launches=failed,
            first_region=self.trace.regions[0], unsubmitted=self.workload.not_yet_submitted,
            lower_bound_cost=lower_bound_dollars(self.trace, self.nodes.allocatable),
            unrunnable=self.unrunnable, unused_instances=self.unused_instances(),
            instances_bought=len(self.nodes.group_of),
        )
        if self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.chart:
                chart = draw_chart(self.recorder, self.out_dir / "nodes.png",
                                   f"{Path(self.trace.source).name}: nodes per group and pods over time")
                self.report = replace(self.report, chart=str(chart))
        except KeyboardInterrupt as interrupt:
            self.stopped = interruption(interrupt)
            self.report = replace(self.report, stopped=self.stopped)
        (self.out_dir / "report.json").write_text(self.report.to_json())


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "no detail"
    return f"{type(error).__name__}: {text[:300]}"


@contextlib.contextmanager
def _scratch_dir(out_dir: Optional[Path]) -> Iterator[Path]:
    """Where the kubeconfig goes: the output directory, else a temporary one."""
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        yield out_dir
        return
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sandbox-") as scratch:
        yield Path(scratch)
