"""A tiny DaemonSet controller: one pod of each DaemonSet on every node its template admits.

A DaemonSet's template admits a node when its node selector and required node affinity match the
node, and its tolerations, with the ones the DaemonSet controller adds to every DaemonSet pod,
tolerate the node's NoSchedule and NoExecute taints. The pod is created bound to the node and
running (it holds room there like any other pod); it goes with its node. A node that admits the
template later (a start-up taint removed) gets its pod then.
"""
from __future__ import annotations

import copy
from datetime import datetime
from typing import Iterable, Mapping, Optional

from ..fakes.kube_api import FakeKubeApi
from ..model.text import utc_text
from .plugins import Cluster, node_affinity, taint_toleration

NAMESPACE = "kube-system"

# What the DaemonSet controller adds to every DaemonSet pod (pkg/controller/daemon/util).
AUTOMATIC_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)
HOST_NETWORK_TOLERATION = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


def make_daemonset(name: str, requests: Mapping[str, str], node_selector: Optional[Mapping[str, str]] = None,
                   tolerations: Iterable[Mapping] = (), host_ports: Iterable[int] = (),
                   namespace: str = NAMESPACE) -> dict:
    """An apps/v1 DaemonSet of one container with these requests."""
    labels = {"app": name}
    container: dict = {"name": name, "image": "busybox", "resources": {"requests": dict(requests)}}
    if host_ports:
        container["ports"] = [{"containerPort": port, "hostPort": port, "protocol": "TCP"} for port in host_ports]
    spec: dict = {"containers": [container]}
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = [dict(t) for t in tolerations]
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-ds-{namespace}-{name}"},
        "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": spec}},
    }


def daemon_pod_template(daemonset: Mapping) -> dict:
    """The pod the controller stamps from a DaemonSet, before it is bound: the template with the
    automatic tolerations added."""
    template = copy.deepcopy(daemonset["spec"]["template"])
    spec = template.setdefault("spec", {})
    added = [*AUTOMATIC_TOLERATIONS, *([HOST_NETWORK_TOLERATION] if spec.get("hostNetwork") else [])]
    spec["tolerations"] = [*(spec.get("tolerations") or ()), *added]
    meta = daemonset["metadata"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "namespace": meta["namespace"], "labels": dict((template.get("metadata") or {}).get("labels") or {}),
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": meta["name"],
                                 "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}],
        },
        "spec": spec,
    }


def admits(pod: Mapping, node: Mapping) -> bool:
    """Should the DaemonSet run on the node (nodeShouldRunDaemonPod: selector, affinity, taints)?"""
    empty = Cluster(nodes={})
    return node_affinity(pod, node, empty) is None and taint_toleration(pod, node, empty) is None


class DaemonSetController:
    def __init__(self, kube: FakeKubeApi):
        self.kube = kube
        self._placed: set = set()  # (daemonset namespace/name, node name)

    def step(self, now: datetime) -> int:
        """Create the missing DaemonSet pods; returns how many."""
        nodes = {node["metadata"]["name"]: node for node in self.kube.list("nodes")}
        self._placed = {(key, name) for key, name in self._placed if name in nodes}
        created = 0
        for daemonset in self.kube.list("DaemonSet"):
            meta = daemonset["metadata"]
            key = f"{meta['namespace']}/{meta['name']}"
            template = daemon_pod_template(daemonset)
            for name in sorted(nodes):
                if (key, name) in self._placed or not admits(template, nodes[name]):
                    continue
                pod = copy.deepcopy(template)
                pod["metadata"]["name"] = f"{meta['name']}-{name.split('.')[0]}"
                pod["spec"]["nodeName"] = name
                stamp = utc_text(now)
                pod["status"] = {"phase": "Running", "startTime": stamp, "qosClass": "Burstable", "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
                    {"type": "Ready", "status": "True", "lastTransitionTime": stamp}]}
                self.kube.put(pod)
                self._placed.add((key, name))
                created += 1
        return created
