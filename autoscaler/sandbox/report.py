"""What a sandbox run cost and how long jobs waited: recorded per step, reported as a table,
JSON and a PNG chart.

The lower bound of instance-hours: no schedule of the trace's jobs pays less, however perfect
(instant nodes, perfect packing, any choice of groups). A job's *cost* on an instance type for a
resource is its requested resource-seconds over one instance's allocatable of that resource. Pick
one resource per instance type: any schedule pays, on each type, at least the costs of the jobs it
runs there for that type's resource, so the sum over jobs of each job's cheapest cost among the
types that can take it (node selector and size) is a lower bound, whatever was picked. The picks
that make it largest are used: every combination while there are at most EXHAUSTIVE_PICKS, else
improved one type at a time until no change helps. When every job fits one type only, this is
each type's total requested resource-seconds over its allocatable for its binding resource. Per
type, the figure counts the jobs whose cheapest cost is on it (the preferred type on a tie). Real
runs pay more: boot time, idle thresholds, spares, over-provisioning, imperfect packing.

In dollars: the run's cost is each group's instance-seconds times the on-demand $/h of its type in
its region (the shipped price table, autoscaler/read/prices.py). The lower bound in $ is the same
argument with every cost on a type multiplied by that type's $/h (a constant per type, so any
schedule still pays at least the picked costs of the jobs it runs there): each job counts at the
type where it is cheapest in dollars, which need not be where it is cheapest in instance-hours.
A type the table has no price for counts nothing in either figure.
"""
from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from ..decide.scheduling import placement_matches
from ..model.group_labels import KUBE_TAG_PREFIX, node_template
from ..model.objects import Placement, Resources
from ..read.prices import on_demand_price
from .nodes import GroupState
from .trace import Trace, requested
from .workload import JobRun

EXHAUSTIVE_PICKS = 4096  # combinations of one resource per instance type tried one by one


@dataclass
class Sample:
    seconds: float
    pending: int
    running: int
    nodes: dict  # group name -> registered nodes


@dataclass
class Recorder:
    """Samples every step; instance-seconds per group are integrated over the steps."""

    samples: list = field(default_factory=list)
    instance_seconds: dict = field(default_factory=lambda: defaultdict(float))
    peak_nodes: int = 0
    peak_nodes_by_group: dict = field(default_factory=lambda: defaultdict(int))
    raises: list = field(default_factory=list)  # (seconds, region, group, from, to)
    _desired: dict = field(default_factory=dict)
    _last_seconds: Optional[float] = None

    def record(self, seconds: float, groups: Sequence[GroupState], pending: int, running: int) -> None:
        elapsed = 0.0 if self._last_seconds is None else seconds - self._last_seconds
        self._last_seconds = seconds
        for group in groups:
            # The instances held through the step that just ended are the ones seen at its end:
            # the error is one step per launch and termination, small against instance lifetimes.
            self.instance_seconds[group.name] += group.instances * elapsed
            self.peak_nodes_by_group[group.name] = max(self.peak_nodes_by_group[group.name], group.nodes)
            before = self._desired.get(group.name, 0)
            if group.desired > before:
                self.raises.append((seconds, group.region, group.name, before, group.desired))
            self._desired[group.name] = group.desired
        self.peak_nodes = max(self.peak_nodes, sum(group.nodes for group in groups))
        self.samples.append(Sample(seconds, pending, running, {group.name: group.nodes for group in groups}))


@dataclass(frozen=True)
class Report:
    trace: str
    stopped: str  # why the run ended
    simulated_seconds: float
    real_seconds: float
    settings: dict
    jobs_submitted: int
    jobs_finished: int
    jobs_unfinished: int
    pods_resubmitted: int
    wait_seconds: dict  # p50, p95, max over the jobs that started; each None when none did
    instance_hours: dict  # group -> hours
    instance_hours_total: float
    lower_bound_instance_hours: dict  # instance type -> hours
    lower_bound_total: float
    cost_dollars: dict  # group -> its instance-hours x the on-demand $/h of its type in its region
    cost_total_dollars: float
    lower_bound_dollars: dict  # instance type -> its share of a lower bound of the cost (module docstring)
    lower_bound_total_dollars: float
    cost_ratio: Optional[float]  # cost over its lower bound; None unless every job finished
    ratio: Optional[float]  # instance hours over the lower bound; None unless every job finished
    peak_nodes: int
    peak_nodes_by_group: dict
    failed_launches: int
    overflow_raises: list  # raises of a group outside the first region: [minute, region, group, from, to]
    chart: Optional[str] = None
    # Jobs no group can ever run: [{"job", "count", "reason"}] (docs/sandbox.md).
    unrunnable: list = field(default_factory=list)
    # Instances bought that no pod other than a DaemonSet's ever ran on: [{"group", "node"}], the
    # node None for one that never registered (docs/sandbox.md).
    unused_instances: list = field(default_factory=list)
    instances_bought: int = 0
    timeline: list = field(default_factory=list)  # one sample per simulated minute, and the last

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def unrunnable_jobs(trace: Trace, capacity_of: Callable[[str], Optional[Resources]]) -> dict:
    """job name -> why none of its pods can ever run, for the trace's jobs no group can take: no
    group with its labels, no instance type with room for its requests (or one that is not known),
    or only groups whose max_size is 0."""
    reasons: dict = {}
    for job in trace.jobs:
        request = requested(job)
        placement = Placement(node_selector=tuple(sorted(job.node_selector.items())))
        labelled, unknown, too_small, empty = [], [], [], []
        for group in trace.groups:
            tags = {KUBE_TAG_PREFIX + key: value for key, value in group.labels.items()}
            if not placement_matches(placement, node_template(tags, [group.instance_type], group.region).labels, ()):
                continue
            labelled.append(group)
            capacity = capacity_of(group.instance_type)
            if not capacity:
                unknown.append(group)
            elif not request.fits_in(capacity):
                too_small.append(group)
            elif group.max_size == 0:
                empty.append(group)
            else:
                break  # a group can run it
        else:
            reasons[job.name] = _unrunnable_reason(job, labelled, unknown, too_small, empty)
    return reasons


