"""Prices and the other launch-settings facts cost-aware scale up reads: the shipped on-demand
price table and the script that regenerates it, the operator's price tag, mixed-instances
allocation strategies, and the ephemeral storage of a new node."""
import importlib.util
import json
import logging
import math
import pathlib
import subprocess
import sys
import textwrap

import pytest

from autoscaler.read import prices
from autoscaler.read.aws_reader import MIXED_MARKETS, allocation_strategy, root_volume_gib
from autoscaler.read.capacity import GIB, ephemeral_storage_allocatable
from autoscaler.model.group_labels import HOURLY_PRICE_TAG, parse_hourly_price
from autoscaler.model.objects import Group, InstanceShape, Resources
from autoscaler.read.world import spot_instance_types

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "update_prices.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("update_prices", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- the price table -------------------------------------------------------------------------------

@pytest.mark.parametrize("region, instance_type, expected", [
    ("us-east-1", "m5.large", 0.096),
    ("us-east-1", "m5.4xlarge", 0.768),
    ("us-east-1", "p3.2xlarge", 3.06),
    ("us-east-1", "r5.xlarge", 0.252),
    ("us-east-1", "c5.2xlarge", 0.34),
    # The source carries us-east-1 only; another region gets its figure (module docstring).
    ("us-west-2", "m5.large", 0.096),
    ("eu-west-1", "r5.xlarge", 0.252),
    ("us-east-1", "m5.huge", None),
    ("us-east-1", "", None),
])
def test_on_demand_price(region, instance_type, expected):
    assert prices.on_demand_price(region, instance_type) == expected


def test_the_table_says_where_its_figures_come_from():
    shipped = json.loads(prices.PRICE_TABLE.read_text())
    assert "karpenter-provider-aws" in shipped["source"] and shipped["generated_at"] and shipped["retrieved"]
    assert "tools/update_prices.py" in shipped["regenerate"]
    table = shipped["prices"]
    assert prices.REFERENCE_REGION in table
    assert all(0 < price < 1000 for types in table.values() for price in types.values())
    assert prices.PRICE_TABLE.stat().st_size < 2_000_000


