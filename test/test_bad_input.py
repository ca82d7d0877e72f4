"""The catalogue of bad input (README "Configuration"): flags, kubeconfigs, the environment, API
servers that answer wrongly or not at all, credentials and permissions, and traces. Each case
runs the real CLI and asserts its exit code and its one line (what is wrong, what to do), and that
there is no traceback and no page of HTML.

Exit codes: 2 for what is wrong before any API call (flags, files, the environment), 1 for what
the first loop finds (configuration that no retry fixes, or a failed --once), 0 after a stop by
signal, 143 for a sandbox stopped by SIGTERM.

The cases that need no fake run in parallel, once for the module; those that need the fakes run
one by one with them; the sandbox's own endings go through its command in-process.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Optional

import pytest
from silent_server import DrippingServer, SilentServer

import main
from autoscaler.model.config import Settings
from autoscaler.fakes.kube_objects import make_node, make_pod
from autoscaler.clients.http_summary import first_line
from autoscaler.clients import kube_connect
from autoscaler.clients.kube_connect import KubeConfigError, connect
from autoscaler.sandbox import Sandbox, cli
from daemon_process import poll

ROOT = pathlib.Path(__file__).resolve().parent.parent
MAX_LINE = 400  # one line says what is wrong and what to do; a page is longer
# Any AWS call would go to a closed port and fail loudly: bad input must stop before that.
NO_AWS_YET = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_EC2_METADATA_DISABLED": "true"}
WITH_KEYS = {**NO_AWS_YET, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
NO_CREDENTIALS = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                  "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body>\n<h1>Not Found</h1>\n"
             + b"<p>The requested URL was not found on this server.</p>\n" * 50 + b"</body></html>\n")


def clean_env(extra: Optional[dict] = None) -> dict:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK", "KUBECONFIG"))}
    environment.update(extra or {})
    return environment


def run_cli(args, env: dict, timeout: float = 60, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=cwd, stdin=subprocess.DEVNULL)


def assert_one_line(result, code: int, *expected: str) -> str:
    """The process (a CompletedProcess, or an exit code with captured output) exited with ``code``
    and wrote one ``error:`` line holding every ``expected``, and nothing else on stderr."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert "<p>" not in output and "<html" not in output.lower(), output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: ") and len(line) < MAX_LINE, line
    for text in expected:
        assert text in line, line
    assert result.returncode == code, (result.returncode, line)
    return line


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


# ---- cases that need no fake: run once, in parallel ------------------------------------------------

class Case(NamedTuple):
    args: tuple
    code: int
    expected: tuple  # texts the one line must hold
    env: dict = {}
    timeout: float = 60


def flag_case(*args, flag, code=2, also=(), env=NO_AWS_YET):
    return Case(("--cluster-name", "c", "--once", *args), code, (flag, *also), env)


