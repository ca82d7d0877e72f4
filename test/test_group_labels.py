"""group_labels: ASG tags + instance types + region -> labels, taints, declared resources."""
import logging

import pytest

from autoscaler.model.group_labels import kube_architecture, node_template, parse_priority, parse_taint
from autoscaler.model.objects import InstanceShape, Resources, Taint, sort_shapes

GIB = (1 << 30) * 1000


def shape(instance_type, cpu, memory_gib, gpu=0):
    return InstanceShape(instance_type, Resources({"cpu": cpu * 1000, "memory": memory_gib * GIB, "nvidia.com/gpu": gpu * 1000}))


@pytest.mark.parametrize("instance_type, api, expected", [
    ("m5.large", (), "amd64"),
    ("m6g.large", (), "arm64"),
    ("m6gd.xlarge", (), "arm64"),
    ("c7gn.large", (), "arm64"),
    ("t4g.micro", (), "arm64"),
    ("x2gd.large", (), "arm64"),
    ("a1.large", (), "arm64"),
    ("g4dn.xlarge", (), "amd64"),
    ("g5g.xlarge", (), "arm64"),
    ("p3.2xlarge", (), "amd64"),
    ("m6a.large", (), "amd64"),
    ("future.large", ("arm64",), "arm64"),
    ("m6g.large", ("x86_64",), "amd64"),  # the API's word beats the name
], ids=lambda v: str(v))
def test_architecture(instance_type, api, expected):
    assert kube_architecture(instance_type, api) == expected


BASE = {
    "aws/type": "m5.large", "aws/class": "m", "beta.kubernetes.io/instance-type": "m5.large",
    "node.kubernetes.io/instance-type": "m5.large", "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
    "aws/region": "us-west-2", "failure-domain.beta.kubernetes.io/region": "us-west-2",
    "topology.kubernetes.io/region": "us-west-2",
}
TYPE_KEYS = ("aws/type", "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type")


def without(labels, *keys):
    return {k: v for k, v in labels.items() if k not in keys}


@pytest.mark.parametrize("tags, types, zones, ami, expected", [
    ({}, ["m5.large"], ["us-west-2a", "us-west-2b"], None, BASE),
    ({}, ["m5.large"], ["us-west-2a", "us-west-2b"], "ami-1", {**BASE, "aws/ami-id": "ami-1"}),
    ({}, ["m5.large"], ["us-west-2a"], None,
     {**BASE, "topology.kubernetes.io/zone": "us-west-2a", "failure-domain.beta.kubernetes.io/zone": "us-west-2a"}),
    ({"kube/team": "ml", "kube/": "ignored", "Name": "x"}, ["m5.large"], [], None, {**BASE, "team": "ml"}),
    ({"k8s.io/cluster-autoscaler/node-template/label/gpu-kind": "v100"}, ["m5.large"], [], None,
     {**BASE, "gpu-kind": "v100"}),
    # the node-template form wins over kube/ for the same label
    ({"kube/team": "a", "k8s.io/cluster-autoscaler/node-template/label/team": "b"}, ["m5.large"], [], None,
     {**BASE, "team": "b"}),
    # mixed: types disagree, class and arch agree
    ({}, ["m5.large", "m5.xlarge"], [], None, without(BASE, *TYPE_KEYS)),
    ({}, ["m5.large", "c5.large"], [], None, without(BASE, "aws/class", *TYPE_KEYS)),
    ({}, ["m5.large", "m6g.large"], [], None, without(BASE, "kubernetes.io/arch", *TYPE_KEYS)),
    ({}, ["m5.large", "m5.large"], [], None, BASE),
    # unreadable launch settings: no type labels at all
    ({}, [], [], None, without(BASE, "aws/class", "kubernetes.io/arch", *TYPE_KEYS)),
], ids=["plain", "ami", "single-az", "kube-tags", "node-template-label", "template-label-wins", "mixed-same-class",
        "mixed-classes", "mixed-arch", "duplicate-type", "no-types"])
def test_labels(tags, types, zones, ami, expected):
    assert dict(node_template(tags, types, "us-west-2", zones, ami).labels) == expected


def test_api_architecture_is_used_for_labels():
    labels = node_template({}, ["newtype.large"], "us-west-2", architectures={"newtype.large": "arm64"}).labels
    assert labels["kubernetes.io/arch"] == "arm64"


@pytest.mark.parametrize("key, value, expected", [
    ("dedicated", "gpu:NoSchedule", Taint("dedicated", "gpu", "NoSchedule")),
    ("dedicated", ":NoExecute", Taint("dedicated", "", "NoExecute")),
    ("spot", "true:PreferNoSchedule", Taint("spot", "true", "PreferNoSchedule")),
    ("url", "a:b:NoSchedule", Taint("url", "a:b", "NoSchedule")),
    ("bad", "gpu", None),
    ("bad", "gpu:Sometimes", None),
], ids=["value", "empty-value", "prefer", "colon-in-value", "no-effect", "bad-effect"])
def test_parse_taint(key, value, expected):
    assert parse_taint(key, value) == expected


def test_taints_and_resources_from_tags(caplog):
    tags = {
        "k8s.io/cluster-autoscaler/node-template/taint/dedicated": "gpu:NoSchedule",
        "k8s.io/cluster-autoscaler/node-template/taint/broken": "oops",
        "k8s.io/cluster-autoscaler/node-template/resources/ephemeral-storage": "100Gi",
        "k8s.io/cluster-autoscaler/node-template/resources/example.com/dongle": "2",
    }
    with caplog.at_level(logging.WARNING):
        template = node_template(tags, ["p3.2xlarge"], "us-east-1")
    assert template.taints == (Taint("dedicated", "gpu", "NoSchedule"),)
    assert template.resource_quantities == (("ephemeral-storage", "100Gi"), ("example.com/dongle", "2"))
    assert "broken" in caplog.text


@pytest.mark.parametrize("tags, expected", [
    ({}, 0),
    ({"k8s.io/cluster-autoscaler/priority": "10"}, 10),
    ({"k8s.io/cluster-autoscaler/priority": " -3 "}, -3),
    ({"k8s.io/cluster-autoscaler/priority": "high"}, 0),
], ids=["absent", "ten", "negative", "bad"])
def test_priority(tags, expected):
    assert parse_priority(tags, "g") == expected


def test_bad_priority_warns_naming_the_group(caplog):
    with caplog.at_level(logging.WARNING):
        parse_priority({"k8s.io/cluster-autoscaler/priority": "high"}, "gpu-workers")
    assert "gpu-workers" in caplog.text


def test_sort_shapes_smallest_first():
    shapes = [shape("m5.2xlarge", 8, 32), shape("c5.large", 2, 4), shape("p3.2xlarge", 8, 61, 1), shape("m5.large", 2, 8)]
    assert [s.instance_type for s in sort_shapes(shapes)] == ["c5.large", "m5.large", "m5.2xlarge", "p3.2xlarge"]
