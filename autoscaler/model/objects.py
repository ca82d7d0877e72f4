"""Plain, immutable data: what the readers produce and the decision code consumes.

Nothing here talks to a cloud or a cluster. Readers convert API objects into these types at the
boundary, so decision code never sees a raw dict from AWS or a ``V1Pod``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import ItemsView, Iterable, Mapping, Optional

# Label and annotation keys the autoscaler reads or writes on nodes and pods.
CORDONED_BY_AUTOSCALER_LABEL = "openai/cordoned-by-autoscaler"
DETACHED_LABEL = "openai/detached"
DO_NOT_DRAIN_LABEL = "openai/do-not-drain"
SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"
LAST_BUSY_ANNOTATION = "autoscaler.openai.com/last-busy"
HOSTNAME_LABEL = "kubernetes.io/hostname"
ZONE_LABEL = "topology.kubernetes.io/zone"


class Resources:
    """Amounts of named resources, each an integer count of milli-units.

    Using one integer unit for every resource (cpu ``500m`` -> 500, memory ``1Ki`` -> 1024000,
    ``nvidia.com/gpu: 1`` -> 1000) keeps arithmetic exact and fast. Zero amounts are dropped, so
    two equal sets of requests compare and hash equal.
    """

    __slots__ = ("_amounts", "_hash")

    def __init__(self, amounts: Mapping[str, int] | Iterable[tuple[str, int]] = ()):
        # dict first: the ABC check of Mapping costs more than the rest of the constructor.
        items = amounts.items() if isinstance(amounts, (dict, Mapping)) else amounts
        self._amounts = {name: int(value) for name, value in items if value}
        self._hash: Optional[int] = None

    def get(self, name: str) -> int:
        return self._amounts.get(name, 0)

    def names(self) -> frozenset[str]:
        return frozenset(self._amounts)

    def items(self) -> ItemsView[str, int]:
        return self._amounts.items()

    def __bool__(self) -> bool:
        return bool(self._amounts)

    def __add__(self, other: "Resources") -> "Resources":
        merged = dict(self._amounts)
        for name, value in other._amounts.items():
            merged[name] = merged.get(name, 0) + value
        return Resources(merged)

    def __sub__(self, other: "Resources") -> "Resources":
        merged = dict(self._amounts)
        for name, value in other._amounts.items():
            merged[name] = merged.get(name, 0) - value
        return Resources(merged)

    def times(self, count: int) -> "Resources":
        return Resources({name: value * count for name, value in self._amounts.items()})

    def max_with(self, other: "Resources") -> "Resources":
        merged = dict(self._amounts)
        for name, value in other._amounts.items():
            merged[name] = max(merged.get(name, 0), value)
        return Resources(merged)

    def fits_in(self, free: "Resources") -> bool:
        available = free._amounts
        return all(value <= available.get(name, 0) for name, value in self._amounts.items())

    def count_fitting_in(self, free: "Resources") -> int:
        """How many copies of these requests fit in ``free`` at once."""
        best: Optional[int] = None
        available = free._amounts
        for name, value in self._amounts.items():
            if value <= 0:
                continue
            copies = available.get(name, 0) // value
            if best is None or copies < best:
                best = copies
                if best <= 0:
                    return 0
        return best if best is not None else 1 << 30

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resources) and self._amounts == other._amounts

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._amounts.items()))
        return self._hash

    def __repr__(self) -> str:
        return f"Resources({self.describe()})"

    def describe(self) -> str:
        """Human form, in the units an operator writes: ``cpu=1500m memory=2Gi nvidia.com/gpu=1``."""
        return " ".join(f"{name}={format_amount(name, value)}" for name, value in sorted(self._amounts.items()))


def extreme_sizes(sizes: Iterable[Resources], *, largest: bool) -> tuple[Resources, ...]:
    """The distinct sizes that no other covers, largest (or smallest) total first.

    ``largest``: those that fit in no other; a request that fits none of them fits none of the
    sizes (capacities: could any instance or node take it?). Otherwise those that no other fits
    in; if none of them fits a node, none of the sizes does (pending requests: could any of
    them run here?)."""
    sign = -1 if largest else 1
    kept: list[Resources] = []
    for size in sorted(set(sizes), key=lambda r: (sign * sum(v for _, v in r.items()), sorted(r.items()))):
        if not any(size.fits_in(other) if largest else other.fits_in(size) for other in kept):
            kept.append(size)
    return tuple(kept)


def format_amount(name: str, milli: int) -> str:
    if name == "cpu":
        return f"{milli // 1000}" if milli % 1000 == 0 else f"{milli}m"
    whole, rest = divmod(milli, 1000)
    if rest:
        return f"{milli / 1000:g}"
    if name == "memory" or name.endswith("storage") or name.startswith("hugepages"):
        for suffix, size in (("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)):
            if whole and whole % size == 0:
                return f"{whole // size}{suffix}"
    return str(whole)


@dataclass(frozen=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True)
class Toleration:
    key: str = ""  # empty with operator Exists tolerates every taint
    operator: str = "Equal"  # "Equal" or "Exists"
    value: str = ""
    effect: str = ""  # empty tolerates every effect


@dataclass(frozen=True)
class Requirement:
    """One match expression: node affinity (In, NotIn, Exists, DoesNotExist, Gt, Lt) or label
    selector (In, NotIn, Exists, DoesNotExist)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class LabelSelector:
    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[Requirement, ...] = ()


