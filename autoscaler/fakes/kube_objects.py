"""Builders of API-shaped Kubernetes objects (plain dicts, as the API server returns them).

Tests and simulators use these to seed the fake API server, or to compare against what a reader
produced. Only the fields the autoscaler looks at are filled, but each one in its real shape.
"""
from __future__ import annotations

import uuid
from typing import Iterable, Mapping, Optional, Union

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_TIMESTAMP = "2024-01-01T00:00:00Z"

# Where the owner kinds a pod is likely to have live, for its ownerReference apiVersion.
OWNER_API_VERSIONS = {
    "ReplicaSet": "apps/v1",
    "DaemonSet": "apps/v1",
    "StatefulSet": "apps/v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "CronJob": "batch/v1",
    "ReplicationController": "v1",
    "Node": "v1",
}

TaintSpec = Union[str, Mapping[str, Optional[str]]]  # a None value: no value


def parse_taint(taint: TaintSpec) -> dict:
    """A taint dict from ``{"key":..,"value":..,"effect":..}`` or kubectl's ``key=value:Effect``."""
    if isinstance(taint, Mapping):
        return {k: v for k, v in taint.items() if v is not None}
    key_value, _, effect = taint.rpartition(":")
    if not key_value or not effect:
        raise ValueError(f"taint {taint!r} is not of the form key[=value]:Effect")
    key, has_value, value = key_value.partition("=")
    parsed = {"key": key, "effect": effect}
    if has_value:
        parsed["value"] = value
    return parsed


def make_namespace(name: str, labels: Optional[Mapping[str, str]] = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, **(labels or {})}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def make_node(
    name: str,
    cpu: str = "4",
    memory: str = "16Gi",
    pods: str = "110",
    gpu: Optional[Union[int, str]] = None,
    labels: Optional[Mapping[str, str]] = None,
    annotations: Optional[Mapping[str, str]] = None,
    provider_id: Optional[str] = None,
    taints: Iterable[TaintSpec] = (),
    unschedulable: bool = False,
    ready: bool = True,
    instance_type: Optional[str] = None,
    zone: Optional[str] = None,
    creation_timestamp: Optional[str] = None,
    heartbeat_timestamp: Optional[str] = None,
) -> dict:
    """A Node with equal capacity and allocatable; ``zone`` also sets the region label.
    Without ``creation_timestamp`` the server stamps the node when it is created."""
    node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    if instance_type:
        node_labels["node.kubernetes.io/instance-type"] = instance_type
        node_labels["beta.kubernetes.io/instance-type"] = instance_type
    if zone:
        node_labels["topology.kubernetes.io/zone"] = zone
        node_labels["topology.kubernetes.io/region"] = zone[:-1]
    node_labels.update(labels or {})
    resources = {"cpu": str(cpu), "memory": str(memory), "pods": str(pods)}
    if gpu is not None:
        resources[GPU_RESOURCE] = str(gpu)
    heartbeat = heartbeat_timestamp or creation_timestamp or DEFAULT_TIMESTAMP
    spec: dict = {}
    if provider_id:
        spec["providerID"] = provider_id
    if taints:
        spec["taints"] = [parse_taint(t) for t in taints]
    if unschedulable:
        spec["unschedulable"] = True
    metadata: dict = {"name": name, "labels": node_labels}
    if creation_timestamp:
        metadata["creationTimestamp"] = creation_timestamp
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": metadata,
        "spec": spec,
        "status": {
            "capacity": dict(resources),
            "allocatable": dict(resources),
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "lastHeartbeatTime": heartbeat,
                    "lastTransitionTime": creation_timestamp or DEFAULT_TIMESTAMP,
                }
            ],
            "addresses": [{"type": "Hostname", "address": name}],
            # Every field: the kubernetes client (v37, pydantic) rejects a partial nodeInfo.
            "nodeInfo": {
                "architecture": "amd64", "bootID": f"boot-{name}", "containerRuntimeVersion": "containerd://1.7.0",
                "kernelVersion": "6.1.0", "kubeProxyVersion": "v1.32.0", "kubeletVersion": "v1.32.0",
                "machineID": f"machine-{name}", "operatingSystem": "linux", "osImage": "Fake Linux",
                "systemUUID": f"uuid-{name}",
            },
        },
    }


