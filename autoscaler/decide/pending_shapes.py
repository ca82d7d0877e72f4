"""Stage 0 of scale up: pending pods -> shapes of identical pods, placed by count.

Pure. Pods with the same requests, placement and anti-affinity (and, when anti-affinity exists
in the cluster, the same namespace and the labels its selectors look at) are one shape: packing
places a shape by count, never pod by pod (docs/decisions.md#scale-up, the cost rule). Members are
handed out in key order, so which pod goes where does not depend on input order.
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

from ..model.objects import HOSTNAME_LABEL, LabelSelector, Placement, Pod, PodAffinityTerm, Resources, Snapshot
from .packing import Needs
from .placement_rules import (
    anti_affinity_conflict,
    has_topology_rules,
    namespace_selected,
    port_dimension,
    selector_matches,
    term_selects,
    topology_keys,
)


class PodShape:
    """Identical pending pods. ``needs``: (dimension, amount) of each resource asked for over the
    plan's dimensions; ``taken``: how many a packer placed so far, counted on a stage's own copy
    (fork, ledger.py): scale_up never counts on the shapes it made, only the stages' ledgers."""

    __slots__ = ("pods", "size", "taken", "requests", "needs", "representative", "placement", "terms", "has_terms",
                 "self_conflict", "sort_key", "index", "rules", "domain_keys", "pinned", "origin")

    def __init__(self, pods: list[Pod], dimension_of: dict[str, int], order_text: str, labels_text: str,
                 requests: Optional[Resources] = None, targeted: bool = False, pinned: bool = False):
        first = pods[0]
        self.pods = pods
        self.size = len(pods)
        self.taken = 0
        self.origin = self  # the shape a stage's or trial's copy stands for (fork)
        self.index = 0  # position in first-fit-decreasing order
        self.requests: Resources = requests if requests is not None else first.requests
        # A host port is a dimension of its own: one per node or new instance (placement_rules).
        needs = [(dimension_of[name], value) for name, value in self.requests.items() if value > 0]
        if first.host_ports:
            needs.extend((dimension_of[port_dimension(port)], 1) for port in set(first.host_ports))
        self.needs: Needs = tuple(sorted(needs))
        self.representative = first
        self.placement: Placement = first.placement
        self.terms: tuple[PodAffinityTerm, ...] = first.anti_affinity
        self.has_terms = bool(first.anti_affinity)
        self.self_conflict = self.has_terms and anti_affinity_conflict(first, (first,))
        # Where it may go depends on other pods per topology domain (topology.py): its own
        # affinity, anti-affinity or spread, or another pod's anti-affinity selecting it.
        own_rules = has_topology_rules(first)
        self.rules = targeted or pinned or own_rules
        # Moving its pods between instances once placed could break a rule of its own or of
        # another pod (affinity or spread counts it): the improvement pass leaves it where it is.
        self.pinned = pinned or bool(first.affinity or first.spread)
        # Topology keys other than the hostname: a new instance must carry them as group labels.
        self.domain_keys = frozenset(key for key in topology_keys(first) if key != HOSTNAME_LABEL) if own_rules else frozenset()
        rest = cpu = memory = 0
        for name, value in self.requests.items():
            if name == "cpu":
                cpu = value
            elif name == "memory":
                memory = value
            elif name != "pods":
                rest += value
        # Largest first: other resources (GPUs), then cpu, then memory; then a fixed order.
        self.sort_key = (-rest, -cpu, -memory, order_text, self.needs, labels_text)

    @property
    def remaining(self) -> int:
        return self.size - self.taken

    def fork(self, pods: Optional[Sequence[Pod]] = None) -> "PodShape":
        """A copy for a stage or a trial plan (ledger.py, choose.py): its own ``taken``, and with
        ``pods`` only those waiting (counted from 0); ``origin`` is the shape it stands for."""
        twin = copy.copy(self)
        if pods is not None:
            twin.pods, twin.size, twin.taken = list(pods), len(pods), 0
        return twin

    def take(self, count: int) -> list[Pod]:
        start = self.taken
        self.taken += count
        return self.pods[start:self.taken]


def pending_demand(snapshot: Snapshot) -> list[Pod]:
    """Pending pods without a node, DaemonSet pods excepted (their controller binds them) and gated
    ones (the scheduler does not look at them yet), in key order."""
    return sorted((pod for pod in snapshot.pods if pod.is_pending_unassigned and not pod.is_daemonset and not pod.is_gated),
                  key=lambda p: (p.namespace, p.name))


MERGE_ABOVE = 2000  # distinct shapes beyond which similar ones are placed as one
MERGE_MANTISSA_BITS = 6  # "similar": within 1/64 of each other in every resource


