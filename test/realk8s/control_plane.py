"""A real Kubernetes control plane on loopback ports: etcd, kube-apiserver, kube-scheduler and
kube-controller-manager of the release tools/build_control_plane.sh pins, started as processes
and stopped by PID.

The API server authenticates static tokens (``tokens.csv``: an admin in system:masters, which the
scheduler, the controller manager and the test harness use) and ServiceAccount tokens signed
with a key generated here, authorizes with Node and RBAC, serves a certificate of a CA made here
(``certs/ca.crt``, which the kubeconfigs trust; serving_certs.py) and writes
an audit log of every request (``audit.log``, one JSON event per line) so a test can see what a
client was allowed and refused. Everything lives in one directory, logs included, kept after
the run for a failed test to point at.
"""
from __future__ import annotations

import dataclasses
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import warnings
from typing import Callable, Optional

import requests
import urllib3
import yaml
from cryptography.hazmat.primitives.asymmetric import rsa
from serving_certs import private_key_pem, write_serving_certs

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "tools" / "build_control_plane.sh"
ADMIN_USER = "test-admin"
START_DEADLINE_SECONDS = 90  # it starts in about 3 s on 2 cores; far more means it is broken
# The controllers the tests rely on, no more: each one runs in the same 2 cores as the tests.
# No deployment or replicaset controller: deploy/base's Deployment is applied for its RBAC and
# settings, but its pod must not appear as pending demand the autoscaler would scale up for.
CONTROLLERS = (
    "daemonset-controller", "disruption-controller", "garbage-collector-controller", "job-controller",
    "namespace-controller", "serviceaccount-controller", "serviceaccount-token-controller",
    "pod-garbage-collector-controller", "persistentvolume-binder-controller",
    # The API server taints every new Node not-ready; this controller lifts the taint once the
    # Node reports Ready (and taints it unreachable when its heartbeats stop), as on a real cluster.
    "node-lifecycle-controller",
)
# Metadata for every request, so a refusal (403) and each (verb, resource) a user was granted
# show; no request or response bodies, which only make the file large.
AUDIT_POLICY = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                "rules": [{"level": "Metadata"}]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def control_plane_binaries() -> pathlib.Path:
    """The cached binaries' directory, built first when missing (the first run on a machine: about
    8 minutes on 2 cores, reported on stderr as it goes)."""
    result = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT.relative_to(ROOT)} failed with exit code {result.returncode} (its output is above)")
    return pathlib.Path(result.stdout.strip().splitlines()[-1])


@dataclasses.dataclass
class Component:
    name: str
    popen: subprocess.Popen
    log_path: pathlib.Path

    def tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