FLAGS = {
    # Existing bad flags: each names its flag.
    "missing-cluster-name": Case(("--once",), 2, ("--cluster-name",), NO_AWS_YET),
    "empty-regions": flag_case("--regions", "", flag="--regions"),
    "empty-region-in-list": flag_case("--regions", "us-west-2,,us-east-1", flag="--regions"),
    "malformed-region": flag_case("--regions", "mars-north", flag="--regions"),
    "duplicate-region": flag_case("--regions", "us-west-2,us-west-2", flag="--regions"),
    "unknown-region": flag_case("--regions", "xx-fake-9", flag="--regions", also=("botocore",)),
    "unknown-second-region": flag_case("--regions", "us-west-2,eu-moon-1", flag="--regions"),
    "negative-idle-threshold": flag_case("--idle-threshold", "-5", flag="--idle-threshold"),
    "negative-type-idle": flag_case("--type-idle-threshold", "-1", flag="--type-idle-threshold"),
    "negative-init-time": flag_case("--instance-init-time", "-1", flag="--instance-init-time"),
    "zero-sleep": flag_case("--sleep", "0", flag="--sleep"),
    "non-numeric-sleep": flag_case("--sleep", "soon", flag="--sleep"),
    "negative-over-provision": flag_case("--over-provision", "-2", flag="--over-provision"),
    "fractional-over-provision": flag_case("--over-provision", "1.5", flag="--over-provision"),
    "huge-over-provision": flag_case("--over-provision", "99999999999999999999", flag="--over-provision"),
    "fraction-above-one": flag_case("--max-scale-in-fraction", "1.5", flag="--max-scale-in-fraction"),
    "unknown-scale-in-cap": flag_case("--scale-in-cap", "sometimes", flag="--scale-in-cap"),
    "unknown-scale-in-cap-variable": Case(("--cluster-name", "c", "--once"), 2, ("--scale-in-cap",),
                                          {**NO_AWS_YET, "AUTOSCALER_SCALE_IN_CAP": "BRAKE!"}),
    "negative-drain-utilization": flag_case("--drain-utilization", "-0.1", flag="--drain-utilization"),
    "metrics-port-out-of-range": flag_case("--metrics-port", "70000", flag="--metrics-port"),
    "missing-kubeconfig": flag_case("--kubeconfig", "/nonexistent/kubeconfig", flag="--kubeconfig"),
    "access-key-without-secret": flag_case("--aws-access-key", "AKIA", flag="--aws-secret-key"),
    "slack-hook-not-a-url": flag_case("--slack-hook", "hooks.slack.com/services/T0/B0/secret", flag="--slack-hook"),
    "pod-namespace-with-a-space": flag_case("--pod-namespace", "BAD NS", flag="--pod-namespace"),
    "pod-namespace-upper-case": flag_case("--pod-namespace", "Batch", flag="--pod-namespace"),
    "pod-namespace-too-long": flag_case("--pod-namespace", "a" * 64, flag="--pod-namespace"),
    "startup-taint-with-a-space": flag_case("--startup-taint", "agent not ready", flag="--startup-taint"),
    "startup-taint-empty-name": flag_case("--startup-taint", "node.cilium.io/", flag="--startup-taint"),
    "leader-namespace-empty": flag_case("--leader-elect-namespace", "", flag="--leader-elect-namespace"),
    "leader-namespace-with-slash": flag_case("--leader-elect-namespace", "kube/system", flag="--leader-elect-namespace"),
    "sandbox-flag-without-sandbox": flag_case("--sandbox-speed", "5", flag="--sandbox-speed"),
    "sandbox-with-once": Case(("--sandbox", "--once"), 2, ("--once",), NO_AWS_YET),
    "sandbox-speed-nan": Case(("--sandbox", "--sandbox-speed", "nan"), 2, ("--sandbox-speed",), NO_AWS_YET),
}
# Every float flag refuses what is not a finite number in range: NaN passed every comparison, inf
# and 1e300 overflowed sleeps and datetimes.
for float_flag in ("--idle-threshold", "--type-idle-threshold", "--instance-init-time", "--sleep",
                   "--max-scale-in-fraction", "--drain-utilization", "--group-timeout"):
    for text in ("nan", "inf", "-inf", "1e300"):
        FLAGS[f"{float_flag[2:]}-{text}"] = flag_case(float_flag, text, flag=float_flag)

