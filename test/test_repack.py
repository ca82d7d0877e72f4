"""The exact search of repack.py: the cheapest instances for a few shapes' pods, over given
mixes (plan index, price in microdollars, pods of each shape one instance holds)."""
from __future__ import annotations

import pytest

from autoscaler.decide.repack import MAX_STATES, cheapest

# 8-CPU instances at $0.384/h; shapes (2 CPUs, 3 CPUs): the maximal mixes.
EIGHT_CPU = [(0, 384_000, (4, 0)), (0, 384_000, (2, 1)), (0, 384_000, (1, 2))]
# ... plus a 2-CPU instance at $0.096/h holding one of the first shape.
WITH_SMALL = EIGHT_CPU + [(1, 96_000, (1, 0))]


@pytest.mark.parametrize("demand, options, at_most, expected_cost, expected_instances", [
    ((6, 5), [(0, 384_000, (0, 2)), (0, 384_000, (2, 1)), (0, 384_000, (3, 0))], 10**9, 1_536_000, 4),
    ((4, 0), EIGHT_CPU, 10**9, 384_000, 1),
    ((5, 0), WITH_SMALL, 10**9, 480_000, 2),  # one large and one small, not two large
    ((1, 0), WITH_SMALL, 10**9, 96_000, 1),
    ((2, 2), EIGHT_CPU, 10**9, 768_000, 2),
], ids=["pairs-of-3-cpu-are-not-forced", "one-full", "the-rest-on-a-small-one", "only-a-small-one", "two-mixes"])
def test_the_cheapest_instances_hold_every_pod(demand, options, at_most, expected_cost, expected_instances):
    packing = cheapest(demand, options, at_most)
    assert packing is not None
    price_of = {index: price for index, price, _ in options}  # one price per group here
    held = [sum(pattern[shape] for _, pattern in packing) for shape in range(len(demand))]
    assert held == list(demand)  # the last instances are cut to what is left: no pod twice
    assert len(packing) == expected_instances
    assert sum(price_of[index] for index, _ in packing) == expected_cost
    # Each instance holds one of its group's mixes, or less of it (the last ones).
    assert all(any(index == group and all(a <= b for a, b in zip(pattern, full, strict=True))
                   for group, _, full in options) for index, pattern in packing)


def test_nothing_when_the_cheapest_costs_more_than_allowed():
    assert cheapest((6, 5), [(0, 384_000, (0, 2)), (0, 384_000, (2, 1)), (0, 384_000, (3, 0))], 1_535_999) is None


def test_the_search_gives_up_past_its_budget_instead_of_running_long():
    # Four shapes of 30 pods each, one pod an instance: 31**4 states, far past the budget.
    options = [(0, 1, tuple(1 if i == shape else 0 for i in range(4))) for shape in range(4)]
    assert 31 ** 4 > MAX_STATES
    assert cheapest((30, 30, 30, 30), options, 10**9) is None
