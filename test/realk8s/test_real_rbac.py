"""deploy/base's RBAC against the requests the autoscaler really makes, as the API server's audit
log records them: no request refused (a missing rule fails the test and names the rule) and no
rule granted that a production-like run does not use.

Both directions are shown twice: on audit events (a manifest with a rule removed, one with a rule
added) and on the real server (the eviction rule removed, the drain refused).
"""
from __future__ import annotations

import copy
import pathlib

import pytest
from daemon_process import poll
from deploy_manifests import apply
from rbac_audit import EVERY_AUTHENTICATED_USER, Access, describe_refusals, granted, read_audit_log, refused, requests_of, unused
from workloads import CLUSTER, REGION, budget, job, with_claim, zonal_volume

USER = "system:serviceaccount:kube-system:autoscaler"
# Granted and needed, but no test run can use it: the autoscaler counts a repeated Event again
# (PATCH count) only after act/events.py's REPEAT_SECONDS (300 s) in one process, longer than any
# run here; test/test_events.py covers that PATCH against the fake API server.
UNUSED_IN_A_TEST_RUN = {Access("", "events", "patch")}


def audit_event(verb: str, resource: str, code: int = 200, group: str = "", subresource: str = "", user: str = USER) -> dict:
    ref = {"resource": resource, "apiGroup": group, **({"subresource": subresource} if subresource else {})}
    return {"kind": "Event", "stage": "ResponseComplete", "verb": verb, "user": {"username": user}, "objectRef": ref,
            "requestURI": f"/api/v1/{resource}" + (f"/x/{subresource}" if subresource else ""),
            "responseStatus": {"code": code}}


# The autoscaler's requests in one run of the production-like scenario below, as the audit log
# recorded them (fields the checks read; rerun the test and copy its window of audit.log to refresh).
RUN = read_audit_log(pathlib.Path(__file__).parent / "data" / "production-like-run.audit.jsonl")
OTHER_USERS_REFUSAL = audit_event("list", "secrets", 403, user="someone-else")


def rbac(manifests: list[dict]) -> list[dict]:
    return [doc for doc in manifests if doc["kind"] in ("ClusterRole", "Role")]


def without_rule(manifests: list[dict], resource: str) -> list[dict]:
    changed = copy.deepcopy(manifests)
    for document in changed:
        if document["kind"] in ("ClusterRole", "Role"):
            document["rules"] = [rule for rule in document["rules"] if resource not in rule["resources"]]
    return changed


def test_a_run_the_manifests_allow_is_neither_refused_nor_given_more_than_it_uses(deploy_base):
    requests = list(requests_of([*RUN, OTHER_USERS_REFUSAL], USER))
    assert refused(requests) == []
    assert unused(granted(rbac(deploy_base)), requests) == UNUSED_IN_A_TEST_RUN


def test_a_rule_removed_from_the_manifests_is_named_by_the_request_that_needed_it(deploy_base):
    # The server would refuse the drain's eviction under the smaller manifest:
    manifests = without_rule(rbac(deploy_base), "pods/eviction")
    assert Access("", "pods/eviction", "create") not in granted(manifests)
    refusals = refused(requests_of([*RUN, audit_event("create", "pods", 403, subresource="eviction")], USER))
    assert describe_refusals(refusals).splitlines() == [
        "  missing rule: create pods/eviction (refused: CREATE /api/v1/pods/x/eviction)"]
    # and, without the rule, the recorded run's evictions are what the manifest no longer covers:
    assert unused(granted(manifests), requests_of(RUN, USER)) == UNUSED_IN_A_TEST_RUN
    needed = {r.access for r in requests_of(RUN, USER)} - EVERY_AUTHENTICATED_USER
    assert needed - granted(manifests) == {Access("", "pods/eviction", "create")}