def _unrunnable_reason(job, labelled: list, unknown: list, too_small: list, empty: list) -> str:
    if not labelled:
        selector = ", ".join(f"{k}={v}" for k, v in sorted(job.node_selector.items()))
        return f"no group has the labels of its node selector ({selector})"
    parts = []
    if unknown:
        parts.append("instance type " + ", ".join(sorted({g.instance_type for g in unknown})) + " is not known")
    if too_small:
        asked = ", ".join(f"{k} {v}" for k, v in sorted(job.requests.items()))
        parts.append(f"{', '.join(sorted({g.instance_type for g in too_small}))} has no room for its requests ({asked})")
    if empty:
        parts.append(", ".join(g.name for g in empty) + " has max_size 0")
    return "; ".join(parts)


def lower_bound_hours(trace: Trace, capacity_of: Callable[[str], Optional[Resources]]) -> dict:
    """instance type -> its share of a lower bound of the trace's instance-hours (module docstring).
    Jobs no group can take count nowhere."""
    return _lower_bound(trace, capacity_of, lambda region, instance_type: 1.0)


def lower_bound_dollars(trace: Trace, capacity_of: Callable[[str], Optional[Resources]],
                        price_of: Callable[[str, str], Optional[float]] = on_demand_price) -> dict:
    """instance type -> its share of a lower bound of the trace's cost in $ (module docstring)."""
    return _lower_bound(trace, capacity_of, price_of)


def _lower_bound(trace: Trace, capacity_of: Callable[[str], Optional[Resources]],
                 weight_of: Callable[[str, str], Optional[float]]) -> dict:
    """The bound with every cost on a type weighted by ``weight_of(region, type)``: 1 for
    instance-hours, $/h for dollars. A type in several regions takes its least weight; no weight
    counts as 0."""
    weights: dict = {}
    for group in trace.groups:
        weight = weight_of(group.region, group.instance_type) or 0.0
        weights[group.instance_type] = min(weight, weights.get(group.instance_type, weight))
    types: list = []  # instance types in the groups' order: ties go to the preferred one
    costs: list = []  # per job: {instance type: {resource: instance-hours}} for the types that can take it
    for job in trace.jobs:
        request = requested(job)
        placement = Placement(node_selector=tuple(sorted(job.node_selector.items())))
        options: dict = {}
        for group in trace.groups:
            capacity = capacity_of(group.instance_type)
            if group.instance_type in options or not capacity or not request.fits_in(capacity):
                continue
            tags = {KUBE_TAG_PREFIX + key: value for key, value in group.labels.items()}
            if placement_matches(placement, node_template(tags, [group.instance_type], group.region).labels, ()):
                weight = weights[group.instance_type]
                options[group.instance_type] = {name: weight * value * job.duration * job.count / capacity.get(name) / 3600
                                                for name, value in request.items() if value > 0}
                if group.instance_type not in types:
                    types.append(group.instance_type)
        if options:
            costs.append(options)

    def cheapest(options: dict, picked: dict) -> tuple:
        """(hours, type): the job's cheapest cost for the picked resources, the preferred type on a tie."""
        hours, _, instance_type = min((options[t].get(picked[t], 0.0), types.index(t), t) for t in options)
        return hours, instance_type

    def total(picked: dict) -> float:
        return sum(cheapest(options, picked)[0] for options in costs)

    candidates = [sorted({name for options in costs if t in options for name in options[t]}) for t in types]
    if math.prod(len(names) for names in candidates) <= EXHAUSTIVE_PICKS:
        picked = max((dict(zip(types, names, strict=True)) for names in itertools.product(*candidates)), key=total)
    else:
        picked = _improved_picks(types, candidates, costs, total)
    bounds: dict = defaultdict(float)
    for options in costs:
        hours, instance_type = cheapest(options, picked)
        bounds[instance_type] += hours
    return dict(sorted(bounds.items()))


