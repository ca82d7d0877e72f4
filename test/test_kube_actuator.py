"""kube_actuator against the fake API server over real HTTP, and the dispatcher applying scale-in
actions with the real Kubernetes and AWS actuators (fake API server, moto behind FakeAws)."""
import logging

import pytest
from kubernetes import client as kube_client
from silent_server import DrippingServer, SilentServer
from slack_capture import SlackCapture

from autoscaler.act import kube_actuator
from autoscaler.model import plan as p
from autoscaler.act.actuator import Actuator
from autoscaler.act.aws_actuator import AwsActuator
from autoscaler.read.aws_reader import AwsClients
from autoscaler.model.config import Settings
from autoscaler.fakes.kube_objects import make_node, make_pdb, make_pod
from autoscaler.act.kube_actuator import EvictionRefused, KubeActuator
from autoscaler.clients import kube_connect
from autoscaler.clients.kube_connect import BoundedApiClient, connect
from autoscaler.clients.kube_errors import KubeError, KubeUnreachable
from autoscaler.model.objects import CORDONED_BY_AUTOSCALER_LABEL, LAST_BUSY_ANNOTATION
from autoscaler.act.notifier import SlackNotifier

REGION = "us-west-2"


@pytest.fixture
def kube(fake_kube):
    return KubeActuator(connect(fake_kube.kubeconfig))


def node_of(fake_kube, name):
    return fake_kube.get("Node", name)


def labels_of(fake_kube, name):
    return node_of(fake_kube, name)["metadata"].get("labels") or {}


def running_pod(name, labels=None, node="n1"):
    return make_pod(name, node_name=node, phase="Running", owner_kind="Job", labels=labels or {"job": name})


# ---- node writes: merge patches, never replace -------------------------------------------------

def test_cordon_marks_the_node_as_cordoned_by_the_autoscaler(fake_kube, kube):
    fake_kube.add(make_node("n1", labels={"team": "a"}))
    kube.cordon("n1")
    node = node_of(fake_kube, "n1")
    assert node["spec"]["unschedulable"] is True
    assert labels_of(fake_kube, "n1")[CORDONED_BY_AUTOSCALER_LABEL] == "true"
    assert labels_of(fake_kube, "n1")["team"] == "a"  # a patch keeps what it does not name


def test_uncordon_removes_the_label_and_the_cordon(fake_kube, kube):
    fake_kube.add(make_node("n1", unschedulable=True, labels={CORDONED_BY_AUTOSCALER_LABEL: "true", "team": "a"}))
    kube.uncordon("n1")
    assert not node_of(fake_kube, "n1")["spec"].get("unschedulable")
    assert CORDONED_BY_AUTOSCALER_LABEL not in labels_of(fake_kube, "n1")
    assert labels_of(fake_kube, "n1")["team"] == "a"


def test_annotate_sets_one_annotation_and_keeps_the_others(fake_kube, kube):
    fake_kube.add(make_node("n1", annotations={"someone/else": "x"}))
    kube.annotate("n1", LAST_BUSY_ANNOTATION, "2026-11-27T10:00:00Z")
    annotations = node_of(fake_kube, "n1")["metadata"]["annotations"]
    assert annotations == {"someone/else": "x", LAST_BUSY_ANNOTATION: "2026-11-27T10:00:00Z"}


def test_node_writes_are_patches_so_a_heartbeat_in_between_cannot_conflict(fake_kube, kube):
    fake_kube.add(make_node("n1"))
    # A kubelet heartbeat bumps the resourceVersion between our read and our write.
    fake_kube.update("Node", "n1", None, lambda node: node["metadata"].setdefault("labels", {}).update(beat="1"))
    fake_kube.clear_requests()
    kube.cordon("n1")
    kube.annotate("n1", LAST_BUSY_ANNOTATION, "2026-11-27T10:00:00Z")
    kube.uncordon("n1")
    assert [(r.method, r.path) for r in fake_kube.mutating_requests()] == [("PATCH", "/api/v1/nodes/n1")] * 3


def test_a_refused_node_write_is_a_kube_error_naming_the_permission(fake_kube, kube):
    fake_kube.add(make_node("n1"))
    fake_kube.fail_next("PATCH", r"/api/v1/nodes/n1$", status=403)
    with pytest.raises(KubeError) as raised:
        kube.cordon("n1")
    assert raised.value.status == 403 and "cordon node n1" in str(raised.value) and "permission" in str(raised.value)


def test_delete_node_reports_whether_it_was_there(fake_kube, kube):
    fake_kube.add(make_node("n1"))
    assert kube.delete_node("n1") is True
    assert node_of(fake_kube, "n1") is None
    assert kube.delete_node("n1") is False  # 404: already gone is done


