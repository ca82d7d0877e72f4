"""The sandbox: traces, the lower bound, and end-to-end runs of the real loop against the fakes.

Runs go in-process through ``Sandbox`` with the session's FakeAws (reset by the ``fake_aws``
fixture), as fast as the machine allows (no speed). The malformed-trace tests go through the CLI
in a subprocess; the command's error and Ctrl-C paths through ``cli.run`` in-process, on a Sandbox
given the session's FakeAws.
"""
import functools
import json
import math
import pathlib
import subprocess
import sys
import textwrap

import pytest
from slack_capture import SlackCapture

from autoscaler.read.capacity import allocatable, info_from_table
from autoscaler.model.config import Settings
from autoscaler.sandbox import Sandbox, TraceError, cli, load_trace, parse_trace, runner, sandbox_settings
from autoscaler.sandbox import report as report_module
from autoscaler.sandbox.report import lower_bound_hours, percentile
from autoscaler.sandbox.runner import INTERRUPTED

ROOT = pathlib.Path(__file__).resolve().parent.parent
M5_XLARGE = allocatable(info_from_table("m5.xlarge"))


def settings(**flags) -> Settings:
    """The sandbox's demo settings; ``flags`` stand for flags given on the command line."""
    return sandbox_settings(Settings(cluster_name="ignored", **flags), frozenset(flags))


def run(fake_aws, *trace_parts, tmp_path=None, **flags):
    trace = parse_trace("".join(textwrap.dedent(part) for part in trace_parts), "test-trace")
    return Sandbox(trace, settings(**flags), aws=fake_aws, status=None, out_dir=tmp_path, chart=tmp_path is not None).run()


# ---- traces ----------------------------------------------------------------------------------------

def test_a_trace_gives_arrivals_requests_and_failures():
    trace = parse_trace(textwrap.dedent("""\
        jobs:
          - {name: etl, at: 2m, count: 3, rate: 2/min, requests: {cpu: 500m, memory: 1Gi}, duration: 1h,
             node_selector: {hardware: cpu}}
        groups:
          - {name: west, region: us-west-2, instance_type: m5.xlarge, labels: {hardware: cpu}}
          - {name: east, region: us-east-1, instance_type: m5.xlarge}
        launch_failures:
          - {group: west, at: 90s, until: 10m}
        """))
    job = trace.jobs[0]
    assert [job.arrival(i) for i in range(job.count)] == [120, 150, 180]
    assert job.duration == 3600 and dict(job.node_selector) == {"hardware": "cpu"}
    assert trace.regions == ("us-west-2", "us-east-1")
    failure = trace.launch_failures[0]
    assert (failure.region, failure.at, failure.until) == ("us-west-2", 90, 600)
    assert failure.active(90) and not failure.active(600)


def test_the_default_trace_uses_the_demo_cluster():
    trace = load_trace()
    assert {g.name for g in trace.groups} == {"cpu-west", "gpu-west", "cpu-east"}
    assert trace.launch_failures and any("nvidia.com/gpu" in job.requests for job in trace.jobs)