KUBECONFIGS = {
    "not-yaml": "{{{ this is : not yaml",
    "a-scalar": "just a string\n",
    "a-list": "- a\n- b\n",
    "empty": "",
    "no-such-context": "apiVersion: v1\nkind: Config\ncurrent-context: missing\n",
    "clusters-not-a-list": "clusters: 5\ncurrent-context: x\n",
    "context-not-a-mapping": "contexts: [{name: x, context: [1, 2]}]\ncurrent-context: x\n",
    "current-context-a-list": "current-context: [a, b]\n",
    "server-a-number": ("clusters: [{name: c, cluster: {server: 42}}]\nusers: [{name: u, user: {token: t}}]\n"
                        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"),
    "server-not-a-url": ("clusters: [{name: c, cluster: {server: banana}}]\nusers: [{name: u, user: {token: t}}]\n"
                         "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"),
    "token-a-list": ("clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
                     "users: [{name: u, user: {token: [t]}}]\n"
                     "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"),
    # An EKS kubeconfig on a machine without the authenticator: the loader would log and go on.
    "exec-plugin-not-installed": ("clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
                                  "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, "
                                  "command: no-such-authenticator-here, args: [token]}}}]\n"
                                  "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"),
    "exec-plugin-without-command": ("clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
                                    "users: [{name: u, user: {exec: {args: [token]}}}]\n"
                                    "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"),
}

TRACES = {
    "job-of-100000h": ("jobs:\n  - {name: long, requests: {cpu: '1'}, duration: 100000h}\n", "jobs[0].duration"),
    "a-billion-jobs": ("jobs:\n  - {name: many, count: 1000000000, requests: {cpu: '1'}, duration: 1m}\n",
                       "jobs[0].count"),
    "not-text": (b"\xff\xfe jobs", "not a text file"),
    "a-trace-of-a-century": ("jobs:\n  - {name: a, requests: {cpu: '1'}, duration: 1m}\nduration: 876000h\n",
                             "duration"),
}


KUBECONFIGS_THROUGH_THE_CLI = ("a-list", "server-not-a-url", "exec-plugin-not-installed")  # the others through connect(), below


@pytest.mark.parametrize("text", [*KUBECONFIGS.values(), b"\xff\xfe\x00\x01 not text"],
                         ids=[*KUBECONFIGS, "binary"])
def test_a_kubeconfig_that_is_not_one_is_one_line_naming_the_flag(text, tmp_path):
    """What the CLI prints, with exit code 2, for each: connect() is all it runs before that."""
    path = tmp_path / "kubeconfig"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(KubeConfigError) as raised:
        connect(str(path))
    message = str(raised.value)
    assert message.startswith(f"--kubeconfig {path}: ") and "\n" not in message and len(message) < MAX_LINE
    assert "TypeError" not in message and "KeyError" not in message, message  # its shape, in words


def kubeconfig_for(server: str) -> str:
    return (f"clusters: [{{name: c, cluster: {{server: '{server}'}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\n"
            "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")


class HtmlServer:
    """A plain web server that answers every request with an HTML page and ``status``."""

    def __init__(self, status: int):
        page, code = HTML_PAGE, status

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(code)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            do_POST = do_PATCH = do_PUT = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("case", FLAGS.values(), ids=FLAGS.keys())
def test_a_bad_flag_is_one_line_naming_it(case, capsys, monkeypatch):
    """In-process through main.main, which is all the subprocess would run before exiting: flag
    errors end before the daemon (and its signal handlers and logging) is even imported."""
    for name in [name for name in os.environ if name.startswith(("AWS_", "SLACK"))]:
        monkeypatch.delenv(name)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    code = main.main(list(case.args))
    output = capsys.readouterr()
    assert_one_line(Ran(code, output.out, output.err), case.code, *case.expected)


TRACE_CASES = {
    **{f"trace-{name}": (text, (field,)) for name, (text, field) in TRACES.items()},
    "sandbox-out-under-a-file": ("jobs:\n  - {name: a, requests: {cpu: '1'}, duration: 1m}\n",
                                 ("--sandbox-out", "Not a directory")),
}


@pytest.mark.parametrize("case", TRACE_CASES.values(), ids=TRACE_CASES.keys())
def test_a_bad_trace_or_sandbox_output_is_one_line(case, tmp_path, capsys):
    """In-process through the sandbox command: both are refused before the sandbox starts."""
    text, expected = case
    (tmp_path / "trace.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    (tmp_path / "a-file").write_text("")
    code = cli.run(Settings(cluster_name=None), frozenset(), str(tmp_path / "trace.yaml"), 0,
                   str(tmp_path / "a-file" / "out"))
    output = capsys.readouterr()
    assert_one_line(Ran(code, output.out, output.err), 2, *expected)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """Every case without a fake, each as a subprocess of the real CLI, run in parallel:
    case id -> (Case, CompletedProcess)."""
    files = tmp_path_factory.mktemp("bad-input")
    # A few flag errors through the real command line, end to end.
    cases = {f"cli-{name}": FLAGS[name] for name in ("group-timeout-nan", "sleep-inf", "unknown-region")}
    for name in KUBECONFIGS_THROUGH_THE_CLI:
        path = files / f"{name}.kubeconfig"
        path.write_text(KUBECONFIGS[name])
        cases[f"kubeconfig-{name}"] = flag_case("--kubeconfig", str(path), flag="--kubeconfig")
    good_kubeconfig = files / "refused.kubeconfig"
    good_kubeconfig.write_text(kubeconfig_for("http://127.0.0.1:9"))
    once = ("--cluster-name", "c", "--regions", "us-west-2", "--kubeconfig", str(good_kubeconfig), "--once")
    cases["aws-endpoint-not-a-url"] = Case(once, 2, ("Invalid endpoint: banana", "AWS_ENDPOINT_URL"),
                                           {**WITH_KEYS, "AWS_ENDPOINT_URL": "banana"})
    cases["aws-profile-unknown"] = Case(once, 2, ("nope",), {**NO_AWS_YET, "AWS_PROFILE": "nope",
                                                             "AWS_CONFIG_FILE": os.devnull})

    html = HtmlServer(404)
    (files / "html.kubeconfig").write_text(kubeconfig_for(html.url))
    cases["kube-server-answers-an-html-404"] = Case(
        ("--cluster-name", "c", "--regions", "us-west-2", "--kubeconfig", str(files / "html.kubeconfig"), "--once"),
        1, ("not a Kubernetes API server", "HTTP 404", "404 Not Found", "kubeconfig"), WITH_KEYS)
    # A server that accepts and never answers, and one that answers a byte every 0.5 s for ever:
    # started now, waited for by the last test of the module, so that their read timeout and the
    # call's total deadline pass while the other tests run.
    unfinished = {}
    servers = {"stalled": SilentServer(lifetime=120).__enter__(), "dripping": DrippingServer(lifetime=120).__enter__()}
    for name, server in servers.items():
        (files / f"{name}.kubeconfig").write_text(kubeconfig_for(server.url))
        unfinished[name] = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py"), "--cluster-name", "c", "--regions", "us-west-2", "--kubeconfig",
             str(files / f"{name}.kubeconfig"), "--once"], cwd=files, env=clean_env(WITH_KEYS),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {name: pool.submit(run_cli, case.args, clean_env(case.env), case.timeout, files)
                       for name, case in cases.items()}
            results = {name: (cases[name], future.result()) for name, future in futures.items()}
        yield {**results, **unfinished}
    finally:
        for process in unfinished.values():
            process.kill()
            process.communicate()
        for server in servers.values():
            server.__exit__(None, None, None)
        html.close()


CATALOGUE_IDS = (["cli-group-timeout-nan", "cli-sleep-inf", "cli-unknown-region"]
                 + [f"kubeconfig-{name}" for name in KUBECONFIGS_THROUGH_THE_CLI]
                 + ["aws-endpoint-not-a-url", "aws-profile-unknown", "kube-server-answers-an-html-404"])


@pytest.mark.parametrize("case_id", CATALOGUE_IDS)
def test_bad_input_to_the_real_cli_is_one_line_and_its_exit_code(catalogue, case_id):
    case, result = catalogue[case_id]
    assert_one_line(result, case.code, *case.expected)


# ---- configuration found by the first loop: exit 1, within the first loop, daemon as --once ---------

@pytest.fixture
def autoscaler_cli(fake_aws, fake_kube):
    def run(*args, env=None, aws_env=True, timeout=60):
        environment = fake_aws.env(inherit=clean_env()) if aws_env else clean_env(NO_CREDENTIALS)
        environment.update(env or {})
        return run_cli(("--cluster-name", "e2e", "--regions", "us-west-2", "--kubeconfig", fake_kube.kubeconfig,
                        "--metrics-port", "0", *args), environment, timeout)
    return run


MODES = {"once": ("--once",), "daemon": ("--sleep", "1")}
ONCE = {"once": ("--once",)}


@pytest.mark.parametrize("mode", MODES.values(), ids=MODES.keys())
def test_no_aws_credentials_end_the_first_loop(autoscaler_cli, mode):
    result = autoscaler_cli(*mode, aws_env=False, timeout=30)
    assert_one_line(result, 1, "no usable AWS credentials", "AWS_ACCESS_KEY_ID")


@pytest.mark.parametrize("mode, status, says", [
    pytest.param(("--once",), 401, "refused the credentials", id="401-once"),
    pytest.param(("--once",), 403, "HTTP 403", id="403-once"),
    pytest.param(("--sleep", "1"), 403, "HTTP 403", id="403-daemon"),
])
def test_the_api_server_refusing_the_first_loop_ends_it(autoscaler_cli, fake_kube, mode, status, says):
    fake_kube.fail_next("GET", r"^/api/v1/(nodes|pods)", status=status, count=1000)
    assert_one_line(autoscaler_cli(*mode, timeout=30), 1, says)


@pytest.mark.parametrize("mode", ONCE.values(), ids=ONCE.keys())
def test_aws_access_denied_in_the_first_loop_ends_it(autoscaler_cli, fake_aws, mode):
    fake_aws.inject_faults("DescribeAutoScalingGroups", count=1000, status=403, code="AccessDenied",
                           message="User is not authorized")
    assert_one_line(autoscaler_cli(*mode, timeout=30), 1, "autoscaling:DescribeAutoScalingGroups")


def test_a_lease_the_service_account_may_not_touch_ends_the_daemon(autoscaler_cli, fake_kube):
    fake_kube.fail_next("*", r"/leases", status=403, count=1000)
    assert_one_line(autoscaler_cli("--leader-elect", "--sleep", "1", timeout=30), 1, "HTTP 403", "lease")


def test_an_aws_endpoint_that_answers_a_web_page_is_one_line(autoscaler_cli):
    html = HtmlServer(200)
    try:
        result = autoscaler_cli("--once", env={"AWS_ENDPOINT_URL": html.url}, timeout=30)
    finally:
        html.close()
    assert_one_line(result, 1, "not an AWS API", "404 Not Found", "AWS_ENDPOINT_URL")


def test_after_a_successful_loop_a_refusal_is_logged_and_retried(fake_kube, start_autoscaler):
    process = start_autoscaler("--regions", "us-west-2", "--sleep", "1", "--metrics-port", "0", "-v")
    poll(lambda: any(r.path.startswith("/api/v1/pods") for r in fake_kube.requests), 30, "the first loop")
    fake_kube.fail_next("GET", r"^/api/v1/pods", status=403, count=2)
    process.wait_for_log("reading the cluster failed", timeout=30)
    process.wait_for_log("loop failed; next try in", timeout=30)
    assert process.popen.poll() is None, "a refusal after a successful loop is retried, not fatal"
    assert process.terminate(10) == 0, process.log()
    assert "Traceback" not in process.log()


# ---- signals: within 5 s at any moment, a stalled call included -------------------------------------

@pytest.mark.parametrize("mode, sent, code, says", [
    pytest.param((), signal.SIGTERM, 0, "a call still waiting for its server after 3 s was abandoned", id="daemon-sigterm"),
    pytest.param(("--once",), signal.SIGINT, 130, "error: stopped by SIGINT while a call was still waiting", id="once-ctrl-c"),
])
def test_a_signal_while_a_call_is_stalled_ends_the_process(tmp_path, mode, sent, code, says):
    with SilentServer(lifetime=60) as silent:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(kubeconfig_for(silent.url))
        log = tmp_path / "log"
        with open(log, "w") as output:
            process = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--cluster-name", "c", "--regions",
                                        "us-west-2", "--kubeconfig", str(kubeconfig), "--metrics-port", "0", "-vv",
                                        *mode], cwd=ROOT, env=clean_env(WITH_KEYS), stdout=output,
                                       stderr=subprocess.STDOUT)
            try:
                poll(lambda: "Running Scaling Loop" in log.read_text(), 30, "the first loop to start")
                process.send_signal(sent)
                returned = process.wait(10)  # the grace is 3 s; the bound, 5 s
            finally:
                process.kill()
    text = log.read_text()
    assert returned == code, text
    assert says in text and "Traceback" not in text


