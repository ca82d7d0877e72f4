"""Kubelets without machines: for every instance moto runs in the groups, what its kubelet would
write to the real API server, in a background thread.

- registration, ``boot_seconds`` after the instance appears: a Node with the labels a kubelet
  sets (hostname, os, arch, instance type, zone and region), the group's ``kube/<label>`` and
  node-template label tags, its node-template taints, providerID ``aws:///<zone>/<instance id>``,
  capacity and allocatable (test/realk8s/instance_types.py), Ready;
- heartbeats: a Lease in kube-node-lease renewed every ``LEASE_RENEW_SECONDS`` and the Ready
  condition's heartbeat every ``STATUS_HEARTBEAT_SECONDS``;
- per group (``NodeProfile``): labels that differ from the tags, start-up taints removed after a
  delay, GPUs the device plugin reports only after a delay;
- pods: a pod bound to one of its nodes (by the scheduler, DaemonSet pods included) turns
  Running and Ready; a Job's pod Succeeded after ``job_seconds`` (or its
  ``kubelet-simulator/run-seconds`` annotation; ``kubelet-simulator/started-ago-seconds`` dates
  its start back); a pod being deleted (an eviction, a namespace's
  end) is removed, as the kubelet confirms a deletion;
- an instance that has left its group takes its Node with it (the cloud node controller's part).

Errors are kept and raised by ``check()`` and ``stop()``, so a broken simulator fails the test.
"""
from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Iterable, Optional

from instance_types import INSTANCE_TYPES, node_resources
from kube_http import STRATEGIC, KubeError, KubeHttp

TICK_SECONDS = 0.2
LEASE_RENEW_SECONDS = 10
LEASE_DURATION_SECONDS = 40
STATUS_HEARTBEAT_SECONDS = 40
RUN_SECONDS_ANNOTATION = "kubelet-simulator/run-seconds"
# A pod that has been running for this long already: its start and scheduling times are put back
# by as much, as the fake-API tests build pods "started two hours ago" (the autoscaler protects
# pods scheduled within the last hour from a drain, and that hour is not a flag).
STARTED_AGO_ANNOTATION = "kubelet-simulator/started-ago-seconds"
GPU = "nvidia.com/gpu"
LABEL_TAG_PREFIXES = ("kube/", "k8s.io/cluster-autoscaler/node-template/label/")
TAINT_TAG_PREFIX = "k8s.io/cluster-autoscaler/node-template/taint/"
# Node names unique in a session: a test's Events about a node are never another test's.
_node_numbers = itertools.count(1)


@dataclasses.dataclass
class NodeProfile:
    """How the nodes of one group differ from what the group's tags promise."""

    labels: dict[str, str] = dataclasses.field(default_factory=dict)  # set or override
    missing_labels: tuple[str, ...] = ()  # promised by a tag, never set
    startup_taints: tuple[dict, ...] = ()  # e.g. {"key": "node.cilium.io/agent-not-ready", "effect": "NoSchedule"}
    startup_taint_seconds: float = 0.0
    gpu_delay_seconds: float = 0.0


@dataclasses.dataclass
class SimulatedNode:
    name: str
    instance_id: str
    instance_type: str
    registered: float  # monotonic
    profile: NodeProfile
    startup_taints_removed: bool = False
    gpus_reported: bool = False
    last_lease: float = 0.0
    last_status: float = 0.0


def utc_now(micro: bool = False, ago: float = 0.0) -> str:
    now = datetime.now(timezone.utc) - timedelta(seconds=ago)
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


