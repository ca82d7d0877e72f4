"""Shared pytest fixtures. Each block below belongs to one fake; keep blocks separate."""

from __future__ import annotations

import pytest

# ---- fake AWS (autoscaler/fakes/aws.py) ---------------------------------------------------------
# One moto server per test session (moto's first use in a process costs about 1.5 s), and fresh
# state for every test that asks for `fake_aws` (a reset costs milliseconds).


@pytest.fixture(scope="session")
def fake_aws_server():
    # Imported here so that test runs without AWS tests do not load moto.
    from autoscaler.fakes.aws import FakeAws

    with FakeAws() as server:
        yield server


@pytest.fixture
def fake_aws(fake_aws_server):
    fake_aws_server.reset()
    yield fake_aws_server
    fake_aws_server.reset()

# ---- end of fake AWS ----------------------------------------------------------------------------