def _improved_picks(types: list, candidates: list, costs: list, total: Callable[[dict], float]) -> dict:
    """Too many types for every combination: start from each type's binding resource over every
    job it can take, then change one type's pick at a time while that raises the bound."""
    load: dict = defaultdict(lambda: defaultdict(float))
    for options in costs:
        for instance_type, hours_by_resource in options.items():
            for name, hours in hours_by_resource.items():
                load[instance_type][name] += hours
    picked = {t: max(names, key=lambda name: (load[t][name], name)) for t, names in zip(types, candidates, strict=True)}
    best_total = total(picked)
    improved = True
    while improved:
        improved = False
        for instance_type, names in zip(types, candidates, strict=True):
            for name in names:
                trial = {**picked, instance_type: name}
                trial_total = total(trial)
                if trial_total > best_total + 1e-9:
                    picked, best_total, improved = trial, trial_total, True
    return picked


def build_report(*, trace: Trace, stopped: str, simulated_seconds: float, real_seconds: float, settings: Mapping,
                 jobs: Sequence[JobRun], recorder: Recorder, lower_bound: Mapping[str, float],
                 failed_launches: int, first_region: str, unsubmitted: int,
                 lower_bound_cost: Mapping[str, float] = {},  # noqa: B006 - read only
                 price_of: Callable[[str, str], Optional[float]] = on_demand_price,
                 unrunnable: Optional[Mapping[str, str]] = None,
                 unused_instances: Sequence[Mapping] = (), instances_bought: int = 0) -> Report:
    # Over the jobs that ran: a job that never started has no wait, and 0 s would read as perfect.
    waits = [run.wait for run in jobs if run.wait is not None]
    counts = {job.name: job.count for job in trace.jobs}
    hours = {name: round(seconds / 3600, 3) for name, seconds in sorted(recorder.instance_seconds.items())}
    total = round(sum(recorder.instance_seconds.values()) / 3600, 3)
    bound_total = round(sum(lower_bound.values()), 3)
    finished = sum(1 for run in jobs if run.finished is not None)
    dollars = run_cost(trace, recorder, price_of)
    cost_total = round(sum(dollars.values()), 2)
    cost_bound_total = round(sum(lower_bound_cost.values()), 2)
    complete = finished == len(jobs) and not unsubmitted
    minute_samples = []
    next_minute = 0.0
    for index, sample in enumerate(recorder.samples):
        if sample.seconds >= next_minute or index == len(recorder.samples) - 1:  # and the final state
            minute_samples.append(asdict(sample))
            next_minute = (sample.seconds // 60 + 1) * 60
    return Report(
        trace=trace.source,
        stopped=stopped,
        simulated_seconds=round(simulated_seconds, 1),
        real_seconds=round(real_seconds, 1),
        settings=dict(settings),
        jobs_submitted=len(jobs),
        jobs_finished=finished,
        jobs_unfinished=len(jobs) - finished + unsubmitted,
        pods_resubmitted=sum(len(run.restarts) for run in jobs),
        wait_seconds={"p50": percentile(waits, 0.5), "p95": percentile(waits, 0.95), "max": max(waits)} if waits
        else {"p50": None, "p95": None, "max": None},
        instance_hours=hours,
        instance_hours_total=total,
        lower_bound_instance_hours={k: round(v, 3) for k, v in lower_bound.items()},
        lower_bound_total=bound_total,
        cost_dollars={name: round(value, 2) for name, value in dollars.items()},
        cost_total_dollars=cost_total,
        lower_bound_dollars={k: round(v, 2) for k, v in lower_bound_cost.items()},
        lower_bound_total_dollars=cost_bound_total,
        cost_ratio=round(cost_total / cost_bound_total, 2) if cost_bound_total > 0 and complete else None,
        # The bound is for the whole trace; against a run cut short it would flatter.
        ratio=round(total / bound_total, 2) if bound_total > 0 and finished == len(jobs) and not unsubmitted else None,
        peak_nodes=recorder.peak_nodes,
        peak_nodes_by_group=dict(sorted(recorder.peak_nodes_by_group.items())),
        failed_launches=failed_launches,
        overflow_raises=[[round(t / 60, 1), region, group, old, new]
                         for t, region, group, old, new in recorder.raises if region != first_region],
        timeline=minute_samples,
        unrunnable=[{"job": name, "count": counts.get(name, 0), "reason": reason}
                    for name, reason in (unrunnable or {}).items()],
        unused_instances=[dict(entry) for entry in unused_instances],
        instances_bought=instances_bought,
    )


def run_cost(trace: Trace, recorder: Recorder, price_of: Callable[[str, str], Optional[float]]) -> dict:
    """group -> $ its instances cost: instance-seconds x the on-demand $/h of its type in its
    region; groups of a type without a price are left out."""
    dollars = {}
    for group in trace.groups:
        price = price_of(group.region, group.instance_type)
        if price is not None:
            dollars[group.name] = recorder.instance_seconds.get(group.name, 0.0) / 3600 * price
    return dict(sorted(dollars.items()))


def clock_text(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}"


def table(report: Report) -> str:
    waits = report.wait_seconds
    rows = [
        ("trace", report.trace),
        ("stopped", report.stopped),
        ("simulated time", f"{clock_text(report.simulated_seconds)} (h:mm) in {report.real_seconds:.0f} s real"),
        ("jobs submitted / finished", f"{report.jobs_submitted} / {report.jobs_finished}"
         + (f" ({report.jobs_unfinished} unfinished)" if report.jobs_unfinished else "")),
        ("pods resubmitted", str(report.pods_resubmitted)),
        ("wait to running p50 / p95 / max", "none ran" if waits["max"] is None else
         f"{waits['p50']:.0f} s / {waits['p95']:.0f} s / {waits['max']:.0f} s"),
    ]
    for entry in report.unrunnable:
        rows.append((f"never runs: {entry['job']}", f"{entry['count']} job(s): {entry['reason']}"))
    for group, hours in report.instance_hours.items():
        rows.append((f"instance-hours {group}", f"{hours:.2f}"))
    rows.append(("instance-hours total", f"{report.instance_hours_total:.2f}"))
    bound = ", ".join(f"{t} {h:.2f}" for t, h in report.lower_bound_instance_hours.items())
    rows.append(("lower bound", f"{report.lower_bound_total:.2f} ({bound})"))
    rows.append(("ratio (used / lower bound)",
                 "n/a (not every job finished)" if report.ratio is None else f"{report.ratio:.2f}"))
    rows.append(("cost (on-demand $)", f"${report.cost_total_dollars:.2f} (" + ", ".join(
        f"{g} ${d:.2f}" for g, d in report.cost_dollars.items()) + ")"))
    cost_bound = ", ".join(f"{t} ${d:.2f}" for t, d in report.lower_bound_dollars.items())
    rows.append(("cost lower bound", f"${report.lower_bound_total_dollars:.2f} ({cost_bound})"))
    rows.append(("cost ratio (cost / lower bound)",
                 "n/a (not every job finished)" if report.cost_ratio is None else f"{report.cost_ratio:.2f}"))
    rows.append(("peak nodes", f"{report.peak_nodes} (" + ", ".join(
        f"{g} {n}" for g, n in report.peak_nodes_by_group.items()) + ")"))
    rows.append(("instances no pod used", f"{len(report.unused_instances)} of {report.instances_bought}" + "".join(
        f"; {u['group']} {(u['node'] or '(never a node)').split('.')[0]}" for u in report.unused_instances[:5])
        + ("; ..." if len(report.unused_instances) > 5 else "")))
    rows.append(("failed launches", str(report.failed_launches)))
    rows.append(("overflow raises", f"{len(report.overflow_raises)}" + "".join(
        f"; {g} {old}->{new} at {clock_text(minute * 60)}" for minute, _, g, old, new in report.overflow_raises[:3])))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def draw_chart(recorder: Recorder, path: Path, title: str) -> Path:
    import matplotlib  # deferred: only a finished run draws, and the import takes a second

    matplotlib.use("Agg")
    from matplotlib import pyplot

    minutes = [sample.seconds / 60 for sample in recorder.samples]
    groups = sorted({name for sample in recorder.samples for name in sample.nodes})
    figure, (top, bottom) = pyplot.subplots(2, 1, sharex=True, figsize=(8, 4.5), dpi=80,
                                            gridspec_kw={"height_ratios": [3, 2]})
    for group in groups:
        top.step(minutes, [sample.nodes.get(group, 0) for sample in recorder.samples], where="post", label=group)
    top.set_ylabel("nodes")
    top.legend(loc="upper right", fontsize="small")
    top.set_title(title, fontsize="medium")
    bottom.step(minutes, [sample.pending for sample in recorder.samples], where="post", color="tab:red", label="pending")
    bottom.step(minutes, [sample.running for sample in recorder.samples], where="post", color="tab:gray", label="running")
    bottom.set_ylabel("pods")
    bottom.set_xlabel("simulated minutes")
    bottom.legend(loc="upper right", fontsize="small")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return path
