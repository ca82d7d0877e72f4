"""The real CLI as a subprocess: bad flags end in one line naming the flag, before any API call."""
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run_cli(*args, env=None, timeout=60):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK"))}
    # Any AWS call would go here and fail loudly: flag errors must stop before that.
    environment.update({"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_EC2_METADATA_DISABLED": "true"})
    environment.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          env=environment, timeout=timeout, cwd=ROOT)


@pytest.fixture
def kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:9'}\n"
        "users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
        "current-context: x\n"
    )
    return str(path)


@pytest.mark.parametrize(
    "args, flag",
    [
        pytest.param([], "--cluster-name", id="missing-cluster-name"),
        pytest.param(["--regions", ""], "--regions", id="empty-regions"),
        pytest.param(["--regions", "us-west-2,,us-east-1"], "--regions", id="empty-region-in-list"),
        pytest.param(["--regions", "mars-north"], "--regions", id="malformed-region"),
        pytest.param(["--regions", "us-west-2,us-west-2"], "--regions", id="duplicate-region"),
        pytest.param(["--idle-threshold", "-5"], "--idle-threshold", id="negative-idle-threshold"),
        pytest.param(["--type-idle-threshold", "-1"], "--type-idle-threshold", id="negative-type-idle"),
        pytest.param(["--instance-init-time", "-1"], "--instance-init-time", id="negative-init-time"),
        pytest.param(["--sleep", "0"], "--sleep", id="zero-sleep"),
        pytest.param(["--sleep", "soon"], "--sleep", id="non-numeric-sleep"),
        pytest.param(["--over-provision", "-2"], "--over-provision", id="negative-over-provision"),
        pytest.param(["--max-scale-in-fraction", "1.5"], "--max-scale-in-fraction", id="fraction-above-one"),
        pytest.param(["--drain-utilization", "-0.1"], "--drain-utilization", id="negative-drain-utilization"),
        pytest.param(["--kubeconfig", "/nonexistent/kubeconfig"], "--kubeconfig", id="missing-kubeconfig"),
        pytest.param(["--aws-access-key", "AKIA"], "--aws-secret-key", id="access-key-without-secret"),
        pytest.param(["--sandbox-speed", "5"], "--sandbox-speed", id="sandbox-flag-without-sandbox"),
    ],
)
def test_bad_flag_is_one_line_naming_the_flag(args, flag):
    if args and args[0] != "--cluster-name":
        args = ["--cluster-name", "c", *args]
    result = run_cli(*args, "--once")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and flag in lines[0], lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("{{{ this is : not yaml", id="not-yaml"),
        pytest.param("just a string\n", id="not-a-mapping"),
        pytest.param("apiVersion: v1\nkind: Config\ncurrent-context: missing\n", id="no-such-context"),
    ],
)
def test_unreadable_kubeconfig_is_one_line(tmp_path, content):
    path = tmp_path / "kubeconfig"
    path.write_text(content)
    result = run_cli("--cluster-name", "c", "--kubeconfig", str(path), "--once")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--kubeconfig" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_help_lists_every_flag_of_the_original():
    result = run_cli("--help")
    assert result.returncode == 0
    for flag in ("--cluster-name", "--regions", "--kubeconfig", "--pod-namespace", "--idle-threshold",
                 "--type-idle-threshold", "--aws-access-key", "--aws-secret-key", "--instance-init-time",
                 "--sleep", "--slack-hook", "--dry-run", "-v", "--over-provision", "--max-scale-in-fraction",
                 "--drain-utilization", "--no-scale", "--no-maintenance", "--once"):
        assert flag in result.stdout, flag


def test_unreachable_cluster_fails_the_once_loop_cleanly(kubeconfig):
    result = run_cli("--cluster-name", "c", "--regions", "us-west-2", "--kubeconfig", kubeconfig, "--once",
                     env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: the loop failed" in result.stderr