# ---- eviction: PodDisruptionBudgets hold --------------------------------------------------------

def test_eviction_allowed_removes_the_pod(fake_kube, kube):
    fake_kube.add(running_pod("job-1"))
    assert kube.evict("default", "job-1") is True
    assert fake_kube.get("Pod", "job-1", "default") is None
    assert [(r.method, r.path) for r in fake_kube.mutating_requests()][-1] == \
        ("POST", "/api/v1/namespaces/default/pods/job-1/eviction")


def test_eviction_allowed_by_a_budget_with_room(fake_kube, kube):
    fake_kube.add(running_pod("job-1", {"app": "train"}))
    fake_kube.add(running_pod("job-2", {"app": "train"}, node="n2"))
    fake_kube.add(make_pdb("train", match_labels={"app": "train"}, min_available=1))
    assert kube.evict("default", "job-1") is True
    assert fake_kube.get("Pod", "job-1", "default") is None


def test_eviction_refused_by_a_budget_is_eviction_refused_and_the_pod_stays(fake_kube, kube):
    fake_kube.add(running_pod("job-1", {"app": "train"}))
    fake_kube.add(make_pdb("train", match_labels={"app": "train"}, min_available=1))
    with pytest.raises(EvictionRefused) as raised:
        kube.evict("default", "job-1")
    assert raised.value.status == 429
    assert fake_kube.get("Pod", "job-1", "default") is not None


def test_eviction_of_a_pod_already_gone_is_done(fake_kube, kube):
    assert kube.evict("default", "finished-and-deleted") is False


def test_other_eviction_failures_are_errors_not_refusals(fake_kube, kube):
    fake_kube.add(running_pod("job-1"))
    fake_kube.fail_next("POST", r"/eviction$", status=500)
    with pytest.raises(KubeError) as raised:
        kube.evict("default", "job-1")
    assert not isinstance(raised.value, EvictionRefused) and raised.value.status == 500


# ---- the dispatcher with the real actuators -----------------------------------------------------

@pytest.fixture
def aws_env(fake_aws, monkeypatch):
    for name, value in fake_aws.env().items():
        monkeypatch.setenv(name, value)
    return fake_aws


@pytest.fixture
def slack():
    capture = SlackCapture()
    yield capture
    capture.close()


def group_instances(fake_aws, name="workers"):
    group = fake_aws.client("autoscaling", REGION).describe_auto_scaling_groups(AutoScalingGroupNames=[name])
    group = group["AutoScalingGroups"][0]
    return group["DesiredCapacity"], sorted(i["InstanceId"] for i in group["Instances"])


def real_actuator(fake_kube, slack_url=None, dry_run=False):
    aws = AwsActuator(AwsClients(Settings(cluster_name="batch", regions=(REGION,))))
    return Actuator(aws, KubeActuator(connect(fake_kube.kubeconfig)), SlackNotifier(slack_url), dry_run)


def scale_in_plan(instance_ids):
    """What scale_down plans for idle nodes cordoned a loop ago: terminate each, then tell Slack."""
    terminations = tuple(p.TerminateInstance(instance_id, "workers", REGION, True, "idle-unschedulable", node=f"node-{i}")
                         for i, instance_id in enumerate(instance_ids))
    return terminations + (p.Notify("nodes-terminated", f"terminating {len(terminations)} instance(s)"),)


def test_terminations_lower_desired_and_delete_each_node_after_its_instance(aws_env, fake_kube, slack):
    aws_env.create_group(REGION, "workers", "batch", desired=3)
    _, instance_ids = group_instances(aws_env)
    for i in range(3):
        fake_kube.add(make_node(f"node-{i}", provider_id=f"aws:///{REGION}a/{instance_ids[i]}"))
    result = real_actuator(fake_kube, slack.url).apply(scale_in_plan(instance_ids[:2]))
    assert result.cloud_errors == 0 and result.applied[p.TerminateInstance] == 2
    assert group_instances(aws_env) == (1, instance_ids[2:])
    assert [n["metadata"]["name"] for n in fake_kube.list("Node")] == ["node-2"]
    assert slack.messages == ["terminating 2 instance(s)"]