# ---- messages a new user reads ---------------------------------------------------------------------

def test_once_ends_with_a_summary_and_a_cluster_name_matching_no_group_is_a_warning(autoscaler_cli, fake_aws,
                                                                                      fake_kube):
    fake_aws.create_group("us-west-2", "workers", "another-cluster", instance_type="m5.xlarge", max_size=5)
    fake_kube.add(make_node("node-1"))
    fake_kube.add(make_pod("job-1", cpu="2", memory="1Gi"))
    result = autoscaler_cli("--once", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.strip().splitlines()
    assert any("--cluster-name e2e matches no Auto Scaling group in us-west-2" in line and "WARNING" in line
               for line in lines), result.stderr
    assert "done: read 0 group(s), 1 node(s), 1 pod(s) (1 pending)" in lines[-1], result.stderr
    assert "nothing changed (dry run)" in lines[-1]


# ---- the sandbox's endings ---------------------------------------------------------------------------

@pytest.fixture
def sandbox_command(fake_aws, tmp_path, monkeypatch):
    """cli.run on a trace, its Sandbox on the session's FakeAws; the root logger left alone."""
    monkeypatch.setattr(cli, "Sandbox", functools.partial(Sandbox, aws=fake_aws))
    monkeypatch.setattr(cli, "_configure_logging", lambda *args: None)

    def command(trace_text: str) -> tuple[int, dict]:
        trace = tmp_path / "trace.yaml"
        trace.write_text(trace_text)
        code = cli.run(Settings(cluster_name=None), frozenset(), str(trace), 0, str(tmp_path / "out"))
        return code, json.loads((tmp_path / "out" / "report.json").read_text())

    return command


NEVER_RUNS = """\
groups:
  - {name: cpu, region: us-west-2, instance_type: m5.xlarge, max_size: 2, labels: {hardware: cpu}}
  - {name: none, region: us-west-2, instance_type: m5.xlarge, max_size: 0, labels: {pool: none}}
  - {name: odd, region: us-west-2, instance_type: x9.unknown, max_size: 2, labels: {pool: odd}}
jobs:
  - {name: huge, requests: {cpu: "64"}, duration: 2m}
  - {name: tpu, requests: {cpu: "1"}, duration: 2m, node_selector: {hardware: tpu}}
  - {name: zero, requests: {cpu: "1"}, duration: 2m, node_selector: {pool: none}}
  - {name: unknown-type, requests: {cpu: "1"}, duration: 2m, node_selector: {pool: odd}}
"""


def test_jobs_that_can_never_run_are_named_and_no_wait_is_reported(sandbox_command, capsys):
    code, report = sandbox_command(NEVER_RUNS)
    assert code == 1
    reasons = {entry["job"]: entry["reason"] for entry in report["unrunnable"]}
    assert "no room for its requests (cpu 64)" in reasons["huge"]
    assert "hardware=tpu" in reasons["tpu"]
    assert "none has max_size 0" in reasons["zero"]
    assert "x9.unknown is not known" in reasons["unknown-type"]
    assert report["wait_seconds"] == {"p50": None, "p95": None, "max": None}  # not 0 s: nothing ran
    output = capsys.readouterr()
    assert "none ran" in output.out and "error: 4 job(s) did not finish: 4 can never run" in output.err


def test_a_run_stops_at_its_time_limit_and_says_so(sandbox_command, capsys):
    code, report = sandbox_command("jobs:\n  - {name: long, requests: {cpu: '1'}, duration: 2h}\nduration: 10m\n")
    assert code == 1
    assert report["stopped"] == "reached the time limit of 00:10 (h:mm) with 1 jobs unfinished"
    assert report["wait_seconds"]["max"] is not None  # the job ran; it had not finished
    assert "error: 1 job(s) did not finish" in capsys.readouterr().err


def test_sigterm_writes_the_sandbox_report_so_far_and_the_chart(tmp_path):
    out = tmp_path / "out"
    log = tmp_path / "log"
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--sandbox", "--sandbox-speed", "100",
                                    "--sandbox-out", str(out)], cwd=ROOT, env=clean_env(), stdout=output,
                                   stderr=subprocess.STDOUT)
        try:
            poll(lambda: "[00:01]" in log.read_text(), 60, "the replay to start")
            process.send_signal(signal.SIGTERM)
            code = process.wait(60)  # the report and the chart are written first
        finally:
            process.kill()
    text = log.read_text()
    assert code == 143, text
    assert "stopped                          interrupted (SIGTERM)" in text and "Traceback" not in text
    assert json.loads((out / "report.json").read_text())["stopped"] == "interrupted (SIGTERM)"
    assert (out / "nodes.png").stat().st_size > 0


