"""The node simulator: what the kubelets of a cluster would do with the groups' instances.

After each loop of the autoscaler it reads every region's Auto Scaling Groups (moto, over HTTP);
each step it registers a Node for an instance that has been booting for ``boot_seconds``
(providerID ``aws:///<zone>/<id>``, the labels and taints the group's tags promise, the instance
type's allocatable), refreshes the Ready heartbeat of its nodes, and removes the Node of an
instance that has left its group (terminated).
It also tells the sandbox what each group holds, for the report.

A group may behave as real nodes often do (``NodeBehaviour``, from the trace): a start-up taint
present at registration and removed some seconds later (a CNI agent's, say) or never; a device
plugin that reports the node's GPUs some seconds after it is Ready (the Node registers without
``nvidia.com/gpu``); labels its tags promise that the kubelet does not set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Iterable, Mapping, Optional

from ..fakes.aws import FakeAws
from ..fakes.kube_api import FakeKubeApi
from ..fakes.kube_objects import make_node, parse_taint
from ..model.group_labels import node_template
from ..model.objects import Resources
from ..model.text import utc_text
from ..read.aws_reader import RegionClients
from ..read.capacity import DEFAULT_ROOT_VOLUME_GIB, CapacityCatalog, ephemeral_storage_allocatable

HEARTBEAT_SECONDS = 40  # the node controller's grace period; a kubelet's 10 s would only add writes
MIB_MILLI = (1 << 20) * 1000


@dataclass(frozen=True)
class GroupState:
    region: str
    name: str
    desired: int
    instances: int  # in the group: booting or in service
    nodes: int  # of those, registered as Nodes


@dataclass(frozen=True)
class NodeBehaviour:
    # (taint "key[=value]:Effect", seconds after registration it is removed; None: never)
    startup_taints: tuple[tuple[str, Optional[float]], ...] = ()
    gpu_after: Optional[float] = None  # seconds after registration the device plugin reports GPUs
    unset_labels: tuple[str, ...] = ()  # label keys the tags promise but the kubelet does not set
    labels: Mapping[str, str] = field(default_factory=dict)  # set by the kubelet, no tag says so


def quantities(resources: Resources) -> dict[str, str]:
    """Resources (milli-units) -> the quantity strings a kubelet reports."""
    result = {}
    for name, milli in resources.items():
        if name == "cpu":
            result[name] = f"{milli}m"
        elif name == "memory":
            result[name] = f"{milli // MIB_MILLI}Mi"
        else:
            result[name] = str(milli // 1000)
    return result


class NodeSimulator:
    def __init__(self, aws: FakeAws, kube: FakeKubeApi, regions: Iterable[str], boot_seconds: float,
                 behaviour: Optional[Mapping[tuple[str, str], NodeBehaviour]] = None):
        self.aws = aws
        self.behaviour = dict(behaviour or {})  # (region, group) -> how its nodes behave
        self.kube = kube
        self.regions = tuple(regions)
        self.boot_seconds = boot_seconds
        self.catalog = CapacityCatalog(lambda region: RegionClients(region, aws.client("autoscaling", region),
                                                                    aws.client("ec2", region)))
        self._first_seen: dict[str, datetime] = {}  # instance id -> when it appeared in its group
        self._node_of: dict[str, str] = {}  # instance id -> node name
        self._last_heartbeat: dict[str, datetime] = {}  # node name -> last heartbeat written
        self._groups: dict[str, list] = {}  # region -> its groups as last described
        self._registered: dict[str, int] = {}  # region -> nodes registered so far, for names
        self._later: list[tuple[datetime, str, Callable[[dict], None]]] = []  # (when, node, change)
        self.group_of: dict[str, tuple[str, str]] = {}  # every instance seen -> (region, group)
        self.node_of = self._node_of  # instance id -> node name, while it has one
        self.nodes_ever: dict[str, str] = {}  # every instance that registered -> its node name

    def allocatable(self, instance_type: str) -> Optional[Resources]:
        """What a node of the type reports: the autoscaler's own estimate, with the ephemeral
        storage of the EKS AMI's 20 GiB root volume (the sandbox's groups set no volume)."""
        estimate = self.catalog.get(instance_type)
        if estimate is None:
            return None
        return estimate + Resources({"ephemeral-storage": ephemeral_storage_allocatable(DEFAULT_ROOT_VOLUME_GIB)})

    def step(self, now: datetime, refresh: bool = True) -> list[GroupState]:
        """``refresh``: read the groups again. Only the autoscaler changes them (moto launches
        and terminates inside its calls), so once after each of its loops is enough."""
        states, live = [], set()
        for region in self.regions:
            if refresh or region not in self._groups:
                groups = []
                for page in self.aws.client("autoscaling", region).get_paginator("describe_auto_scaling_groups").paginate():
                    groups.extend(page["AutoScalingGroups"])
                self._groups[region] = sorted(groups, key=lambda g: g["AutoScalingGroupName"])
            groups = self._groups[region]
            members = {g["AutoScalingGroupName"]: [i for i in g["Instances"] if not i["LifecycleState"].startswith("Terminat")]
                       for g in groups}
            booted = []
            for group in groups:
                for instance in members[group["AutoScalingGroupName"]]:
                    live.add(instance["InstanceId"])
                    self.group_of[instance["InstanceId"]] = (region, group["AutoScalingGroupName"])
                    first_seen = self._first_seen.setdefault(instance["InstanceId"], now)
                    if instance["InstanceId"] not in self._node_of and (now - first_seen).total_seconds() >= self.boot_seconds:
                        booted.append((group, instance))
            if booted:
                self._register(region, booted, now)
            for group in groups:
                instances = members[group["AutoScalingGroupName"]]
                states.append(GroupState(region, group["AutoScalingGroupName"], group["DesiredCapacity"], len(instances),
                                         sum(1 for i in instances if i["InstanceId"] in self._node_of)))
        self._remove_gone(live)
        self._apply_later(now)
        self._heartbeat(now)
        return states

    def _register(self, region: str, booted: list, now: datetime) -> None:
        types = sorted({instance["InstanceType"] for _, instance in booted})
        self.catalog.prefetch(region, types)
        for group, instance in booted:
            instance_id, zone, instance_type = instance["InstanceId"], instance["AvailabilityZone"], instance["InstanceType"]
            tags = {tag["Key"]: tag["Value"] for tag in group.get("Tags", ())}
            architecture = self.catalog.architecture(instance_type)
            template = node_template(tags, [instance_type], region, zones=[zone],
                                     architectures={instance_type: architecture} if architecture else None)
            # A type neither the API nor the shipped table knows gets a token node: 1 CPU, 10 pods.
            allocatable = quantities(self.allocatable(instance_type) or Resources({"cpu": 1000, "pods": 10_000}))
            name = self._next_name(region)
            behaviour = self.behaviour.get((region, group["AutoScalingGroupName"]), NodeBehaviour())
            labels = {key: value for key, value in template.labels.items() if key not in behaviour.unset_labels}
            taints = [{"key": t.key, "value": t.value or None, "effect": t.effect} for t in template.taints]
            for taint, seconds in behaviour.startup_taints:
                taints.append(parse_taint(taint))
                if seconds is not None:
                    self._later.append((now + timedelta(seconds=seconds), name, _untaint(parse_taint(taint)["key"])))
            gpus = allocatable.pop("nvidia.com/gpu", None)
            if gpus is not None and behaviour.gpu_after:
                self._later.append((now + timedelta(seconds=behaviour.gpu_after), name, _add_gpus(gpus)))
                gpus = None
            node = make_node(
                name,
                cpu=allocatable.pop("cpu"), memory=allocatable.pop("memory", "0"), pods=allocatable.pop("pods", "110"),
                gpu=gpus,
                labels={**labels, **behaviour.labels, "kubernetes.io/hostname": name},
                provider_id=f"aws:///{zone}/{instance_id}",
                taints=taints,
                instance_type=instance_type, zone=zone,
                creation_timestamp=utc_text(now), heartbeat_timestamp=utc_text(now),
            )
            for resource, quantity in allocatable.items():  # any other extended resource
                node["status"]["capacity"][resource] = node["status"]["allocatable"][resource] = quantity
            self.kube.put(node)
            self._node_of[instance_id] = name
            self.nodes_ever[instance_id] = name
            self._last_heartbeat[name] = now

    def _apply_later(self, now: datetime) -> None:
        """The changes due by now: start-up taints removed, GPUs reported (on nodes still there)."""
        due = [item for item in self._later if item[0] <= now]
        self._later = [item for item in self._later if item[0] > now]
        for _, name, change in sorted(due, key=lambda item: (item[0], item[1])):
            if self.kube.get("Node", name) is not None:
                self.kube.update("Node", name, None, change)

    def _next_name(self, region: str) -> str:
        """Node names in the order nodes register, not moto's random addresses: the scheduler
        fills nodes in name order, so random names would make two runs of a trace differ."""
        count = self._registered[region] = self._registered.get(region, 0) + 1
        return f"ip-10-{self.regions.index(region)}-{(count - 1) // 250}-{(count - 1) % 250 + 1}.{region}.compute.internal"

    def _remove_gone(self, live: set) -> None:
        for instance_id in sorted(set(self._node_of) - live):
            name = self._node_of.pop(instance_id)
            self._last_heartbeat.pop(name, None)
            self.kube.delete("Node", name)  # None if the autoscaler already deleted it
        for instance_id in set(self._first_seen) - live:
            del self._first_seen[instance_id]

    def _heartbeat(self, now: datetime) -> None:
        stamp = utc_text(now)

        def beat(node: dict) -> None:
            for condition in node["status"].get("conditions", ()):
                if condition["type"] == "Ready":
                    condition["lastHeartbeatTime"] = stamp

        for name, last in sorted(self._last_heartbeat.items()):
            if (now - last).total_seconds() < HEARTBEAT_SECONDS:
                continue
            if self.kube.get("Node", name) is None:
                continue  # deleted by the autoscaler; the instance's termination removes our record
            self.kube.update("Node", name, None, beat)
            self._last_heartbeat[name] = now


def _untaint(key: str) -> Callable[[dict], None]:
    def change(node: dict) -> None:
        node["spec"]["taints"] = [t for t in node["spec"].get("taints") or () if t["key"] != key]
    return change


def _add_gpus(count: str) -> Callable[[dict], None]:
    def change(node: dict) -> None:
        node["status"]["capacity"]["nvidia.com/gpu"] = node["status"]["allocatable"]["nvidia.com/gpu"] = count
    return change
