"""Shared pytest fixtures. Each block below belongs to one fake; keep blocks separate."""

from __future__ import annotations

import pytest

# ---- fake AWS (autoscaler/fakes/aws.py) ---------------------------------------------------------
# One moto server per test session (moto's first use in a process costs about 1.5 s), and fresh
# state for every test that asks for `fake_aws` (a reset costs milliseconds).


@pytest.fixture(scope="session")
def fake_aws_server():
    # Imported here so that test runs without AWS tests do not load moto.
    from autoscaler.fakes.aws import FakeAws

    with FakeAws() as server:
        yield server


@pytest.fixture
def fake_aws(fake_aws_server):
    fake_aws_server.reset()
    yield fake_aws_server
    fake_aws_server.reset()

# ---- end of fake AWS ----------------------------------------------------------------------------

# ---- fake Kubernetes API (autoscaler/fakes/kube_api.py) -----------------------------------------
# A fresh server per test: starting one costs a thread and a socket, and state never leaks.


@pytest.fixture
def fake_kube(tmp_path):
    from autoscaler.fakes.kube_api import FakeKubeApi

    with FakeKubeApi() as server:
        server.kubeconfig = str(server.write_kubeconfig(tmp_path / "kubeconfig"))
        yield server

# ---- end of fake Kubernetes API -----------------------------------------------------------------

# ---- autoscaler subprocesses (test/daemon_process.py) -------------------------------------------
# `python main.py` runs against both fakes; every process a test starts is killed when it ends.


@pytest.fixture
def start_autoscaler(fake_aws, fake_kube, tmp_path):
    from daemon_process import AutoscalerProcess, autoscaler_env

    started = []

    def start(*args, name="autoscaler", cluster="e2e", env=None):
        command = ["--cluster-name", cluster, "--kubeconfig", fake_kube.kubeconfig, *args]
        process = AutoscalerProcess(command, autoscaler_env(fake_aws, env), tmp_path / f"{name}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()

# ---- end of autoscaler subprocesses -------------------------------------------------------------

# ---- moto in process ---------------------------------------------------------------------------
# For adapter tests that need no server: moto's mock_aws with fresh state per test.


@pytest.fixture
def moto_in_process(monkeypatch):
    from moto import mock_aws

    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-west-2")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")  # loading moto's AMI catalogue is most of a test's time
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield

# ---- end of moto in process --------------------------------------------------------------------
