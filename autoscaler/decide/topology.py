"""Pods per topology domain: what the inter-pod rules of placement_rules.py count.

Pure. A domain is a value of a topology key: a node (``kubernetes.io/hostname``), a zone, or any
other node label. Pods are counted on live nodes (those running and those this loop places
there) and in the new instances of the plan being built (bins of each group's plan). A new
instance is a node of its own for the hostname key; for any other key its domain is the group's
label (a single-zone group carries its zone) and, when the group has none (a group spanning
zones), it is unknown: no rule that counts per that key can be promised there.

Only pods with inter-pod rules, or that another pod's anti-affinity selects, are asked about
(``PodShape.rules``); a loop without any builds no Topology at all (the fast path).
"""
from __future__ import annotations

import copy
from typing import Iterable, Mapping, Optional, Sequence, Union

from ..model.objects import HOSTNAME_LABEL, ZONE_LABEL, Group, LabelSelector, Node, Placement, Pod, SpreadConstraint
from .packing import Bin, FirstFit
from .placement_rules import (
    UNBOUNDED,
    affinity_copies,
    anti_affinity_copies,
    namespace_selected,
    node_affinity_matches,
    selector_matches,
    spread_copies,
    term_selects,
)

Matcher = tuple[LabelSelector, tuple[str, ...]]  # a selector and the namespaces it looks in ("*": all)


class Unknown:
    """The domain of a new instance for a key its group does not promise (a zone of a group
    spanning zones)."""


UNKNOWN = Unknown()
Domain = Union[str, Bin, None, Unknown]  # None: the node has no such label


def _matches(matcher: Matcher, pod: Pod) -> bool:
    return namespace_selected(matcher[1], pod.namespace) and selector_matches(matcher[0], pod.labels)


def _spread_matcher(pod: Pod, constraint: SpreadConstraint) -> Matcher:
    return (constraint.selector, (pod.namespace,))


def _node_domain(node: Node, key: str) -> Optional[str]:
    value = node.labels.get(key)
    if value is None and key == HOSTNAME_LABEL:
        return node.name  # a node is its own hostname domain
    return value


class LiveSpot:
    """A live node as a place for pods."""

    __slots__ = ("node",)

    def __init__(self, node: Node):
        self.node = node

    def domain(self, key: str) -> Domain:
        return _node_domain(self.node, key)


class NewSpot:
    """A new (or booting) instance of a group as a place for pods."""

    __slots__ = ("bin", "labels")

    def __init__(self, target: Bin, labels: Mapping[str, str]):
        self.bin = target
        self.labels = labels

    def domain(self, key: str) -> Domain:
        if key == HOSTNAME_LABEL:
            return self.bin
        value = self.labels.get(key)
        return UNKNOWN if value is None else value


Spot = Union[LiveSpot, NewSpot]


def _eligible(placement: Placement, labels: Mapping[str, str]) -> bool:
    """Topology spread's eligible nodes (nodeAffinityPolicy Honor, nodeTaintsPolicy Ignore)."""
    for key, value in placement.node_selector:
        if labels.get(key) != value:
            return False
    return not placement.node_affinity or node_affinity_matches(placement.node_affinity, labels)


class _Least:
    """The least count over a fixed set of domains, kept as counts only grow: recounted only when
    the last domain at the least grows."""

    __slots__ = ("domains", "counts", "least", "at_least")

    def __init__(self, domains: set[str], counts: dict[str, int]):
        self.domains = domains
        self.counts = counts
        self.least = 0
        self.at_least = 0
        self.recount()

    def recount(self) -> None:
        values = [self.counts.get(domain, 0) for domain in self.domains]
        self.least = min(values, default=0)
        self.at_least = values.count(self.least)

    def grown(self, domain: str, before: int) -> None:
        if before == self.least and domain in self.domains:
            self.at_least -= 1
            if self.at_least <= 0:
                self.recount()


