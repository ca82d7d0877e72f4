"""Why scale up chose a group, and why a group did not take a pod: values, not prose.

Pure. The stages (greedy, choose, repack; scale_up_actions' failure notices) record these small
frozen values; they become text in one place, ``describe``, when the actions are written
(scale_up_actions.py), so no stage parses another's sentence.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Optional, Union

from ..model.objects import Resources
from .offers import describe_price


# ------------------------------------------------------------------ why a group was chosen


@dataclass(frozen=True)
class Candidate:
    """The next candidate group for the same pods: what it would have cost."""

    instances: int
    instance_name: str
    group: str
    price: float = 0.0


@dataclass(frozen=True)
class CheaperThanNext:
    """The price expander chose it against the next candidate (its own $/h goes in front)."""

    runner_up: Candidate
    pods: int  # about how many pods the chosen group takes
    runner_up_pods: int


@dataclass(frozen=True)
class OnlyInTier:
    """The only group of its tier that takes them."""


@dataclass(frozen=True)
class LeastWaste:
    no_price: bool  # chosen by size because no price is known (price expander), not by choice
    runner_up: Optional[Candidate]


@dataclass(frozen=True)
class NoCheaperChoice:
    """The last sweep: pods nothing cheaper took."""

    pods: int


class TakeAll(enum.Enum):
    PRIORITY_ORDER = "the first in priority order (single-AZ, spot, name) that takes them"
    SEED = "all it can take"


@dataclass(frozen=True)
class PlansCompared:
    """On a small problem, this plan (the group first taking all it can) won the comparison."""

    count: int
    fewest_left_out: bool  # it leaves out fewer pods than the next plan
    total: float
    runner_up_total: float


@dataclass(frozen=True)
class PackedExactly:
    instances: int
    total: float
    first_fit_total: float


Choice = Union[CheaperThanNext, OnlyInTier, LeastWaste, NoCheaperChoice, TakeAll, PlansCompared, PackedExactly]


def describe_choice(choice: Choice) -> str:
    if isinstance(choice, CheaperThanNext):
        other = choice.runner_up
        takes = ""
        if choice.runner_up_pods < choice.pods:
            takes = f", which would take about {choice.runner_up_pods} of the {choice.pods} pods"
        elif choice.runner_up_pods > choice.pods:
            takes = f", which would take {choice.runner_up_pods} pods"
        return (f"against {describe_price(other.price)} for {other.instances} {other.instance_name} of {other.group} "
                f"(next candidate{takes})")
    if isinstance(choice, OnlyInTier):
        return "the only group of its tier that takes them"
    if isinstance(choice, LeastWaste):
        own = ("no known price, so chosen by least waste: it leaves the least room unused" if choice.no_price
               else "it leaves the least room unused")
        if choice.runner_up is None:
            return own + "; the only group of its tier that takes them"
        other = choice.runner_up
        return own + f", against {other.instances} {other.instance_name} of {other.group} (next candidate)"
    if isinstance(choice, NoCheaperChoice):
        return f"for {choice.pods} pods no cheaper choice took"
    if isinstance(choice, TakeAll):
        return choice.value
    if isinstance(choice, PlansCompared):
        if choice.fewest_left_out:
            return f"of {choice.count} plans compared, the one that leaves out the fewest pods"
        return (f"{describe_price(choice.total)} in all against {describe_price(choice.runner_up_total)} for the next plan "
                f"of {choice.count} compared")
    return (f"the tier's {choice.instances} new instances packed exactly: {describe_price(choice.total)} in all against "
            f"{describe_price(choice.first_fit_total)} by first fit")


def follows_price(choices: tuple[Choice, ...]) -> bool:
    """The first choice reads on from the group's own price ("$0.38/h for 4 m5.large against ...")."""
    return bool(choices) and isinstance(choices[0], CheaperThanNext)


# ------------------------------------------------------------------ why a group did not take a pod


class Refusal(enum.Enum):
    TIMED_OUT = "timed out after a failed launch"
    NO_LAUNCH_SETTINGS = "its launch settings could not be read"
    INTER_POD_RULES = "its pod affinity, anti-affinity or topology spread leaves no room for it in this loop's new instances"
    ANTI_AFFINITY = "anti-affinity leaves no room for it in this loop's new instances"


@dataclass(frozen=True)
class TooSmall:
    capacity: Resources


@dataclass(frozen=True)
class FitsOnlySome:
    fitting: tuple[str, ...]
    overrides: tuple[str, ...]
    strategy: str  # the allocation strategy that launches ``launches``; "" when AWS may launch any
    launches: str


@dataclass(frozen=True)
class AtMaxSize:
    max_size: int


@dataclass(frozen=True)
class MaxSizeTaken:
    max_size: int


@dataclass(frozen=True)
class UnpromisedZone:
    """A group spanning zones and a pod that needs one (a zonal volume, a zone in its node affinity)."""

    zones: tuple[str, ...]


@dataclass(frozen=True)
class UnpromisedDomain:
    """A pod whose inter-pod rules count per zone (or another label) that the group's new
    instances do not carry."""

    zones: tuple[str, ...]  # the group's zones when it spans several and the key is the zone; else ()
    keys: tuple[str, ...]


NotTaken = Union[Refusal, TooSmall, FitsOnlySome, AtMaxSize, MaxSizeTaken, UnpromisedZone, UnpromisedDomain]


def describe_not_taken(reason: NotTaken) -> str:
    if isinstance(reason, Refusal):
        return reason.value
    if isinstance(reason, TooSmall):
        return f"too small (one instance offers {reason.capacity.describe()})"
    if isinstance(reason, FitsOnlySome):
        head = f"fits only {', '.join(reason.fitting)} of its overrides {', '.join(reason.overrides)}"
        if reason.strategy:
            return f"{head}, and its allocation strategy {reason.strategy} launches {reason.launches}"
        return f"{head}, and AWS may launch any of them"
    if isinstance(reason, AtMaxSize):
        return f"at max size {reason.max_size}"
    if isinstance(reason, MaxSizeTaken):
        return f"its max size {reason.max_size} is taken by this loop's other pending pods"
    if isinstance(reason, UnpromisedZone):
        return (f"spans zones {', '.join(reason.zones)} and cannot promise the zone its volumes or node affinity need "
                "(AWS picks the zone of a new instance)")
    rules = "its pod affinity, anti-affinity or topology spread"
    if reason.zones:
        return f"spans zones {', '.join(reason.zones)} and cannot promise a zone for {rules} by zone"
    return f"its nodes carry no label {', '.join(reason.keys)} known in advance, which {rules} counts by"
