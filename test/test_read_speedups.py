"""The readers' shortcuts give what the slow paths gave: AWS timestamps by the standard library,
remembered pod quantities, and Kubernetes and the regions read at once."""
from __future__ import annotations

import gc
from datetime import datetime, timezone

import botocore.utils
import pytest

from autoscaler.clients.kube_errors import KubeError
from autoscaler.model.config import Settings
from autoscaler.read.aws_reader import AwsClients, parse_timestamp
from autoscaler.read.kube_reader import quantity_milli
from autoscaler.read.resources import QuantityError
from autoscaler.read.world import World


@pytest.mark.parametrize("text", [
    pytest.param("2026-11-27T10:00:00.000Z", id="iso-millis-z"),
    pytest.param("2026-11-27T10:00:00Z", id="iso-z"),
    pytest.param("2026-11-27T10:00:00.123456+02:00", id="iso-offset"),
    pytest.param("1795773600", id="epoch-text"),
    pytest.param(1795773600, id="epoch-number"),
    pytest.param("Fri, 27 Nov 2026 10:00:00 GMT", id="rfc822"),
])
def test_timestamps_parse_as_botocore_parses_them(text):
    parsed = parse_timestamp(text)
    assert parsed == botocore.utils.parse_timestamp(text)
    assert parsed.utcoffset() is not None


def test_an_unreadable_timestamp_is_an_error():
    with pytest.raises(ValueError):
        parse_timestamp("not a time")


@pytest.mark.parametrize("name,quantity,milli", [
    pytest.param("cpu", "250m", 250, id="milli-cpu"),
    pytest.param("memory", "1Gi", (1 << 30) * 1000, id="binary-suffix"),
    pytest.param("cpu", 2, 2000, id="json-number"),
    pytest.param("cpu", "0.1m", 1, id="rounded-up"),
])
def test_quantities_are_parsed_the_same_every_time(name, quantity, milli):
    assert quantity_milli(name, quantity) == milli
    assert quantity_milli(name, quantity) == milli


@pytest.mark.parametrize("quantity", [
    pytest.param("lots", id="text"),
    pytest.param(["1"], id="not-hashable"),
    pytest.param("-1", id="negative"),
])
def test_a_bad_quantity_fails_every_time(quantity):
    for _ in range(2):  # an error is never remembered as a value
        with pytest.raises(QuantityError, match="cpu"):
            quantity_milli("cpu", quantity)


class FailingNodes:
    def read_nodes(self):
        raise KubeError("list: 500 Internal Server Error")

    def read_pods(self):
        return ()

    def read_budgets(self):
        return ()

    def read_daemonsets(self):
        return ()


def test_a_kubernetes_failure_while_regions_are_read_fails_the_read(fake_aws, monkeypatch):
    for name, value in fake_aws.env().items():
        monkeypatch.setenv(name, value)
    fake_aws.create_group("us-west-2", "workers", "speedups", max_size=5)
    settings = Settings(cluster_name="speedups", regions=("us-west-2", "us-east-1"))
    world = World(FailingNodes(), AwsClients(settings), settings)
    with pytest.raises(KubeError, match="500"):
        world.read(datetime(2026, 11, 27, 10, tzinfo=timezone.utc))
    assert gc.isenabled()  # the collector, paused for the read, is back on