class Kubelets:
    def __init__(self, kube: KubeHttp, aws, regions: Iterable[str], *, boot_seconds: float = 1.0,
                 job_seconds: float = 3.0, profiles: Optional[dict[str, NodeProfile]] = None):
        self.kube = kube
        self.aws = aws
        self.regions = tuple(regions)
        self.boot_seconds = boot_seconds
        self.job_seconds = job_seconds
        self.profiles = profiles if profiles is not None else {}  # group name -> profile; tests may add
        self.nodes: dict[str, SimulatedNode] = {}  # node name -> node
        self.errors: list[str] = []
        # The history a test of scheduling fidelity judges: every instance seen in a group, and the
        # pods other than DaemonSet pods each one's node has run.
        self.instances_seen: set[str] = set()
        self.instances_gone: set[str] = set()
        self.work_by_instance: dict[str, set[str]] = {}
        self._history_lock = threading.Lock()  # the test thread reads the history while this one writes it
        self._first_seen: dict[str, float] = {}  # instance id -> monotonic time it appeared
        self._running_since: dict[str, float] = {}  # pod uid -> when it was marked Running
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> "Kubelets":
        self._thread = threading.Thread(target=self._run, name="kubelets", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.check()

    def check(self) -> None:
        if self.errors:
            raise AssertionError("the kubelet simulator failed:\n" + "\n".join(self.errors[:5]))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as error:  # noqa: BLE001  # kept for check(): a thread's exception is lost otherwise
                self.errors.append(f"{type(error).__name__}: {error}")
                if len(self.errors) > 20:
                    return
            self._stop.wait(TICK_SECONDS)

    # ---- one round --------------------------------------------------------------------------

    def tick(self) -> None:
        now = time.monotonic()
        live = self._instances()
        with self._history_lock:
            self.instances_seen.update(live)
            self.instances_gone.update(self.instances_seen - set(live))
        for instance_id, (group, instance) in sorted(live.items()):
            first_seen = self._first_seen.setdefault(instance_id, now)
            if now - first_seen >= self.boot_seconds and not any(n.instance_id == instance_id for n in self.nodes.values()):
                self._register(group, instance, now)
        for node in list(self.nodes.values()):
            if node.instance_id not in live:
                self._remove(node)
            else:
                self._keep_alive(node, now)
        self._run_pods(now)

    def _instances(self) -> dict[str, tuple[dict, dict]]:
        live = {}
        for region in self.regions:
            paginator = self.aws.client("autoscaling", region).get_paginator("describe_auto_scaling_groups")
            for page in paginator.paginate():
                for group in page["AutoScalingGroups"]:
                    for instance in group["Instances"]:
                        if not instance["LifecycleState"].startswith("Terminat"):
                            live[instance["InstanceId"]] = (group, instance)
        return live

    def _register(self, group: dict, instance: dict, now: float) -> None:
        instance_type, zone = instance["InstanceType"], instance["AvailabilityZone"]
        profile = self.profiles.get(group["AutoScalingGroupName"], NodeProfile())
        number = next(_node_numbers)
        name = f"ip-10-0-{number // 250}-{number % 250}.{zone[:-1]}.compute.internal"
        tags = {tag["Key"]: tag["Value"] for tag in group.get("Tags", ())}
        labels = {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": INSTANCE_TYPES[instance_type].arch,
            "node.kubernetes.io/instance-type": instance_type, "beta.kubernetes.io/instance-type": instance_type,
            "topology.kubernetes.io/zone": zone, "topology.kubernetes.io/region": zone[:-1],
        }
        for key, value in tags.items():
            for prefix in LABEL_TAG_PREFIXES:
                if key.startswith(prefix):
                    labels[key[len(prefix):]] = value
        labels.update(profile.labels)
        for key in profile.missing_labels:
            labels.pop(key, None)
        taints = [_taint_of_tag(key[len(TAINT_TAG_PREFIX):], value) for key, value in tags.items()
                  if key.startswith(TAINT_TAG_PREFIX)]
        taints += [dict(taint) for taint in profile.startup_taints]
        capacity, allocatable = node_resources(instance_type)
        gpus = INSTANCE_TYPES[instance_type].gpus
        if gpus and profile.gpu_delay_seconds <= 0:
            capacity[GPU] = allocatable[GPU] = str(gpus)
        stamp = utc_now()
        node = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"providerID": f"aws:///{zone}/{instance['InstanceId']}", **({"taints": taints} if taints else {})},
            "status": {
                "capacity": capacity, "allocatable": allocatable,
                "conditions": [_ready_condition(stamp)],
                "addresses": [{"type": "InternalIP", "address": f"10.0.{number // 250}.{number % 250}"},
                              {"type": "Hostname", "address": name}],
                "nodeInfo": {"architecture": labels["kubernetes.io/arch"], "operatingSystem": "linux",
                             "kubeletVersion": "v1.35.4", "kubeProxyVersion": "", "containerRuntimeVersion": "containerd://2.0.0",
                             "kernelVersion": "6.1.0", "osImage": "Amazon Linux 2023", "bootID": "", "machineID": "",
                             "systemUUID": instance["InstanceId"]},
            },
        }
        created = self.kube.create("/api/v1/nodes", node)
        self.nodes[name] = SimulatedNode(name, instance["InstanceId"], instance_type, now, profile,
                                         startup_taints_removed=not profile.startup_taints,
                                         gpus_reported=not gpus or profile.gpu_delay_seconds <= 0, last_status=now)
        self._renew_lease(self.nodes[name], created["metadata"]["uid"], now)

    def _keep_alive(self, node: SimulatedNode, now: float) -> None:
        path = f"/api/v1/nodes/{node.name}"
        if not node.startup_taints_removed and now - node.registered >= node.profile.startup_taint_seconds:
            current = self.kube.get(path)
            if current is None:
                return  # deleted by the autoscaler; the instance goes next
            startup_keys = {taint["key"] for taint in node.profile.startup_taints}
            kept = [taint for taint in current["spec"].get("taints", ()) if taint["key"] not in startup_keys]
            self.kube.patch(path, {"spec": {"taints": kept or None}})
            node.startup_taints_removed = True
        if not node.gpus_reported and now - node.registered >= node.profile.gpu_delay_seconds:
            gpus = str(INSTANCE_TYPES[node.instance_type].gpus)
            if self._patch_status(node, {"status": {"capacity": {GPU: gpus}, "allocatable": {GPU: gpus}}}):
                node.gpus_reported = True
        if now - node.last_status >= STATUS_HEARTBEAT_SECONDS:
            if self._patch_status(node, {"status": {"conditions": [_ready_condition(utc_now(), transition=False)]}}):
                node.last_status = now
        if now - node.last_lease >= LEASE_RENEW_SECONDS:
            self._renew_lease(node, None, now)

    def _patch_status(self, node: SimulatedNode, body: dict) -> bool:
        try:
            self.kube.patch(f"/api/v1/nodes/{node.name}/status", body, STRATEGIC)
            return True
        except KubeError as error:
            if error.status == 404:
                return False  # deleted by the autoscaler
            raise

    def _renew_lease(self, node: SimulatedNode, node_uid: Optional[str], now: float) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node.name}"
        spec = {"holderIdentity": node.name, "leaseDurationSeconds": LEASE_DURATION_SECONDS, "renewTime": utc_now(micro=True)}
        if node_uid is None:
            if self.kube.get(path) is None:
                return  # the node was deleted, and the garbage collector took its Lease
            self.kube.patch(path, {"spec": spec})
        else:
            owner = {"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": node_uid}
            self.kube.create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node.name, "ownerReferences": [owner]}, "spec": spec})
        node.last_lease = now

    def _remove(self, node: SimulatedNode) -> None:
        self.kube.delete(f"/api/v1/nodes/{node.name}")
        del self.nodes[node.name]
        self._first_seen.pop(node.instance_id, None)

    def _run_pods(self, now: float) -> None:
        if not self.nodes:
            return
        for pod in self.kube.list("/api/v1/pods", fieldSelector="spec.nodeName!="):
            if pod["spec"]["nodeName"] not in self.nodes:
                continue
            try:
                self._run_pod(pod, now)
            except KubeError as error:
                if error.status not in (404, 409):  # gone or changed meanwhile: next tick sees it again
                    raise

    def _run_pod(self, pod: dict, now: float) -> None:
        meta, phase = pod["metadata"], pod["status"].get("phase")
        path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        if meta.get("deletionTimestamp"):
            self.kube.request("DELETE", path, {"gracePeriodSeconds": 0}, missing_ok=True)
            self._running_since.pop(meta["uid"], None)
            return
        owners = {owner["kind"] for owner in meta.get("ownerReferences", ())}
        if phase == "Pending":
            self.kube.patch(path + "/status", {"status": _running_status(pod)}, STRATEGIC)
            self._running_since[meta["uid"]] = now
            if "DaemonSet" not in owners:
                instance_id = self.nodes[pod["spec"]["nodeName"]].instance_id
                with self._history_lock:
                    self.work_by_instance.setdefault(instance_id, set()).add(f"{meta['namespace']}/{meta['name']}")
            return
        if phase == "Running" and "Job" in owners:
            seconds = float((meta.get("annotations") or {}).get(RUN_SECONDS_ANNOTATION, self.job_seconds))
            started = self._running_since.setdefault(meta["uid"], now)
            if now - started >= seconds:
                self.kube.patch(path + "/status", {"status": _succeeded_status(pod)}, STRATEGIC)

    # ---- for tests ----------------------------------------------------------------------------

    def node_of_instance(self, instance_id: str) -> Optional[str]:
        return next((n.name for n in self.nodes.values() if n.instance_id == instance_id), None)

    def instances_without_work(self, gone_only: bool = False) -> list[str]:
        """Instances seen that never ran a pod other than a DaemonSet's: bought for nothing
        (``gone_only``: and already terminated, so they never will)."""
        with self._history_lock:
            return sorted((self.instances_gone if gone_only else self.instances_seen) - set(self.work_by_instance))