def test_nothing_is_loaded_at_import():
    code = ("import autoscaler.read.aws_reader, autoscaler.read.prices as p; print(p.price_table.cache_info().currsize);"
            "p.on_demand_price('us-east-1', 'm5.large'); print(p.price_table.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "1"]


GO_EXCERPT = textwrap.dedent("""\
    package pricing

    // generated at 2026-02-09T13:43:35Z for us-east-1

    var InitialOnDemandPricesAWS = map[string]map[ec2types.InstanceType]float64{
    \t// us-east-1
    \t"us-east-1": {
    \t\t// m5 family
    \t\t"m5.12xlarge": 2.304000, "m5.large": 0.096000,
    \t\t"m5.metal": 4.608000,
    \t\t// p4d family
    \t\t"p4d.24xlarge": 21.957642,
    \t},
    \t// eu-west-1
    \t"eu-west-1": {
    \t\t"c7i-flex.large": 0.094990, "u-6tb1.56xlarge": 46.403910,
    \t},
    }
    """)


def test_the_tool_reads_every_region_and_price_of_the_go_table():
    generated, table = load_tool().parse(GO_EXCERPT)
    assert generated == "2026-02-09T13:43:35Z"
    assert table == {
        "eu-west-1": {"c7i-flex.large": 0.09499, "u-6tb1.56xlarge": 46.40391},
        "us-east-1": {"m5.12xlarge": 2.304, "m5.large": 0.096, "m5.metal": 4.608, "p4d.24xlarge": 21.957642},
    }


def test_the_tool_writes_a_table_the_lookup_reads(tmp_path, monkeypatch):
    go_file = tmp_path / "zz_generated.pricing_aws.go"
    go_file.write_text(GO_EXCERPT)
    output = tmp_path / "prices.json"
    result = subprocess.run([sys.executable, str(TOOL), str(go_file), "--commit", "abc123", "--retrieved", "2026-12-04",
                             "--output", str(output)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    written = json.loads(output.read_text())
    assert written["generated_at"] == "2026-02-09T13:43:35Z" and "abc123" in written["source"]
    monkeypatch.setattr(prices, "PRICE_TABLE", output)
    prices.price_table.cache_clear()
    try:
        assert prices.on_demand_price("eu-west-1", "c7i-flex.large") == 0.09499
        assert prices.on_demand_price("eu-west-1", "m5.large") is None  # a region the table has: no fallback
        assert prices.on_demand_price("ap-south-1", "p4d.24xlarge") == 21.957642
    finally:
        prices.price_table.cache_clear()


def test_the_tool_refuses_a_file_without_prices(tmp_path):
    go_file = tmp_path / "empty.go"
    go_file.write_text("package pricing\n")
    result = subprocess.run([sys.executable, str(TOOL), str(go_file), "--output", str(tmp_path / "out.json")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("error: no prices found")
    assert not (tmp_path / "out.json").exists()


# ---- the operator's price tag ----------------------------------------------------------------------

@pytest.mark.parametrize("value, expected, warns", [
    (None, None, False),
    ("0.25", 0.25, False),
    (" 1.5 ", 1.5, False),
    ("$0.30", 0.30, False),
    ("3", 3.0, False),
    ("0", None, True),
    ("-0.1", None, True),
    ("cheap", None, True),
    ("", None, True),
    ("nan", None, True),
    ("inf", None, True),
    ("1e400", None, True),
])
def test_hourly_price_tag(value, expected, warns, caplog):
    tags = {} if value is None else {HOURLY_PRICE_TAG: value}
    with caplog.at_level(logging.WARNING):
        assert parse_hourly_price(tags, "gpu-west") == expected
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warns:
        assert len(warnings) == 1 and "gpu-west" in warnings[0] and HOURLY_PRICE_TAG in warnings[0]
    else:
        assert warnings == []


# ---- mixed-instances policies ------------------------------------------------------------------------

@pytest.mark.parametrize("distribution, desired, expected", [
    ({}, 0, "prioritized"),  # AWS's defaults: all on-demand, prioritized
    ({"OnDemandAllocationStrategy": "lowest-price"}, 0, "lowest-price"),
    ({"OnDemandPercentageAboveBaseCapacity": 100, "OnDemandBaseCapacity": 3}, 5, "prioritized"),
    ({"OnDemandPercentageAboveBaseCapacity": 0}, 0, "lowest-price"),  # spot's default
    ({"OnDemandPercentageAboveBaseCapacity": 0, "SpotAllocationStrategy": "capacity-optimized"}, 0, "capacity-optimized"),
    ({"OnDemandPercentageAboveBaseCapacity": 0, "OnDemandBaseCapacity": 2,
      "SpotAllocationStrategy": "price-capacity-optimized"}, 2, "price-capacity-optimized"),
    # The on-demand base is not filled yet: the next instances may be on-demand, later ones spot.
    ({"OnDemandPercentageAboveBaseCapacity": 0, "OnDemandBaseCapacity": 2}, 1, MIXED_MARKETS),
    ({"OnDemandPercentageAboveBaseCapacity": 50, "OnDemandAllocationStrategy": "lowest-price",
      "SpotAllocationStrategy": "lowest-price"}, 0, MIXED_MARKETS),
])
def test_allocation_strategy(distribution, desired, expected):
    assert allocation_strategy(distribution, desired) == expected


def shape(instance_type):
    return InstanceShape(instance_type, Resources({"cpu": 1000}))


@pytest.mark.parametrize("group, expected", [
    (Group("od", "us-west-2", 0, 5, 0, shapes=(shape("m5.large"),)), []),
    (Group("spot", "us-west-2", 0, 5, 0, shapes=(shape("m5.large"),), is_spot=True), ["m5.large"]),
    # Every override, those without a capacity estimate (not among the shapes) too.
    (Group("spot-mixed", "us-west-2", 0, 5, 0, shapes=(shape("m5.large"),), is_spot=True,
           override_order=("m5.large", "m9.future"), allocation_strategy="capacity-optimized"), ["m5.large", "m9.future"]),
    (Group("split", "us-west-2", 0, 5, 0, shapes=(shape("c5.large"), shape("m5.large")),
           override_order=("m5.large", "c5.large"), allocation_strategy=MIXED_MARKETS), ["c5.large", "m5.large"]),
    (Group("od-mixed", "us-west-2", 0, 5, 0, shapes=(shape("c5.large"), shape("m5.large")),
           override_order=("m5.large", "c5.large"), allocation_strategy="prioritized"), []),
])
def test_spot_prices_are_read_for_every_type_a_group_may_launch_as_spot(group, expected):
    assert spot_instance_types([group]) == expected


# ---- ephemeral storage -------------------------------------------------------------------------------

@pytest.mark.parametrize("volume_gib, expected_bytes", [
    (20, 17 * GIB),  # 20 - 1 reserved - 2 (10 % eviction)
    (100, 89 * GIB),
    (1, 0),
])
def test_ephemeral_storage_allocatable(volume_gib, expected_bytes):
    assert ephemeral_storage_allocatable(volume_gib) == expected_bytes * 1000


def ebs(device, size=None):
    return {"DeviceName": device, "Ebs": {"VolumeSize": size} if size else {"VolumeType": "gp3"}}


@pytest.mark.parametrize("mappings, expected", [
    ([], None),
    ([ebs("/dev/xvda", 50)], 50),
    ([ebs("/dev/xvdb", 200), ebs("/dev/xvda", 30)], 30),  # the root device, wherever it is listed
    ([ebs("/dev/sdf", 200), ebs("/dev/sda1", 40)], 40),
    ([ebs("/dev/xvdb", 100)], 100),  # no root device named: the first sized EBS volume
    ([ebs("/dev/xvda"), ebs("/dev/xvdb", 100)], None),  # the root is listed but not resized
    ([{"DeviceName": "/dev/sdb", "VirtualName": "ephemeral0"}, ebs("/dev/sdc", 60)], 60),
    ([{"DeviceName": "/dev/xvda", "NoDevice": ""}], None),
])
def test_root_volume(mappings, expected):
    assert root_volume_gib(mappings) == expected


def test_prices_round_trip_as_floats():
    assert all(isinstance(p, float) and math.isfinite(p) for p in prices.price_table()["us-east-1"].values())


def test_real_nodes_replace_the_capacity_estimate_but_keep_the_price():
    from builders import make_node

    from autoscaler.model.group_labels import INSTANCE_TYPE_LABEL
    from autoscaler.decide.node_template import effective_shapes

    estimate = Resources({"cpu": 1930, "memory": 7_000 * (1 << 20) * 1000})
    group = Group("g", "us-east-1", 0, 5, 1, instance_ids=("i-1",), shapes=(
        InstanceShape("m5.large", estimate, 0.096), InstanceShape("r5.xlarge", estimate, 0.252)))
    node = make_node("n1", allocatable=Resources({"cpu": 1900, "memory": 6_000 * (1 << 20) * 1000}),
                     labels={INSTANCE_TYPE_LABEL: "m5.large"}, instance_id="i-1")
    shapes = {s.instance_type: s for s in effective_shapes(group, [node])}
    assert shapes["m5.large"].capacity.get("cpu") == 1900 and shapes["m5.large"].hourly_price == 0.096
    assert shapes["r5.xlarge"].capacity == estimate and shapes["r5.xlarge"].hourly_price == 0.252
