"""Small builders of model objects for table-driven tests of the pure modules.

Quantities are written as an operator writes them (``cpu="500m"``, ``memory="2Gi"``) and parsed
with the product's own parser, so a test reads like a pod spec.
"""
from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import datetime, timezone
from typing import Iterable, Mapping, Optional

from autoscaler.model.objects import (
    CORDONED_BY_AUTOSCALER_LABEL,
    HOSTNAME_LABEL,
    ZONE_LABEL,
    PodAffinityTerm,
    Group,
    Instance,
    InstanceShape,
    LabelSelector,
    Node,
    Placement,
    Pod,
    PodPhase,
    Requirement,
    Resources,
    Snapshot,
    SpreadConstraint,
    Toleration,
)
from autoscaler.read.resources import parse_resources

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=timezone.utc)
GPU = "nvidia.com/gpu"

_serial = itertools.count(1)


def make_resources(cpu="0", memory="0", gpu=0, pods=0, **extra) -> Resources:
    quantities = {"cpu": cpu, "memory": memory, GPU: gpu, "pods": pods}
    quantities.update({name.replace("__", "/").replace("_", "."): value for name, value in extra.items()})
    return parse_resources(quantities)


def requirement(key: str, operator: str, *values: str) -> Requirement:
    return Requirement(key, operator, tuple(values))


def make_placement(selector: Optional[Mapping[str, str]] = None, tolerations: Iterable[Toleration] = (),
                   affinity: Iterable[Iterable[Requirement]] = (), volume_zones: Iterable[str] = ()) -> Placement:
    """``volume_zones``: one bound zonal volume per zone named (its node affinity: zone In [it])."""
    return Placement(
        node_selector=tuple(sorted((selector or {}).items())),
        tolerations=tuple(tolerations),
        node_affinity=tuple(tuple(term) for term in affinity),
        volume_affinity=tuple(((Requirement(ZONE_LABEL, "In", (zone,)),),) for zone in volume_zones),
    )


def anti_affinity(match_labels: Optional[Mapping[str, str]] = None, namespaces: Iterable[str] = ("default",),
                  expressions: Iterable[Requirement] = ()) -> PodAffinityTerm:
    return PodAffinityTerm(LabelSelector(tuple(sorted((match_labels or {}).items())), tuple(expressions)),
                            tuple(namespaces))


def pod_term(match_labels: Optional[Mapping[str, str]] = None, topology_key: str = HOSTNAME_LABEL,
             namespaces: Iterable[str] = ("default",), expressions: Iterable[Requirement] = ()) -> PodAffinityTerm:
    """A required pod affinity or anti-affinity term on any topology key."""
    return PodAffinityTerm(LabelSelector(tuple(sorted((match_labels or {}).items())), tuple(expressions)),
                           tuple(namespaces), topology_key)


def spread(match_labels: Mapping[str, str], topology_key: str = HOSTNAME_LABEL, max_skew: int = 1,
           min_domains: int = 1) -> SpreadConstraint:
    """A DoNotSchedule topology spread constraint."""
    return SpreadConstraint(topology_key, max_skew, LabelSelector(tuple(sorted(match_labels.items()))), min_domains)


def make_pod(name: Optional[str] = None, cpu="500m", memory="0", gpu=0, selector=None, tolerations=(),
             affinity=(), anti=(), labels=None, node: Optional[str] = None, phase: Optional[PodPhase] = None,
             namespace="default", owner_kinds=("Job",), requests: Optional[Resources] = None, pod_affinity=(),
             spread_constraints=(), host_ports=(), volume_zones=(), **extra) -> Pod:
    """A pod asking for these requests (plus ``pods: 1``); Pending without ``node``, else Running."""
    if requests is None:
        requests = make_resources(cpu=cpu, memory=memory, gpu=gpu, pods=1, **extra)
    if phase is None:
        phase = PodPhase.RUNNING if node else PodPhase.PENDING
    return Pod(
        namespace=namespace,
        name=name or f"pod-{next(_serial)}",
        phase=phase,
        requests=requests,
        node_name=node,
        placement=make_placement(selector, tolerations, affinity, volume_zones),
        anti_affinity=tuple(anti),
        affinity=tuple(pod_affinity),
        spread=tuple(spread_constraints),
        host_ports=tuple(host_ports),
        labels=dict(labels or {}),
        owner_kinds=tuple(owner_kinds),
    )


