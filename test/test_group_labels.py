"""group_labels: ASG tags + instance types + region -> labels, taints, declared resources; and the
real node's allocatable winning over the estimate."""
import logging

import pytest

from autoscaler.group_labels import (effective_shapes, kube_architecture, node_template, parse_priority, parse_taint,
                                     sort_shapes)
from autoscaler.model import Group, InstanceShape, Node, Resources, Taint

GIB = (1 << 30) * 1000


def shape(instance_type, cpu, memory_gib, gpu=0):
    return InstanceShape(instance_type, Resources({"cpu": cpu * 1000, "memory": memory_gib * GIB, "nvidia.com/gpu": gpu * 1000}))


def make_group(*shapes, name="g"):
    return Group(name=name, region="us-west-2", min_size=0, max_size=10, desired=0, shapes=tuple(shapes))


def make_node(name, cpu, memory_gib, instance_type=None, beta=False, gpu=0, ready=True):
    labels = {}
    if instance_type:
        labels["beta.kubernetes.io/instance-type" if beta else "node.kubernetes.io/instance-type"] = instance_type
    allocatable = Resources({"cpu": cpu * 1000, "memory": memory_gib * GIB, "nvidia.com/gpu": gpu * 1000})
    return Node(name=name, labels=labels, allocatable=allocatable, ready=ready)


GPU = shape("p3.2xlarge", 8, 61, 1)


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


SMALL, LARGE = shape("m5.large", 2, 8), shape("m5.xlarge", 4, 16)


@pytest.mark.parametrize("group, nodes, expected", [
    (make_group(SMALL, LARGE), [], [SMALL, LARGE]),
    (make_group(SMALL, LARGE), [make_node("n1", 1, 7, "m5.large")],
     [InstanceShape("m5.large", Resources({"cpu": 1000, "memory": 7 * GIB})), LARGE]),
    (make_group(SMALL, LARGE), [make_node("n1", 1, 7, "m5.large", beta=True)],
     [InstanceShape("m5.large", Resources({"cpu": 1000, "memory": 7 * GIB})), LARGE]),
    # the smallest of several real nodes of a type
    (make_group(SMALL), [make_node("a", 2, 7, "m5.large"), make_node("b", 2, 6, "m5.large")],
     [InstanceShape("m5.large", Resources({"cpu": 2000, "memory": 6 * GIB}))]),
    # an unlabelled node stands for the only type
    (make_group(SMALL), [make_node("a", 1, 6)], [InstanceShape("m5.large", Resources({"cpu": 1000, "memory": 6 * GIB}))]),
    # ... but not when the group has several
    (make_group(SMALL, LARGE), [make_node("a", 1, 6)], [SMALL, LARGE]),
    # a type the group does not launch (any more) changes nothing
    (make_group(SMALL), [make_node("a", 1, 6, "c5.large")], [SMALL]),
    # re-sorted when a real node is bigger than the estimate of a bigger type
    (make_group(SMALL, LARGE), [make_node("a", 8, 32, "m5.large")],
     [LARGE, InstanceShape("m5.large", Resources({"cpu": 8000, "memory": 32 * GIB}))]),
    # a GPU node whose device plugin has not registered keeps the estimated GPU, takes real cpu/memory
    (make_group(GPU), [make_node("g", 7, 59, "p3.2xlarge")],
     [InstanceShape("p3.2xlarge", Resources({"cpu": 7000, "memory": 59 * GIB, "nvidia.com/gpu": 1000}))]),
    # ... and one that reports it is believed
    (make_group(GPU), [make_node("g", 7, 59, "p3.2xlarge", gpu=1), make_node("h", 7, 59, "p3.2xlarge")],
     [InstanceShape("p3.2xlarge", Resources({"cpu": 7000, "memory": 59 * GIB, "nvidia.com/gpu": 1000}))]),
    # a node that is not Ready says nothing yet about what its type offers
    (make_group(SMALL), [make_node("a", 1, 1, "m5.large", ready=False)], [SMALL]),
], ids=["no-nodes", "real-wins", "beta-label", "smallest-node", "unlabelled-single", "unlabelled-mixed",
        "foreign-type", "resorted", "gpu-not-reported", "gpu-reported-by-one", "not-ready-ignored"])
def test_effective_shapes(group, nodes, expected):
    assert list(effective_shapes(group, nodes)) == expected