def _pod_conditions(phase: str, node_name: Optional[str], timestamp: str) -> list:
    if not node_name:
        return [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/0 nodes are available.", "lastTransitionTime": timestamp,
        }]
    ready = "True" if phase == "Running" else "False"
    return [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": timestamp},
        {"type": "Ready", "status": ready, "lastTransitionTime": timestamp},
    ]


def make_pod(
    name: str,
    namespace: str = "default",
    cpu: Optional[str] = "100m",
    memory: Optional[str] = "128Mi",
    gpu: Optional[Union[int, str]] = None,
    node_name: Optional[str] = None,
    phase: str = "Pending",
    node_selector: Optional[Mapping[str, str]] = None,
    owner_kind: Optional[str] = None,
    owner_name: Optional[str] = None,
    labels: Optional[Mapping[str, str]] = None,
    annotations: Optional[Mapping[str, str]] = None,
    tolerations: Iterable[Mapping[str, str]] = (),
    affinity: Optional[Mapping] = None,
    volumes: Iterable[Mapping] = (),
    creation_timestamp: Optional[str] = None,
    deletion_timestamp: Optional[str] = None,
) -> dict:
    """A one-container Pod; ``owner_kind`` adds a controller ownerReference (``owner_name``
    defaults to ``<name>-owner``). A pod without ``node_name`` is marked Unschedulable; without
    ``creation_timestamp`` the server stamps it."""
    requests = {}
    if cpu is not None:
        requests["cpu"] = str(cpu)
    if memory is not None:
        requests["memory"] = str(memory)
    if gpu is not None:
        requests[GPU_RESOURCE] = str(gpu)
    container: dict = {"name": "main", "image": "busybox", "resources": {}}
    if requests:
        # Extended resources such as GPUs must have limits equal to requests.
        limits = {GPU_RESOURCE: requests[GPU_RESOURCE]} if GPU_RESOURCE in requests else {}
        container["resources"] = {"requests": requests, **({"limits": limits} if limits else {})}
    metadata: dict = {"name": name, "namespace": namespace, "labels": dict(labels or {})}
    if creation_timestamp:
        metadata["creationTimestamp"] = creation_timestamp
    if annotations:
        metadata["annotations"] = dict(annotations)
    if deletion_timestamp:
        metadata["deletionTimestamp"] = deletion_timestamp
    if owner_kind:
        metadata["ownerReferences"] = [{
            "apiVersion": OWNER_API_VERSIONS.get(owner_kind, "v1"),
            "kind": owner_kind,
            "name": owner_name or f"{name}-owner",
            "uid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{owner_kind}/{owner_name or name}")),
            "controller": True,
            "blockOwnerDeletion": True,
        }]
    spec: dict = {
        "containers": [container],
        "restartPolicy": "Never" if owner_kind == "Job" else "Always",
        "schedulerName": "default-scheduler",
        "terminationGracePeriodSeconds": 30,
    }
    if node_name:
        spec["nodeName"] = node_name
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    if affinity:
        spec["affinity"] = dict(affinity)
    if volumes:
        spec["volumes"] = [dict(v) for v in volumes]
    status: dict = {
        "phase": phase,
        "conditions": _pod_conditions(phase, node_name, creation_timestamp or DEFAULT_TIMESTAMP),
        "qosClass": "Burstable",
    }
    if node_name:
        status["startTime"] = creation_timestamp or DEFAULT_TIMESTAMP
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


def make_pdb(
    name: str,
    namespace: str = "default",
    match_labels: Optional[Mapping[str, str]] = None,
    match_expressions: Iterable[Mapping] = (),
    min_available: Optional[Union[int, str]] = None,
    max_unavailable: Optional[Union[int, str]] = None,
) -> dict:
    """A policy/v1 PodDisruptionBudget; give exactly one of min_available / max_unavailable."""
    if (min_available is None) == (max_unavailable is None):
        raise ValueError("give exactly one of min_available and max_unavailable")
    selector: dict = {}
    if match_labels:
        selector["matchLabels"] = dict(match_labels)
    if match_expressions:
        selector["matchExpressions"] = [dict(e) for e in match_expressions]
    spec: dict = {"selector": selector}
    if min_available is not None:
        spec["minAvailable"] = min_available
    else:
        spec["maxUnavailable"] = max_unavailable
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
