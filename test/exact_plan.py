"""The cheapest set of new instances that runs given pending pods, found exactly with OR-tools'
CP-SAT solver (a test-only dependency): the yardstick the planner's $/h is measured against.

Small worlds only (tens of pods, a few groups): one boolean per (pod, group, instance) and per
(group, instance), instances of a group used in order.
"""
from __future__ import annotations

from typing import Optional, Sequence

from ortools.sat.python import cp_model

from autoscaler.decide.scheduling import placement_matches
from autoscaler.model.objects import Group, Pod

PRICE_SCALE = 100_000  # $/h as integers for the solver


def cheapest_cost(pods: Sequence[Pod], groups: Sequence[Group], at_most: Optional[float] = None,
                  seconds: float = 10.0) -> Optional[float]:
    """$/h of the cheapest new instances (each group's single type, at most max size - desired
    of them) that run every pod, or None when none does (or the solver ran out of time without
    an answer). Each group's price is its shape's hourly price. ``at_most``: a cost known to be
    reachable (the planner's), which bounds how many instances of each group are worth trying."""
    if not pods:
        return 0.0
    # Identical pods are one integer count per instance: far fewer symmetric solutions to rule out.
    kinds: dict[tuple[object, ...], int] = {}
    for pod in pods:
        key = (pod.requests, pod.placement)
        kinds[key] = kinds.get(key, 0) + 1
    shapes = list(kinds.items())
    names = sorted({name for pod in pods for name in pod.requests.names()})
    model = cp_model.CpModel()
    where: dict[int, list[cp_model.IntVar]] = {index: [] for index in range(len(shapes))}
    cost = []
    for g, group in enumerate(groups):
        shape = group.shapes[0]
        compatible = [index for index, ((requests, placement), _) in enumerate(shapes)
                      if placement_matches(placement, group.labels, group.taints) and requests.fits_in(shape.capacity)]
        count = min(max(0, group.max_size - group.desired), sum(shapes[index][1] for index in compatible))
        if at_most is not None and shape.hourly_price:
            count = min(count, int(at_most / shape.hourly_price + 1e-9))
        previous = None
        for b in range(count):
            used = model.NewBoolVar(f"use_{g}_{b}")
            if previous is not None:
                model.Add(used <= previous)
            previous = used
            cost.append(int(round((shape.hourly_price or 0.0) * PRICE_SCALE)) * used)
            placed = {index: model.NewIntVar(0, shapes[index][1], f"x_{index}_{g}_{b}") for index in compatible}
            for index, variable in placed.items():
                model.Add(variable <= shapes[index][1] * used)
                where[index].append(variable)
            for name in names:
                model.Add(sum(shapes[index][0][0].get(name) * variable for index, variable in placed.items())  # type: ignore[attr-defined]
                          <= shape.capacity.get(name))
    for index, options in where.items():
        if not options:
            return None
        model.Add(sum(options) == shapes[index][1])
    model.Minimize(sum(cost))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = seconds
    solver.parameters.num_workers = 2
    status = solver.Solve(model)
    if status != cp_model.OPTIMAL:
        return None
    return solver.ObjectiveValue() / PRICE_SCALE
