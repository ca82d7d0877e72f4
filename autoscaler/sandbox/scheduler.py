"""The scheduler and kubelet of the sandbox: bind pending pods, run them, mark them Succeeded.

Binding is the sandbox's own (plugins.py), written from the Kubernetes scheduler's filter plugins
and working on the API objects, never the autoscaler's model of them: the sandbox checks the
autoscaler rather than mirroring it. Nodes are tried in name order (first fit), which packs work
onto few nodes as a batch cluster's most-allocated scoring does. A gated pod (scheduling gates)
is never looked at. A pod starts running when it is bound, runs for its job's duration, then is
marked Succeeded; a Succeeded pod is deleted one step later (a Job's ttlSecondsAfterFinished of
zero). A pod bound to a Node that no longer exists is deleted, as Kubernetes' pod garbage
collector does. DaemonSet pods (daemonsets.py binds them) run until their node goes.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping, Optional

from ..fakes.kube_api import FakeKubeApi
from ..model.text import utc_text
from .plugins import Cluster, labels_of, scheduling_gated, unfit_reason
DURATION_ANNOTATION = "sandbox.autoscaler/duration-seconds"  # a job pod runs this long


@dataclass
class StepResult:
    started: list = field(default_factory=list)  # pod names bound and running
    finished: list = field(default_factory=list)  # pod names that succeeded
    present: list = field(default_factory=list)  # every pod name left in the API
    pending: int = 0  # unbound pods left after binding (gated ones included), DaemonSet pods not counted
    running: int = 0  # bound pods, DaemonSet pods not counted


def is_daemonset_pod(pod: Mapping) -> bool:
    return any(owner.get("kind") == "DaemonSet" for owner in pod["metadata"].get("ownerReferences") or ())


def parse_time(text: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def read_cluster(kube: FakeKubeApi) -> Cluster:
    """The nodes, claims, volumes, classes and namespaces of the fake API server (pods apart)."""
    return Cluster(
        nodes={node["metadata"]["name"]: node for node in kube.list("nodes")},
        claims={(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in kube.list("PersistentVolumeClaim")},
        volumes={v["metadata"]["name"]: v for v in kube.list("PersistentVolume")},
        storage_classes={c["metadata"]["name"]: c for c in kube.list("StorageClass")},
        namespace_labels={n["metadata"]["name"]: labels_of(n) for n in kube.list("Namespace")},
    )


class Scheduler:
    def __init__(self, kube: FakeKubeApi):
        self.kube = kube
        self.used_nodes: set = set()  # nodes that ever ran a pod other than a DaemonSet's

    def step(self, now: datetime) -> StepResult:
        result = StepResult()
        cluster = read_cluster(self.kube)
        pending = []
        for raw in self.kube.list("pods"):
            meta, spec, status = raw["metadata"], raw["spec"], raw.get("status") or {}
            name, namespace = meta["name"], meta["namespace"]
            phase, node_name = status.get("phase"), spec.get("nodeName")
            daemon = is_daemonset_pod(raw)
            if phase in ("Succeeded", "Failed"):
                self.kube.delete("Pod", name, namespace)
                continue
            if node_name and node_name not in cluster.nodes:
                self.kube.delete("Pod", name, namespace)  # its node is gone
                continue
            if node_name and not daemon and self._done(raw, now):
                self.kube.update("Pod", name, namespace, lambda pod: _succeed(pod, now))
                result.finished.append(name)
                continue
            result.present.append(name)
            if node_name:
                cluster.pods_on[node_name].append(raw)
                result.running += not daemon
            elif not daemon:
                pending.append(raw)

        nodes = [cluster.nodes[name] for name in sorted(cluster.nodes)]
        hopeless = set()  # pod specs that fit no node this step and cannot start to by a binding
        for pod in sorted(pending, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"])):
            if scheduling_gated(pod):
                continue
            key = _twin_key(pod)
            if key in hopeless:
                continue
            target = next((node for node in nodes if unfit_reason(pod, node, cluster) is None), None)
            if target is None:
                if key is not None:
                    hopeless.add(key)
                continue
            target_name = target["metadata"]["name"]
            self.kube.update("Pod", pod["metadata"]["name"], pod["metadata"]["namespace"],
                             functools.partial(_bind, node_name=target_name, now=now))
            cluster.pods_on[target_name].append(pod)
            self.used_nodes.add(target_name)
            result.started.append(pod["metadata"]["name"])
        result.running += len(result.started)
        result.pending = len(pending) - len(result.started)
        return result

    @staticmethod
    def _done(raw: dict, now: datetime) -> bool:
        started = parse_time((raw.get("status") or {}).get("startTime"))
        duration = float((raw["metadata"].get("annotations") or {}).get(DURATION_ANNOTATION, "0"))
        return started is not None and (now - started).total_seconds() >= duration


def _twin_key(pod: Mapping) -> Optional[str]:
    """What makes two pending pods interchangeable to the filters, or None when binding other pods
    in this step could make a node fit this one (pod affinity, topology spread)."""
    spec = pod["spec"]
    if spec.get("topologySpreadConstraints") or (spec.get("affinity") or {}).get("podAffinity"):
        return None
    meta = pod["metadata"]
    return json.dumps([meta["namespace"], meta.get("labels") or {}, spec], sort_keys=True)


def _bind(pod: dict, node_name: str, now: datetime) -> None:
    stamp = utc_text(now)
    pod["spec"]["nodeName"] = node_name
    pod["status"] = {
        "phase": "Running",
        "startTime": stamp,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            {"type": "Ready", "status": "True", "lastTransitionTime": stamp},
        ],
        "qosClass": "Burstable",
    }


def _succeed(pod: dict, now: datetime) -> None:
    pod["status"]["phase"] = "Succeeded"
    for condition in pod["status"].get("conditions", ()):
        if condition["type"] == "Ready":
            condition.update(status="False", reason="PodCompleted", lastTransitionTime=utc_text(now))
