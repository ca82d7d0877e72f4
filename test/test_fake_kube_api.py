"""The fake Kubernetes API server, through the official client, raw HTTP and real kubectl.

The fake is only worth something if real clients accept it, so most tests go through
``kubernetes.client`` over HTTP; kubectl proves it speaks the real protocol.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timezone

import pytest
import requests
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from autoscaler.fakes.kube_api import FakeKubeApi
from autoscaler.fakes.kube_objects import make_node, make_pdb, make_pod
from autoscaler.fakes.kube_resources import KubeApiError

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@pytest.fixture
def api():
    with FakeKubeApi() as fake:
        yield fake


@pytest.fixture
def kubeconfig(api, tmp_path):
    return api.write_kubeconfig(tmp_path / "kubeconfig")


@pytest.fixture
def api_client(kubeconfig):
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
def core(api_client):
    return client.CoreV1Api(api_client)


@pytest.fixture
def policy(api_client):
    return client.PolicyV1Api(api_client)


@pytest.fixture
def coordination(api_client):
    return client.CoordinationV1Api(api_client)


def error_body(error: ApiException) -> dict:
    return json.loads(error.body)


def assert_status(error: ApiException, code: int, reason: str) -> dict:
    body = error_body(error)
    assert error.status == code
    assert (body["kind"], body["apiVersion"], body["status"], body["reason"], body["code"]) == \
        ("Status", "v1", "Failure", reason, code)
    assert body["message"]
    return body


def eviction(name: str, namespace: str = "default") -> client.V1Eviction:
    return client.V1Eviction(api_version="policy/v1", kind="Eviction",
                             metadata=client.V1ObjectMeta(name=name, namespace=namespace))


# -- create, get, list -------------------------------------------------------------------------

def test_create_sets_server_fields_and_get_returns_the_object(api, core):
    created = core.create_node(make_node("n1", provider_id="aws:///us-east-1a/i-1"))
    second = core.create_namespaced_pod("default", make_pod("p1"))

    assert created.metadata.uid and created.metadata.creation_timestamp is not None
    assert created.metadata.generation == 1
    assert int(second.metadata.resource_version) > int(created.metadata.resource_version)
    assert second.status.phase == "Pending"
    read = core.read_node("n1")
    assert (read.metadata.uid, read.spec.provider_id) == (created.metadata.uid, "aws:///us-east-1a/i-1")
    assert api.get("Node", "n1")["metadata"]["uid"] == created.metadata.uid


def test_create_of_an_existing_name_is_already_exists(core):
    core.create_node(make_node("n1"))
    with pytest.raises(ApiException) as raised:
        core.create_node(make_node("n1"))
    body = assert_status(raised.value, 409, "AlreadyExists")
    assert body["message"] == 'nodes "n1" already exists'


def test_missing_object_and_missing_namespace_are_not_found(core):
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod("nope", "default")
    assert assert_status(raised.value, 404, "NotFound")["message"] == 'pods "nope" not found'
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod("batch", make_pod("p1", namespace="batch"))
    assert assert_status(raised.value, 404, "NotFound")["message"] == 'namespaces "batch" not found'


def test_generate_name_gets_a_unique_suffix(core):
    body = make_pod("ignored")
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "job-"
    names = {core.create_namespaced_pod("default", body).metadata.name for _ in range(3)}
    assert len(names) == 3 and all(n.startswith("job-") and len(n) == 9 for n in names)


def seed_selector_pods(api):
    api.add(make_pod("web-1", labels={"app": "web", "tier": "front"}, node_name="n1", phase="Running"))
    api.add(make_pod("web-2", labels={"app": "web"}, node_name="n2", phase="Running"))
    api.add(make_pod("db-1", labels={"app": "db", "tier": "back"}, node_name="n1", phase="Running"))
    api.add(make_pod("job-1", namespace="batch", labels={"app": "job"}))
    api.add(make_pod("bare", namespace="batch", phase="Succeeded", node_name="n2"))


@pytest.mark.parametrize("selector, expected", [
    ("app=web", ["web-1", "web-2"]),
    ("app==web", ["web-1", "web-2"]),
    ("app!=web", ["bare", "db-1", "job-1"]),
    ("app in (db, job)", ["db-1", "job-1"]),
    ("app notin (db,job)", ["bare", "web-1", "web-2"]),
    ("tier", ["db-1", "web-1"]),
    ("!tier", ["bare", "job-1", "web-2"]),
    ("app=web,tier=front", ["web-1"]),
    ("app in (web,db),!tier", ["web-2"]),
    ("", ["bare", "db-1", "job-1", "web-1", "web-2"]),
], ids=["equals", "double-equals", "not-equals", "in", "notin", "exists", "not-exists",
        "and", "set-and-not-exists", "empty"])
def test_label_selector(api, core, selector, expected):
    seed_selector_pods(api)
    listed = core.list_pod_for_all_namespaces(label_selector=selector)
    assert sorted(p.metadata.name for p in listed.items) == expected
    assert listed.kind == "PodList" and listed.api_version == "v1"


@pytest.mark.parametrize("selector, namespace, expected", [
    ("spec.nodeName=n1", None, ["db-1", "web-1"]),
    ("spec.nodeName==n2,status.phase=Running", None, ["web-2"]),
    ("spec.nodeName=", None, ["job-1"]),
    ("status.phase!=Running", None, ["bare", "job-1"]),
    ("metadata.namespace=batch", None, ["bare", "job-1"]),
    ("metadata.name=web-1", None, ["web-1"]),
    ("spec.nodeName=n2", "batch", ["bare"]),
], ids=["node", "node-and-phase", "unscheduled", "phase-not", "namespace-field", "name", "in-namespace"])
def test_field_selector(api, core, selector, namespace, expected):
    seed_selector_pods(api)
    if namespace:
        listed = core.list_namespaced_pod(namespace, field_selector=selector)
    else:
        listed = core.list_pod_for_all_namespaces(field_selector=selector)
    assert sorted(p.metadata.name for p in listed.items) == expected


@pytest.mark.parametrize("kwargs", [
    {"label_selector": "app in (web"},
    {"label_selector": "app=we b"},
    {"field_selector": "spec.hostname=x"},
    {"field_selector": "nonsense"},
], ids=["unclosed-set", "space-in-value", "unsupported-field", "no-operator"])
def test_bad_selector_is_bad_request(core, kwargs):
    with pytest.raises(ApiException) as raised:
        core.list_pod_for_all_namespaces(**kwargs)
    assert_status(raised.value, 400, "BadRequest")


def test_node_field_selector_on_unschedulable(api, core):
    api.add(make_node("n1"))
    api.add(make_node("n2", unschedulable=True))
    assert [n.metadata.name for n in core.list_node(field_selector="spec.unschedulable=false").items] == ["n1"]
    assert [n.metadata.name for n in core.list_node(field_selector="spec.unschedulable=true").items] == ["n2"]


def test_pagination_returns_every_item_once_in_pages(api, core):
    for index in range(1203):
        api.add(make_pod(f"p{index:04d}", namespace=f"ns{index % 3}", node_name=f"n{index % 2}"))
    names, pages, token = [], 0, None
    while True:
        page = core.list_pod_for_all_namespaces(limit=500, _continue=token)
        names += [p.metadata.name for p in page.items]
        pages += 1
        assert page.metadata.resource_version
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3 and len(names) == len(set(names)) == 1203

    selected, token = [], None
    while True:
        page = core.list_namespaced_pod("ns1", field_selector="spec.nodeName=n0", limit=100, _continue=token)
        selected += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    expected = sorted(f"p{i:04d}" for i in range(1203) if i % 3 == 1 and i % 2 == 0)
    assert selected == expected


def test_a_forged_continue_token_is_bad_request(core):
    with pytest.raises(ApiException) as raised:
        core.list_pod_for_all_namespaces(limit=1, _continue="not-a-token")
    assert_status(raised.value, 400, "BadRequest")


# -- writes ------------------------------------------------------------------------------------

def test_cordon_patch_is_a_strategic_merge_and_keeps_the_rest(api, core):
    api.add(make_node("n1", labels={"keep": "me"}, taints=["dedicated=gpu:NoSchedule"]))
    before = api.get("nodes", "n1")

    core.patch_node("n1", {"spec": {"unschedulable": True}, "metadata": {"labels": {"added": "x"}}},
                    _content_type=STRATEGIC)

    node = api.get("nodes", "n1")
    assert node["spec"]["unschedulable"] is True
    assert node["spec"]["taints"] == [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]
    assert node["metadata"]["labels"]["keep"] == "me" and node["metadata"]["labels"]["added"] == "x"
    assert node["metadata"]["generation"] == 2
    assert int(node["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])


def test_strategic_merge_merges_taints_by_key_and_merge_patch_replaces_them(api, core):
    api.add(make_node("n1", taints=["a=1:NoSchedule", "b=2:NoSchedule"]))
    core.patch_node("n1", {"spec": {"taints": [{"key": "b", "value": "3", "effect": "NoExecute"},
                                               {"key": "c", "effect": "NoSchedule"}]}},
                    _content_type=STRATEGIC)
    assert [(t["key"], t.get("value")) for t in api.get("nodes", "n1")["spec"]["taints"]] == \
        [("a", "1"), ("b", "3"), ("c", None)]

    core.patch_node("n1", {"spec": {"taints": [{"key": "c", "$patch": "delete"}]}}, _content_type=STRATEGIC)
    assert [t["key"] for t in api.get("nodes", "n1")["spec"]["taints"]] == ["a", "b"]

    core.patch_node("n1", {"spec": {"taints": [{"key": "z", "effect": "NoSchedule"}]}}, _content_type=MERGE)
    assert [t["key"] for t in api.get("nodes", "n1")["spec"]["taints"]] == ["z"]


def test_merge_patch_null_removes_an_annotation(api, core):
    api.add(make_node("n1", annotations={"idle-since": "2024-01-01T00:00:00Z", "other": "x"}))
    core.patch_node("n1", {"metadata": {"annotations": {"idle-since": None}}}, _content_type=MERGE)
    assert api.get("nodes", "n1")["metadata"]["annotations"] == {"other": "x"}


def test_json_patch_operations_and_a_failed_test(api, core):
    api.add(make_node("n1", labels={"old": "1"}))
    core.patch_node("n1", [
        {"op": "test", "path": "/metadata/labels/old", "value": "1"},
        {"op": "add", "path": "/metadata/labels/new~1label", "value": "2"},
        {"op": "add", "path": "/spec/unschedulable", "value": False},
        {"op": "replace", "path": "/spec/unschedulable", "value": True},
        {"op": "remove", "path": "/metadata/labels/old"},
    ])
    node = api.get("nodes", "n1")
    assert node["metadata"]["labels"]["new/label"] == "2" and "old" not in node["metadata"]["labels"]
    assert node["spec"]["unschedulable"] is True

    with pytest.raises(ApiException) as raised:
        core.patch_node("n1", [{"op": "test", "path": "/spec/unschedulable", "value": False},
                               {"op": "remove", "path": "/spec/unschedulable"}])
    assert_status(raised.value, 422, "Invalid")
    assert api.get("nodes", "n1")["spec"]["unschedulable"] is True


def test_patch_with_a_stale_resource_version_conflicts(api, core):
    api.add(make_node("n1"))
    stale = api.get("nodes", "n1")["metadata"]["resourceVersion"]
    core.patch_node("n1", {"spec": {"unschedulable": True}}, _content_type=MERGE)
    with pytest.raises(ApiException) as raised:
        core.patch_node("n1", {"metadata": {"resourceVersion": stale}, "spec": {"unschedulable": False}},
                        _content_type=MERGE)
    assert_status(raised.value, 409, "Conflict")


def test_replace_checks_the_resource_version(api, core):
    api.add(make_node("n1"))
    node = core.read_node("n1")
    node.metadata.labels["first"] = "writer"
    core.replace_node("n1", node)  # carries the current resourceVersion: accepted

    node.metadata.labels["second"] = "writer"  # same, now stale, resourceVersion
    with pytest.raises(ApiException) as raised:
        core.replace_node("n1", node)
    body = assert_status(raised.value, 409, "Conflict")
    assert "the object has been modified" in body["message"]
    assert "second" not in api.get("nodes", "n1")["metadata"]["labels"]


def test_main_resource_writes_keep_status_and_status_writes_keep_spec(api, core):
    api.add(make_pod("p1", node_name="n1", phase="Pending"))
    core.patch_namespaced_pod("p1", "default", {"status": {"phase": "Failed"}, "spec": {"priority": 5}},
                              _content_type=MERGE)
    pod = api.get("pods", "p1")
    assert (pod["status"]["phase"], pod["spec"]["priority"]) == ("Pending", 5)

    core.patch_namespaced_pod_status("p1", "default", {"status": {"phase": "Running"}, "spec": {"priority": 9}},
                                     _content_type=MERGE)
    pod = api.get("pods", "p1")
    assert (pod["status"]["phase"], pod["spec"]["priority"]) == ("Running", 5)


def test_delete_returns_the_object_then_it_is_gone(api, core):
    api.add(make_pod("p1"))
    core.delete_namespaced_pod("p1", "default", body=client.V1DeleteOptions(grace_period_seconds=0))
    assert api.get("pods", "p1") is None
    with pytest.raises(ApiException) as raised:
        core.delete_namespaced_pod("p1", "default")
    assert_status(raised.value, 404, "NotFound")


def test_delete_precondition_on_uid(api, core):
    api.add(make_pod("p1"))
    with pytest.raises(ApiException) as raised:
        core.delete_namespaced_pod("p1", "default", body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(uid="someone-else")))
    assert_status(raised.value, 409, "Conflict")
    assert api.get("pods", "p1") is not None


def test_deleting_a_namespace_deletes_its_objects(api, core):
    api.add(make_pod("p1", namespace="batch"))
    api.add(make_pod("p2"))
    core.delete_namespace("batch")
    assert [p["metadata"]["name"] for p in api.list("pods")] == ["p2"]


def test_binding_assigns_a_node_once(api, core):
    api.add(make_pod("p1"))
    binding = client.V1Binding(metadata=client.V1ObjectMeta(name="p1"),
                               target=client.V1ObjectReference(kind="Node", name="n1"))
    # Like the real server, the answer is a Status, which the client cannot read as a V1Binding.
    response = core.create_namespaced_pod_binding("p1", "default", binding, _preload_content=False)
    assert (response.status, json.loads(response.data)["status"]) == (201, "Success")
    assert api.get("pods", "p1")["spec"]["nodeName"] == "n1"
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod_binding("p1", "default", binding, _preload_content=False)
    assert_status(raised.value, 409, "Conflict")


def test_lease_create_and_update(coordination):
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    lease = client.V1Lease(metadata=client.V1ObjectMeta(name="autoscaler", namespace="kube-system"),
                           spec=client.V1LeaseSpec(holder_identity="a", lease_duration_seconds=15,
                                                   acquire_time=now, renew_time=now))
    created = coordination.create_namespaced_lease("kube-system", lease)
    created.spec.holder_identity = "b"
    updated = coordination.replace_namespaced_lease("autoscaler", "kube-system", created)
    assert updated.spec.holder_identity == "b" and updated.spec.renew_time == now

    created.spec.holder_identity = "c"  # a contender holding the old resourceVersion loses
    with pytest.raises(ApiException) as raised:
        coordination.replace_namespaced_lease("autoscaler", "kube-system", created)
    assert_status(raised.value, 409, "Conflict")
    assert coordination.read_namespaced_lease("autoscaler", "kube-system").spec.holder_identity == "b"


# -- eviction and PodDisruptionBudgets ---------------------------------------------------------

def test_eviction_without_a_budget_deletes_the_pod(api, core):
    api.add(make_pod("p1", node_name="n1", phase="Running"))
    core.create_namespaced_pod_eviction("p1", "default", eviction("p1"))
    assert api.get("pods", "p1") is None
    assert ("POST", "/api/v1/namespaces/default/pods/p1/eviction") in \
        [(r.method, r.path) for r in api.mutating_requests()]


def test_eviction_of_a_missing_pod_is_not_found(core):
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod_eviction("gone", "default", eviction("gone"))
    assert_status(raised.value, 404, "NotFound")


def seed_budget_pods(api, budget, phases=("Running", "Running", "Running"), terminating=0):
    for index, phase in enumerate(phases):
        api.add(make_pod(f"w{index}", labels={"app": "w"}, node_name="n1", phase=phase,
                         deletion_timestamp="2024-01-01T00:00:00Z" if index < terminating else None))
    api.add(make_pod("other", labels={"app": "other"}, node_name="n1", phase="Running"))
    api.add(budget)


@pytest.mark.parametrize("budget, phases, terminating, victim, allowed", [
    (make_pdb("b", match_labels={"app": "w"}, min_available=2), ("Running",) * 3, 0, "w2", True),
    (make_pdb("b", match_labels={"app": "w"}, min_available=3), ("Running",) * 3, 0, "w2", False),
    (make_pdb("b", match_labels={"app": "w"}, min_available="50%"), ("Running",) * 3, 0, "w2", True),
    (make_pdb("b", match_labels={"app": "w"}, min_available="100%"), ("Running",) * 3, 0, "w2", False),
    (make_pdb("b", match_labels={"app": "w"}, max_unavailable=0), ("Running",) * 3, 0, "w2", False),
    (make_pdb("b", match_labels={"app": "w"}, max_unavailable=1), ("Running",) * 3, 0, "w2", True),
    (make_pdb("b", match_labels={"app": "w"}, max_unavailable="34%"), ("Running",) * 3, 0, "w2", True),
    (make_pdb("b", match_labels={"app": "w"}, max_unavailable="33%"), ("Running",) * 3, 0, "w2", True),
    (make_pdb("b", match_labels={"app": "w"}, min_available=2), ("Running",) * 3, 1, "w2", False),
    (make_pdb("b", match_labels={"app": "w"}, min_available=2), ("Running", "Pending", "Running"), 0, "w2", False),
    (make_pdb("b", match_labels={"app": "w"}, min_available=3), ("Running", "Pending", "Running"), 0, "w1", True),
    (make_pdb("b", match_labels={"app": "w"}, min_available=3), ("Running",) * 3, 0, "other", True),
    (make_pdb("b", match_expressions=[{"key": "app", "operator": "In", "values": ["w", "x"]}],
              min_available=3), ("Running",) * 3, 0, "w0", False),
    (make_pdb("b", match_expressions=[{"key": "app", "operator": "NotIn", "values": ["w"]}],
              min_available=1), ("Running",) * 3, 0, "other", False),
], ids=["min-int-room", "min-int-full", "min-percent-room", "min-percent-full", "max-zero",
        "max-one", "max-percent-rounds-up", "max-percent-33-rounds-up-to-one", "terminating-not-healthy",
        "pending-not-healthy", "pending-victim-ignores-budget", "unmatched-pod", "expression-in",
        "expression-notin"])
def test_eviction_honours_the_disruption_budget(api, core, budget, phases, terminating, victim, allowed):
    seed_budget_pods(api, budget, phases, terminating)
    if allowed:
        core.create_namespaced_pod_eviction(victim, "default", eviction(victim))
        assert api.get("pods", victim) is None
    else:
        with pytest.raises(ApiException) as raised:
            core.create_namespaced_pod_eviction(victim, "default", eviction(victim))
        body = assert_status(raised.value, 429, "TooManyRequests")
        assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
        assert body["details"]["causes"][0]["reason"] == "DisruptionBudget"
        assert api.get("pods", victim) is not None


def test_eviction_of_a_pod_under_two_budgets_is_refused(api, core, policy):
    seed_budget_pods(api, make_pdb("b1", match_labels={"app": "w"}, max_unavailable=3))
    policy.create_namespaced_pod_disruption_budget(
        "default", make_pdb("b2", match_labels={"app": "w"}, max_unavailable=3))
    assert [b.metadata.name for b in policy.list_namespaced_pod_disruption_budget("default").items] == ["b1", "b2"]
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_pod_eviction("w0", "default", eviction("w0"))
    assert_status(raised.value, 500, "InternalError")


# -- strictness, discovery, faults -------------------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("GET", "/api/v1/widgets"),
    ("GET", "/apis/nope/v1"),
    ("GET", "/api/v2"),
    ("GET", "/api/v1/pods/p1"),
    ("GET", "/api/v1/namespaces/default/pods/p1/logs"),
    ("GET", "/openapi/v2"),
], ids=["unknown-resource", "unknown-group", "unknown-version", "namespaced-without-namespace",
        "unknown-subresource", "openapi"])
def test_unknown_paths_are_not_found(api, method, path):
    response = requests.request(method, api.url + path, timeout=5)
    assert response.status_code == 404
    assert response.json()["reason"] == "NotFound" and response.json()["kind"] == "Status"


def test_unknown_path_through_the_client(api_client):
    response = api_client.call_api(*api_client.param_serialize("GET", "/api/v1/widgets"))
    response.read()
    assert response.status == 404 and json.loads(response.data)["reason"] == "NotFound"


@pytest.mark.parametrize("method, path, content_type, body", [
    ("POST", "/api/v1/namespaces/default/pods", "application/json", b"{not json"),
    ("POST", "/api/v1/namespaces/default/pods", "application/json", b""),
    ("PUT", "/api/v1/nodes/n1", "application/json", b"[1, 2]"),
    ("PATCH", "/api/v1/nodes/n1", MERGE, b"{\"spec\": "),
    ("PATCH", "/api/v1/nodes/n1", JSON_PATCH, b"{\"op\": \"add\"}"),
    ("POST", "/api/v1/namespaces/default/pods", "application/json", b"{\"kind\": \"Node\"}"),
    ("POST", "/api/v1/namespaces/default/pods/p1/eviction", "application/json", b"{\"kind\": \"Pod\"}"),
], ids=["malformed", "empty", "not-an-object", "truncated-patch", "json-patch-not-a-list",
        "wrong-kind", "eviction-wrong-kind"])
def test_bad_bodies_are_bad_request(api, method, path, content_type, body):
    api.add(make_node("n1"))
    api.add(make_pod("p1"))
    response = requests.request(method, api.url + path, data=body, timeout=5,
                                headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert response.json()["reason"] == "BadRequest"


def test_unsupported_patch_type_and_watch_are_refused_without_hanging(api):
    api.add(make_node("n1"))
    response = requests.patch(api.url + "/api/v1/nodes/n1", data=b"spec: {}", timeout=5,
                              headers={"Content-Type": "application/apply-patch+yaml"})
    assert response.status_code == 415
    response = requests.get(api.url + "/api/v1/pods?watch=true", timeout=5)
    assert (response.status_code, response.json()["reason"]) == (405, "MethodNotAllowed")


def test_discovery_advertises_eviction_as_a_policy_subresource(api):
    resources = {r["name"]: r for r in requests.get(api.url + "/api/v1", timeout=5).json()["resources"]}
    assert (resources["pods/eviction"]["kind"], resources["pods/eviction"]["group"],
            resources["pods/eviction"]["version"]) == ("Eviction", "policy", "v1")
    assert resources["nodes"]["namespaced"] is False and "no" in resources["nodes"]["shortNames"]
    groups = requests.get(api.url + "/apis", timeout=5).json()
    assert {"policy", "coordination.k8s.io"} <= {g["name"] for g in groups["groups"]}
    policy = requests.get(api.url + "/apis/policy/v1", timeout=5).json()
    assert [r["name"] for r in policy["resources"]] == ["poddisruptionbudgets", "poddisruptionbudgets/status"]
    assert requests.get(api.url + "/version", timeout=5).json()["major"] == "1"


def test_fault_injection_fails_matching_requests_then_recovers(api, core):
    api.add(make_node("n1"))
    api.fail_next("GET", r"^/api/v1/nodes$", status=503, count=2)
    for _ in range(2):
        with pytest.raises(ApiException) as raised:
            core.list_node()
        assert_status(raised.value, 503, "ServiceUnavailable")
    core.read_node("n1")  # another path: unaffected
    assert [n.metadata.name for n in core.list_node().items] == ["n1"]
    assert [r.path for r in api.requests].count("/api/v1/nodes") == 3


def test_fault_injection_on_writes_leaves_the_store_alone(api, core):
    api.add(make_node("n1"))
    api.fail_next("patch", r"/nodes/n1", status=500)
    with pytest.raises(ApiException) as raised:
        core.patch_node("n1", {"spec": {"unschedulable": True}}, _content_type=STRATEGIC)
    assert_status(raised.value, 500, "InternalError")
    assert "unschedulable" not in api.get("nodes", "n1")["spec"]


def test_retry_after_fault_is_retried_by_a_client_that_honours_it(api, kubeconfig):
    api.add(make_node("n1"))
    api.fail_next("GET", r"/api/v1/nodes/n1", status=429, retry_after_seconds=0)
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    configuration.client_go_retries = True  # opt-in client-go behaviour: retry reads on Retry-After
    with client.ApiClient(configuration) as retrying_client:
        assert client.CoreV1Api(retrying_client).read_node("n1").metadata.name == "n1"
    assert [r.path for r in api.requests] == ["/api/v1/nodes/n1"] * 2


def test_reads_are_not_mutating_requests(api, core):
    api.add(make_node("n1"))
    core.list_node()
    core.read_node("n1")
    core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")
    assert api.mutating_requests() == [] and len(api.requests) == 3
    core.patch_node("n1", {"spec": {"unschedulable": True}}, _content_type=STRATEGIC)
    assert [(r.method, r.path) for r in api.mutating_requests()] == [("PATCH", "/api/v1/nodes/n1")]
    api.clear_requests()
    assert api.requests == []


# -- Python API --------------------------------------------------------------------------------

def test_python_api_round_trip():
    moments = iter([datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)] * 10)
    api = FakeKubeApi(clock=lambda: next(moments))  # no HTTP server needed
    pod = api.add(make_pod("p1", namespace="batch", labels={"app": "a"}))
    assert pod["metadata"]["creationTimestamp"] == "2024-05-01T12:00:00Z"
    assert api.get("namespaces", "batch") is not None  # made on demand
    with pytest.raises(KubeApiError) as raised:
        api.add(make_pod("p1", namespace="batch"))
    assert raised.value.code == 409

    pod["metadata"]["labels"]["app"] = "mutated-copy"
    assert api.get("Pod", "p1", "batch")["metadata"]["labels"]["app"] == "a"

    def run(draft):
        draft["status"]["phase"] = "Running"
        draft["spec"]["nodeName"] = "n1"

    updated = api.update("po", "p1", "batch", run)
    assert (updated["status"]["phase"], updated["metadata"]["generation"]) == ("Running", 2)
    assert [p["metadata"]["name"] for p in api.list("pods", field_selector="status.phase=Running")] == ["p1"]
    assert api.list("pods", namespace="default") == []

    api.put(make_node("n1", cpu="2"))
    api.put(make_node("n1", cpu="8"))
    assert api.get("nodes", "n1")["status"]["allocatable"]["cpu"] == "8"
    api.put(make_pod("q", phase="Running"))
    api.put(make_pod("q", phase="Succeeded"))
    assert api.get("pods", "q", "default")["status"]["phase"] == "Succeeded"
    assert api.delete("pods", "p1", "batch")["metadata"]["name"] == "p1"
    assert api.delete("pods", "p1", "batch") is None
    with pytest.raises(KeyError):
        api.get("widgets", "w")


# -- real kubectl ------------------------------------------------------------------------------

def run_kubectl(kubeconfig, cache_dir, *args) -> subprocess.CompletedProcess:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    env = {**os.environ, "KUBECACHEDIR": str(cache_dir)}
    return subprocess.run([kubectl, "--kubeconfig", str(kubeconfig), "--request-timeout=10s", *args],
                          capture_output=True, text=True, env=env, timeout=60)


def test_kubectl_get_nodes_and_cordon(api, kubeconfig, tmp_path):
    api.add(make_node("node-a"))
    api.add(make_node("node-b"))
    listed = run_kubectl(kubeconfig, tmp_path / "cache", "get", "nodes")
    assert listed.returncode == 0, listed.stderr
    assert "node-a" in listed.stdout and "node-b" in listed.stdout

    cordoned = run_kubectl(kubeconfig, tmp_path / "cache", "cordon", "node-a")
    assert cordoned.returncode == 0, cordoned.stderr
    assert api.get("nodes", "node-a")["spec"]["unschedulable"] is True
    assert "unschedulable" not in api.get("nodes", "node-b")["spec"]


def test_kubectl_drain_evicts_through_the_eviction_subresource(api, kubeconfig, tmp_path):
    api.add(make_node("node-a"))
    api.add({"apiVersion": "apps/v1", "kind": "DaemonSet",
             "metadata": {"name": "agent", "namespace": "kube-system"},
             "spec": {"selector": {"matchLabels": {"app": "agent"}}}})
    api.add(make_pod("worker", node_name="node-a", phase="Running", owner_kind="ReplicaSet"))
    api.add(make_pod("loner", namespace="batch", node_name="node-a", phase="Running"))
    api.add(make_pod("agent-x", namespace="kube-system", node_name="node-a", phase="Running",
                     owner_kind="DaemonSet", owner_name="agent"))
    api.add(make_pod("elsewhere", node_name="node-b", phase="Running"))

    drained = run_kubectl(kubeconfig, tmp_path / "cache", "drain", "node-a", "--ignore-daemonsets", "--force")

    assert drained.returncode == 0, drained.stderr
    assert api.get("nodes", "node-a")["spec"]["unschedulable"] is True
    evictions = sorted(r.path for r in api.mutating_requests() if r.method == "POST")
    assert evictions == ["/api/v1/namespaces/batch/pods/loner/eviction",
                         "/api/v1/namespaces/default/pods/worker/eviction"]
    assert sorted(p["metadata"]["name"] for p in api.list("pods")) == ["agent-x", "elsewhere"]