@dataclass(frozen=True)
class PodAffinityTerm:
    """A required pod affinity or anti-affinity term: pods matching ``selector`` in
    ``namespaces``, counted per domain of ``topology_key`` (a node for the hostname label, a zone
    for the zone label)."""

    selector: LabelSelector
    namespaces: tuple[str, ...]  # already defaulted to the pod's own namespace when empty
    topology_key: str = HOSTNAME_LABEL


# PodAffinityTerm.namespaces of a term with a namespaceSelector: every namespace (the reader
# cannot evaluate namespace labels, so a non-empty selector is read as every namespace too).
ALL_NAMESPACES: tuple[str, ...] = ("*",)


@dataclass(frozen=True)
class SpreadConstraint:
    """A topology spread constraint with ``whenUnsatisfiable: DoNotSchedule`` (ScheduleAnyway ones
    are hints and are not read): pods matching ``selector`` in the pod's namespace may differ by at
    most ``max_skew`` between the domains of ``topology_key``."""

    topology_key: str
    max_skew: int
    selector: LabelSelector
    min_domains: int = 1


@dataclass(frozen=True)
class Placement:
    """Everything about a pod that decides which nodes and groups may take it.

    Hashable, so pending pods can be grouped into constraint sets by it.
    """

    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    # Required node affinity: terms are ORed, the requirements inside one term ANDed.
    node_affinity: tuple[tuple[Requirement, ...], ...] = ()
    # The required node affinity of each PersistentVolume the pod's claims are bound to (a zonal
    # EBS volume: topology.kubernetes.io/zone In [its zone]); every one must hold, each as above.
    volume_affinity: tuple[tuple[tuple[Requirement, ...], ...], ...] = ()

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.node_selector]
        if self.node_affinity:
            parts.append(f"affinity={len(self.node_affinity)} term(s)")
        if self.volume_affinity:
            parts.append(f"volumes={len(self.volume_affinity)} with node affinity")
        if self.tolerations:
            parts.append(f"tolerations={len(self.tolerations)}")
        return "{" + ", ".join(parts) + "}" if parts else "{any node}"


