"""PURE: is a node usable capacity yet (initialized), capacity still on its way (booting), or
broken? (docs/decisions.md#capacity-of-a-new-instance)

A node is registered, then Ready, and only some time later usable by the pods it was bought for:
the network agent removes its start-up taint (Cilium's ``node.cilium.io/agent-not-ready``), the
device plugin advertises the GPUs, a bootstrap script removes a ``--register-with-taints`` taint.
Counting such a node as free room too early makes the autoscaler buy again for pods that are only
waiting for it. So a node of a group is **initialized** when it is Ready, carries no taint the
group's template does not have, and advertises every extended resource its instance type has.
Until then, for at most --instance-init-time from its launch, it is **booting**: capacity of its
group, with the template's room, that pods are planned onto and not bought for again. Past the init
time a Ready node is initialized whatever it carries (a taint still there is permanent, a GPU
still missing is missing), and a node that is not Ready is broken.
"""
from __future__ import annotations

import enum
from datetime import datetime
from typing import Mapping, Optional

from ..model.config import Settings
from ..model.group_labels import node_instance_type
from ..model.objects import Group, Instance, Node, Resources, Snapshot, Taint

# Taints a node carries from registration until something on it finishes starting; no workload
# tolerates them. The node lifecycle controller's and the cloud provider's, and the node agents
# AWS clusters commonly run (Cilium, the EBS and EFS CSI node drivers).
BUILTIN_STARTUP_TAINT_KEYS = frozenset({
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/network-unavailable",
    "node.cloudprovider.kubernetes.io/uninitialized",
    "node.cilium.io/agent-not-ready",
    "ebs.csi.aws.com/agent-not-ready",
    "efs.csi.aws.com/agent-not-ready",
})
# cluster-autoscaler's convention: any taint with this prefix is a start-up taint.
STARTUP_TAINT_PREFIXES = ("startup-taint.cluster-autoscaler.kubernetes.io/",)
# Taints that say what is being done to a node, not what it is: never part of a group's template.
TRANSIENT_TAINT_KEYS = frozenset({
    "node.kubernetes.io/unschedulable",  # the cordon
    "node.kubernetes.io/unreachable",
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/pid-pressure",
    "ToBeDeletedByClusterAutoscaler",
    "DeletionCandidateOfClusterAutoscaler",
    "karpenter.sh/disrupted",
})
# Every instance has these; any other resource of an instance type (a GPU, an FPGA, a Neuron
# device) is advertised by a device plugin some time after the node is Ready.
BASE_RESOURCES = frozenset({"cpu", "memory", "pods", "ephemeral-storage"})
SCHEDULING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


class Readiness(str, enum.Enum):
    INITIALIZED = "initialized"
    BOOTING = "booting"
    BROKEN = "broken"


def is_startup_taint(taint: Taint, settings: Settings) -> bool:
    """A taint known to go away by itself once the node has started (built in, or --startup-taint)."""
    return (taint.key in BUILTIN_STARTUP_TAINT_KEYS or taint.key in settings.startup_taints
            or taint.key.startswith(STARTUP_TAINT_PREFIXES))


def launched_at(node: Node, instance: Optional[Instance]) -> Optional[datetime]:
    """When the node came to be: the earlier of its instance's launch and the Node's creation
    (the instance comes first; a Node older than its instance's launch time says the instance
    was stopped and started again, which is no new start for the node)."""
    known = [t for t in (instance.launch_time if instance is not None else None, node.created) if t is not None]
    return min(known) if known else None


def within_init_time(node: Node, instance: Optional[Instance], settings: Settings, now: datetime) -> bool:
    """Launched less than --instance-init-time ago: not Ready, start-up taints and missing devices
    are still expected."""
    started = launched_at(node, instance)
    return started is not None and (now - started).total_seconds() < settings.instance_init_time


def expected_extended_resources(node: Node, instance: Optional[Instance], group: Group) -> Resources:
    """The extended resources (GPUs...) the node's instance type has, from its group's shapes (a
    group of one type: that type's)."""
    instance_type = node_instance_type(node) or (instance.instance_type if instance is not None else None)
    shape = next((shape for shape in group.shapes if shape.instance_type == instance_type),
                 group.shapes[0] if len(group.shapes) == 1 else None)
    if shape is None:
        return Resources()
    return Resources({name: value for name, value in shape.capacity.items()
                      if name not in BASE_RESOURCES and not name.startswith("hugepages-")})


def unexpected_taints(node: Node, group: Group) -> tuple[Taint, ...]:
    """The node's taints that keep pods off and that its group's template does not have."""
    template = {(taint.key, taint.value, taint.effect) for taint in group.taints}
    return tuple(taint for taint in node.taints
                 if taint.effect in SCHEDULING_EFFECTS and taint.key not in TRANSIENT_TAINT_KEYS
                 and (taint.key, taint.value, taint.effect) not in template)


def readiness(node: Node, instance: Optional[Instance], group: Optional[Group], settings: Settings,
              now: datetime) -> tuple[Readiness, str]:
    """Where the node stands, and why in words when it is not initialized."""
    young = within_init_time(node, instance, settings, now)
    if not node.ready:
        if young:
            return Readiness.BOOTING, "not Ready yet"
        return Readiness.BROKEN, f"not Ready past --instance-init-time {settings.instance_init_time:g}s"
    if not young or group is None:
        return Readiness.INITIALIZED, ""
    waiting = [f"taint {taint.key}" for taint in unexpected_taints(node, group)]
    expected = expected_extended_resources(node, instance, group)
    waiting.extend(f"{name} not advertised yet" for name, _ in sorted(expected.items()) if node.allocatable.get(name) <= 0)
    if waiting:
        return Readiness.BOOTING, ", ".join(waiting)
    return Readiness.INITIALIZED, ""


def readiness_of_nodes(snapshot: Snapshot, settings: Settings, now: datetime) -> Mapping[str, tuple[Readiness, str]]:
    """Node name -> where it stands and why, for every node of the snapshot."""
    group_of_instance = {instance_id: group for group in snapshot.groups for instance_id in group.instance_ids}
    return {node.name: readiness(node, snapshot.instances.get(node.instance_id or ""),
                                 group_of_instance.get(node.instance_id or ""), settings, now)
            for node in snapshot.nodes}
