"""The sandbox in dollars: bundled traces by name, the mixed-cluster trace, the run's cost and its
lower bound. Runs go in-process through ``Sandbox`` with the session's FakeAws, as in
test_sandbox.py."""
import json
import textwrap

import pytest

from autoscaler.model.config import Settings
from autoscaler.read.capacity import allocatable, info_from_table
from autoscaler.read.prices import on_demand_price
from autoscaler.sandbox import Sandbox, TraceError, load_trace, parse_trace, sandbox_settings
from autoscaler.sandbox.report import lower_bound_dollars, lower_bound_hours, table
from autoscaler.sandbox.trace import BUNDLED_TRACES, DEFAULT_TRACE


def capacity(instance_type):
    return allocatable(info_from_table(instance_type))


# ---- bundled traces ----------------------------------------------------------------------------------

def test_bundled_traces_are_chosen_by_name():
    assert load_trace("demo").source == str(DEFAULT_TRACE)
    mixed = load_trace("mixed")
    assert mixed.source == str(BUNDLED_TRACES["mixed"])
    # One region, several sizes and families, a GPU group, every type priced.
    assert len(mixed.regions) == 1
    types = {group.instance_type for group in mixed.groups}
    assert len(types) >= 5 and len({t.split(".")[0] for t in types}) >= 3
    assert any(capacity(t).get("nvidia.com/gpu") for t in types)
    assert all(on_demand_price(mixed.regions[0], t) for t in types)
    # Jobs of several shapes, some of which only some of the groups can take.
    shapes = {tuple(sorted(job.requests.items())) for job in mixed.jobs}
    assert len(shapes) >= 4


def test_a_file_wins_over_a_bundled_name_and_an_unknown_name_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mixed").write_text("jobs:\n  - {name: one, requests: {cpu: 1}, duration: 1m}\n")
    assert [job.name for job in load_trace("mixed").jobs] == ["one"]
    with pytest.raises(TraceError) as error:
        load_trace("nightly")
    message = str(error.value)
    assert "\n" not in message and "nightly" in message and "demo, mixed" in message


# ---- the lower bound in dollars ---------------------------------------------------------------------

C5 = capacity("c5.2xlarge")
M5 = capacity("m5.4xlarge")


def test_the_dollar_bound_counts_a_job_where_it_is_cheapest_in_dollars():
    """In instance-hours the bigger m5.4xlarge is the cheaper home of CPU jobs; in dollars the
    c5.2xlarge is ($0.043 against $0.048 per allocatable CPU-hour)."""
    trace = parse_trace(textwrap.dedent("""\
        groups:
          - {name: large, region: us-east-1, instance_type: m5.4xlarge}
          - {name: compute, region: us-east-1, instance_type: c5.2xlarge}
        jobs:
          - {name: cpu, count: 4, requests: {cpu: "1", memory: 1Gi}, duration: 1h}
        """))
    assert lower_bound_hours(trace, capacity) == pytest.approx({"m5.4xlarge": 4000 / M5.get("cpu")})
    dollars = lower_bound_dollars(trace, capacity)
    assert dollars == pytest.approx({"c5.2xlarge": 4000 / C5.get("cpu") * 0.34})
    assert sum(dollars.values()) <= 0.34  # one c5.2xlarge for the hour runs all four


def test_the_dollar_bound_weighs_each_type_by_its_price_and_counts_unpriced_types_as_free():
    trace = parse_trace(textwrap.dedent("""\
        groups:
          - {name: a, region: us-east-1, instance_type: m5.4xlarge, labels: {pool: a}}
          - {name: b, region: us-east-1, instance_type: c5.2xlarge, labels: {pool: b}}
        jobs:
          - {name: on-a, requests: {cpu: "2"}, duration: 1h, node_selector: {pool: a}}
          - {name: on-b, requests: {cpu: "2"}, duration: 1h, node_selector: {pool: b}}
        """))
    prices = {"m5.4xlarge": 10.0}
    bound = lower_bound_dollars(trace, capacity, lambda region, instance_type: prices.get(instance_type))
    assert bound == pytest.approx({"m5.4xlarge": 10.0 * 2000 / M5.get("cpu"), "c5.2xlarge": 0.0})


# ---- end to end -------------------------------------------------------------------------------------

def test_the_mixed_trace_runs_and_reports_its_cost_against_a_lower_bound(fake_aws, tmp_path):
    trace = load_trace("mixed")
    # --sleep 60 halves the loops of the demo's 30 s and keeps the test short (as for the demo trace).
    settings = sandbox_settings(Settings(cluster_name="ignored", sleep=60), frozenset({"sleep"}))
    report = Sandbox(trace, settings, aws=fake_aws, status=None, out_dir=tmp_path, chart=False).run()
    assert report.stopped == "every job finished and every group is back to its minimum size"
    assert report.jobs_finished == trace.job_count
    region = trace.regions[0]
    for group in trace.groups:
        expected = report.instance_hours[group.name] * on_demand_price(region, group.instance_type)
        assert report.cost_dollars[group.name] == pytest.approx(expected, abs=0.01)
    assert report.cost_total_dollars == pytest.approx(sum(report.cost_dollars.values()), abs=0.02)
    assert report.cost_total_dollars >= report.lower_bound_total_dollars > 0
    assert report.cost_ratio == pytest.approx(report.cost_total_dollars / report.lower_bound_total_dollars, abs=0.01)
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["cost_total_dollars"] == report.cost_total_dollars
    assert written["lower_bound_total_dollars"] == report.lower_bound_total_dollars
    text = table(report)
    assert f"${report.cost_total_dollars:.2f}" in text and f"${report.lower_bound_total_dollars:.2f}" in text


def test_jobs_asking_for_ephemeral_storage_scale_up_from_zero_and_run(fake_aws):
    """A new node's ephemeral-storage is estimated (20 GiB root volume: 17 GiB allocatable), so
    the job is not called infeasible on a group with no node; the lower bound counts it too."""
    trace = parse_trace(textwrap.dedent("""\
        groups:
          - {name: scratch, region: us-east-1, instance_type: m5.xlarge, max_size: 3}
        jobs:
          - {name: unpack, count: 2, requests: {cpu: 500m, memory: 1Gi, ephemeral-storage: 10Gi}, duration: 5m}
        duration: 12m
        """), "test-trace")
    settings = sandbox_settings(Settings(cluster_name="ignored", over_provision=0), frozenset({"over_provision"}))
    report = Sandbox(trace, settings, aws=fake_aws, status=None, chart=False).run()
    assert report.jobs_finished == 2
    assert report.peak_nodes_by_group == {"scratch": 2}  # 10Gi each: one per 17 GiB node
    assert report.lower_bound_total > 0 and report.lower_bound_total_dollars > 0
