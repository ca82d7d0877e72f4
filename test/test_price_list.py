"""Live on-demand prices from the AWS Price List API (read/price_list.py), with botocore's Stubber
for the API and a silent local server for the deadline: no test calls AWS."""
from __future__ import annotations

import json
import logging
import time

import boto3
import pytest
from botocore.stub import Stubber

from autoscaler.clients.aws_errors import CloudConfigurationError, CloudError
from autoscaler.model.config import Settings
from autoscaler.read import aws_reader, price_list, prices
from autoscaler.read.price_list import PriceList, fetch_region_prices, product_price
from silent_server import SilentServer


@pytest.fixture(autouse=True)
def no_live_prices():
    prices.clear_live_prices()
    yield
    prices.clear_live_prices()


def pricing_client():
    return boto3.client("pricing", region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def product(instance_type, usd, unit="Hrs", region="us-west-2"):
    return json.dumps({
        "product": {"attributes": {"instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux"}},
        "terms": {"OnDemand": {"SKU.TERM": {"priceDimensions": {"SKU.TERM.RATE": {
            "unit": unit, "pricePerUnit": {"USD": usd}}}}}},
    })


def expected_request(region, token=None):
    params = {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1", "Filters": [
        {"Type": "TERM_MATCH", "Field": field, "Value": value}
        for field, value in {"regionCode": region, "operatingSystem": "Linux", "tenancy": "Shared",
                             "preInstalledSw": "NA", "capacitystatus": "Used"}.items()]}
    if token:
        params["NextToken"] = token
    return params


def stub_region(stubber, region, pages):
    for index, page in enumerate(pages):
        answer = {"FormatVersion": "aws_v1", "PriceList": page}
        if index < len(pages) - 1:
            answer["NextToken"] = f"page-{index + 1}"
        stubber.add_response("get_products", answer, expected_request(region, f"page-{index}" if index else None))


@pytest.mark.parametrize("document, expected", [
    (json.loads(product("m5.large", "0.0960000000")), ("m5.large", 0.096)),
    (json.loads(product("m5.large", "0.0000000000")), None),  # a reserved-capacity row priced 0
    (json.loads(product("m5.large", "1.5", unit="Quantity")), None),
    ({"product": {"attributes": {}}, "terms": {}}, None),
    ({"product": {"attributes": {"instanceType": "m5.large"}}, "terms": {"OnDemand": {"x": {"priceDimensions": {
        "y": {"unit": "Hrs", "pricePerUnit": {"USD": "n/a"}}}}}}}, None),
], ids=["hourly", "zero", "not-hourly", "no-type", "not-a-number"])
def test_product_price(document, expected):
    assert product_price(document) == expected


def test_a_region_is_read_across_pages_lowest_figure_per_type():
    client = pricing_client()
    with Stubber(client) as stubber:
        stub_region(stubber, "eu-west-1", [
            [product("m5.large", "0.107"), product("m5.xlarge", "0.214"), "not json"],
            [product("m5.large", "0.120"), product("c5.large", "0.096", unit="Quantity")],
        ])
        assert fetch_region_prices(client, "eu-west-1") == {"m5.large": 0.107, "m5.xlarge": 0.214}
        stubber.assert_no_pending_responses()


