"""Why a group was chosen and why one took no pod: values the stages record, text only at the end
(reasons.py)."""
from __future__ import annotations

import pytest

from autoscaler.decide.reasons import (
    AtMaxSize,
    Candidate,
    CheaperThanNext,
    FitsOnlySome,
    LeastWaste,
    NoCheaperChoice,
    OnlyInTier,
    PackedExactly,
    PlansCompared,
    Refusal,
    TakeAll,
    UnpromisedDomain,
    UnpromisedZone,
    describe_choice,
    describe_not_taken,
    follows_price,
)

BIG = Candidate(1, "m5.4xlarge", "big", 0.768)


@pytest.mark.parametrize("choice, text", [
    pytest.param(CheaperThanNext(BIG, 10, 10), "against $0.77/h for 1 m5.4xlarge of big (next candidate)", id="cheaper"),
    pytest.param(CheaperThanNext(BIG, 10, 4), "against $0.77/h for 1 m5.4xlarge of big (next candidate, which would take "
                                              "about 4 of the 10 pods)", id="cheaper-takes-fewer"),
    pytest.param(OnlyInTier(), "the only group of its tier that takes them", id="only"),
    pytest.param(LeastWaste(True, None), "no known price, so chosen by least waste: it leaves the least room unused; "
                                         "the only group of its tier that takes them", id="least-waste-unpriced"),
    pytest.param(NoCheaperChoice(3), "for 3 pods no cheaper choice took", id="sweep"),
    pytest.param(TakeAll.SEED, "all it can take", id="seed"),
    pytest.param(PlansCompared(4, False, 0.5, 0.75), "$0.50/h in all against $0.75/h for the next plan of 4 compared",
                 id="plans-compared"),
    pytest.param(PackedExactly(4, 1.5, 1.92), "the tier's 4 new instances packed exactly: $1.50/h in all against "
                                              "$1.92/h by first fit", id="packed-exactly"),
])
def test_choice_text(choice, text):
    assert describe_choice(choice) == text


def test_only_a_price_comparison_reads_on_from_the_groups_own_price():
    assert follows_price((CheaperThanNext(BIG, 1, 1), OnlyInTier()))
    assert not follows_price((OnlyInTier(), CheaperThanNext(BIG, 1, 1)))
    assert not follows_price(())


@pytest.mark.parametrize("reason, text", [
    pytest.param(Refusal.TIMED_OUT, "timed out after a failed launch", id="timed-out"),
    pytest.param(AtMaxSize(3), "at max size 3", id="max-size"),
    pytest.param(FitsOnlySome(("m5.xlarge",), ("m5.large", "m5.xlarge"), "", "m5.large"),
                 "fits only m5.xlarge of its overrides m5.large, m5.xlarge, and AWS may launch any of them", id="overrides"),
    pytest.param(UnpromisedZone(("a", "b")), "spans zones a, b and cannot promise the zone its volumes or node affinity "
                                             "need (AWS picks the zone of a new instance)", id="zonal-volume"),
    pytest.param(UnpromisedDomain(("a", "b"), ("topology.kubernetes.io/zone",)),
                 "spans zones a, b and cannot promise a zone for its pod affinity, anti-affinity or topology spread by zone",
                 id="zone-rules"),
    pytest.param(UnpromisedDomain((), ("rack",)), "its nodes carry no label rack known in advance, which its pod affinity, "
                                                  "anti-affinity or topology spread counts by", id="other-key"),
])
def test_refusal_text(reason, text):
    assert describe_not_taken(reason) == text
