"""Stage 6 of scale up: the plans as actions, and why each pod left over was not taken.

Pure. One SetDesiredCapacity per group that gets new instances: to ``max(desired, nodes) + new
instances + over-provision`` (never lower, never above max size), naming the pods, the group and
why that group; one notice per placement of pods nothing takes, and one for infeasible pods.
"""
from __future__ import annotations

from typing import Mapping, Sequence, cast

from ..model.objects import ZONE_LABEL, Placement, Pod, Resources
from ..model.plan import Notify, SetDesiredCapacity
from ..model.text import named_list
from .group_plan import GroupPlan
from .ledger import Waiting
from .offers import Offer, describe_price
from .pending_shapes import PodShape
from .placement_rules import placement_matches, unpromised_zone
from .reasons import (
    AtMaxSize,
    FitsOnlySome,
    MaxSizeTaken,
    NotTaken,
    Refusal,
    TooSmall,
    UnpromisedDomain,
    UnpromisedZone,
    describe_choice,
    describe_not_taken,
    follows_price,
)

MAX_PODS_IN_ACTION = 20  # pod keys an action carries; the count says the rest
MAX_PODS_NAMED = 5  # pod keys a notification names
MAX_GROUPS_NAMED = 5


def named(pods: Sequence[Pod]) -> str:
    return named_list([pod.key for pod in pods[:MAX_PODS_NAMED]], MAX_PODS_NAMED, total=len(pods))


def hand_out(plans: Sequence[GroupPlan], first_free: Mapping[PodShape, int]) -> dict[tuple[str, str], tuple[list[Pod], list[Pod]]]:
    """``pods_by_group`` for shapes whose members from ``first_free`` on wait (a plan made on its own)."""
    return pods_by_group(plans, {shape: shape.pods[start:] for shape, start in first_free.items()})


def pods_by_group(plans: Sequence[GroupPlan], waiting: Waiting) -> dict[tuple[str, str], tuple[list[Pod], list[Pod]]]:
    """Group key -> (pods on its booting instances, pods on its new ones), each in key order: a
    shape's waiting pods are handed out in plan order."""
    cursor: dict[PodShape, int] = {}
    out: dict[tuple[str, str], tuple[list[Pod], list[Pod]]] = {}
    for plan in plans:
        booting: list[Pod] = []
        new: list[Pod] = []
        for entry in plan.bins.entries:
            if entry.closed:
                continue
            for packed, copies in entry.contents.items():
                shape = cast(PodShape, packed).origin  # bins hold a stage's (or a trial's) copies of the shapes
                start = cursor.get(shape, 0)
                cursor[shape] = start + copies
                (booting if entry.booting else new).extend(waiting[shape][start:start + copies])
        if booting or new:
            booting.sort(key=lambda pod: (pod.namespace, pod.name))
            new.sort(key=lambda pod: (pod.namespace, pod.name))
            out[plan.offer.key] = (booting, new)
    return out


def _placements(pods: Sequence[Pod]) -> str:
    described = sorted({pod.placement.describe() for pod in pods})
    return named_list(described, 3, separator=" ")


def raises(plans: Sequence[GroupPlan], pods_of: Mapping[tuple[str, str], tuple[list[Pod], list[Pod]]],
           extra: Mapping[tuple[str, str], int]) -> list[SetDesiredCapacity]:
    actions = []
    for plan in plans:
        offer = plan.offer
        group = offer.group
        if plan.new <= 0:
            continue
        booting, new = pods_of.get(offer.key, ([], []))
        more = extra.get(offer.key, 0)
        target = max(group.desired, min(group.max_size, max(group.desired, offer.nodes) + plan.new + more))
        if target <= group.desired:
            continue
        over_note = f" (+{more} over-provision)" if more else ""
        capped = f", reaching max size {group.max_size}" if plan.room - more <= 0 else ""
        reason = (f"{len(new)} pending pods {_placements(new)} ({named(new)}) need {plan.new} new "
                  f"{offer.instance_name()} instances{over_note}{capped}")
        own = f"{describe_price(offer.price * plan.new)} for {plan.new} {offer.instance_name()}" if offer.price is not None else ""
        choices = tuple(dict.fromkeys(plan.notes))
        why = "; ".join(describe_choice(choice) for choice in choices)
        if own or why:
            joint = " " if follows_price(choices) else "; "
            reason += ": " + joint.join(part for part in (own, why) if part)
        if booting:
            reason += f"; {offer.booting} booting instance(s) take {len(booting)} more"
        actions.append(SetDesiredCapacity(group.name, group.region, target, group.desired, reason,
                                          tuple(pod.key for pod in new[:MAX_PODS_IN_ACTION]), len(new)))
    return actions