def make_pods(count: int, **options) -> list[Pod]:
    """``count`` pods alike (each its own name); options as make_pod's."""
    return [make_pod(**options) for _ in range(count)]


def make_node(name: Optional[str] = None, cpu="4", memory="16Gi", gpu=0, pods=110, labels=None, taints=(),
              unschedulable=False, cordoned_by_autoscaler=False, instance_id: Optional[str] = None,
              region="us-west-2", zone="us-west-2a", allocatable: Optional[Resources] = None, ready=True,
              created: Optional[datetime] = NOW) -> Node:
    name = name or f"node-{next(_serial)}"
    node_labels = {HOSTNAME_LABEL: name, **(labels or {})}
    if cordoned_by_autoscaler:
        node_labels[CORDONED_BY_AUTOSCALER_LABEL] = "true"
        unschedulable = True
    return Node(
        name=name,
        labels=node_labels,
        allocatable=allocatable if allocatable is not None else make_resources(cpu=cpu, memory=memory, gpu=gpu, pods=pods),
        taints=tuple(taints),
        unschedulable=unschedulable,
        instance_id=instance_id,
        region=region if instance_id else None,
        zone=zone if instance_id else None,
        ready=ready,
        created=created,
    )


def make_shape(instance_type="m5.xlarge", cpu="4", memory="16Gi", gpu=0, pods=110) -> InstanceShape:
    return InstanceShape(instance_type, make_resources(cpu=cpu, memory=memory, gpu=gpu, pods=pods))


def make_group(name="workers", region="us-west-2", instance_type="m5.xlarge", cpu="4", memory="16Gi", gpu=0,
               pods=110, min_size=0, max_size=10, desired=0, labels=None, taints=(), zones=("us-west-2a",),
               spot=False, priority=0, shapes: Optional[Iterable[InstanceShape]] = None,
               instance_ids: Iterable[str] = (), instances: int = 0, spot_price: Optional[str] = None) -> Group:
    """A group whose future nodes carry ``aws/type`` and ``aws/region`` plus ``labels``; it owns
    ``instance_ids`` and then ``instances`` more, named ``i-<name>-<n>`` as make_group_nodes names them."""
    if shapes is None:
        shapes = (make_shape(instance_type, cpu=cpu, memory=memory, gpu=gpu, pods=pods),)
    shapes = tuple(shapes)
    group_labels = {"aws/region": region}
    if shapes:
        group_labels["aws/type"] = shapes[0].instance_type
    if len(set(zones)) == 1:  # as group_labels.node_template: a single-zone group's nodes carry its zone
        group_labels[ZONE_LABEL] = tuple(zones)[0]
    group_labels.update(labels or {})
    return Group(
        name=name, region=region, min_size=min_size, max_size=max_size, desired=desired,
        instance_ids=(*instance_ids, *(f"i-{name}-{n}" for n in range(instances))), zones=tuple(zones),
        labels=group_labels, taints=tuple(taints), shapes=shapes, is_spot=spot, spot_price=spot_price, priority=priority,
    )


def make_group_nodes(group: Group, count: int, **node_options) -> tuple[Group, list[Node]]:
    """``count`` nodes of the group (its labels and taints, its instance ids), and the group
    updated to own them; desired is raised to at least the node count."""
    nodes = []
    for index in range(count):
        options = dict(node_options)
        if group.shapes and "allocatable" not in options:
            options["allocatable"] = group.shapes[0].capacity
        name = f"{group.name}-{len(group.instance_ids) + index}"
        options.setdefault("taints", group.taints)
        nodes.append(make_node(name, labels=dict(group.labels), instance_id=f"i-{name}", region=group.region, **options))
    ids = group.instance_ids + tuple(node.instance_id for node in nodes)
    return replace(group, instance_ids=ids, desired=max(group.desired, len(ids))), nodes


def make_snapshot(pods=(), nodes=(), groups=(), not_running: Iterable[str] = ()) -> Snapshot:
    """A snapshot whose managed nodes' instances run, except the instance ids in ``not_running``."""
    stopped = set(not_running)
    instances = {
        node.instance_id: Instance(node.instance_id, node.region or "us-west-2", node.zone or "us-west-2a",
                                   "stopped" if node.instance_id in stopped else "running", "m5.xlarge", NOW)
        for node in nodes if node.instance_id
    }
    return Snapshot(nodes=tuple(nodes), pods=tuple(pods), groups=tuple(groups), instances=instances)