def _taint_of_tag(key: str, value: str) -> dict:
    text, _, effect = value.rpartition(":")
    return {"key": key, **({"value": text} if text else {}), "effect": effect}


def _ready_condition(stamp: str, transition: bool = True) -> dict:
    condition = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                 "lastHeartbeatTime": stamp}
    if transition:
        condition["lastTransitionTime"] = stamp
    return condition


def _running_status(pod: dict) -> dict:
    stamp = utc_now(ago=float((pod["metadata"].get("annotations") or {}).get(STARTED_AGO_ANNOTATION, 0)))
    kinds = ("PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")
    conditions = [{"type": kind, "status": "True", "lastTransitionTime": stamp} for kind in kinds]
    return {
        "phase": "Running", "startTime": stamp, "conditions": conditions, "podIP": "10.1.0.1", "hostIP": "10.0.0.1",
        "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "", "ready": True,
                               "started": True, "restartCount": 0, "state": {"running": {"startedAt": stamp}}}
                              for container in pod["spec"]["containers"]],
    }


def _succeeded_status(pod: dict) -> dict:
    stamp = utc_now()
    conditions = [{"type": kind, "status": "False", "reason": "PodCompleted", "lastTransitionTime": stamp}
                  for kind in ("ContainersReady", "Ready")]
    return {
        "phase": "Succeeded", "conditions": conditions,
        "containerStatuses": [{"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                               "started": False, "restartCount": 0,
                               "state": {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": stamp,
                                                        "finishedAt": stamp}}}
                              for container in pod["spec"]["containers"]],
    }
