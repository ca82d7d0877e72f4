"""What a node of an Auto Scaling Group will carry, known before the group has any node.

Pure: ASG tags + instance types + region (+ zones, image) -> labels, taints and the allocatable
quantities an operator declared with cluster-autoscaler node-template tags. Scale from zero
matches pending pods against these, so they must be what the kubelet will really set.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

from .objects import Node, Taint

log = logging.getLogger(__name__)

KUBE_TAG_PREFIX = "kube/"
NODE_TEMPLATE_PREFIX = "k8s.io/cluster-autoscaler/node-template/"
LABEL_TAG_PREFIX = NODE_TEMPLATE_PREFIX + "label/"
TAINT_TAG_PREFIX = NODE_TEMPLATE_PREFIX + "taint/"
RESOURCE_TAG_PREFIX = NODE_TEMPLATE_PREFIX + "resources/"
PRIORITY_TAG = "k8s.io/cluster-autoscaler/priority"
HOURLY_PRICE_TAG = "openai/hourly-price"
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
BETA_INSTANCE_TYPE_LABEL = "beta.kubernetes.io/instance-type"
ZONE_LABEL = "topology.kubernetes.io/zone"
BETA_ZONE_LABEL = "failure-domain.beta.kubernetes.io/zone"

# Graviton and other Arm types: a "g" among the letters after the generation digit (m6g, c7gn,
# r6gd, t4g, x2gd, is4gen, g5g), or the first generation a1.
_ARM_TYPE = re.compile(r"^(a1|[a-z]+\d+[a-z]*g[a-z]*)\.")
# DescribeInstanceTypes' architecture names -> the kubernetes.io/arch values.
_KUBE_ARCH = {"x86_64": "amd64", "x86_64_mac": "amd64", "arm64": "arm64", "arm64_mac": "arm64", "i386": "386"}


@dataclass(frozen=True)
class NodeTemplate:
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    # Allocatable set by node-template resource tags, as written (e.g. ("ephemeral-storage", "100Gi")).
    # Left unparsed: parsing quantities needs the kubernetes library, which pure code does not use.
    resource_quantities: tuple[tuple[str, str], ...] = ()


def kube_architecture(instance_type: str, api_architectures: Sequence[str] = ()) -> str:
    """kubernetes.io/arch of an instance type: from DescribeInstanceTypes when known, else its name."""
    for name in api_architectures:
        if name in _KUBE_ARCH:
            return _KUBE_ARCH[name]
    return "arm64" if _ARM_TYPE.match(instance_type) else "amd64"


def type_labels(instance_type: str, architecture: Optional[str] = None) -> dict[str, str]:
    """The labels that depend on the instance type alone."""
    return {
        "aws/type": instance_type,
        "aws/class": instance_type[:1],
        BETA_INSTANCE_TYPE_LABEL: instance_type,
        INSTANCE_TYPE_LABEL: instance_type,
        "kubernetes.io/arch": architecture or kube_architecture(instance_type),
    }


def parse_taint(key: str, value: str) -> Optional[Taint]:
    """A taint tag value ``value:Effect`` (value may be empty); None, with a warning, if malformed."""
    taint_value, separator, effect = value.rpartition(":")
    if not separator or effect not in TAINT_EFFECTS:
        log.warning("ignoring taint tag %s%s=%r: expected value:Effect with Effect one of %s",
                    TAINT_TAG_PREFIX, key, value, ", ".join(TAINT_EFFECTS))
        return None
    return Taint(key=key, value=taint_value, effect=effect)


def node_template(tags: Mapping[str, str], instance_types: Sequence[str], region: str, zones: Sequence[str] = (),
                  ami_id: Optional[str] = None, architectures: Optional[Mapping[str, str]] = None) -> NodeTemplate:
    """Labels, taints and declared resources of a node of a group.

    ``architectures`` maps instance type -> kubernetes.io/arch where DescribeInstanceTypes said so.
    A label that depends on the instance type is set only when every type of the group agrees on
    it, so a mixed group never promises a label some of its nodes will lack.
    """
    architectures = architectures or {}
    labels: dict[str, str] = {}
    per_type = [type_labels(t, architectures.get(t)) for t in sorted(set(instance_types))]
    if per_type:
        for key, value in per_type[0].items():
            if all(other.get(key) == value for other in per_type[1:]):
                labels[key] = value
    if ami_id:
        labels["aws/ami-id"] = ami_id
    labels["aws/region"] = region
    labels["failure-domain.beta.kubernetes.io/region"] = region
    labels["topology.kubernetes.io/region"] = region
    labels["kubernetes.io/os"] = "linux"
    if len(set(zones)) == 1:
        labels[ZONE_LABEL] = labels[BETA_ZONE_LABEL] = zones[0]

    taints: list[Taint] = []
    resources: list[tuple[str, str]] = []
    # kube/ tags first, then node-template labels, so the explicit cluster-autoscaler form wins.
    for key in sorted(tags):
        if key.startswith(KUBE_TAG_PREFIX) and len(key) > len(KUBE_TAG_PREFIX):
            labels[key[len(KUBE_TAG_PREFIX):]] = tags[key]
    for key in sorted(tags):
        value = tags[key]
        if key.startswith(LABEL_TAG_PREFIX) and len(key) > len(LABEL_TAG_PREFIX):
            labels[key[len(LABEL_TAG_PREFIX):]] = value
        elif key.startswith(TAINT_TAG_PREFIX) and len(key) > len(TAINT_TAG_PREFIX):
            taint = parse_taint(key[len(TAINT_TAG_PREFIX):], value)
            if taint is not None:
                taints.append(taint)
        elif key.startswith(RESOURCE_TAG_PREFIX) and len(key) > len(RESOURCE_TAG_PREFIX):
            resources.append((key[len(RESOURCE_TAG_PREFIX):], value))
    return NodeTemplate(labels=labels, taints=tuple(taints), resource_quantities=tuple(resources))


def parse_priority(tags: Mapping[str, str], group_name: str) -> int:
    """The priority tag as an int; a bad value counts as 0, with a warning naming the group."""
    text = tags.get(PRIORITY_TAG)
    if text is None:
        return 0
    try:
        return int(text.strip())
    except ValueError:
        log.warning("group %s: tag %s=%r is not an integer; using priority 0", group_name, PRIORITY_TAG, text)
        return 0


def parse_hourly_price(tags: Mapping[str, str], group_name: str) -> Optional[float]:
    """The operator's $/h for one new instance of the group (tag openai/hourly-price); None when
    not set, or, with a warning naming the group, when it is not a positive finite number."""
    text = tags.get(HOURLY_PRICE_TAG)
    if text is None:
        return None
    try:
        price = float(text.strip().removeprefix("$"))
    except ValueError:
        price = math.nan
    if not math.isfinite(price) or price <= 0:
        log.warning("group %s: tag %s=%r is not a positive number of dollars per hour; ignoring it",
                    group_name, HOURLY_PRICE_TAG, text)
        return None
    return price


def node_instance_type(node: Node) -> Optional[str]:
    return node.labels.get(INSTANCE_TYPE_LABEL) or node.labels.get(BETA_INSTANCE_TYPE_LABEL)