# ---- last, for they waited meanwhile: servers that never finish an answer -----------------------------

@pytest.mark.parametrize("server, says", [
    pytest.param("stalled", ("list pods", "timed out"), id="never-answers"),
    pytest.param("dripping", ("list pods", "timed out: no complete answer within 20 s"), id="drips-its-answer"),
])
def test_once_against_a_server_that_never_finishes_its_answer_ends_with_one_line(catalogue, server, says):
    """Never answering, the read times out (kube_connect.REQUEST_TIMEOUT) and is not retried;
    dripping its answer, the call's total deadline (kube_connect.CALL_DEADLINE_SECONDS) ends it:
    --once ends within the 30 s the README promises, with one line."""
    process = catalogue[server]
    stdout, stderr = process.communicate(timeout=40)
    assert_one_line(Ran(process.returncode, stdout, stderr), 1, *says)


# ---- an HTTP answer that is not the API's, in one line ------------------------------------------------

@pytest.mark.parametrize("body, line", [
    pytest.param(HTML_PAGE, "404 Not Found", id="html-title"),
    pytest.param(b"<html><body>\n\n<h1>Bad Gateway</h1><p>nginx</p></body></html>", "Bad Gateway", id="html-no-title"),
    pytest.param("upstream connect error\nreset reason: overflow", "upstream connect error", id="text"),
    pytest.param(b"\xff\xfe garbage", "\ufffd\ufffd garbage", id="not-utf-8"),
    pytest.param("x" * 1000, "x" * 119 + "…", id="long"),
    pytest.param("", "", id="empty"),
    pytest.param(None, "", id="none"),
])
def test_an_answer_is_summarised_by_its_first_line(body, line):
    assert first_line(body) == line