class PodPhase(str, enum.Enum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, eq=False)
class Pod:
    namespace: str
    name: str
    phase: PodPhase
    # As the scheduler computes them: pod-level resources where set, else the larger of the app
    # containers plus sidecars and each init container plus the sidecars started before it;
    # plus overhead, plus pods=1.
    requests: Resources
    node_name: Optional[str] = None
    placement: Placement = Placement()
    anti_affinity: tuple[PodAffinityTerm, ...] = ()  # required, any topology key
    affinity: tuple[PodAffinityTerm, ...] = ()  # required pod affinity, any topology key
    spread: tuple[SpreadConstraint, ...] = ()  # DoNotSchedule topology spread constraints
    host_ports: tuple[str, ...] = ()  # "TCP/9000": one pod per node may hold each
    # Not demand yet: the scheduler does not look at a pod with scheduling gates (a queue such as
    # Kueue has not admitted it), nor at one whose claims are not bound (and not WaitForFirstConsumer).
    scheduling_gates: tuple[str, ...] = ()
    unbound_claims: tuple[str, ...] = ()
    # The scheduler's own words when it last failed to place the pod (PodScheduled condition).
    unschedulable_message: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    owner_kinds: tuple[str, ...] = ()
    is_mirror: bool = False
    safe_to_evict: Optional[bool] = None  # the cluster-autoscaler annotation, when set
    created: Optional[datetime] = None
    scheduled_at: Optional[datetime] = None  # when it was bound to its node (else start time)
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def is_pending_unassigned(self) -> bool:
        return self.phase is PodPhase.PENDING and not self.node_name

    @property
    def occupies_node(self) -> bool:
        """Running, ContainerCreating, or Pending with a node: it holds room on its node."""
        return bool(self.node_name) and self.phase in (PodPhase.PENDING, PodPhase.RUNNING, PodPhase.UNKNOWN)

    @property
    def is_gated(self) -> bool:
        """Held back from the scheduler (scheduling gates or unbound claims): not demand."""
        return bool(self.scheduling_gates or self.unbound_claims)

    @property
    def is_daemonset(self) -> bool:
        return "DaemonSet" in self.owner_kinds

    @property
    def do_not_drain(self) -> bool:
        return self.labels.get(DO_NOT_DRAIN_LABEL) == "true"


@dataclass(frozen=True, eq=False)
class Node:
    name: str
    labels: Mapping[str, str]
    allocatable: Resources
    taints: tuple[Taint, ...] = ()
    unschedulable: bool = False
    instance_id: Optional[str] = None  # from spec.providerID aws:///<az>/<id>, or the aws/id label
    region: Optional[str] = None
    zone: Optional[str] = None
    ready: bool = True
    last_heartbeat: Optional[datetime] = None  # Ready condition's lastHeartbeatTime
    created: Optional[datetime] = None
    last_busy: Optional[datetime] = None  # our annotation: when it last ran a busy pod

    @property
    def is_managed(self) -> bool:
        return self.instance_id is not None

    @property
    def cordoned_by_autoscaler(self) -> bool:
        return self.labels.get(CORDONED_BY_AUTOSCALER_LABEL) == "true"

    @property
    def detached(self) -> bool:
        return self.labels.get(DETACHED_LABEL) == "true"


@dataclass(frozen=True)
class Instance:
    id: str
    region: str
    zone: str
    state: str  # EC2 state name: pending, running, shutting-down, terminated, stopping, stopped
    instance_type: str
    launch_time: Optional[datetime] = None
    group_name: Optional[str] = None
    lifecycle: str = "on-demand"  # or "spot"
    spot_request_id: Optional[str] = None

    @property
    def is_running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class InstanceShape:
    """One instance type a group can launch, and what one such instance offers the scheduler."""

    instance_type: str
    capacity: Resources
    # On-demand $/h of one instance of this type in the group's region (the shipped price table;
    # a region the table lacks takes its us-east-1 figure, see prices.py); None for a type it lacks.
    hourly_price: Optional[float] = None


def shape_size(shape: InstanceShape) -> tuple[int, int, int, str]:
    """The one order of instance shapes, smallest first: cpu, memory, GPUs, then the type name so
    ties are deterministic. A group keeps its shapes in it; the smallest that fits and the largest
    a pod could get are taken by it."""
    capacity = shape.capacity
    return (capacity.get("cpu"), capacity.get("memory"), capacity.get("nvidia.com/gpu"), shape.instance_type)


def sort_shapes(shapes: Iterable[InstanceShape]) -> tuple[InstanceShape, ...]:
    return tuple(sorted(shapes, key=shape_size))