def matching_offers(placement: Placement, offers: Sequence[Offer]) -> list[Offer]:
    """The groups the placement matches, and those spanning zones that would match in one of
    them (they cannot promise it: the notice says so)."""
    return [offer for offer in offers if placement_matches(placement, offer.group.labels, offer.group.taints)
            or unpromised_zone(placement, offer.group)]


def why_not_taken(shape: PodShape, candidates: Sequence[Offer], plans: Mapping[tuple[str, str], GroupPlan]) -> str:
    """Why none of the groups its placement matches took a pod of this shape (notice and Event)."""
    if not candidates:
        return "no managed group's nodes would match its node selector, node affinity and tolerations"
    reasons = [f"{offer.group.describe()}: {describe_not_taken(why_not(shape, offer, plans.get(offer.key)))}"
               for offer in candidates[:MAX_GROUPS_NAMED]]
    return (f"none of the {len(candidates)} matching groups could take it: "
            + named_list(reasons, MAX_GROUPS_NAMED, total=len(candidates), separator="; "))


def _zones(group_zones: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(set(group_zones)))


def why_not(shape: PodShape, offer: Offer, plan: "GroupPlan | None") -> NotTaken:
    """Why this group (its placement matches, or would in a zone it cannot promise) took no pod
    of the shape."""
    group = offer.group
    requests = shape.requests
    if unpromised_zone(shape.placement, group):
        return UnpromisedZone(_zones(group.zones))
    missing = tuple(sorted(shape.domain_keys.difference(group.labels)))
    if missing:
        spans = missing == (ZONE_LABEL,) and len(set(group.zones)) > 1
        return UnpromisedDomain(_zones(group.zones) if spans else (), missing)
    if offer.timed_out:
        return Refusal.TIMED_OUT
    if offer.planned is None:
        return Refusal.NO_LAUNCH_SETTINGS
    if not requests.fits_in(offer.planned.capacity):
        fitting = tuple(option.instance_type for option in group.shapes if requests.fits_in(option.capacity))
        if not fitting:
            return TooSmall(offer.planned.capacity)
        overrides = tuple(option.instance_type for option in group.shapes)
        strategy = group.allocation_strategy if offer.determined else ""
        return FitsOnlySome(fitting, overrides, strategy, offer.planned.instance_type)
    if group.desired >= group.max_size and offer.booting == 0:
        return AtMaxSize(group.max_size)
    if plan is not None and plan.room <= 0:
        return MaxSizeTaken(group.max_size)
    if shape.rules and not shape.has_terms:
        return Refusal.INTER_POD_RULES
    return Refusal.ANTI_AFFINITY


def failure_notices(left: Waiting, offers: Sequence[Offer],
                    plans: Mapping[tuple[str, str], GroupPlan]) -> tuple[list[Notify], dict[str, str]]:
    """One notice per placement of the pods nothing takes (``left``), and pod key -> why."""
    by_placement: dict[Placement, list[tuple[PodShape, Sequence[Pod]]]] = {}
    for shape, pods in left.items():
        by_placement.setdefault(shape.placement, []).append((shape, pods))
    notices = []
    reasons: dict[str, str] = {}
    for placement in sorted(by_placement, key=repr):
        group_pods: list[Pod] = []
        first_why = ""
        candidates = matching_offers(placement, offers)
        for shape, pods in by_placement[placement]:
            why = why_not_taken(shape, candidates, plans)
            first_why = first_why or why
            for pod in pods:
                reasons[pod.key] = why
            group_pods.extend(pods)
        group_pods.sort(key=lambda pod: (pod.namespace, pod.name))
        notices.append(Notify("scale-up-failed", (
            f"failed to scale up for {len(group_pods)} pending pods {placement.describe()}: {first_why}: "
            f"{named(group_pods)}"), pods=tuple(pod.key for pod in group_pods)))
    return notices, reasons


def infeasible_notice(infeasible: Sequence[tuple[Pod, Resources]]) -> list[Notify]:
    if not infeasible:
        return []
    pods = [pod for pod, _ in infeasible]
    detail = named_list([f"{pod.key} requests {pod.requests.describe()}, largest {capacity.describe() or 'nothing: no group matches'}"
                         for pod, capacity in infeasible[:MAX_PODS_NAMED]], MAX_PODS_NAMED, total=len(pods), separator="; ")
    return [Notify("infeasible-pods", f"{len(pods)} pending pods fit no instance type their placement allows and no node "
                                      f"they match: {detail}", pods=tuple(pod.key for pod in pods))]