class ControlPlane:
    """``start()`` returns once every component answers its health check; ``stop()`` ends them by PID."""

    def __init__(self, binaries: pathlib.Path, directory: pathlib.Path):
        self.binaries = binaries
        self.directory = directory
        self.components: list[Component] = []
        self.admin_token = "admin-" + os.urandom(12).hex()
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.api_port = free_port()
        self.scheduler_port, self.controller_manager_port = free_port(), free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self.ca_file = directory / "certs" / "ca.crt"
        self.audit_log = directory / "audit.log"

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> "ControlPlane":
        self.directory.mkdir(parents=True, exist_ok=True)
        self._write_files()
        started = time.monotonic()
        self._launch("etcd", [
            "--name", "test", "--data-dir", str(self.directory / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.etcd_peer_port}",
            "--initial-cluster", f"test=http://127.0.0.1:{self.etcd_peer_port}",
            "--unsafe-no-fsync",  # a test cluster lost to a crash is started again; fsync costs seconds
            "--log-level", "warn",
        ])
        self._wait(lambda: self._http_ok(f"http://127.0.0.1:{self.etcd_port}/health"), "etcd")
        self._launch("kube-apiserver", [
            "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
            "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", str(self.api_port),
            "--tls-cert-file", str(self.directory / "certs" / "apiserver.crt"),
            "--tls-private-key-file", str(self.directory / "certs" / "apiserver.key"),
            "--token-auth-file", str(self.directory / "tokens.csv"),
            "--authorization-mode", "Node,RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(self.directory / "service-account.key"),
            "--service-account-signing-key-file", str(self.directory / "service-account.key"),
            "--service-cluster-ip-range", "10.96.0.0/16",
            "--audit-policy-file", str(self.directory / "audit-policy.yaml"),
            "--audit-log-path", str(self.audit_log), "--audit-log-mode", "blocking", "--audit-log-format", "json",
            "--enable-priority-and-fairness=false",  # one client at a time here; its bookkeeping only slows start-up
        ])
        self._wait(lambda: self._http_ok(f"{self.server}/readyz", self.admin_token, self.ca_file), "kube-apiserver")
        self._launch("kube-scheduler", [
            "--kubeconfig", str(self.write_kubeconfig(self.directory / "admin.kubeconfig", self.admin_token)),
            "--bind-address", "127.0.0.1", "--secure-port", str(self.scheduler_port), "--leader-elect=false",
        ])
        self._launch("kube-controller-manager", [
            "--kubeconfig", str(self.directory / "admin.kubeconfig"),
            "--bind-address", "127.0.0.1", "--secure-port", str(self.controller_manager_port), "--leader-elect=false",
            "--controllers", ",".join(CONTROLLERS),
            "--node-monitor-period", "1s",  # the not-ready taint goes within a second of Ready, not five
            "--service-account-private-key-file", str(self.directory / "service-account.key"),
            "--root-ca-file", str(self.ca_file),
        ])
        for name, port in (("kube-scheduler", self.scheduler_port), ("kube-controller-manager", self.controller_manager_port)):
            self._wait(lambda port=port: self._http_ok(f"https://127.0.0.1:{port}/healthz"), name)
        self.start_seconds = time.monotonic() - started
        return self

    def stop(self) -> None:
        """One at a time, the reverse of the start: etcd goes last, so the API server's shutdown
        does not wait on a store that has gone."""
        for component in reversed(self.components):
            if component.popen.poll() is None:
                component.popen.send_signal(signal.SIGTERM)
            try:
                component.popen.wait(10)
            except subprocess.TimeoutExpired:
                component.popen.kill()
                component.popen.wait()
        self.components.clear()

    def __enter__(self) -> "ControlPlane":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- for clients ------------------------------------------------------------------------

    def write_kubeconfig(self, path: pathlib.Path, token: str, user: str = "user") -> pathlib.Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user}}],
        }))
        return path

    def check_running(self) -> None:
        """Fails with the log of a component that has exited since the start."""
        for component in self.components:
            if component.popen.poll() is not None:
                raise RuntimeError(f"{component.name} exited with {component.popen.returncode}; "
                                   f"log {component.log_path}:\n{component.tail()}")

    # ---- internals ----------------------------------------------------------------------------

    def _write_files(self) -> None:
        write_serving_certs(self.directory / "certs")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.directory / "service-account.key").write_bytes(private_key_pem(key))
        (self.directory / "tokens.csv").write_text(f'{self.admin_token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
        (self.directory / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))

    def _launch(self, name: str, args: list[str]) -> None:
        log_path = self.directory / f"{name}.log"
        with open(log_path, "w") as log:
            popen = subprocess.Popen([str(self.binaries / name), *args], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.directory)
        self.components.append(Component(name, popen, log_path))

    def _wait(self, ready: Callable[[], bool], name: str) -> None:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while not ready():
            self.check_running()
            if time.monotonic() > deadline:
                component = next(c for c in self.components if c.name == name)
                raise RuntimeError(f"{name} not ready after {START_DEADLINE_SECONDS} s; log {component.log_path}:\n"
                                   f"{component.tail()}")
            time.sleep(0.1)

    @staticmethod
    def _http_ok(url: str, token: Optional[str] = None, ca_file: Optional[pathlib.Path] = None) -> bool:
        # The scheduler's and controller manager's health ports serve certificates they made up
        # in memory: nothing to verify them against, and only /healthz is asked.
        verify: bool | str = str(ca_file) if ca_file else False
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                with requests.get(url, headers=headers, verify=verify, timeout=2) as answer:
                    return answer.status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or SSL not set up yet
            return False


def main() -> int:
    """``python test/realk8s/control_plane.py [directory]``: start the control plane, print an
    admin kubeconfig for kubectl, and run until Ctrl-C."""
    import tempfile

    directory = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else pathlib.Path(tempfile.mkdtemp(prefix="control-plane-"))
    with ControlPlane(control_plane_binaries(), directory) as plane:
        kubeconfig = plane.write_kubeconfig(directory / "admin.kubeconfig", plane.admin_token, user="admin")
        print(f"up in {plane.start_seconds:.1f} s; logs in {directory}\n"
              f"kubectl --kubeconfig {kubeconfig} get --raw /version\nCtrl-C stops it.", flush=True)
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
        try:
            signal.pause()
        except KeyboardInterrupt:
            print("stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
