"""PURE: a new instance of each group as Kubernetes will see it (docs/decisions.md#capacity-of-a-new-instance).

Before a group has a node, its template is what its tags and launch settings promise: labels,
taints, and the capacity catalog's estimate of each type's allocatable. That is not what a pending
pod gets: every node also runs the DaemonSet pods whose node selector, node affinity and
tolerations admit it, and those take their requests out of the room first. And once the group has
initialized nodes (decide/initialized.py), those are the truth: the kubelet's allocatable, the
DaemonSet pods they really run, the labels they really registered and the taints they really keep.

So each loop, before deciding, every group's template is corrected:
- labels and taints: by what all of its initialized nodes agree on; a label a tag promises that the
  nodes lack (or set otherwise), or a taint they keep that no tag mentions, is a difference the
  loop warns about once, naming the group and the tag, and planning goes by the nodes;
- capacity of each shape: the smallest allocatable its initialized nodes report (else the
  estimate), less the DaemonSet overhead: per resource, the larger of what the DaemonSets that admit
  the template ask for and what the DaemonSet pods on any initialized node of the group hold; and
  the host ports those DaemonSet pods hold are not free on a new instance (Group.daemon_ports).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Optional

from ..model.group_labels import KUBE_TAG_PREFIX, LABEL_TAG_PREFIX, TAINT_TAG_PREFIX, node_instance_type
from ..model.objects import (
    CORDONED_BY_AUTOSCALER_LABEL, DETACHED_LABEL, HOSTNAME_LABEL, DaemonSet, Group, InstanceShape, Node, Pod,
    Resources, Snapshot, Taint, sort_shapes,
)
from .initialized import Readiness, unexpected_taints
from .scheduling import placement_matches

# Labels that name one node, or say what is being done to it: never learned into a template.
PER_NODE_LABELS = frozenset({HOSTNAME_LABEL, CORDONED_BY_AUTOSCALER_LABEL, DETACHED_LABEL, "aws/id",
                             "node.kubernetes.io/exclude-from-external-load-balancers"})
# Labels with which a template must agree with its launch settings rather than with the nodes seen
# so far: a group's nodes so far may all be in one zone or of one type, its next one need not.
LAUNCH_DEFINED_LABEL_WORDS = ("zone", "instance-type", "aws/type", "aws/class")


@dataclass(frozen=True)
class TemplateDifference:
    """Where a group's initialized nodes differ from what its tags promise."""

    group: str
    region: str
    tag: str  # the tag that promised otherwise, or "" for a taint no tag mentions
    difference: str

    def describe(self) -> str:
        tag = f"tag {self.tag}" if self.tag else "no tag"
        return (f"group {self.group} ({self.region}): {tag}: {self.difference}; planning with what its nodes really "
                "have")


@dataclass(frozen=True)
class Templates:
    snapshot: Snapshot  # every group's labels, taints and shapes corrected
    differences: tuple[TemplateDifference, ...] = ()


def with_node_templates(snapshot: Snapshot, readiness: Mapping[str, Readiness]) -> Templates:
    """The snapshot with each group's template corrected (module docstring), and the differences
    between tags and nodes. ``readiness``: node name -> where it stands (initialized.readiness)."""
    node_of_instance = {node.instance_id: node for node in snapshot.nodes if node.instance_id}
    daemon_pods = _daemon_pods_by_node(snapshot.pods)
    groups: list[Group] = []
    differences: list[TemplateDifference] = []
    for group in snapshot.groups:
        initialized = sorted((node_of_instance[i] for i in group.instance_ids if i in node_of_instance
                              and readiness.get(node_of_instance[i].name) is Readiness.INITIALIZED),
                             key=lambda node: node.name)
        labels, taints, found = _learned_labels_and_taints(group, initialized)
        differences.extend(found)
        # Per resource the larger of what the admitted DaemonSets ask and what their pods hold on
        # any initialized node (which also covers RBAC that does not let us list DaemonSets).
        admitted = admitted_daemonsets(snapshot.daemonsets, labels, taints)
        overhead = sum((daemonset.requests for daemonset in admitted), Resources())
        ports = {port for daemonset in admitted for port in daemonset.host_ports}
        for node in initialized:
            on_node = daemon_pods.get(node.name, ())
            overhead = overhead.max_with(sum((pod.requests for pod in on_node), Resources()))
            ports.update(port for pod in on_node for port in pod.host_ports)
        shapes = effective_shapes(group, initialized)
        if overhead:
            shapes = sort_shapes(replace(shape, capacity=_less(shape.capacity, overhead)) for shape in shapes)
        if labels == dict(group.labels) and taints == group.taints and shapes == group.shapes and not ports:
            groups.append(group)
        else:
            groups.append(replace(group, labels=labels, taints=taints, shapes=shapes, daemon_ports=frozenset(ports)))
    if all(new is old for new, old in zip(groups, snapshot.groups, strict=True)):
        return Templates(snapshot, tuple(differences))
    return Templates(replace(snapshot, groups=tuple(groups)), tuple(differences))


def admitted_daemonsets(daemonsets: Iterable[DaemonSet], labels: Mapping[str, str],
                        taints: Iterable[Taint]) -> list[DaemonSet]:
    """The DaemonSets whose pods will run on a node with these labels and taints."""
    taints = tuple(taints)
    return [daemonset for daemonset in daemonsets if placement_matches(daemonset.placement, labels, taints)]


