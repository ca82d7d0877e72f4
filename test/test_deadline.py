"""clients/deadline.py: a call's total deadline, in process (a call that blocks on an Event is a
server that never finishes); the clients over HTTP are in test_kube_reader, test_kube_actuator,
test_leader_election, test_aws_reader and test_bad_input."""
from __future__ import annotations

import threading

import boto3
import pytest
from botocore.exceptions import ClientError

from autoscaler.clients.deadline import DeadlineExceeded, bound_aws_client, call_with_deadline


def test_a_call_that_returns_in_time_gives_its_result():
    assert call_with_deadline(5, "add", lambda a, b=0: a + b, 1, b=2) == 3


def test_a_call_that_raises_raises_its_own_exception():
    error = ValueError("the call's own")

    def fail():
        raise error

    with pytest.raises(ValueError) as raised:
        call_with_deadline(5, "fail", fail)
    assert raised.value is error


def test_a_call_past_its_deadline_is_abandoned_with_a_timeout_naming_it():
    release = threading.Event()
    try:
        with pytest.raises(DeadlineExceeded, match=r"^list pods: no complete answer within 0.2 s$") as raised:
            call_with_deadline(0.2, "list pods", release.wait)
        assert isinstance(raised.value, TimeoutError)  # weather, as a read timeout is
        [abandoned] = [thread for thread in threading.enumerate() if thread.name == "call list pods"]
        assert abandoned.daemon  # it never holds up the process's exit
    finally:
        release.set()
    abandoned.join(5)
    assert not abandoned.is_alive()


def test_a_bounded_aws_client_answers_and_fails_as_before(moto_in_process):
    client = bound_aws_client(boto3.client("ec2", region_name="us-west-2"), 30)
    assert client.describe_regions()["Regions"]
    pages = list(client.get_paginator("describe_instances").paginate())
    assert pages and pages[0]["Reservations"] == []
    with pytest.raises(ClientError) as raised:
        client.describe_instances(InstanceIds=["i-0123456789abcdef0"])
    assert raised.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