@dataclass(frozen=True, eq=False)
class Group:
    """An Auto Scaling Group the autoscaler manages."""

    name: str
    region: str
    min_size: int
    max_size: int
    desired: int
    instance_ids: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)  # what its nodes will carry
    taints: tuple[Taint, ...] = ()
    # Launchable types, smallest first. Empty when no launch settings could be read.
    shapes: tuple[InstanceShape, ...] = ()
    is_spot: bool = False
    spot_price: Optional[str] = None  # the bid, as written in the launch settings
    priority: int = 0  # the k8s.io/cluster-autoscaler/priority tag; higher is preferred
    tags: Mapping[str, str] = field(default_factory=dict)
    created: Optional[datetime] = None
    # Mixed-instances groups: the override types in the order the launch settings list them, and
    # the allocation strategy AWS launches them by ("prioritized", "lowest-price", or a spot
    # strategy such as "capacity-optimized"); both empty for a single-type group.
    override_order: tuple[str, ...] = ()
    allocation_strategy: str = ""
    # $/h of one new instance as the operator set it with the group tag openai/hourly-price;
    # when set it wins over the price table and spot prices.
    hourly_price_override: Optional[float] = None
    # Host ports ("TCP/9100") the DaemonSets that run on its nodes hold on every new instance
    # (decide/node_template.py); empty as read.
    daemon_ports: frozenset[str] = frozenset()

    @property
    def key(self) -> tuple[str, str]:
        return (self.region, self.name)

    @property
    def instance_type(self) -> Optional[str]:
        return self.shapes[0].instance_type if self.shapes else None

    def describe(self) -> str:
        return f"{self.name} ({self.region})"


@dataclass(frozen=True)
class ScalingActivity:
    activity_id: str
    group_name: str
    region: str
    status_code: str  # Successful, Failed, Cancelled, WaitingForSpotInstanceId, InProgress, ...
    status_message: str
    description: str
    cause: str
    start_time: datetime
    end_time: Optional[datetime] = None


# The status codes after which a scaling activity changes no more.
FINISHED_STATUS_CODES = frozenset({"Successful", "Failed", "Cancelled"})


@dataclass(frozen=True)
class SpotPrice:
    region: str
    zone: str
    instance_type: str
    timestamp: datetime
    price: float


@dataclass(frozen=True)
class DisruptionBudget:
    namespace: str
    name: str
    selector: LabelSelector
    disruptions_allowed: int


@dataclass(frozen=True)
class DaemonSet:
    """A DaemonSet's pod template as the controller will stamp it on a node: its requests as the
    scheduler computes them (pods=1 included), and the placement it is admitted by (the
    tolerations the controller adds to every DaemonSet pod included)."""

    namespace: str
    name: str
    requests: Resources
    placement: Placement = Placement()
    host_ports: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Snapshot:
    """Everything one loop knows about the world, read once at the start of the loop."""

    nodes: tuple[Node, ...] = ()
    pods: tuple[Pod, ...] = ()
    groups: tuple[Group, ...] = ()
    instances: Mapping[str, Instance] = field(default_factory=dict)
    activities: tuple[ScalingActivity, ...] = ()  # the last hour's, every region, oldest first
    budgets: tuple[DisruptionBudget, ...] = ()
    spot_prices: tuple[SpotPrice, ...] = ()  # the last 5 hours, for the spot groups' types
    daemonsets: tuple[DaemonSet, ...] = ()


class NodeState(str, enum.Enum):
    """What scale in makes of a managed node, in the order the states are checked."""

    INSTANCE_TERMINATED = "instance-terminated"
    DETACHED = "detached"
    DEAD = "dead"
    ASG_MIN_SIZE = "asg-min-size"
    BUSY = "busy"
    BUSY_UNSCHEDULABLE = "busy-unschedulable"
    POD_PENDING = "pod-pending"
    GRACE_PERIOD = "grace-period"
    TYPE_GRACE_PERIOD = "type-grace-period"
    UNDER_UTILIZED_DRAINABLE = "under-utilized-drainable"
    UNDER_UTILIZED_UNDRAINABLE = "under-utilized-undrainable"
    IDLE_SCHEDULABLE = "idle-schedulable"
    IDLE_UNSCHEDULABLE = "idle-unschedulable"

    @property
    def snake(self) -> str:
        """``busy_unschedulable``: the state as a log field's suffix and a metric label."""
        return self.value.replace("-", "_")
