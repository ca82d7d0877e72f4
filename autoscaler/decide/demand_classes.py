"""Aggregates of waiting pods for estimating what a group would cost to serve them.

Pure. Shapes of one placement (and anti-affinity) whose requests are within a few percent of each
other in every resource form one class; a class is summed once (pods, total requests, largest
request) and compared with each group's instance as a whole, so estimating every candidate group
costs classes x groups, not pods x groups. The full first-fit packing runs only for the group
chosen (choose.py).
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

from .packing import Needs
from .pending_shapes import PodShape

MANTISSA_BITS = 4  # requests within 1/16 of each other in every resource share a class


def _bucket(amount: int) -> tuple[int, int]:
    length = amount.bit_length()
    return length, amount >> max(0, length - MANTISSA_BITS)


class DemandClass:
    """Similar waiting shapes: ``count`` pods, ``total`` requests per dimension, ``largest``
    request per dimension (every member fits where the largest does)."""

    __slots__ = ("shapes", "count", "total", "largest", "smallest", "order")

    def __init__(self, shapes: list[PodShape], width: int, order: int):
        self.shapes = shapes
        self.order = order  # position of its first shape in first-fit-decreasing order
        self.count = 0
        self.total = [0] * width
        self.largest = [0] * width
        self.smallest = [0] * width
        self.refresh()

    @property
    def largest_needs(self) -> Needs:
        return tuple((dimension, amount) for dimension, amount in enumerate(self.largest) if amount)

    @property
    def smallest_needs(self) -> Needs:
        """Per resource, the least any waiting member asks (0 where one asks nothing)."""
        return tuple((dimension, amount) for dimension, amount in enumerate(self.smallest) if amount)

    def refresh(self) -> None:
        """Recount after some members were placed."""
        width = len(self.total)
        count, total, largest = 0, [0] * width, [0] * width
        smallest: list[int] = []
        for shape in self.shapes:
            left = shape.remaining
            if not left:
                continue
            count += left
            asked = [0] * width
            for dimension, amount in shape.needs:
                total[dimension] += amount * left
                asked[dimension] = amount
                if amount > largest[dimension]:
                    largest[dimension] = amount
            smallest = asked if not smallest else [min(a, b) for a, b in zip(smallest, asked, strict=True)]
        self.count, self.total, self.largest, self.smallest = count, total, largest, smallest or [0] * width

    def units(self, empty: Sequence[int], per_instance: int) -> float:
        """Instances of capacity ``empty`` the class alone needs, as a fraction: the larger of its
        total requests over the capacity (the busiest resource) and its pods over how many of the
        largest fit one instance (pods too big to share an instance)."""
        share = 0.0
        for dimension, amount in enumerate(self.total):
            if amount:
                share = max(share, amount / empty[dimension])
        return max(share, self.count / per_instance)


def classify(shapes: Iterable[PodShape], width: int) -> list[DemandClass]:
    members: dict[tuple[object, ...], list[PodShape]] = {}
    first: dict[tuple[object, ...], int] = {}
    for order, shape in enumerate(shapes):
        if not shape.remaining:
            continue
        key = (shape.placement, shape.terms, tuple((dimension, _bucket(amount)) for dimension, amount in shape.needs))
        if key not in members:
            members[key] = []
            first[key] = order
        members[key].append(shape)
    return [DemandClass(members[key], width, first[key]) for key in sorted(members, key=first.__getitem__)]


def instances_for(classes: Iterable[tuple[DemandClass, int]], empty: Sequence[int]) -> float:
    """Fractional instances of capacity ``empty`` that (class, pods of its largest per instance)
    pairs need together: their summed busiest resource, or their pods-per-instance bound."""
    total = [0] * len(empty)
    granular = 0.0
    for demand, per_instance in classes:
        for dimension, amount in enumerate(demand.total):
            total[dimension] += amount
        granular += demand.count / per_instance
    share = max((amount / empty[dimension] for dimension, amount in enumerate(total) if amount), default=0.0)
    return max(share, granular)


def whole(instances: float) -> int:
    return max(1, math.ceil(instances - 1e-9))
