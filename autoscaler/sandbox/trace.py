"""Job traces for the sandbox: a small YAML format, read with the line of every value kept.

    jobs:                        # required: groups of identical jobs
      - name: etl                # unique; pods are named etl-0001, etl-0002, ...
        at: 5m                   # first arrival (default 0); seconds, or 90s / 15m / 2h
        count: 40                # how many (default 1)
        rate: 4/min              # arrivals per s, min or h from `at` (default: all at `at`)
        requests: {cpu: "1", memory: 2Gi, nvidia.com/gpu: 1}
        node_selector: {hardware: cpu}
        duration: 20m            # how long each job runs once started
        # optional, the pod's spec as Kubernetes takes it (docs/sandbox.md, "Writing a trace"):
        # labels, tolerations, affinity, topology_spread, host_ports, sidecars (requests of one
        # sidecar init container), init (requests of one init container), gated_until (a
        # scheduling gate removed then), volume_zone (a bound PersistentVolume in that zone)
    groups:                      # optional: the cluster (default: the demo cluster)
      - {name: cpu-west, region: us-west-2, instance_type: m5.xlarge, max_size: 20, labels: {hardware: cpu}}
        # optional: zones, startup_taints [{taint, for}], gpu_after, unset_labels, node_labels
    daemonsets:                  # optional: one pod of each on every node its template admits
      - {name: logs, requests: {cpu: 200m, memory: 200Mi}}
    launch_failures:             # optional: windows in which a group's launches fail
      - {group: cpu-west, at: 20m, until: 50m}
    duration: 3h                 # optional: stop the run at this simulated time

A malformed trace raises TraceError with one line naming the file, the line and the field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NoReturn, Optional

import yaml

from ..clients import regions
from ..model.config import REGION_PATTERN
from ..model.objects import Resources
from ..read.resources import QuantityError, parse_resources

DEFAULT_TRACE = Path(__file__).with_name("default-trace.yaml")
# Traces shipped with the sandbox, by the name --sandbox-trace takes (docs/sandbox.md).
BUNDLED_TRACES = {
    "demo": DEFAULT_TRACE,
    "mixed": Path(__file__).with_name("mixed-trace.yaml"),
}

# Bounds that keep a trace a simulation that ends: a year of simulated time at most (a run stops
# at its time limit anyway, docs/sandbox.md), and no more pods than a laptop can hold.
MAX_TRACE_SECONDS = 365 * 24 * 3600
MAX_COUNT = 100_000
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h)?\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|min|h)\s*$")
_UNIT_SECONDS = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}
_TAINT = re.compile(r"^[^=:\s]+(=[^:\s]*)?:(NoSchedule|PreferNoSchedule|NoExecute)$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")


class TraceError(ValueError):
    """A trace that cannot be replayed; the message is one line: where, which field, what is wrong."""


@dataclass(frozen=True)
class JobGroup:
    name: str
    at: float  # seconds from the start of the run
    count: int
    interval: float  # seconds between arrivals; 0 submits them all at `at`
    requests: Mapping[str, str]  # as written, e.g. {"cpu": "1", "memory": "2Gi"}
    node_selector: Mapping[str, str]
    duration: float
    labels: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple = ()  # as in a pod spec
    affinity: Mapping = field(default_factory=dict)  # as in a pod spec
    topology_spread: tuple = ()  # topologySpreadConstraints, as in a pod spec
    host_ports: tuple[int, ...] = ()
    sidecars: Mapping[str, str] = field(default_factory=dict)  # requests of a sidecar init container
    init: Mapping[str, str] = field(default_factory=dict)  # requests of an init container
    gated_until: Optional[float] = None  # a scheduling gate held until then (seconds from the start)
    volume_zone: Optional[str] = None  # each pod's claim is bound to a volume in this zone

    def arrival(self, index: int) -> float:
        return self.at + index * self.interval

    @property
    def last_arrival(self) -> float:
        return self.arrival(self.count - 1)


@dataclass(frozen=True)
class GroupSpec:
    name: str
    region: str
    instance_type: str
    max_size: int = 10
    min_size: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)  # become kube/<label> tags
    zones: tuple[str, ...] = ()  # default: the region's first
    startup_taints: tuple[tuple[str, Optional[float]], ...] = ()  # (key[=value]:Effect, removed after s)
    gpu_after: Optional[float] = None  # the device plugin reports GPUs this long after registration
    unset_labels: tuple[str, ...] = ()  # labels the tags promise that the kubelet does not set
    node_labels: Mapping[str, str] = field(default_factory=dict)  # set by the kubelet, no tag says so


@dataclass(frozen=True)
class DaemonSetSpec:
    name: str
    requests: Mapping[str, str]
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple = ()
    host_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class LaunchFailure:
    group: str
    region: str
    at: float
    until: Optional[float]  # None: to the end of the run

    def active(self, seconds: float) -> bool:
        return self.at <= seconds and (self.until is None or seconds < self.until)


@dataclass(frozen=True)
class Trace:
    source: str
    jobs: tuple[JobGroup, ...]
    groups: tuple[GroupSpec, ...]
    launch_failures: tuple[LaunchFailure, ...] = ()
    duration: Optional[float] = None
    daemonsets: tuple[DaemonSetSpec, ...] = ()

    @property
    def job_count(self) -> int:
        return sum(job.count for job in self.jobs)

    @property
    def regions(self) -> tuple[str, ...]:
        """Regions of the groups in the order they first appear: the order of preference."""
        return tuple(dict.fromkeys(group.region for group in self.groups))


# The demo cluster: CPU groups in two regions (the second takes the overflow) and a GPU group,
# their nodes' labels given by kube/ tags. As on EKS with Cilium, a node registers with Cilium's
# agent-not-ready taint, gone 30 s later; the GPU nodes' device plugin reports the GPU 60 s after
# the node registers.
CILIUM_STARTUP_TAINT = (("node.cilium.io/agent-not-ready=true:NoSchedule", 30.0),)
DEMO_GROUPS = (
    GroupSpec("cpu-west", "us-west-2", "m5.xlarge", max_size=12, labels={"hardware": "cpu"},
              startup_taints=CILIUM_STARTUP_TAINT),
    GroupSpec("gpu-west", "us-west-2", "p3.2xlarge", max_size=4, labels={"hardware": "gpu"},
              startup_taints=CILIUM_STARTUP_TAINT, gpu_after=60.0),
    GroupSpec("cpu-east", "us-east-1", "m5.xlarge", max_size=12, labels={"hardware": "cpu"},
              startup_taints=CILIUM_STARTUP_TAINT),
)


def load_trace(path: Optional[str] = None) -> Trace:
    """Read and check a trace: a bundled one by name, else a file (the demo trace without either).
    A file of that name, if there is one, wins over a bundled trace."""
    if not path:
        path = str(DEFAULT_TRACE)
    elif path in BUNDLED_TRACES and not Path(path).is_file():
        path = str(BUNDLED_TRACES[path])
    try:
        text = Path(path).read_text()
    except OSError as error:
        bundled = ", ".join(BUNDLED_TRACES)
        raise TraceError(f"trace {path}: cannot read it ({error.strerror or error}); "
                         f"give a YAML file or a bundled trace ({bundled})") from None
    except UnicodeDecodeError:
        raise TraceError(f"trace {path}: not a text file (a trace is YAML in UTF-8)") from None
    return parse_trace(text, path)


def parse_trace(text: str, source: str = "<trace>") -> Trace:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = f", line {mark.line + 1}" if mark else ""
        raise TraceError(f"trace {source}{line}: not valid YAML ({error.problem or error.context})") from None
    except yaml.YAMLError as error:
        raise TraceError(f"trace {source}: not valid YAML ({' '.join(str(error).split())})") from None
    if root is None:
        raise TraceError(f"trace {source}: the file is empty; it needs at least a 'jobs' list")
    top = _Value(root, "", source)
    fields = top.mapping(required=("jobs",), optional=("groups", "launch_failures", "duration", "name", "daemonsets"))
    groups: tuple[GroupSpec, ...] = DEMO_GROUPS
    if "groups" in fields:
        empty = "the list is empty; give at least one group, or leave 'groups' out for the demo cluster"
        groups = tuple(_group(item) for item in fields["groups"].sequence(non_empty=True, empty=empty))
    _unique(fields.get("groups"), [g.name for g in groups], "group")
    jobs = tuple(_job(item) for item in fields["jobs"].sequence(non_empty=True))
    _unique(fields["jobs"], [j.name for j in jobs], "job")
    region_of = {g.name: g.region for g in groups}
    failures = tuple(_failure(item, region_of) for item in fields["launch_failures"].sequence()) \
        if "launch_failures" in fields else ()
    duration = fields["duration"].seconds(positive=True) if "duration" in fields else None
    daemonsets = tuple(_daemonset(item) for item in fields["daemonsets"].sequence()) if "daemonsets" in fields else ()
    _unique(fields.get("daemonsets"), [d.name for d in daemonsets], "daemonset")
    return Trace(source, jobs, groups, failures, duration, daemonsets)


def _requests(value: "_Value", empty_ok: bool = False) -> dict:
    requests = value.string_map()
    if not requests and not empty_ok:
        value.fail("give at least one resource, e.g. {cpu: \"1\", memory: 2Gi}")
    for name, quantity in requests.items():
        try:
            parse_resources({name: quantity})
        except QuantityError:
            value.child(name).fail(f"{quantity!r} is not a Kubernetes quantity like 500m, 2Gi or 1")
    return requests


_POD_FIELDS = ("labels", "tolerations", "affinity", "topology_spread", "host_ports", "sidecars", "init",
               "gated_until", "volume_zone")


def _job(value: "_Value") -> JobGroup:
    fields = value.mapping(required=("name", "requests", "duration"),
                           optional=("at", "count", "rate", "node_selector", *_POD_FIELDS))
    count = fields["count"].integer(minimum=1) if "count" in fields else 1
    requests = _requests(fields["requests"])
    return JobGroup(
        name=fields["name"].name(),
        at=fields["at"].seconds() if "at" in fields else 0.0,
        count=count,
        interval=fields["rate"].interval() if "rate" in fields else 0.0,
        requests=requests,
        node_selector=fields["node_selector"].string_map() if "node_selector" in fields else {},
        duration=fields["duration"].seconds(positive=True),
        labels=fields["labels"].string_map() if "labels" in fields else {},
        tolerations=tuple(fields["tolerations"].plain(list)) if "tolerations" in fields else (),
        affinity=fields["affinity"].plain(dict) if "affinity" in fields else {},
        topology_spread=tuple(fields["topology_spread"].plain(list)) if "topology_spread" in fields else (),
        host_ports=tuple(item.integer(1, 65535) for item in fields["host_ports"].sequence()) if "host_ports" in fields else (),
        sidecars=_requests(fields["sidecars"]) if "sidecars" in fields else {},
        init=_requests(fields["init"]) if "init" in fields else {},
        gated_until=fields["gated_until"].seconds() if "gated_until" in fields else None,
        volume_zone=fields["volume_zone"].string() if "volume_zone" in fields else None,
    )


def _daemonset(value: "_Value") -> DaemonSetSpec:
    fields = value.mapping(required=("name", "requests"), optional=("node_selector", "tolerations", "host_ports"))
    return DaemonSetSpec(
        name=fields["name"].name(),
        requests=_requests(fields["requests"]),
        node_selector=fields["node_selector"].string_map() if "node_selector" in fields else {},
        tolerations=tuple(fields["tolerations"].plain(list)) if "tolerations" in fields else (),
        host_ports=tuple(item.integer(1, 65535) for item in fields["host_ports"].sequence()) if "host_ports" in fields else (),
    )


def _group(value: "_Value") -> GroupSpec:
    fields = value.mapping(required=("name", "region", "instance_type"),
                           optional=("max_size", "min_size", "labels", "zones", "startup_taints", "gpu_after",
                                     "unset_labels", "node_labels"))
    region = fields["region"].string()
    if not REGION_PATTERN.match(region):
        fields["region"].fail(f"{region!r} is not an AWS region name like us-west-2")
    if region not in known_regions():
        fields["region"].fail(f"{region!r} is not an AWS region with EC2 and Auto Scaling, like us-west-2 or eu-west-1")
    max_size = fields["max_size"].integer(minimum=0) if "max_size" in fields else 10
    min_size = fields["min_size"].integer(minimum=0) if "min_size" in fields else 0
    if min_size > max_size:
        fields["min_size"].fail(f"{min_size} is more than max_size {max_size}")
    zones = tuple(item.string() for item in fields["zones"].sequence(non_empty=True)) if "zones" in fields else ()
    for index, zone in enumerate(zones):
        if not (zone.startswith(region) and len(zone) == len(region) + 1):
            fields["zones"].sequence()[index].fail(f"{zone!r} is not a zone of {region}, like {region}a")
    startup = []
    for item in fields["startup_taints"].sequence() if "startup_taints" in fields else ():
        taint_fields = item.mapping(required=("taint",), optional=("for",))
        taint = taint_fields["taint"].string()
        if not _TAINT.match(taint):
            taint_fields["taint"].fail(f"{taint!r} is not a taint like key=value:NoSchedule or key:NoExecute")
        startup.append((taint, taint_fields["for"].seconds(positive=True) if "for" in taint_fields else None))
    return GroupSpec(fields["name"].name(), region, fields["instance_type"].string(), max_size, min_size,
                     fields["labels"].string_map() if "labels" in fields else {}, zones, tuple(startup),
                     fields["gpu_after"].seconds(positive=True) if "gpu_after" in fields else None,
                     tuple(item.string() for item in fields["unset_labels"].sequence()) if "unset_labels" in fields else (),
                     fields["node_labels"].string_map() if "node_labels" in fields else {})


def _failure(value: "_Value", region_of: Mapping[str, str]) -> LaunchFailure:
    fields = value.mapping(required=("group", "at"), optional=("until",))
    group = fields["group"].string()
    if group not in region_of:
        fields["group"].fail(f"no group named {group!r}; the groups are {', '.join(sorted(region_of))}")
    at = fields["at"].seconds()
    until = fields["until"].seconds() if "until" in fields else None
    if until is not None and until <= at:
        fields["until"].fail("must be later than 'at'")
    return LaunchFailure(group, region_of[group], at, until)


def known_regions() -> frozenset:
    """The commercial regions botocore knows for both EC2 and Auto Scaling (its bundled endpoint
    data, no network): moto serves these, and answers any other name with an error page."""
    return regions.known_regions("aws")


def _unique(where: Optional["_Value"], names: list, what: str) -> None:
    seen = set()
    for name in names:
        if name in seen:
            if where is None:  # the demo's own lists: a bug, not the trace's
                raise TraceError(f"two {what}s are named {name!r}")
            where.fail(f"two {what}s are named {name!r}")
        seen.add(name)


class _Value:
    """One YAML node with its dotted path, for checked reads that fail with the line and field."""

    def __init__(self, node: yaml.Node, path: str, source: str):
        self.node, self.path, self.source = node, path, source

    def fail(self, message: str) -> NoReturn:
        where = self.path or "the top level"
        raise TraceError(f"trace {self.source}, line {self.node.start_mark.line + 1}: {where}: {message}")

    def child(self, key: str) -> "_Value":
        for key_node, value_node in self.node.value:
            if key_node.value == key:
                return _Value(value_node, f"{self.path}.{key}" if self.path else key, self.source)
        raise KeyError(key)

    def mapping(self, required=(), optional=()) -> dict:
        if not isinstance(self.node, yaml.MappingNode):
            self.fail("expected a mapping (key: value lines)")
        fields = {}
        for key_node, _ in self.node.value:
            key = key_node.value
            if key not in required and key not in optional:
                _Value(key_node, f"{self.path}.{key}" if self.path else key, self.source).fail(
                    f"unknown field; expected one of {', '.join(sorted((*required, *optional)))}")
            fields[key] = self.child(key)
        for key in required:
            if key not in fields:
                self.fail(f"missing the required field '{key}'")
        return fields

    def sequence(self, non_empty: bool = False, empty: str = "the list is empty") -> list:
        if not isinstance(self.node, yaml.SequenceNode):
            self.fail("expected a list (lines starting with '- ')")
        if non_empty and not self.node.value:
            self.fail(empty)
        return [_Value(item, f"{self.path}[{index}]", self.source) for index, item in enumerate(self.node.value)]

    def string(self) -> str:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.value == "":
            self.fail("expected a value")
        return self.node.value

    def name(self) -> str:
        text = self.string()
        if not _NAME.match(text):
            self.fail(f"{text!r} is not a name of lower-case letters, digits and '-' (at most 42)")
        return text

    def integer(self, minimum: int, maximum: int = MAX_COUNT) -> int:
        text = self.string()
        if not re.fullmatch(r"\d+", text) or not minimum <= int(text) <= maximum:
            self.fail(f"expected a whole number from {minimum} to {maximum}, got {text!r}")
        return int(text)

    def seconds(self, positive: bool = False) -> float:
        text = self.string()
        match = _DURATION.match(text)
        if not match:
            self.fail(f"{text!r} is not a time; write seconds, or 90s, 15m, 2h")
        value = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if positive and value <= 0:
            self.fail("must be more than 0")
        if value > MAX_TRACE_SECONDS:
            self.fail(f"{text!r} is longer than a trace can be ({MAX_TRACE_SECONDS // 86400} days)")
        return value

    def interval(self) -> float:
        text = self.string()
        match = _RATE.match(text)
        if not match or float(match.group(1)) <= 0:
            self.fail(f"{text!r} is not a rate; write jobs per unit, e.g. 4/min, 0.5/s, 30/h")
        return _UNIT_SECONDS[match.group(2)] / float(match.group(1))

    def plain(self, kind: type) -> Any:
        """The value as plain Python (a pod spec's field passed through as written), of ``kind``."""
        value = yaml.SafeLoader("").construct_object(self.node, deep=True)
        if not isinstance(value, kind):
            self.fail(f"expected a {'list' if kind is list else 'mapping'} as in a pod spec")
        return value

    def string_map(self) -> dict:
        if not isinstance(self.node, yaml.MappingNode):
            self.fail("expected a mapping (key: value)")
        result = {}
        for key_node, value_node in self.node.value:
            value = _Value(value_node, f"{self.path}.{key_node.value}", self.source)
            result[key_node.value] = value.string()
        return result


def requested(job: JobGroup) -> Resources:
    """A job's requests as Resources (the pod slot included, as the scheduler counts it)."""
    return parse_resources({**job.requests, "pods": "1"})
