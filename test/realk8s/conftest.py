"""Fixtures of the real-Kubernetes tier: one control plane per session (built first if the cache
lacks it), deploy/base applied to it, and per test a namespace of its own, simulated kubelets for
moto's instances, and the autoscaler run as in production, with its ServiceAccount's token.

Isolation: each test's objects live in its namespace, which is emptied (pods removed without
waiting for kubelets) and deleted at the end, with every Node and the autoscaler's Lease. Every
request the autoscaler makes is judged by deploy/base's RBAC; one it refuses fails the test
that made it, naming the missing rule.
"""
from __future__ import annotations

import itertools
import os
import pathlib

import pytest
from control_plane import ControlPlane, control_plane_binaries
from daemon_process import AutoscalerProcess, poll
from deploy_manifests import NAMESPACE, SERVICE_ACCOUNT, apply, render, service_account_token
from kube_http import KubeHttp, collection, create_object
from kubelets import Kubelets
from rbac_audit import describe_refusals, read_audit_log, refused, requests_of, service_account_user
from workloads import CLUSTER, REGION

AUTOSCALER_USER = service_account_user(NAMESPACE, SERVICE_ACCOUNT)
LEASE_PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/kubernetes-ec2-autoscaler"
_namespaces = itertools.count(1)
_control_plane_directory: list[pathlib.Path] = []


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory, pytestconfig):
    # Uncaptured: a first run builds the binaries for many minutes, and should say so as it goes.
    with pytestconfig.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        binaries = control_plane_binaries()
    directory = tmp_path_factory.mktemp("control-plane")
    _control_plane_directory.append(directory)
    with ControlPlane(binaries, directory) as plane:
        yield plane


def admin_client(plane: ControlPlane) -> KubeHttp:
    return KubeHttp(plane.server, plane.admin_token, plane.ca_file)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _control_plane_directory and exitstatus != 0:
        terminalreporter.write_line(f"real control plane: logs, audit log and kubeconfigs in {_control_plane_directory[0]}")


@pytest.fixture(scope="session")
def kube(control_plane) -> KubeHttp:
    return admin_client(control_plane)


@pytest.fixture(scope="session")
def deploy_base(control_plane, kube) -> list[dict]:
    """deploy/base as kustomize renders it, applied once; tests that change it put it back."""
    manifests = render(control_plane.binaries / "kubectl")
    apply(kube, manifests)
    return manifests


@pytest.fixture(scope="session")
def autoscaler_kubeconfig(control_plane, kube, deploy_base, tmp_path_factory) -> pathlib.Path:
    """A kubeconfig with the ServiceAccount's token: what the autoscaler's pod would mount."""
    path = tmp_path_factory.mktemp("autoscaler") / "kubeconfig"
    return control_plane.write_kubeconfig(path, service_account_token(kube), user=SERVICE_ACCOUNT)


