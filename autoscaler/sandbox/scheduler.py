"""The scheduler and kubelet of the sandbox: bind pending pods, run them, mark them Succeeded.

Binding uses the autoscaler's own predicates (scheduling.py: selectors, node affinity, taints,
hostname anti-affinity) and its request arithmetic (kube_reader), so a pod the autoscaler thinks
fits a node is one this scheduler will place there. Nodes are tried in name order (first fit),
which packs work onto few nodes as a batch cluster's most-allocated scoring does. A pod starts
running when it is bound, runs for its job's duration, then is marked Succeeded; a Succeeded pod
is deleted one step later (a Job's ttlSecondsAfterFinished of zero). A pod bound to a Node that
no longer exists is deleted, as Kubernetes' pod garbage collector does.
"""
from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from ..decide.scheduling import anti_affinity_conflict, pod_matches_node
from ..fakes.kube_api import FakeKubeApi
from ..model.objects import PodPhase, Resources
from ..model.text import utc_text
from ..read.kube_reader import node_from_api, parse_time, pod_from_api
from .workload import DURATION_ANNOTATION


@dataclass
class StepResult:
    started: list = field(default_factory=list)  # pod names bound and running
    finished: list = field(default_factory=list)  # pod names that succeeded
    present: list = field(default_factory=list)  # every pod name left in the API
    pending: int = 0  # unbound pods left after binding
    running: int = 0


class Scheduler:
    def __init__(self, kube: FakeKubeApi):
        self.kube = kube

    def step(self, now: datetime) -> StepResult:
        result = StepResult()
        raw_nodes = self.kube.list("nodes")
        nodes = sorted((node_from_api(raw) for raw in raw_nodes), key=lambda n: n.name)
        node_names = {node.name for node in nodes}
        pending, on_node = [], defaultdict(list)
        for raw in self.kube.list("pods"):
            meta, spec, status = raw["metadata"], raw["spec"], raw.get("status") or {}
            name, namespace = meta["name"], meta["namespace"]
            phase, node_name = status.get("phase"), spec.get("nodeName")
            if phase in ("Succeeded", "Failed"):
                self.kube.delete("Pod", name, namespace)
                continue
            if node_name and node_name not in node_names:
                self.kube.delete("Pod", name, namespace)  # its node is gone
                continue
            if node_name and self._done(raw, now):
                self.kube.update("Pod", name, namespace, lambda pod: _succeed(pod, now))
                result.finished.append(name)
                continue
            result.present.append(name)
            pod = pod_from_api(raw)
            if node_name:
                on_node[node_name].append(pod)
            else:
                pending.append(pod)

        free = {node.name: node.allocatable - sum((p.requests for p in on_node[node.name]), Resources())
                for node in nodes}
        schedulable = [node for node in nodes if node.ready and not node.unschedulable]
        hopeless = set()  # (placement, requests) that fit no node this step: skip their twins
        for pod in sorted(pending, key=lambda p: (p.created or now, p.name)):
            key = (pod.placement, pod.requests)
            if not pod.anti_affinity and key in hopeless:
                continue
            target = next((node for node in schedulable
                           if pod.requests.fits_in(free[node.name]) and pod_matches_node(pod, node)
                           and not anti_affinity_conflict(pod, on_node[node.name])), None)
            if target is None:
                hopeless.add(key)
                continue
            self.kube.update("Pod", pod.name, pod.namespace, functools.partial(_bind, node_name=target.name, now=now))
            free[target.name] = free[target.name] - pod.requests
            on_node[target.name].append(pod)
            result.started.append(pod.name)
        result.running = sum(len(pods) for pods in on_node.values())
        result.pending = len(pending) - len(result.started)
        return result

    @staticmethod
    def _done(raw: dict, now: datetime) -> bool:
        started = parse_time((raw.get("status") or {}).get("startTime"))
        duration = float((raw["metadata"].get("annotations") or {}).get(DURATION_ANNOTATION, "0"))
        return started is not None and (now - started).total_seconds() >= duration


def _bind(pod: dict, node_name: str, now: datetime) -> None:
    stamp = utc_text(now)
    pod["spec"]["nodeName"] = node_name
    pod["status"] = {
        "phase": PodPhase.RUNNING.value,
        "startTime": stamp,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            {"type": "Ready", "status": "True", "lastTransitionTime": stamp},
        ],
        "qosClass": "Burstable",
    }


def _succeed(pod: dict, now: datetime) -> None:
    pod["status"]["phase"] = PodPhase.SUCCEEDED.value
    for condition in pod["status"].get("conditions", ()):
        if condition["type"] == "Ready":
            condition.update(status="False", reason="PodCompleted", lastTransitionTime=utc_text(now))