def test_a_failed_termination_keeps_its_node_and_does_not_stop_the_next(aws_env, fake_kube, caplog):
    aws_env.create_group(REGION, "workers", "batch", desired=3)
    _, instance_ids = group_instances(aws_env)
    for i in range(3):
        fake_kube.add(make_node(f"node-{i}", provider_id=f"aws:///{REGION}a/{instance_ids[i]}"))
    aws_env.inject_faults("TerminateInstanceInAutoScalingGroup", count=1, status=400, code="ValidationError",
                          message="Instance is in a transitional state")
    with caplog.at_level(logging.ERROR):
        result = real_actuator(fake_kube).apply(scale_in_plan(instance_ids[:2]))
    assert result.failed[p.TerminateInstance] == 1 and result.applied[p.TerminateInstance] == 1
    assert f"failed to terminate instance {instance_ids[0]}" in caplog.text
    desired, left = group_instances(aws_env)
    assert desired == 2 and left == [instance_ids[0], instance_ids[2]]
    # The Node of the instance that is still there stays; the other one's is gone.
    assert [n["metadata"]["name"] for n in fake_kube.list("Node")] == ["node-0", "node-2"]


def test_drain_actions_evict_retry_on_refusal_and_tell_slack(fake_kube, slack, caplog):
    fake_kube.add(make_node("n1"))
    fake_kube.add(running_pod("job-1", {"app": "train"}))
    fake_kube.add(running_pod("job-2", {"app": "serve"}))
    fake_kube.add(make_pdb("serve", match_labels={"app": "serve"}, min_available=1))
    drain = (
        p.Cordon("n1", "under-utilized-drainable"),
        p.EvictPod("default", "job-1", "n1", "under-utilized-drainable"),
        p.EvictPod("default", "job-2", "n1", "under-utilized-drainable"),
        p.EvictPod("default", "gone", "n1", "under-utilized-drainable"),
        p.Notify("drained", "draining node n1: evicting default/job-1, default/job-2"),
    )
    with caplog.at_level(logging.INFO):
        result = real_actuator(fake_kube, slack.url).apply(drain)
    # The refusal is not a cloud error: the loop does not back off, it retries next time.
    assert result.cloud_errors == 0 and result.failed[p.EvictPod] == 1 and result.applied[p.EvictPod] == 2
    assert "eviction refused, will retry next loop" in caplog.text
    assert fake_kube.get("Pod", "job-1", "default") is None
    assert fake_kube.get("Pod", "job-2", "default") is not None
    assert node_of(fake_kube, "n1")["spec"]["unschedulable"] is True  # stays cordoned
    assert slack.messages == ["draining node n1: evicting default/job-1, default/job-2"]


def test_dry_run_scale_in_changes_nothing(aws_env, fake_kube, slack):
    aws_env.create_group(REGION, "workers", "batch", desired=2)
    _, instance_ids = group_instances(aws_env)
    fake_kube.add(make_node("node-0", provider_id=f"aws:///{REGION}a/{instance_ids[0]}"))
    fake_kube.add(running_pod("job-1", node="node-0"))
    aws_env.clear_calls()
    fake_kube.clear_requests()
    plan = (p.Cordon("node-0", "idle"), p.EvictPod("default", "job-1", "node-0", "drain"),
            p.AnnotateNode("node-0", LAST_BUSY_ANNOTATION, "2026-11-27T10:00:00Z", "busy")) + scale_in_plan(instance_ids[:1])
    result = real_actuator(fake_kube, slack.url, dry_run=True).apply(plan)
    assert sum(result.applied.values()) == len(plan)
    assert aws_env.mutating_calls() == [] and fake_kube.mutating_requests() == [] and slack.messages == []
    assert group_instances(aws_env) == (2, instance_ids)


# ---- a server that never answers ----------------------------------------------------------------

WRITES = {
    "cordon": lambda k: k.cordon("n1"),
    "uncordon": lambda k: k.uncordon("n1"),
    "annotate": lambda k: k.annotate("n1", LAST_BUSY_ANNOTATION, "2026-11-27T10:00:00Z"),
    "evict": lambda k: k.evict("default", "job"),
    "delete-node": lambda k: k.delete_node("n1"),
}


# Silent: the read timeout ends the call; dripping its answer: the call's total deadline does.
SERVERS = {
    "never-answers": (SilentServer, (1, 0.2), "timed out"),
    "drips-its-answer": (DrippingServer, (1, 2), "timed out: no complete answer within 1 s"),
}


@pytest.mark.parametrize("write", WRITES.values(), ids=WRITES.keys())
@pytest.mark.parametrize("server_kind, timeout, says", SERVERS.values(), ids=SERVERS.keys())
def test_a_write_to_a_server_that_never_finishes_its_answer_times_out(write, server_kind, timeout, says, monkeypatch):
    monkeypatch.setattr(kube_actuator, "WRITE_REQUEST_TIMEOUT", timeout)  # (connect, read)
    monkeypatch.setattr(kube_connect, "CALL_DEADLINE_SECONDS", 1)
    with server_kind() as server:
        api_client = BoundedApiClient(kube_client.Configuration(host=server.url))
        with pytest.raises(KubeUnreachable, match=says):
            write(KubeActuator(api_client))