@pytest.mark.parametrize("text, line, field", [
    pytest.param("jobs:\n  - name: a\n    requests: {cpu: 2x}\n    duration: 1m\n", 3, "jobs[0].requests.cpu",
                 id="bad-quantity"),
    pytest.param("jobs:\n  - name: a\n    requests: {cpu: 1}\n    duration: soon\n", 4, "jobs[0].duration",
                 id="bad-duration"),
    pytest.param("jobs:\n  - name: a\n    requests: {cpu: 1}\n", 2, "jobs[0]", id="missing-duration"),
    pytest.param("jobs:\n  - name: a\n    count: -2\n    requests: {cpu: 1}\n    duration: 1m\n", 3, "jobs[0].count",
                 id="negative-count"),
    pytest.param("jobs:\n  - name: a\n    rate: fast\n    requests: {cpu: 1}\n    duration: 1m\n", 3, "jobs[0].rate",
                 id="bad-rate"),
    pytest.param("jobs:\n  - name: a\n    requests: {cpu: 1}\n    duration: 1m\n    colour: red\n", 5,
                 "jobs[0].colour", id="unknown-field"),
    pytest.param("jobs:\n  - {name: a, requests: {cpu: 1}, duration: 1m}\nlaunch_failures:\n  - {group: nope, at: 0}\n",
                 4, "launch_failures[0].group", id="unknown-group"),
    pytest.param("jobs: [\n", 2, "", id="not-yaml"),
    pytest.param("jobs: []\n", 1, "jobs", id="no-jobs"),
    pytest.param("jobs:\n  - {name: a, requests: {cpu: 1}, duration: 1m}\ngroups: []\n", 3, "groups",
                 id="no-groups"),
    pytest.param("jobs:\n  - {name: a, requests: {cpu: 1}, duration: 1m}\ngroups:\n"
                 "  - {name: g, instance_type: m5.xlarge,\n     region: xx-nowhere-9}\n", 5, "groups[0].region",
                 id="unknown-region"),
    pytest.param("jobs:\n  - {name: a, requests: {cpu: 1}, duration: 1m}\ngroups:\n"
                 "  - {name: g, instance_type: m5.xlarge, region: us-west-2,\n     zones: [us-east-1a]}\n", 5,
                 "groups[0].zones[0]", id="zone-of-another-region"),
    pytest.param("jobs:\n  - {name: a, requests: {cpu: 1}, duration: 1m}\ngroups:\n"
                 "  - {name: g, instance_type: m5.xlarge, region: us-west-2,\n     startup_taints: [{taint: cilium}]}\n",
                 5, "groups[0].startup_taints[0].taint", id="taint-without-effect"),
    pytest.param("jobs:\n  - {name: a, requests: {cpu: 1}, duration: 1m,\n     affinity: [zone]}\n", 3,
                 "jobs[0].affinity", id="affinity-not-a-mapping"),
    pytest.param("jobs:\n  - {name: a, requests: {cpu: 1}, duration: 1m}\ndaemonsets:\n  - {name: ds, requests: {cpu: x}}\n",
                 4, "daemonsets[0].requests.cpu", id="daemonset-bad-quantity"),
])
def test_a_malformed_trace_names_the_line_and_field(text, line, field):
    with pytest.raises(TraceError) as raised:
        parse_trace(text, "t.yaml")
    message = str(raised.value)
    assert f"trace t.yaml, line {line}" in message and field in message, message
    assert "\n" not in message


@pytest.mark.parametrize("text, line, field", [
    pytest.param("jobs:\n  - name: etl\n    requests: {cpu: lots}\n    duration: 5m\n", 3, "jobs[0].requests.cpu",
                 id="bad-quantity"),
    # Used to run to the time limit, then fail with an IndexError.
    pytest.param("jobs:\n  - {name: etl, requests: {cpu: 1}, duration: 5m}\ngroups: []\n", 3, "groups",
                 id="no-groups"),
    # Used to fail in moto (an HTML error page: botocore's ResponseParserError) while creating groups.
    pytest.param("jobs:\n  - {name: etl, requests: {cpu: 1}, duration: 5m}\n"
                 "groups:\n  - {name: g, region: xx-nowhere-9, instance_type: m5.xlarge}\n", 4, "groups[0].region",
                 id="unknown-region"),
])
def test_the_cli_rejects_a_malformed_trace_in_one_line(tmp_path, text, line, field):
    trace = tmp_path / "bad.yaml"
    trace.write_text(text)
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "--sandbox", "--sandbox-trace", str(trace),
                             "--sandbox-speed", "0", "--sandbox-out", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: trace ") and f"line {line}:" in lines[0] and field in lines[0], lines[0]


def test_the_command_refuses_once(capsys):
    assert cli.run(Settings(cluster_name=None, once=True), frozenset({"once"})) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: --once: the sandbox replays a whole trace; leave --once out"]


@pytest.mark.parametrize("given, expected", [
    pytest.param(frozenset({"over_provision", "dry_run", "verbose"}), None, id="all-honoured"),
    pytest.param(frozenset({"regions", "cluster_name"}),
                 "sandbox: ignoring --cluster-name, --regions (the sandbox's groups come from the trace)",
                 id="cluster"),
    pytest.param(frozenset({"kubeconfig", "aws_access_key", "metrics_port", "log_format", "sleep"}),
                 "sandbox: ignoring --kubeconfig, --aws-access-key (the sandbox talks to its own fake AWS and "
                 "Kubernetes API); --metrics-port (the sandbox runs one replica, with no leader election and no "
                 "metrics server); --log-format (the sandbox logs text lines stamped with simulated time)",
                 id="grouped-by-reason"),
])
def test_flags_the_sandbox_overrides_are_announced_in_one_line(given, expected):
    assert cli.ignored_flags_notice(given) == expected


# ---- the command's setup errors and Ctrl-C ---------------------------------------------------------

