"""The instances planned for one group in one loop: its booting instances and the new ones, as
bins of the group's planning capacity, filled first fit.

Pure bookkeeping for the choose-and-pack stage (choose.py) and its improvement pass (improve.py):
which pods a group's bins hold, how many new instances that takes, what that costs. Placement
compatibility is asked once per distinct (placement, group), never per pod.
"""
from __future__ import annotations

from typing import Iterable, Optional

from ..model.objects import Placement
from .offers import Offer
from .packing import Allow, Bin, FirstFit, close_bin, copies_fitting, fill_bins, open_bins
from .pending_shapes import PodShape
from .placement_rules import dimension_capacity, is_port_dimension, placement_matches
from .reasons import Choice
from .topology import NewSpot, Topology


class GroupPlan:
    __slots__ = ("offer", "dimensions", "capacity", "empty", "bins", "new", "price", "notes", "_matches", "spare_checked",
                 "topology", "sized")

    def __init__(self, offer: Offer, dimensions: tuple[str, ...]):
        assert offer.planned is not None
        capacity = offer.planned.capacity
        self.offer = offer
        self.dimensions = dimensions
        self.capacity = capacity  # of one new instance, every resource (not only those asked for)
        self.empty = [dimension_capacity(name, capacity, offer.group.daemon_ports) for name in dimensions]
        # The dimensions an instance's size is measured in: resources, not host ports.
        self.sized = [not is_port_dimension(name) for name in dimensions]
        self.bins = FirstFit(len(dimensions), [Bin(list(self.empty), booting=True) for _ in range(offer.booting)])
        self.new = 0  # new instances (open bins that are not booting ones)
        self.price: Optional[float] = offer.price  # what the expander compares; least-waste sets its own
        self.notes: list[Choice] = []  # why this group was chosen, per choice (text only in scale_up_actions)
        self._matches: dict[Placement, bool] = {}
        self.spare_checked = True  # no room left unoffered to the waiting pods since the last look
        # Pods per topology domain over the whole plan (choose.py sets it when a pod has inter-pod rules).
        self.topology: Optional[Topology] = None

    @property
    def name(self) -> str:
        return self.offer.group.name

    @property
    def room(self) -> int:
        """New instances it may still get."""
        return self.offer.room - self.new

    def matches(self, placement: Placement) -> bool:
        known = self._matches.get(placement)
        if known is None:
            group = self.offer.group
            known = self._matches[placement] = placement_matches(placement, group.labels, group.taints)
        return known

    def takes(self, shape: PodShape) -> bool:
        """Its placement matches the group and one pod fits an empty instance; a pod whose
        inter-pod rules count per zone (or another key) only where the group's nodes carry it."""
        if shape.domain_keys and not self.promises_domains(shape):
            return False
        return self.matches(shape.placement) and copies_fitting(shape.needs, self.empty) > 0

    def promises_domains(self, shape: PodShape) -> bool:
        """Its new instances carry every topology key (other than the hostname) the shape's
        rules count by: a group spanning zones has no zone label, AWS picks the zone."""
        return shape.domain_keys.issubset(self.offer.group.labels)

    def allow(self, shape: PodShape) -> Optional[Allow]:
        """The inter-pod rules for the shape in this group's bins; None when it has none."""
        topology = self.topology
        if topology is None or not shape.rules:
            return None
        pod, labels = shape.representative, self.offer.group.labels
        together = min(shape.remaining, copies_fitting(shape.needs, self.empty))  # what one new instance takes
        return lambda target, want: topology.copies_allowed(pod, NewSpot(target, labels), want, together)

    def share(self, shape: PodShape) -> float:
        """The largest share of one instance a pod of the shape takes (its busiest resource)."""
        empty, sized = self.empty, self.sized
        return max((amount / empty[dimension] if empty[dimension] else float("inf") for dimension, amount in shape.needs
                    if sized[dimension]), default=0.0)

    def decreasing(self, shapes: Iterable[PodShape]) -> list[PodShape]:
        """First-fit-decreasing order for this group's instances: the largest share of an
        instance first (a memory-heavy pod is large on a general-purpose type), then the
        global order."""
        return sorted(shapes, key=lambda shape: (-self.share(shape), shape.index))

    def place(self, shape: PodShape, new_allowed: int) -> int:
        """The shape's remaining pods into open bins first fit, then into at most ``new_allowed``
        new bins; returns how many were placed (they count as taken)."""
        wanted = shape.remaining
        allow = self.allow(shape)
        placed = sum(copies for _, copies in fill_bins(shape, wanted, self.bins, allow))
        while placed < wanted and new_allowed > 0:
            # With inter-pod rules, one new instance at a time: the next one's domains count it.
            opened = open_bins(shape, wanted - placed, self.empty, new_allowed, allow)
            if not opened:
                break
            self.bins.extend(opened)
            self.new += len(opened)
            new_allowed -= len(opened)
            placed += sum(opened_bin.contents[shape] for opened_bin in opened)
            if allow is None:
                break
            if shape.domain_keys and placed < wanted:
                # The pods just placed may have raised the least domain of a zone (or other key)
                # rule: the instances already planned, this one included, may take more now, and
                # do before another is opened (a hostname rule's count never changes that way).
                placed += sum(copies for _, copies in fill_bins(shape, wanted - placed, self.bins, allow))
        shape.taken += placed
        if placed:
            self.spare_checked = False
        return placed

    def open_bins(self) -> list[Bin]:
        return [entry for entry in self.bins.entries if not entry.closed]

    def new_bins(self) -> list[Bin]:
        return [entry for entry in self.bins.entries if not entry.closed and not entry.booting]

    def close(self, target: Bin) -> None:
        """Give up an emptied new bin."""
        index = self.bins.entries.index(target)
        close_bin(self.bins, index)
        self.new -= 1

    def pods_placed(self, booting: Optional[bool] = None) -> int:
        return sum(copies for entry in self.bins.entries if not entry.closed
                   and (booting is None or entry.booting == booting) for copies in entry.contents.values())

    def spare(self) -> list[int]:
        """Free room summed over its open bins, per dimension."""
        total = [0] * len(self.empty)
        for entry in self.bins.entries:
            if not entry.closed:
                for dimension, amount in enumerate(entry.free):
                    total[dimension] += amount
        return total

    def cost(self) -> float:
        return (self.price or 0.0) * self.new