def test_live_figures_win_over_the_table_and_a_region_without_them_is_warned_about_once(caplog):
    client = pricing_client()
    clock = [0.0]
    book = PriceList(client, ("us-west-2", "us-east-1"), clock=lambda: clock[0])
    table_figure = prices.on_demand_price("us-west-2", "m5.large")  # us-east-1's, from the table
    assert prices.price_source("us-west-2") == "us-east-1" and table_figure == 0.096
    with Stubber(client) as stubber, caplog.at_level(logging.INFO, logger="autoscaler.cluster"):
        stub_region(stubber, "us-west-2", [[product("m5.large", "0.0970000000")]])
        stub_region(stubber, "us-east-1", [[product("m5.large", "0.0960000000")]])
        book.after_loop(["us-west-2", "us-west-2", "us-east-1"])
        book._thread.join(10)
        stubber.assert_no_pending_responses()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("prices for us-west-2: planned with us-east-1's")
    assert f"(generated {prices.table_date()})" in warnings[0]
    assert prices.on_demand_price("us-west-2", "m5.large") == 0.097 and prices.price_source("us-west-2") == "live"
    assert prices.on_demand_price("us-west-2", "p4d.24xlarge") == prices.price_table()["us-east-1"]["p4d.24xlarge"]

    caplog.clear()
    refreshed = book._thread
    book.after_loop(["us-west-2"])  # refreshed: nothing to warn, no refresh for a day
    clock[0] = price_list.REFRESH_SECONDS - 1
    book.after_loop(["us-west-2"])
    assert book._thread is refreshed and not caplog.records
    clock[0] = price_list.REFRESH_SECONDS
    with Stubber(client) as stubber:
        stub_region(stubber, "us-west-2", [[product("m5.large", "0.0980000000")]])
        stub_region(stubber, "us-east-1", [[product("m5.large", "0.0960000000")]])
        book.after_loop(["us-west-2"])  # a day later
        book._thread.join(10)
        stubber.assert_no_pending_responses()
    assert book._thread is not refreshed and prices.on_demand_price("us-west-2", "m5.large") == 0.098


def test_a_refused_permission_is_one_warning_and_the_table_stays(caplog):
    client = pricing_client()
    clock = [0.0]
    book = PriceList(client, ("us-west-2",), clock=lambda: clock[0])
    with Stubber(client) as stubber, caplog.at_level(logging.WARNING, logger="autoscaler.cluster"):
        for _ in range(2):
            stubber.add_client_error("get_products", "AccessDeniedException", "not authorized", 400)
        book.after_loop([])
        book._thread.join(10)
        book.after_loop([])  # not due again for an hour
        clock[0] = price_list.RETRY_SECONDS
        book.after_loop([])
        book._thread.join(10)
        stubber.assert_no_pending_responses()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "pricing:GetProducts is optional" in messages[0]
    assert prices.price_source("us-west-2") == "us-east-1"


def test_refused_is_configuration_and_throttled_is_weather():
    client = pricing_client()
    with Stubber(client) as stubber:
        stubber.add_client_error("get_products", "AccessDeniedException", "no", 400)
        stubber.add_client_error("get_products", "ThrottlingException", "slow down", 400)
        with pytest.raises(CloudConfigurationError, match="pricing:GetProducts"):
            fetch_region_prices(client, "us-west-2")
        with pytest.raises(CloudError) as raised:
            fetch_region_prices(client, "us-west-2")
        assert not isinstance(raised.value, CloudConfigurationError)


def test_the_daemons_client_has_the_deadline_of_every_aws_call(monkeypatch):
    """A Price List endpoint that never answers ends the fetch at the deadline (weather), in the
    background thread, never holding the loop."""
    monkeypatch.setattr(aws_reader, "CALL_DEADLINE_SECONDS", 1)
    with SilentServer(lifetime=30) as silent:
        monkeypatch.setenv("AWS_ENDPOINT_URL", silent.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        client = aws_reader.AwsClients(Settings(cluster_name="c", regions=("us-west-2",))).pricing()
        assert client.meta.region_name == "us-east-1"
        started = time.monotonic()
        with pytest.raises(CloudError, match="reading on-demand prices for us-west-2"):
            fetch_region_prices(client, "us-west-2")
        assert time.monotonic() - started < 5


def test_the_start_up_line_names_the_tables_date(caplog):
    with caplog.at_level(logging.INFO, logger="autoscaler.cluster"):
        PriceList(pricing_client(), ("us-west-2",)).announce()
    assert f"the shipped table generated {prices.table_date()} (us-east-1)" in caplog.text
    assert prices.table_date() == "2026-02-09"