SMALL_TRACE = """\
groups:
  - {name: cpu-west, region: us-west-2, instance_type: m5.xlarge, max_size: 2, labels: {hardware: cpu}}
jobs:
  - {name: burst, count: 2, requests: {cpu: "1", memory: 1Gi}, duration: 2m, node_selector: {hardware: cpu}}
duration: 5m
"""


@pytest.fixture
def sandbox_command(fake_aws, tmp_path, monkeypatch):
    """cli.run on a small trace, its Sandbox on the session's FakeAws; the root logger left alone."""
    monkeypatch.setattr(cli, "Sandbox", functools.partial(Sandbox, aws=fake_aws))
    monkeypatch.setattr(cli, "_configure_logging", lambda *args: None)
    trace = tmp_path / "small.yaml"
    trace.write_text(SMALL_TRACE)
    flags = frozenset({"over_provision"})

    def command() -> int:
        try:
            return cli.run(Settings(cluster_name=None, over_provision=0), flags, str(trace), 0, str(tmp_path / "out"))
        except KeyboardInterrupt:  # would end the whole test session
            pytest.fail("Ctrl-C escaped the sandbox command")

    return command


def _raise(error):
    def raiser(*args, **kwargs):
        raise error
    return raiser


def test_a_setup_failure_is_one_error_line(sandbox_command, fake_aws, monkeypatch, capsys):
    monkeypatch.setattr(fake_aws, "create_group", _raise(RuntimeError("moto said no\nat length")))
    assert sandbox_command() == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: cannot create group cpu-west (us-west-2, m5.xlarge) in moto: RuntimeError: moto said no at length"]


def test_ctrl_c_while_setting_up_is_one_line(sandbox_command, fake_aws, monkeypatch, capsys):
    monkeypatch.setattr(fake_aws, "create_group", _raise(KeyboardInterrupt()))
    assert sandbox_command() == 130
    output = capsys.readouterr()
    assert output.err.splitlines() == [f"{INTERRUPTED}: stopped before the sandbox had anything to report"]
    assert "jobs submitted" not in output.out