def test_a_kubeconfig_whose_credential_command_hangs_is_one_line_within_its_deadline(tmp_path, monkeypatch):
    """The client runs the exec plugin while loading, and waits for it without a timeout."""
    command = tmp_path / "hung-authenticator"
    command.write_text("#!/bin/sh\nexec sleep 5\n")  # longer than the deadline; it ends on its own
    command.chmod(0o755)
    path = tmp_path / "kubeconfig"
    path.write_text("clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]\n"
                    "users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1beta1, "
                    f"command: '{command}', args: [token]}}}}}}]\n"
                    "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")
    monkeypatch.setattr(kube_connect, "LOAD_DEADLINE_SECONDS", 1)
    with pytest.raises(KubeConfigError) as raised:
        connect(str(path))
    message = str(raised.value)
    assert message.startswith(f"--kubeconfig {path}: loading it did not finish within 1 s"), message
    assert "credential command" in message and "\n" not in message



# ---- credentials checked at start, whatever the groups and the Lease -------------------------------

START_MODES = {"once": ("--once",), "daemon": ("--sleep", "60"), "daemon-leader-elect": ("--sleep", "60", "--leader-elect")}


@pytest.mark.parametrize("mode", START_MODES.values(), ids=START_MODES.keys())
def test_a_rejected_token_ends_the_process_at_start_with_no_group_to_manage(autoscaler_cli, fake_kube, mode):
    """--cluster-name e2e matches no group: nothing in a loop needs the API server but the reads,
    and a standby never loops. The start-up check asks the API server first."""
    fake_kube.fail_next("*", r".*", status=401, count=100_000)
    started = time.monotonic()
    result = autoscaler_cli(*mode, timeout=30)
    assert_one_line(result, 1, "refused the credentials", "SelfSubjectAccessReview")
    assert time.monotonic() - started < 10
    assert [(r.method, r.path) for r in fake_kube.requests] == [
        ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")]


def test_a_rejected_aws_key_ends_a_standby_at_start(autoscaler_cli, fake_aws, fake_kube):
    """Another replica holds the Lease for an hour: this one would wait, never calling AWS."""
    fake_kube.add({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "kubernetes-ec2-autoscaler", "namespace": "kube-system"},
        "spec": {"holderIdentity": "the-leader", "leaseDurationSeconds": 3600, "leaseTransitions": 0},
    })
    fake_aws.inject_faults("DescribeAutoScalingGroups", count=1000, status=403, code="InvalidClientTokenId",
                           message="The security token included in the request is invalid.")
    started = time.monotonic()
    result = autoscaler_cli("--sleep", "60", "--leader-elect", timeout=30)
    assert_one_line(result, 1, "checking the AWS credentials in us-west-2", "AWS refused the credentials")
    assert time.monotonic() - started < 15
    assert not any("leases" in r.path for r in fake_kube.requests)


