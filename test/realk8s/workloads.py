"""The objects the real-Kubernetes tests create: Jobs, pods, DaemonSets, budgets, volumes, as a
user would write them (the API server defaults the rest), and the cluster and region they run in."""
from __future__ import annotations

from typing import Optional

from kubelets import RUN_SECONDS_ANNOTATION, STARTED_AGO_ANNOTATION

REGION = "us-west-2"
CLUSTER = "real"
IMAGE = "registry.k8s.io/pause:3.10"


def container(name: str = "main", cpu: str = "1", memory: str = "512Mi", **extra) -> dict:
    requests = {"cpu": cpu, "memory": memory, **extra.pop("requests", {})}
    return {"name": name, "image": IMAGE, "resources": {"requests": requests, **extra.pop("resources", {})}, **extra}


def pod_spec(*, cpu: str = "1", memory: str = "512Mi", restart: str = "Never", **spec) -> dict:
    containers = spec.pop("containers", None) or [container(cpu=cpu, memory=memory)]
    return {"restartPolicy": restart, "terminationGracePeriodSeconds": 30, "containers": containers, **spec}


def job(name: str, *, parallelism: int = 1, run_seconds: Optional[float] = None, labels: Optional[dict] = None,
        started_ago: Optional[float] = None, gates: tuple[str, ...] = (), **spec) -> dict:
    """A Job of ``parallelism`` pods that each run ``run_seconds`` (the simulator's default if
    None); ``started_ago``: seconds the pods have been running when they start (see kubelets.py)."""
    annotations = {RUN_SECONDS_ANNOTATION: str(run_seconds)} if run_seconds is not None else {}
    if started_ago is not None:
        annotations[STARTED_AGO_ANNOTATION] = str(started_ago)
    if gates:  # the scheduler leaves a gated pod alone until every gate is removed
        spec["schedulingGates"] = [{"name": gate} for gate in gates]
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"parallelism": parallelism, "completions": parallelism, "backoffLimit": 0,
                 "template": {"metadata": {"labels": labels or {}, "annotations": annotations}, "spec": pod_spec(**spec)}},
    }


def pod(name: str, *, labels: Optional[dict] = None, **spec) -> dict:
    """A bare pod (no controller): the autoscaler must not drain it away."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": pod_spec(restart="Always", **spec)}


def daemon_set(name: str, *, cpu: str = "300m", memory: str = "128Mi", **spec) -> dict:
    labels = {"daemon": name}
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": pod_spec(cpu=cpu, memory=memory, restart="Always", **spec)}},
    }


def budget(name: str, labels: dict, *, min_available: int) -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"minAvailable": min_available, "selector": {"matchLabels": labels}}}


def deployment_like_pods(name: str, count: int, labels: dict, **spec) -> list[dict]:
    """Bare pods sharing labels, as a ReplicaSet's would (no replicaset controller runs here)."""
    return [pod(f"{name}-{index}", labels=labels, **spec) for index in range(count)]


def node_daemon_set(name: str, *, cpu: str = "300m", memory: str = "128Mi") -> dict:
    """A node agent as clusters run them (a CNI, a log shipper): on every node, tolerating every
    taint, at system-node-critical priority so the scheduler makes room for it."""
    return daemon_set(name, cpu=cpu, memory=memory, priorityClassName="system-node-critical",
                      tolerations=[{"operator": "Exists"}])


def zonal_volume(name: str, zone: str, storage_class: str = "zonal") -> list[dict]:
    """A PersistentVolume that exists in one zone (node affinity), its claim, and the
    WaitForFirstConsumer class that makes the scheduler place the pod where the volume is."""
    return [
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": storage_class},
         "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer"},
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
         "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                  "persistentVolumeReclaimPolicy": "Retain", "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": f"vol-{name}"},
                  "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                      {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]}]}}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                  "resources": {"requests": {"storage": "10Gi"}}}},
    ]


def with_claim(claim: str) -> dict:
    """pod spec fields mounting the claim ``claim``."""
    return {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}


def zone_anti_affinity(labels: dict) -> dict:
    return {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": labels}, "topologyKey": "topology.kubernetes.io/zone"}]}}}


def zone_spread(labels: dict, max_skew: int = 1) -> dict:
    return {"topologySpreadConstraints": [{"maxSkew": max_skew, "topologyKey": "topology.kubernetes.io/zone",
                                           "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": labels}}]}


def sidecar(cpu: str, memory: str = "128Mi") -> dict:
    """pod spec fields adding a native sidecar: an init container that keeps running (restartPolicy
    Always), whose requests add to the main containers' for the pod's whole life."""
    return {"initContainers": [{**container("sidecar", cpu=cpu, memory=memory), "restartPolicy": "Always"}]}