def test_ctrl_c_while_drawing_the_chart_still_reports(sandbox_command, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(runner, "draw_chart", _raise(KeyboardInterrupt()))
    assert sandbox_command() == 130
    output = capsys.readouterr()
    assert f"stopped                          {INTERRUPTED}" in output.out
    assert "jobs submitted / finished        2 / 2" in output.out and "chart:" not in output.out
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["stopped"] == INTERRUPTED and written["chart"] is None


# ---- report arithmetic ---------------------------------------------------------------------------

@pytest.mark.parametrize("values, fraction, expected", [
    pytest.param([], 0.5, 0.0, id="none"),
    pytest.param([7.0], 0.95, 7.0, id="one"),
    pytest.param([4.0, 1.0, 3.0, 2.0], 0.5, 2.0, id="median-nearest-rank"),
    pytest.param(list(range(1, 101)), 0.95, 95, id="p95-of-100"),
])
def test_percentile(values, fraction, expected):
    assert percentile(values, fraction) == expected


def test_lower_bound_takes_the_binding_resource_of_the_only_type_that_fits():
    trace = parse_trace(textwrap.dedent("""\
        groups:
          - {name: cpu, region: us-west-2, instance_type: m5.xlarge, labels: {hardware: cpu}}
          - {name: gpu, region: us-west-2, instance_type: p3.2xlarge, labels: {hardware: gpu}}
        jobs:
          - {name: cpu-bound, count: 3, requests: {cpu: "1", memory: 1Gi}, duration: 1h, node_selector: {hardware: cpu}}
          - {name: gpu-bound, count: 2, requests: {cpu: "1", nvidia.com/gpu: 1}, duration: 30m}
        """))
    bounds = lower_bound_hours(trace, lambda t: allocatable(info_from_table(t)))
    # cpu: 3 jobs x 1 CPU x 1 h over 3.92 allocatable CPUs; memory binds less.
    assert bounds["m5.xlarge"] == pytest.approx(3 * 1000 / M5_XLARGE.get("cpu"))
    # The GPU jobs have no selector, but only the GPU group has a GPU: 2 x 0.5 h over one GPU.
    assert bounds["p3.2xlarge"] == pytest.approx(1.0)


R5_XLARGE = allocatable(info_from_table("r5.xlarge"))
GIB = (1 << 30) * 1000  # milli-bytes


@pytest.mark.parametrize("groups, jobs, expected, placed", [
    # The memory-heavy job fits both; the preferred m5 has half the r5's memory. Two r5.xlarge run the
    # four in an hour (counted on m5, as the first group that fits, they made 3.19 instance-hours).
    pytest.param("[{name: m5, region: us-west-2, instance_type: m5.xlarge},"
                 " {name: r5, region: us-west-2, instance_type: r5.xlarge}]",
                 "[{name: big, count: 4, requests: {cpu: 500m, memory: 12Gi}, duration: 1h}]",
                 {"r5.xlarge": 4 * 12 * GIB / R5_XLARGE.get("memory")}, 2.0, id="cheaper-type-later-in-the-list"),
    # Two CPU jobs and a memory job fill one m5.xlarge for an hour (CPU 3.81 of 3.92, memory 14.2 of
    # 15.03 GiB). Each job counted alone on its cheapest type by its own binding resource (the CPU
    # jobs on c5) would add up to 1.9 instance-hours, more than that packing; the bound is the CPU of
    # all three on one type.
    pytest.param("[{name: m5, region: us-west-2, instance_type: m5.xlarge, labels: {pool: m5}},"
                 " {name: c5, region: us-west-2, instance_type: c5.xlarge}]",
                 "[{name: cpu, count: 2, requests: {cpu: 1900m, memory: 100Mi}, duration: 1h},"
                 " {name: mem, count: 1, requests: {cpu: 10m, memory: 14Gi}, duration: 1h,"
                 "  node_selector: {pool: m5}}]",
                 {"m5.xlarge": 3810 / M5_XLARGE.get("cpu")}, 1.0, id="jobs-that-pack-together"),
])
@pytest.mark.parametrize("exhaustive", [pytest.param(4096, id="every-combination"), pytest.param(0, id="improved")])
def test_lower_bound_is_never_above_a_real_placement(groups, jobs, expected, placed, exhaustive, monkeypatch):
    monkeypatch.setattr(report_module, "EXHAUSTIVE_PICKS", exhaustive)
    trace = parse_trace(f"groups: {groups}\njobs: {jobs}\n")
    bounds = lower_bound_hours(trace, lambda t: allocatable(info_from_table(t)))
    assert bounds == pytest.approx(expected)
    assert sum(bounds.values()) <= placed  # the instance-hours of a placement that runs them all


# ---- end to end: the real loop against the fakes ---------------------------------------------------

ONE_REGION = """\
    groups:
      - {name: cpu-west, region: us-west-2, instance_type: m5.xlarge, max_size: 6, labels: {hardware: cpu}}
    """


def test_scale_up_launches_nodes_for_a_burst_and_runs_every_job(fake_aws):
    report = run(fake_aws, ONE_REGION, """\
    jobs:
      - {name: burst, count: 7, requests: {cpu: "1", memory: 1Gi}, duration: 5m, node_selector: {hardware: cpu}}
    duration: 8m
    """, over_provision=0)
    # 3 one-CPU jobs fit an m5.xlarge after the kubelet reserve: 7 jobs need 3 nodes.
    assert report.peak_nodes_by_group == {"cpu-west": 3}
    assert report.jobs_finished == 7
    # Nothing ran before a node booted (90 s) after the first loop raised the group.
    assert report.wait_seconds["p50"] >= 90


def test_overflow_raises_the_next_region_when_the_first_cannot_launch(fake_aws):
    report = run(fake_aws, """\
    groups:
      - {name: cpu-west, region: us-west-2, instance_type: m5.xlarge, max_size: 6, labels: {hardware: cpu}}
      - {name: cpu-east, region: us-east-1, instance_type: m5.xlarge, max_size: 6, labels: {hardware: cpu}}
    launch_failures:
      - {group: cpu-west, at: 0}
    jobs:
      - {name: burst, count: 4, requests: {cpu: "1", memory: 1Gi}, duration: 3m, node_selector: {hardware: cpu}}
    duration: 10m
    """, over_provision=0)
    assert report.failed_launches >= 1
    assert report.peak_nodes_by_group["cpu-west"] == 0
    assert report.peak_nodes_by_group["cpu-east"] == 2
    assert [raise_[1:3] for raise_ in report.overflow_raises] == [["us-east-1", "cpu-east"]]
    assert report.jobs_finished == 4


def test_scale_in_removes_idle_nodes_until_the_group_is_empty(fake_aws):
    report = run(fake_aws, ONE_REGION, """\
    jobs:
      - {name: short, count: 4, requests: {cpu: "1", memory: 1Gi}, duration: 2m, node_selector: {hardware: cpu}}
    """, over_provision=0, idle_threshold=120, type_idle_threshold=120)
    assert report.stopped == "every job finished and every group is back to its minimum size"
    assert report.peak_nodes == 2
    assert report.timeline[-1]["nodes"] == {"cpu-west": 0}
    # Two nodes, each about 1.5 min booting + 2 min busy + 2 min idle + a loop or two to act.
    assert 2 * 5 / 60 <= report.instance_hours["cpu-west"] <= 2 * 9 / 60


def test_the_default_trace_finishes_every_job_and_the_report_adds_up(fake_aws, tmp_path):
    trace = load_trace()
    # --sleep 60 (the production default) halves the loops of the demo's 30 s and keeps the test short.
    report = Sandbox(trace, settings(sleep=60), aws=fake_aws, status=None, out_dir=tmp_path).run()
    assert report.stopped == "every job finished and every group is back to its minimum size"
    assert report.jobs_submitted == report.jobs_finished == trace.job_count
    assert report.jobs_unfinished == 0
    waits = report.wait_seconds
    assert 0 <= waits["p50"] <= waits["p95"] <= waits["max"]
    assert report.lower_bound_total > 0
    assert report.instance_hours_total >= report.lower_bound_total
    assert report.ratio == pytest.approx(report.instance_hours_total / report.lower_bound_total, abs=0.01)
    assert math.isclose(sum(report.instance_hours.values()), report.instance_hours_total, abs_tol=0.01)
    assert report.peak_nodes <= sum(report.peak_nodes_by_group.values())
    assert report.peak_nodes_by_group["gpu-west"] >= 1  # the GPU jobs got GPU nodes
    assert report.failed_launches >= 1 and report.overflow_raises  # cpu-west failed; cpu-east took over
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["jobs_finished"] == report.jobs_finished
    assert pathlib.Path(report.chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_production_wiring_posts_events_and_slack_messages(fake_aws):
    """daemon.build_loop runs the loop: Events go to the fake API and the Slack hook is kept."""
    slack = SlackCapture()
    try:
        sandbox = Sandbox(parse_trace(textwrap.dedent(ONE_REGION) + textwrap.dedent("""\
            jobs:
              - {name: burst, count: 2, requests: {cpu: "1", memory: 1Gi}, duration: 2m, node_selector: {hardware: cpu}}
            duration: 4m
            """), "test-trace"), settings(over_provision=0, slack_hook=slack.url), aws=fake_aws, status=None)
        sandbox.run()
    finally:
        slack.close()
    reasons = {event["reason"] for event in sandbox.kube.list("Event")}
    assert "TriggeredScaleUp" in reasons, reasons
    assert any("cpu-west" in message for message in slack.messages), slack.messages


def test_nodes_start_tainted_report_gpus_late_and_run_the_daemonsets(fake_aws):
    """The simulators of issue 17: a start-up taint gone after 60 s, the GPU reported 60 s after
    registration, a DaemonSet pod on the node; a job waits for both, then runs there."""
    sandbox = Sandbox(parse_trace(textwrap.dedent("""\
        groups:
          - {name: gpu, region: us-west-2, instance_type: p3.2xlarge, min_size: 1, max_size: 1,
             startup_taints: [{taint: "node.cilium.io/agent-not-ready=true:NoSchedule", for: 60s},
                              {taint: "example.com/forever:PreferNoSchedule"}], gpu_after: 60s}
        daemonsets:
          - {name: agent, requests: {cpu: 200m, memory: 200Mi}}
        jobs:
          - {name: train, requests: {cpu: "1", nvidia.com/gpu: 1}, duration: 1m}
        duration: 6m
        """), "test-trace"), settings(over_provision=0), aws=fake_aws, status=None)
    report = sandbox.run()
    (node,) = sandbox.kube.list("nodes")
    assert [taint["key"] for taint in node["spec"]["taints"]] == ["example.com/forever"]
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "1"
    (agent,) = [pod for pod in sandbox.kube.list("pods") if pod["metadata"]["name"].startswith("agent-")]
    assert agent["spec"]["nodeName"] == node["metadata"]["name"]
    assert report.jobs_finished == 1
    assert report.wait_seconds["max"] >= 90 + 60  # the boot, then the taint and the GPU
    assert report.unused_instances == [] and report.instances_bought == 1