class Topology:
    """Live pods per domain, and the plan's new instances once ``with_plans`` names them.
    ``pending``: one pod of each pending shape with inter-pod rules (their spread and
    anti-affinity count wherever they are placed this loop)."""

    def __init__(self, nodes: Sequence[Node], pods: Iterable[Pod], groups: Sequence[Group] = (),
                 pending: Sequence[Pod] = ()):
        self._nodes = {node.name: node for node in nodes}
        self._groups = tuple(groups)
        self._entries: list[tuple[Pod, Node, int]] = []
        self._anti: list[tuple[Pod, Node]] = []  # pods with anti-affinity terms on live nodes, and their node
        self._spreading: list[tuple[Pod, Node]] = []  # pending pods with spread placed on live nodes this loop
        for pod in pods:
            node = self._nodes.get(pod.node_name or "")
            if pod.occupies_node and node is not None:
                self._record(pod, node, 1)
        self._pending_anti = [pod for pod in pending if pod.anti_affinity]
        self._pending_spread = [pod for pod in pending if pod.spread]
        self._counts: dict[tuple[Matcher, str], dict[str, int]] = {}
        self._anywhere: dict[Matcher, int] = {}
        self._plan: tuple[tuple[Mapping[str, str], FirstFit[Bin]], ...] = ()
        self._selects: dict[tuple[Matcher, int], bool] = {}
        self._least: dict[tuple[Matcher, Placement], _Least] = {}  # hostname spread over live nodes
        self._zone_domains: dict[tuple[Placement, str], frozenset[str]] = {}
        self._live_blocked: dict[int, dict[str, set[str]]] = {}  # id(pod) -> key -> domains live pods' terms bar
        self._holders: dict[int, tuple[list[Pod], list[Pod]]] = {}  # id(pod) -> pending (anti, spread) pods selecting it

    def _record(self, pod: Pod, node: Node, copies: int) -> None:
        self._entries.append((pod, node, copies))
        if pod.anti_affinity:
            self._anti.append((pod, node))

    def add(self, pod: Pod, node: Node, copies: int) -> None:
        """``copies`` pods alike placed on a live node this loop."""
        self._record(pod, node, copies)
        if pod.anti_affinity:
            self._live_blocked.clear()
        if pod.spread:
            self._spreading.append((pod, node))
        for (matcher, key), counts in self._counts.items():
            value = _node_domain(node, key)
            if value is not None and self._selects_pod(matcher, pod):
                before = counts.get(value, 0)
                counts[value] = before + copies
                if key == HOSTNAME_LABEL:
                    for (least_matcher, _), least in self._least.items():
                        if least_matcher == matcher:
                            least.grown(value, before)
        for matcher in self._anywhere:
            if self._selects_pod(matcher, pod):
                self._anywhere[matcher] += copies

    def with_plans(self, plans: Sequence[tuple[Mapping[str, str], FirstFit[Bin]]]) -> "Topology":
        """The same live pods, plus the pods in these groups' bins (group labels, bins)."""
        view = copy.copy(self)
        view._plan = tuple(plans)
        return view

    # ------------------------------------------------------------ counting

    def _selects_pod(self, matcher: Matcher, pod: Pod) -> bool:
        key = (matcher, id(pod))
        known = self._selects.get(key)
        if known is None:
            known = self._selects[key] = _matches(matcher, pod)
        return known

    def _live(self, matcher: Matcher, key: str) -> dict[str, int]:
        counts = self._counts.get((matcher, key))
        if counts is None:
            counts = self._counts[(matcher, key)] = {}
            for pod, node, copies in self._entries:
                value = _node_domain(node, key)
                if value is not None and self._selects_pod(matcher, pod):
                    counts[value] = counts.get(value, 0) + copies
        return counts

    def _bins(self, key: str = "", domain: Optional[str] = None) -> Iterable[tuple[Mapping[str, str], Bin]]:
        """The plan's open bins holding pods (of the groups whose label ``key`` is ``domain``)."""
        for labels, bins in self._plan:
            if key and labels.get(key) != domain:
                continue
            for entry in bins.entries:
                if entry.contents and not entry.closed:
                    yield labels, entry

    def _in_bin(self, matcher: Matcher, entry: Bin) -> int:
        return sum(copies for shape, copies in entry.contents.items() if self._selects_pod(matcher, shape.representative))

    def count(self, matcher: Matcher, key: str, domain: Domain) -> int:
        """Pods the matcher selects in the domain (live nodes and the plan's new instances)."""
        if domain is None or isinstance(domain, Unknown):
            return 0
        if isinstance(domain, Bin):
            return self._in_bin(matcher, domain)
        total = self._live(matcher, key).get(domain, 0)
        if key != HOSTNAME_LABEL:
            total += sum(self._in_bin(matcher, entry) for _, entry in self._bins(key, domain))
        return total

    def anywhere(self, matcher: Matcher) -> int:
        known = self._anywhere.get(matcher)
        if known is None:
            known = self._anywhere[matcher] = sum(copies for pod, _, copies in self._entries if self._selects_pod(matcher, pod))
        return known + sum(self._in_bin(matcher, entry) for _, entry in self._bins())

    # ------------------------------------------------------------ the rules

    def copies_allowed(self, pod: Pod, spot: Spot, want: int, together: int = 0) -> int:
        """How many of ``want`` pods alike ``pod`` the spot takes by the inter-pod rules (anti-
        affinity both ways, affinity, topology spread), placed there together. ``together``: the
        first pods of a self-affine group go where this many fit on one node (its peers must
        follow it there), not into the last room of a full one."""
        allowed = want
        for term in pod.anti_affinity:
            domain = spot.domain(term.topology_key)
            if isinstance(domain, Unknown):
                return 0
            if domain is None:
                continue  # a node without the label is in no domain of the term
            in_domain = self.count((term.selector, term.namespaces), term.topology_key, domain)
            allowed = min(allowed, anti_affinity_copies(in_domain, term_selects(term, pod)))
            if not allowed:
                return 0
        anti_holders, spread_holders = self._pending_holders(pod)
        if self._blocked(pod, spot, anti_holders):
            return 0
        if spread_holders:
            allowed = min(allowed, self._spread_of_others(pod, spot, spread_holders))
            if not allowed:
                return 0
        if pod.affinity:
            in_domains = []
            for term in pod.affinity:
                domain = spot.domain(term.topology_key)
                if isinstance(domain, Unknown):
                    return 0
                in_domains.append(self.count((term.selector, term.namespaces), term.topology_key, domain))
            anywhere = sum(self.anywhere((term.selector, term.namespaces)) for term in pod.affinity)
            allowed = min(allowed, affinity_copies(in_domains, anywhere, all(term_selects(t, pod) for t in pod.affinity)))
            if not allowed:
                return 0
            if (not all(in_domains) and want < together
                    and any(term.topology_key == HOSTNAME_LABEL for term in pod.affinity)):
                return 0
        for constraint in pod.spread:
            key = constraint.topology_key
            domain = spot.domain(key)
            if domain is None or isinstance(domain, Unknown):
                return 0  # a node without the key's label fails the constraint
            matcher = _spread_matcher(pod, constraint)
            in_domain = self.count(matcher, key, domain)
            least = self._spread_min(pod, constraint, matcher, spot)
            allowed = min(allowed, spread_copies(constraint.max_skew, in_domain, least,
                                                 selector_matches(constraint.selector, pod.labels)))
            if not allowed:
                return 0
        return allowed if allowed < UNBOUNDED else want

    def node_copies(self, pod: Pod, node: Node, want: int, together: int = 0) -> int:
        """``copies_allowed`` on a live node (packing.LiveRules)."""
        return self.copies_allowed(pod, LiveSpot(node), want, together)

    def _pending_holders(self, pod: Pod) -> tuple[list[Pod], list[Pod]]:
        """Pending pods (one per shape) whose anti-affinity terms, and whose spread constraints,
        select this pod."""
        known = self._holders.get(id(pod))
        if known is None:
            anti = [other for other in self._pending_anti if any(term_selects(term, pod) for term in other.anti_affinity)]
            spreading = [other for other in self._pending_spread if other is not pod and any(
                self._selects_pod(_spread_matcher(other, constraint), pod) for constraint in other.spread)]
            known = self._holders[id(pod)] = (anti, spreading)
        return known

    def _blocked(self, pod: Pod, spot: Spot, pending_holders: list[Pod]) -> bool:
        """A pod already there (or in the plan) has an anti-affinity term that selects this pod,
        in the spot's domain of that term's key."""
        barred = self._live_blocked.get(id(pod))
        if barred is None:
            barred = self._live_blocked[id(pod)] = {}
            for other, node in self._anti:
                for term in other.anti_affinity:
                    value = _node_domain(node, term.topology_key)
                    if value is not None and term_selects(term, pod):
                        barred.setdefault(term.topology_key, set()).add(value)
        for key, domains in barred.items():
            mine = spot.domain(key)
            if isinstance(mine, Unknown) or (isinstance(mine, str) and mine in domains):
                return True
        if not pending_holders or not self._plan:
            return False
        holders = {id(other) for other in pending_holders}
        for labels, entry in self._bins():
            for shape in entry.contents:
                other = shape.representative
                if id(other) not in holders:
                    continue
                for term in other.anti_affinity:
                    if not term_selects(term, pod):
                        continue
                    mine = spot.domain(term.topology_key)
                    if isinstance(mine, Unknown):
                        return True
                    if mine is not None and mine == NewSpot(entry, labels).domain(term.topology_key):
                        return True
        return False

    def _spread_of_others(self, pod: Pod, spot: Spot, pending_holders: list[Pod]) -> int:
        """Pending pods with spread constraints that select this pod, placed this loop in the
        spot's domain: the scheduler may bind them after this pod, so the domain's count with
        it must still keep their skew."""
        allowed = UNBOUNDED
        holders = {id(other) for other in pending_holders}
        placed: list[tuple[Pod, Spot]] = [(other, LiveSpot(node)) for other, node in self._spreading if id(other) in holders]
        placed.extend((shape.representative, NewSpot(entry, labels)) for labels, entry in self._bins()
                      for shape in entry.contents if id(shape.representative) in holders)
        for other, where in placed:
            for constraint in other.spread:
                matcher = _spread_matcher(other, constraint)
                if not self._selects_pod(matcher, pod):
                    continue
                key = constraint.topology_key
                mine = spot.domain(key)
                if isinstance(mine, Unknown):
                    return 0
                if mine is None or mine != where.domain(key):
                    continue
                least = self._spread_min(other, constraint, matcher, spot)
                allowed = min(allowed, spread_copies(constraint.max_skew, self.count(matcher, key, mine), least, True))
        return allowed

    def _spread_min(self, pod: Pod, constraint: SpreadConstraint, matcher: Matcher, spot: Spot) -> int:
        """The least matching pods any eligible domain holds, as low as it may be when the
        scheduler looks: a new instance is a node with none; every zone a matching group may
        launch in counts, with what the plan puts there."""
        key = constraint.topology_key
        placement = pod.placement
        if key == HOSTNAME_LABEL:
            if isinstance(spot, NewSpot):
                return 0
            least = self._least.get((matcher, placement))
            if least is None:
                names = {_node_domain(node, key) or "" for node in self._nodes.values() if _eligible(placement, node.labels)}
                least = self._least[(matcher, placement)] = _Least(names, self._live(matcher, key))
            return least.least
        domains = self._zone_domains.get((placement, key))
        if domains is None:
            found: set[str] = {value for node in self._nodes.values() if _eligible(placement, node.labels)
                               for value in [_node_domain(node, key)] if value is not None}
            for group in self._groups:
                if key == ZONE_LABEL and key not in group.labels:
                    if any(_eligible(placement, {**group.labels, ZONE_LABEL: zone}) for zone in group.zones):
                        found.update(group.zones)
                elif key in group.labels and _eligible(placement, group.labels):
                    found.add(group.labels[key])
            domains = self._zone_domains[(placement, key)] = frozenset(found)
        if len(domains) < constraint.min_domains:
            return 0
        return min((self.count(matcher, key, value) for value in domains), default=0)
