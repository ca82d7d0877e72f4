"""The real CLI as a subprocess: its help, and a cluster it cannot reach. Bad input of every kind
(flags, kubeconfigs, the environment, API servers) is catalogued in test_bad_input.py."""
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