def test_a_rule_added_to_the_manifests_is_reported_unused(deploy_base):
    manifests = copy.deepcopy(rbac(deploy_base))
    manifests[0]["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]})
    manifests[0]["rules"].append({"apiGroups": ["apps"], "resources": ["daemonsets"], "verbs": ["delete"]})
    assert unused(granted(manifests), requests_of(RUN, USER)) - UNUSED_IN_A_TEST_RUN == {
        Access("", "secrets", "get"), Access("", "secrets", "list"), Access("apps", "daemonsets", "delete")}


# ---- on the real server --------------------------------------------------------------------

FAST = ("--sleep", "1", "--idle-threshold", "2", "--type-idle-threshold", "0", "--instance-init-time", "120",
        "--over-provision", "0", "--max-scale-in-fraction", "1", "--drain-utilization", "0.5")


@pytest.fixture
def restore_rbac(deploy_base, kube):
    yield
    apply(kube, deploy_base)


def test_a_production_like_run_uses_every_rule_and_is_refused_nothing(deploy_base, real, kubelets, autoscalers):
    """Scale up, a drain that one eviction gets through and a budget refuses, an idle node's
    termination and Node deletion, Events, leader election, a pending pod's claim, volume and
    class, the DaemonSets: the rules of deploy/base, each used."""
    real.aws.create_group(REGION, "workers", CLUSTER, instance_type="m5.xlarge", max_size=10)
    # An idle node from the start, tainted so no test pod lands on it: it is cordoned, terminated, deleted.
    real.aws.create_group(REGION, "spare", CLUSTER, instance_type="m5.large", desired=1, max_size=10,
                          tags={"k8s.io/cluster-autoscaler/node-template/taint/dedicated": "spare:NoSchedule"})
    real.create(job("batch", parallelism=2, cpu="1", run_seconds=4))
    real.create(job("loose", cpu="300m", run_seconds=3600, started_ago=7200))  # past the drain's hour of grace
    real.create(job("guarded", cpu="300m", run_seconds=3600, started_ago=7200, labels={"app": "guarded"}))
    real.create(budget("guarded", {"app": "guarded"}, min_available=1))
    # A pending pod with a claim: the claim, its class and the volumes it may bind to are read.
    for body in zonal_volume("data", f"{REGION}a"):
        real.create(body)
    real.create(job("db", cpu="300m", run_seconds=4, **with_claim("data")))

    daemon = autoscalers.start(*FAST, "--leader-elect")
    poll(lambda: not real.instances("spare"), 90, "the idle spare instance terminated")
    poll(lambda: any(r.access == Access("", "pods/eviction", "create") and r.code == 429 for r in autoscalers.requests()),
         120, "the budget to refuse an eviction")
    poll(lambda: any(r.access == Access("", "pods/eviction", "create") and r.code == 201 for r in autoscalers.requests()),
         30, "an eviction let through")
    assert daemon.terminate() == 0, daemon.log()
    requests = autoscalers.requests()
    assert refused(requests) == [], describe_refusals(refused(requests))
    assert unused(granted(rbac(deploy_base)), requests) == UNUSED_IN_A_TEST_RUN


def test_a_drain_under_a_manifest_without_the_eviction_rule_is_refused_and_reported(
        deploy_base, kube, restore_rbac, real, kubelets, autoscalers):
    apply(kube, without_rule(rbac(deploy_base), "pods/eviction"))
    real.aws.create_group(REGION, "workers", CLUSTER, instance_type="m5.xlarge", desired=1, max_size=10)
    poll(lambda: real.nodes(), 30, "the node")
    real.create(job("loose", cpu="300m", run_seconds=3600, started_ago=7200))
    poll(lambda: any(p["status"].get("phase") == "Running" for p in real.pods()), 30, "the job running")

    autoscalers.expect_refusals = True
    log = autoscalers.run_once(*FAST, exit_code=1)  # --once fails when an action failed
    assert "lacks this permission" in log
    refusals = refused(autoscalers.requests())
    assert {r.access for r in refusals} == {Access("", "pods/eviction", "create")}
    # What every other test's teardown would have failed with:
    with pytest.raises(AssertionError, match=r"refused the autoscaler .*\n\s+missing rule: create pods/eviction \(refused: "
                                             rf"CREATE /api/v1/namespaces/{real.namespace}/pods/loose-\w+/eviction\)"):
        autoscalers.check_refusals()
    assert any(p["status"].get("phase") == "Running" for p in real.pods())  # nothing was evicted