def test_credentials_that_may_not_list_pods_end_the_process_at_start(monkeypatch):
    """The review's answer, not only its status code: accepted credentials without the RBAC."""
    from kubernetes import client as kube_client

    from autoscaler.clients.kube_errors import KubeConfigurationError
    from autoscaler.run import preflight

    asked = []

    def review(self, body, **_options):
        asked.append(body.spec.resource_attributes)
        return kube_client.V1SelfSubjectAccessReview(
            spec=body.spec, status=kube_client.V1SubjectAccessReviewStatus(allowed=False, reason="no RBAC rule"))

    monkeypatch.setattr(kube_client.AuthorizationV1Api, "create_self_subject_access_review", review)
    settings = Settings(cluster_name="c", regions=("us-west-2",), pod_namespace="batch")
    with pytest.raises(KubeConfigurationError, match="may not list pods in namespace batch [(]no RBAC rule[)]"):
        preflight.check_kubernetes(kube_client.ApiClient(), settings)
    assert (asked[0].verb, asked[0].resource, asked[0].namespace) == ("list", "pods", "batch")


def test_an_unreachable_api_at_start_is_left_to_the_loop(caplog):
    """Weather at start is no reason to exit: the loop retries it."""
    from autoscaler.clients.kube_errors import KubeUnreachable
    from autoscaler.run import preflight

    def unreachable(*_args):
        raise KubeUnreachable("cannot reach the Kubernetes API server (connection refused)")

    settings = Settings(cluster_name="c", regions=("us-west-2",))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(preflight, "check_kubernetes", unreachable)
        patch.setattr(preflight, "check_aws", lambda *_args: None)
        preflight.check_credentials(None, None, settings)
    assert "could not check the Kubernetes credentials at start" in caplog.text
