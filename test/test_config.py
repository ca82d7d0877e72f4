"""Settings rules that are not flag parsing: leader election's default, region parsing."""
import pytest

from autoscaler.clients.regions import known_regions
from autoscaler.model.config import Settings, SettingsError, parse_regions, validate


@pytest.mark.parametrize(
    "kubeconfig, leader_elect, dry_run, expected",
    [
        pytest.param(None, None, False, True, id="in-cluster-defaults-on"),
        pytest.param("/k", None, False, False, id="kubeconfig-defaults-off"),
        pytest.param("/k", True, False, True, id="asked-for"),
        pytest.param(None, False, False, False, id="turned-off"),
        pytest.param(None, None, True, False, id="dry-run-never-takes-the-lease"),
        pytest.param(None, True, True, False, id="dry-run-even-when-asked"),
    ],
)
def test_leader_election(kubeconfig, leader_elect, dry_run, expected):
    settings = Settings(cluster_name="c", kubeconfig=kubeconfig, leader_elect=leader_elect, dry_run=dry_run)
    assert settings.leader_election is expected


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("us-west-2", ("us-west-2",), id="one"),
        pytest.param(" us-west-2 , eu-central-1 ", ("us-west-2", "eu-central-1"), id="spaces"),
        pytest.param("us-gov-west-1,cn-north-1", ("us-gov-west-1", "cn-north-1"), id="partitions"),
    ],
)
def test_parse_regions(text, expected):
    assert parse_regions(text) == expected


@pytest.mark.parametrize("text", ["", " ", "us-west-2,", "uswest2", "US-WEST-2", "us-west-2,us-west-2"])
def test_parse_regions_rejects(text):
    with pytest.raises(SettingsError) as raised:
        parse_regions(text)
    assert raised.value.flag == "--regions"


@pytest.mark.parametrize("text, known", [
    pytest.param("us-west-2,cn-north-1,us-gov-west-1,eusc-de-east-1", True, id="every-partition"),
    pytest.param("xx-fake-9", False, id="well-formed-but-unknown"),
    pytest.param("us-west-2,eu-moon-1", False, id="one-unknown"),
])
def test_regions_are_those_botocore_knows_for_ec2_and_auto_scaling(text, known):
    if known:
        assert parse_regions(text, known_regions()) == tuple(text.split(","))
    else:
        with pytest.raises(SettingsError, match="botocore"):
            parse_regions(text, known_regions())


@pytest.mark.parametrize("namespace, accepted", [
    (None, True), ("", True), ("batch", True), ("team-a-2", True), ("a" * 63, True),
    ("Batch", False), ("-batch", False), ("batch-", False), ("a" * 64, False), ("batch jobs", False), ("a.b", False),
])
def test_pod_namespace_is_a_namespace_name_or_every_namespace(namespace, accepted):
    settings = Settings(cluster_name="c", regions=("us-west-2",), pod_namespace=namespace)
    if accepted:
        assert validate(settings) is settings
    else:
        with pytest.raises(SettingsError, match="--pod-namespace"):
            validate(settings)
