"""Kubernetes quantities -> model Resources, parsed once, at the reading edge."""
from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Mapping, Optional

from kubernetes.utils import parse_quantity

from ..model.objects import Resources


class QuantityError(ValueError):
    """A quantity that Kubernetes itself would reject; the message names the resource and value."""


def to_milli(name: str, quantity: object) -> int:
    """One quantity in integer milli-units, rounded up (a request of 0.1m cpu still needs 1m)."""
    try:
        value = parse_quantity(quantity)  # type: ignore[no-untyped-call]  # the stubs leave utils untyped
    except (ValueError, TypeError, InvalidOperation) as error:
        raise QuantityError(f"{name}: cannot parse quantity {quantity!r} ({error})") from None
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
        raise QuantityError(f"{name}: quantity {quantity!r} is not a finite, non-negative amount")
    return int(math.ceil(value * 1000))


def parse_resources(quantities: Optional[Mapping[str, object]]) -> Resources:
    """A ``requests``/``allocatable``/``capacity`` map as Resources; raises QuantityError."""
    if not quantities:
        return Resources()
    return Resources({name: to_milli(name, value) for name, value in quantities.items()})