class RealCluster:
    """One test's view: its namespace, and helpers to create and read objects."""

    def __init__(self, plane: ControlPlane, kube: KubeHttp, aws, namespace: str):
        self.plane, self.kube, self.aws, self.namespace = plane, kube, aws, namespace
        self.cluster_scoped: list[str] = []  # paths of cluster-scoped objects to delete at the end

    def create(self, body: dict) -> dict:
        created = create_object(self.kube, body, self.namespace)
        if not created["metadata"].get("namespace"):
            self.cluster_scoped.append(f"{collection(body['kind'])}/{created['metadata']['name']}")
        return created

    def pods(self) -> list[dict]:
        return self.kube.list(f"/api/v1/namespaces/{self.namespace}/pods")

    def pod(self, name: str) -> dict | None:
        return self.kube.get(f"/api/v1/namespaces/{self.namespace}/pods/{name}")

    def nodes(self) -> list[dict]:
        return self.kube.list("/api/v1/nodes")

    def group(self, name: str, region: str = REGION) -> dict:
        answer = self.aws.client("autoscaling", region).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return answer["AutoScalingGroups"][0]

    def instances(self, name: str, region: str = REGION) -> list[dict]:
        return [i for i in self.group(name, region)["Instances"] if not i["LifecycleState"].startswith("Terminat")]

    def events(self, namespace: str, **involved: str) -> list[dict]:
        """Events about one object (``uid=...``, or ``kind=Node, name=...``) from the core/v1 events
        API, where the autoscaler posts them (Node events go to "default")."""
        selector = ",".join(f"involvedObject.{key}={value}" for key, value in involved.items())
        return self.kube.list(f"/api/v1/namespaces/{namespace}/events", fieldSelector=selector)

    def clean_up(self) -> None:
        namespace = f"/namespaces/{self.namespace}"
        for path in (f"/apis/batch/v1{namespace}/jobs", f"/apis/apps/v1{namespace}/daemonsets"):
            self.kube.request("DELETE", path, params={"propagationPolicy": "Orphan"})
        # No kubelet confirms a deletion once the simulator has stopped: remove the pods at once.
        self.kube.request("DELETE", f"/api/v1{namespace}/pods", params={"gracePeriodSeconds": "0"})
        for node in self.nodes():
            self.kube.delete(f"/api/v1/nodes/{node['metadata']['name']}")
        # Volumes and claims carry protection finalizers whose controllers do not run here: lift them.
        claims = f"/api/v1{namespace}/persistentvolumeclaims"
        for path in [f"{claims}/{c['metadata']['name']}" for c in self.kube.list(claims)] + self.cluster_scoped:
            if self.kube.get(path) is not None:
                self.kube.patch(path, {"metadata": {"finalizers": None}})
            self.kube.delete(path)
        self.kube.delete(LEASE_PATH)
        self.kube.delete(f"/api/v1{namespace}")
        poll(lambda: not self.kube.list("/api/v1/pods", fieldSelector=f"metadata.namespace={self.namespace}"), 30,
             f"the pods of {self.namespace} to be gone")


@pytest.fixture
def real(control_plane, kube, deploy_base, fake_aws) -> RealCluster:
    control_plane.check_running()
    name = f"test-{next(_namespaces)}"
    kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    # Pods are admitted only once the namespace's default ServiceAccount exists (its controller makes it).
    poll(lambda: kube.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"), 30, f"the default ServiceAccount of {name}")
    cluster = RealCluster(control_plane, kube, fake_aws, name)
    yield cluster
    cluster.clean_up()


@pytest.fixture
def kubelets(real) -> Kubelets:
    simulator = Kubelets(real.kube, real.aws, (REGION,))
    simulator.start()
    yield simulator
    simulator.stop()


class Autoscalers:
    """``python main.py`` with the ServiceAccount's kubeconfig against moto: ``start`` a daemon,
    ``run_once`` a ``--once``. At the end every request it made is checked against the RBAC."""

    def __init__(self, real: RealCluster, kubeconfig: pathlib.Path, tmp_path: pathlib.Path):
        self.real, self.kubeconfig, self.tmp_path = real, kubeconfig, tmp_path
        self.started: list[AutoscalerProcess] = []
        self.audit_offset = real.plane.audit_log.stat().st_size
        self.expect_refusals = False  # a test of a manifest with a rule removed sets it

    def command(self, args) -> list[str]:
        return ["--cluster-name", CLUSTER, "--regions", REGION, "--kubeconfig", str(self.kubeconfig), "--metrics-port", "0",
                "-vvv", *args]

    def start(self, *args: str, name: str = "autoscaler") -> AutoscalerProcess:
        process = AutoscalerProcess(self.command(args), self.real.aws.env(inherit=os.environ), self.tmp_path / f"{name}.log")
        self.started.append(process)
        return process

    def run_once(self, *args: str, name: str = "once", exit_code: int = 0) -> str:
        process = self.start("--once", *args, name=f"{name}-{len(self.started)}")
        code = process.wait(120)
        log = process.log()
        assert code == exit_code and "Traceback" not in log, log
        return log

    def requests(self):
        return list(requests_of(read_audit_log(self.real.plane.audit_log, self.audit_offset), AUTOSCALER_USER))

    def check_refusals(self) -> None:
        denied = refused(self.requests())
        assert not denied, "the API server refused the autoscaler (deploy/base's RBAC):\n" + describe_refusals(denied)

    def stop(self) -> None:
        for process in self.started:
            process.kill()
        if not self.expect_refusals:
            self.check_refusals()


@pytest.fixture
def autoscalers(real, autoscaler_kubeconfig, tmp_path) -> Autoscalers:
    runner = Autoscalers(real, autoscaler_kubeconfig, tmp_path)
    yield runner
    runner.stop()