def group_into_shapes(pending: Sequence[Pod], snapshot: Snapshot,
                      merge_above: int = MERGE_ABOVE) -> tuple[list[PodShape], tuple[str, ...]]:
    """The shapes, largest first (first-fit-decreasing order), and the resource dimensions they ask for.

    At scale (more than ``merge_above`` distinct shapes, no anti-affinity anywhere: labels would
    matter), pods of one placement whose requests are within 1/64 of each other in every resource
    are one shape, placed as the largest request among them: no node or instance is ever promised
    more than it has, and at most 1/64 of its room goes unused for them. Below that, every request
    is placed as it is."""
    with_terms = [pod for pod in snapshot.pods if pod.anti_affinity or pod.affinity or pod.spread]
    selectors = [term.selector for pod in with_terms for term in (*pod.anti_affinity, *pod.affinity)]
    selectors.extend(constraint.selector for pod in with_terms for constraint in pod.spread)
    label_keys = sorted({key for selector in selectors
                         for key in [k for k, _ in selector.match_labels] + [r.key for r in selector.match_expressions]})
    anti_terms: list[PodAffinityTerm] = list({term for pod in with_terms for term in pod.anti_affinity})
    # What pending pods' affinity and spread count: a pod they select is placed by the rules too.
    pulls: list[tuple[LabelSelector, tuple[str, ...]]] = list(
        {(term.selector, term.namespaces) for pod in pending for term in pod.affinity}
        | {(constraint.selector, (pod.namespace,)) for pod in pending for constraint in pod.spread})
    members: dict[tuple[object, ...], list[Pod]] = {}
    for pod in pending:
        # A namespace and labels only change where a pod fits through anti-affinity terms (they
        # select pods by both): without any, identical pods of many namespaces are one shape.
        namespace = pod.namespace if with_terms else ""
        label_values = tuple(pod.labels.get(key) for key in label_keys) if label_keys else ()
        exact: tuple[object, ...] = (pod.requests, pod.placement, pod.anti_affinity, namespace, label_values,
                                     pod.affinity, pod.spread, pod.host_ports)
        members.setdefault(exact, []).append(pod)
    dimensions = tuple(sorted({name for pods in members.values() for name in pods[0].requests.names()}
                              | {port_dimension(port) for pods in members.values() for port in pods[0].host_ports}))
    dimension_of = {name: index for index, name in enumerate(dimensions)}
    largest: dict[tuple[object, ...], Resources] = {}
    if len(members) > merge_above and not with_terms:
        similar: dict[tuple[object, ...], list[Pod]] = {}
        most: dict[tuple[object, ...], dict[str, int]] = {}
        shift = MERGE_MANTISSA_BITS
        for key, pods in members.items():
            requests, placement = key[0], key[1]
            assert isinstance(requests, Resources)
            amounts = requests.items()
            bucketed: tuple[object, ...] = (placement, key[7], frozenset(
                (name, value.bit_length(), value >> max(0, value.bit_length() - shift)) for name, value in amounts))
            group = similar.get(bucketed)
            if group is None:
                similar[bucketed] = list(pods)
                most[bucketed] = dict(amounts)
                continue
            group.extend(pods)
            top = most[bucketed]
            for name, value in amounts:
                if value > top[name]:
                    top[name] = value
        members = similar
        largest = {key: Resources(amounts) for key, amounts in most.items()}
    order_texts: dict[tuple[object, ...], str] = {}  # repr is costly; pods share few placements
    shapes = []
    for key, pods in members.items():
        if key in largest:
            pods.sort(key=lambda p: (p.namespace, p.name))
            shapes.append(PodShape(pods, dimension_of, repr(key[0]), "", largest[key]))
            continue
        order = key[1:4] + key[5:] if any(key[5:]) else key[1:4]
        if order not in order_texts:
            order_texts[order] = repr(order)
        targeted = bool(anti_terms) and any(term_selects(term, pods[0]) for term in anti_terms)
        pinned = bool(pulls) and any(namespace_selected(namespaces, pods[0].namespace)
                                     and selector_matches(selector, pods[0].labels) for selector, namespaces in pulls)
        shapes.append(PodShape(pods, dimension_of, order_texts[order], repr(key[4]) if label_keys else "",
                               targeted=targeted, pinned=pinned))
    shapes.sort(key=lambda shape: shape.sort_key)
    for index, shape in enumerate(shapes):
        shape.index = index
    return shapes, dimensions


def smallest_needs(shapes: Sequence[PodShape], width: int) -> Needs:
    """Per dimension, the least any shape asks (a dimension some shape does not ask for drops
    out): what a node must at least have free to be worth looking at."""
    least: list[Optional[int]] = [None] * width
    asked = [0] * width
    for shape in shapes:
        for dimension, amount in shape.needs:
            asked[dimension] += 1
            current = least[dimension]
            least[dimension] = amount if current is None else min(current, amount)
    return tuple((dimension, amount) for dimension, amount in enumerate(least)
                 if amount is not None and asked[dimension] == len(shapes))