def _less(capacity: Resources, overhead: Resources) -> Resources:
    return Resources({name: max(0, value - overhead.get(name)) for name, value in capacity.items()})


def _daemon_pods_by_node(pods: Iterable[Pod]) -> dict[str, list[Pod]]:
    by_node: dict[str, list[Pod]] = {}
    for pod in pods:
        if pod.is_daemonset and pod.occupies_node and pod.node_name:
            by_node.setdefault(pod.node_name, []).append(pod)
    return by_node


def _label_tag(group: Group, key: str) -> str:
    """The tag that promised a label, or "" when the label comes from the launch settings."""
    for tag in (LABEL_TAG_PREFIX + key, KUBE_TAG_PREFIX + key):
        if tag in group.tags:
            return tag
    return ""


def _is_learnable(key: str, value: str, node: Node) -> bool:
    if key in PER_NODE_LABELS or any(word in key for word in LAUNCH_DEFINED_LABEL_WORDS):
        return False
    return value not in (node.name, node.instance_id)


def _learned_labels_and_taints(group: Group, nodes: list[Node]
                               ) -> tuple[dict[str, str], tuple[Taint, ...], list[TemplateDifference]]:
    labels = dict(group.labels)
    if not nodes:
        return labels, group.taints, []
    differences = []
    for key, promised in sorted(group.labels.items()):
        seen = {node.labels.get(key) for node in nodes}
        if seen == {promised}:
            continue
        tag = _label_tag(group, key)
        if len(seen) == 1 and None not in seen:
            labels[key] = seen.pop()  # type: ignore[assignment]
            what = f"promises label {key}={promised}, its nodes have {key}={labels[key]}"
        else:
            del labels[key]
            what = (f"promises label {key}={promised}, its nodes do not have it" if seen == {None}
                    else f"promises label {key}={promised}, its nodes have {', '.join(sorted(str(v) for v in seen))}")
        if tag:  # a launch-defined label the kubelet does not set (aws/ami-id, say) is dropped quietly
            differences.append(TemplateDifference(group.name, group.region, tag, what))
    first = nodes[0]
    for key, value in sorted(first.labels.items()):
        if key not in labels and _is_learnable(key, value, first) and all(n.labels.get(key) == value for n in nodes[1:]):
            labels[key] = value
    # A Ready node's not-ready taint is the lifecycle controller lagging, not what the node is.
    kept = [{taint for taint in unexpected_taints(node, group) if taint.key != "node.kubernetes.io/not-ready"}
            for node in nodes]
    common_extra = set.intersection(*kept) if kept else set()
    taints = list(group.taints)
    for taint in sorted(common_extra, key=lambda t: (t.key, t.value, t.effect)):
        taints.append(taint)
        text = f"{taint.key}={taint.value}:{taint.effect}" if taint.value else f"{taint.key}:{taint.effect}"
        differences.append(TemplateDifference(group.name, group.region, "",
                                              f"its nodes keep taint {text} past their start"))
    for taint in group.taints:
        if all(taint not in node.taints for node in nodes):
            taints.remove(taint)
            differences.append(TemplateDifference(group.name, group.region, TAINT_TAG_PREFIX + taint.key,
                                                  f"promises taint {taint.key}:{taint.effect}, its nodes do not have it"))
    return labels, tuple(taints), differences


def effective_shapes(group: Group, nodes_of_group: Iterable[Node]) -> tuple[InstanceShape, ...]:
    """The group's shapes, with real nodes' allocatable in place of the estimate for their type.

    The kubelet's allocatable is the truth; the estimate only stands in until an initialized node
    exists. Per resource, the smallest amount any node of the type reports is used, so a pod is
    never promised room that one of them lacks (say, a daemon reserve changed). A resource the
    estimate has but a node does not report at all (a GPU node whose device plugin has failed)
    keeps the estimate: one such node must not make every GPU pod infeasible. A node without a
    type label stands for the group's only type, if it has just one.
    """
    single_type = group.shapes[0].instance_type if len(group.shapes) == 1 else None
    reported: dict[str, list[Resources]] = {}
    for node in sorted(nodes_of_group, key=lambda n: n.name):
        instance_type: Optional[str] = node_instance_type(node) or single_type
        if instance_type is None or not node.allocatable or not node.ready:
            continue
        reported.setdefault(instance_type, []).append(node.allocatable)
    if not reported:
        return group.shapes
    estimates = {shape.instance_type: shape.capacity for shape in group.shapes}
    real = {}
    for instance_type, allocatables in reported.items():
        estimate = estimates.get(instance_type, Resources())
        names = set(estimate.names()).union(*(a.names() for a in allocatables))
        amounts = {}
        for name in names:
            present = [a.get(name) for a in allocatables if a.get(name) > 0]
            amounts[name] = min(present) if present else estimate.get(name)
        real[instance_type] = Resources(amounts)
    # Only the capacity is replaced: the shape keeps its type's price.
    return sort_shapes(replace(shape, capacity=real[shape.instance_type]) if shape.instance_type in real else shape
                       for shape in group.shapes)
