"""capacity: DescribeInstanceTypes (moto) vs the shipped table, the EKS reserve arithmetic, batching."""
import gzip
import json
import logging
import pathlib

import boto3
import moto
import pytest
from botocore.stub import Stubber

from autoscaler.read.aws_reader import RegionClients
from autoscaler.read.capacity import (FALLBACK_TYPES, CapacityCatalog, InstanceTypeInfo, allocatable, info_from_api,
                                 reserved_cpu_milli, reserved_memory_mib)
from autoscaler.model.objects import Resources

MIB_MILLI = (1 << 20) * 1000
REGION = "us-west-2"


@pytest.fixture
def aws(moto_in_process):
    yield


def region_clients(region=REGION):
    return RegionClients(region, boto3.client("autoscaling", region_name=region), boto3.client("ec2", region_name=region))


def count_calls(client):
    calls = []
    client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    return calls


@pytest.mark.parametrize("vcpus, expected_milli", [
    (1, 60), (2, 70), (3, 75), (4, 80), (5, 82), (8, 90), (16, 110), (48, 190), (96, 310),
], ids=lambda v: str(v))
def test_reserved_cpu(vcpus, expected_milli):
    assert reserved_cpu_milli(vcpus) == expected_milli


@pytest.mark.parametrize("max_pods, expected_mib", [
    (4, 255 + 44 + 100), (29, 255 + 319 + 100), (58, 255 + 638 + 100), (737, 255 + 8107 + 100),
], ids=lambda v: str(v))
def test_reserved_memory(max_pods, expected_mib):
    assert reserved_memory_mib(max_pods) == expected_mib


@pytest.mark.parametrize("info, cpu, memory_mib, pods, gpus", [
    (InstanceTypeInfo("m5.large", 2, 8192, 3, 10), 1930, 8192 - 255 - 11 * 29 - 100, 29, 0),
    (InstanceTypeInfo("p3.2xlarge", 8, 62464, 4, 15, gpus=1), 7910, 62464 - 255 - 11 * 58 - 100, 58, 1),
    (InstanceTypeInfo("m5.24xlarge", 96, 393216, 15, 50), 95690, 393216 - 255 - 11 * 737 - 100, 737, 0),
    (InstanceTypeInfo("tiny.nano", 2, 256, 2, 2), 1930, 0, 4, 0),  # reserve larger than memory: clamped
], ids=["m5.large", "p3.2xlarge", "m5.24xlarge", "tiny"])
def test_allocatable(info, cpu, memory_mib, pods, gpus):
    assert allocatable(info) == Resources({"cpu": cpu, "memory": memory_mib * MIB_MILLI, "pods": pods * 1000,
                                           "nvidia.com/gpu": gpus * 1000})


def moto_instance_types():
    path = pathlib.Path(moto.__file__).parent / "ec2" / "resources" / "instance_types.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()))


def test_table_agrees_with_ec2_for_every_type_moto_knows():
    known = moto_instance_types()
    checked = 0
    for instance_type, row in FALLBACK_TYPES.items():
        if instance_type in known:
            info = info_from_api(known[instance_type])
            assert (info.vcpus, info.memory_mib, info.gpus, info.enis, info.ipv4_per_eni) == row, instance_type
            checked += 1
    assert checked >= 40


@pytest.mark.parametrize("instance_type, vcpus, memory_gib, gpus", [
    ("m4.xlarge", 4, 16, 0),  # the original's table said 2; AWS says 4
    ("p3.2xlarge", 8, 61, 1),
    ("p3.16xlarge", 64, 488, 8),
    ("p2.xlarge", 4, 61, 1),
], ids=lambda v: str(v))
def test_table_rows_named_in_the_spec(instance_type, vcpus, memory_gib, gpus):
    row = FALLBACK_TYPES[instance_type]
    assert (row[0], row[1], row[2]) == (vcpus, memory_gib * 1024, gpus)


def test_info_from_api_uses_default_network_card_and_nvidia_gpus():
    info = info_from_api(moto_instance_types()["p4d.24xlarge"])
    assert (info.enis, info.max_pods, info.gpus, info.gpu_resource) == (15, 737, 8, "nvidia.com/gpu")


def test_catalog_reads_the_api_and_falls_back_to_the_table(aws):
    clients = region_clients()
    calls = count_calls(clients.ec2)
    catalog = CapacityCatalog(lambda region: clients)
    catalog.prefetch(REGION, ["m5.large", "p3.2xlarge", "g4dn.xlarge", "m6g.large", "nosuch.type"])
    assert calls == ["DescribeInstanceTypes"]
    assert catalog.get("m5.large") == allocatable(InstanceTypeInfo("m5.large", 2, 8192, 3, 10))
    assert catalog.get("g4dn.xlarge").get("nvidia.com/gpu") == 1000
    # moto does not know p3.2xlarge: the shipped table answers
    assert catalog.get("p3.2xlarge") == allocatable(InstanceTypeInfo("p3.2xlarge", 8, 62464, 4, 15, gpus=1))
    assert catalog.get("nosuch.type") is None
    assert catalog.architecture("m6g.large") == "arm64"
    assert catalog.architecture("p3.2xlarge") is None  # not from the API


def test_catalog_asks_once_per_type_and_batches_by_100(aws):
    clients = region_clients()
    calls = count_calls(clients.ec2)
    catalog = CapacityCatalog(lambda region: clients)
    many = sorted(moto_instance_types())[:150]
    catalog.prefetch(REGION, many)
    assert calls == ["DescribeInstanceTypes"] * 2
    catalog.prefetch(REGION, many + ["nosuch.type"])  # only the new name is asked about
    catalog.prefetch(REGION, many + ["nosuch.type"])
    assert calls == ["DescribeInstanceTypes"] * 3
    assert all(catalog.get(t) is not None for t in many)


def test_catalog_warns_and_uses_the_table_when_the_api_refuses(aws, caplog):
    clients = region_clients()
    catalog = CapacityCatalog(lambda region: clients)
    with Stubber(clients.ec2) as stub, caplog.at_level(logging.WARNING):
        stub.add_client_error("describe_instance_types", service_error_code="UnauthorizedOperation",
                              service_message="You are not authorized to perform this operation.")
        catalog.prefetch(REGION, ["m5.large"])
    assert "m5.large" in caplog.text
    assert catalog.get("m5.large") == allocatable(InstanceTypeInfo("m5.large", 2, 8192, 3, 10))
