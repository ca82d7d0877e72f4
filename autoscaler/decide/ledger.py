"""What each stage of scale up hands the next: the pods still waiting, and what it placed.

Pure values (docs/decisions.md#scale-up). A stage gets ``Waiting`` (shape -> its pods still
waiting, in hand-out order), packs its own copies of those shapes (``forks``: the packers count
by mutating a shape, which is fast, and only the stage sees its copies) and returns a frozen
``Placed`` ledger: how many of each shape's first waiting pods it placed. scale_up composes the
stages with ``after`` and hands pods out by the ledgers, so no stage reads counts an earlier
one changed behind its back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from ..model.objects import Pod
from .pending_shapes import PodShape

# Shape -> its pods still waiting, in the order they are handed out; a shape with none is absent.
Waiting = Mapping[PodShape, Sequence[Pod]]


@dataclass(frozen=True)
class Placed:
    """Shape -> how many of its waiting pods (the first ones) a stage placed."""

    counts: Mapping[PodShape, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def waiting_of(shapes: Iterable[PodShape]) -> dict[PodShape, Sequence[Pod]]:
    """The pods of each shape not taken yet (every pod of a shape nothing has placed)."""
    return {shape: shape.pods[shape.taken:] for shape in shapes if shape.remaining}


def forks(waiting: Waiting) -> list[PodShape]:
    """A stage's own copies of the waiting shapes, in order, each counting from its waiting pods;
    ``origin`` is the shape it stands for."""
    return [shape.fork(pods) for shape, pods in waiting.items()]


def placed_by(twins: Iterable[PodShape]) -> Placed:
    """The ledger of a stage's copies once it packed them."""
    return Placed({twin.origin: twin.taken for twin in twins if twin.taken})


def after(waiting: Waiting, placed: Placed) -> dict[PodShape, Sequence[Pod]]:
    """The pods still waiting once ``placed`` took the first ones of each shape."""
    counts = placed.counts
    rest = {shape: pods[counts.get(shape, 0):] for shape, pods in waiting.items()}
    return {shape: pods for shape, pods in rest.items() if pods}


def commit(placed: Placed) -> None:
    """Count a ledger on the shapes themselves: for callers that hold the shapes and read their
    counts (a stage run on its own, as the stage tests do); scale_up never does."""
    for shape, count in placed.counts.items():
        shape.take(count)
