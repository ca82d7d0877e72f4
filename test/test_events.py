"""Kubernetes Events: which events a loop makes (bounded, deduplicated, with the reason), how they
are posted and counted again, and that a failure to post never fails anything."""
from datetime import datetime, timedelta

import pytest

from autoscaler.model import plan as p
from autoscaler.decide.decision import Decision, decide
from autoscaler.act.events import (
    COMPONENT, MAX_PODS_NOT_TRIGGERED, MAX_PODS_PER_SCALE_UP, ClusterEvent, EventRecorder, events_for_loop,
)
from autoscaler.fakes.kube_objects import make_node as make_kube_node, make_pod as make_kube_pod
from autoscaler.decide.group_health import GroupHealthState
from autoscaler.clients.kube_connect import connect
from autoscaler.decide.scale_up import ScaleUpResult, plan_scale_up
from builders import NOW, make_group, make_pod, make_snapshot
from loop_stubs import RecordingAdapter, StubWorld, make_loop, make_settings


def decided(snapshot):
    """Decide, and pretend every action was applied."""
    decision = decide(snapshot, make_settings(), NOW, GroupHealthState())
    return events_for_loop(snapshot, decision, decision.actions)


def reasons(events):
    return sorted((event.kind, event.name, event.reason) for event in events)


def test_scale_up_names_the_pods_with_group_and_size():
    pods = [make_pod(f"job-{i}", cpu="3") for i in range(2)]
    events = decided(make_snapshot(pods=pods, groups=[make_group("workers", max_size=10)]))
    assert reasons(events) == [("Pod", "job-0", "TriggeredScaleUp"), ("Pod", "job-1", "TriggeredScaleUp")]
    assert events[0].type == "Normal" and events[0].namespace == "default"
    assert events[0].message.startswith("pod triggered scale-up: group workers (us-west-2) from 0 to 2 instances (max 10): "
                                        "2 pending pods {any node} (default/job-0, default/job-1) need 2 new m5.xlarge instances")


def test_scale_up_names_a_bounded_number_of_pods():
    pods = [make_pod(f"job-{i:03}", cpu="3") for i in range(300)]
    events = decided(make_snapshot(pods=pods, groups=[make_group("workers", max_size=1000)]))
    assert len(events) == MAX_PODS_PER_SCALE_UP
    assert {event.reason for event in events} == {"TriggeredScaleUp"}


def test_a_failed_scale_up_makes_no_triggered_event():
    snapshot = make_snapshot(pods=[make_pod("job", cpu="3")], groups=[make_group("workers")])
    decision = decide(snapshot, make_settings(), NOW, GroupHealthState())
    assert events_for_loop(snapshot, decision, applied=[]) == []


def test_an_infeasible_pod_is_told_why():
    events = decided(make_snapshot(pods=[make_pod("huge", cpu="64")], groups=[make_group("workers")]))
    assert reasons(events) == [("Pod", "huge", "NotTriggerScaleUp")]
    assert events[0].type == "Warning"
    assert "fits no instance type its placement allows" in events[0].message
    assert "cpu=64" in events[0].message and "largest it could get: cpu=4" in events[0].message


GPU_POOL = {"pool": "gpu"}
# name -> (groups, timed out group names, text the NotTriggerScaleUp message must hold)
NOT_TRIGGERED_CASES = {
    "timed-out": ([make_group("gpu-a", labels=GPU_POOL)], {"gpu-a"}, "gpu-a (us-west-2): timed out after a failed launch"),
    "full": ([make_group("gpu-a", labels=GPU_POOL, max_size=0)], set(), "gpu-a (us-west-2): at max size 0"),
    "no-launch-settings": ([make_group("gpu-a", labels=GPU_POOL, shapes=())], set(), "launch settings could not be read"),
    "every-group-out": ([make_group("gpu-a", labels=GPU_POOL), make_group("gpu-b", labels=GPU_POOL, max_size=0)],
                        {"gpu-a"}, "none of the 2 matching groups could take it: gpu-a (us-west-2): timed out"),
}


@pytest.mark.parametrize("groups, timed_out, expected", NOT_TRIGGERED_CASES.values(), ids=NOT_TRIGGERED_CASES.keys())
def test_a_pod_no_group_could_take_is_told_why(groups, timed_out, expected):
    pod = make_pod("job", cpu="1", selector=GPU_POOL)
    snapshot = make_snapshot(pods=[pod], groups=groups)
    keys = frozenset(g.key for g in groups if g.name in timed_out)
    up = plan_scale_up(snapshot, make_settings(), NOW, timed_out=keys)
    decision = Decision(up.actions, GroupHealthState(), scale_up=up, timed_out=keys)
    [event] = events_for_loop(snapshot, decision, [])
    assert (event.reason, event.type) == ("NotTriggerScaleUp", "Warning")
    assert expected in event.message


def test_a_triggered_scale_up_says_why_that_group():
    events = decided(make_snapshot(pods=[make_pod("job", cpu="3")], groups=[make_group("workers")]))
    [event] = events
    assert "1 pending pods {any node} (default/job) need 1 new m5.xlarge instances" in event.message


def test_ten_thousand_unserved_pods_make_a_bounded_number_of_events():
    pods = tuple(make_pod(f"job-{i:05}", cpu="1", selector=GPU_POOL) for i in range(10_000))
    snapshot = make_snapshot(pods=pods, groups=[make_group("gpu-a", labels=GPU_POOL)])
    decision = Decision((), GroupHealthState(), scale_up=ScaleUpResult(unaccounted=pods),
                        timed_out=frozenset({("us-west-2", "gpu-a")}))
    events = events_for_loop(snapshot, decision, [])
    assert len(events) == MAX_PODS_NOT_TRIGGERED


def test_node_events_say_what_the_autoscaler_did_and_why():
    applied = [
        p.Cordon("n1", "idle-schedulable: idle for 3600 s"),
        p.EvictPod("default", "a", "n2", "under-utilized-drainable: 10% used"),
        p.EvictPod("default", "b", "n2", "under-utilized-drainable: 10% used"),
        p.TerminateInstance("i-3", "workers", "us-west-2", True, "idle-unschedulable: drained", node="n3"),
        p.TerminateInstance("i-4", "workers", "us-west-2", False, "never became a node"),  # no Node to tell
        p.DeleteNode("n5", "instance-terminated: instance is gone"),
        p.Uncordon("n6", "pod-pending: pending pods fit"),
        p.Cordon("n1", "same node twice in one loop"),
    ]
    events = events_for_loop(make_snapshot(), Decision((), GroupHealthState()), applied)
    assert reasons(events) == [
        ("Node", "n1", "CordonedByAutoscaler"), ("Node", "n2", "DrainedByAutoscaler"),
        ("Node", "n3", "TerminatedByAutoscaler"), ("Node", "n5", "DeletedByAutoscaler"),
        ("Node", "n6", "UncordonedByAutoscaler"),
    ]
    by_node = {event.name: event for event in events}
    assert by_node["n1"].message == "cordoned by the autoscaler: idle-schedulable: idle for 3600 s"
    assert "evicted 2 pod(s) (default/a, default/b)" in by_node["n2"].message
    assert "instance i-3 of workers (us-west-2)" in by_node["n3"].message


def test_a_blocked_drain_and_a_failed_termination_are_warnings_on_their_nodes():
    refused = [p.EvictPod("default", f"job-{i}", "n1", "under-utilized-drainable: 10% used") for i in range(7)]
    failed = [
        (p.TerminateInstance("i-2", "workers", "us-west-2", True, "idle-unschedulable: idle", node="n2"),
         RuntimeError("terminating instance i-2 (us-west-2): AccessDenied")),
        (p.DeleteNode("n3", "instance-terminated: instance is gone"), RuntimeError("delete node n3: HTTP 403")),
        # Not scale in, or no Node to tell: no warning.
        (p.TerminateInstance("i-4", "workers", "us-west-2", False, "never became a node"), RuntimeError("denied")),
        (p.Cordon("n5", "idle-schedulable: idle"), RuntimeError("patch failed")),
    ]
    events = events_for_loop(make_snapshot(), Decision((), GroupHealthState()), [], failed=failed, refused=refused)
    assert reasons(events) == [("Node", "n1", "DrainBlocked"), ("Node", "n2", "ScaleDownFailed"),
                               ("Node", "n3", "ScaleDownFailed")]
    assert all(event.type == "Warning" for event in events)
    by_node = {event.name: event for event in events}
    assert "PodDisruptionBudget refused the eviction of 7 pod(s) (default/job-0" in by_node["n1"].message
    assert "and 2 more" in by_node["n1"].message
    assert "terminating its instance i-2 of workers (us-west-2) failed" in by_node["n2"].message
    assert "AccessDenied" in by_node["n2"].message
    assert "deleting the node object failed" in by_node["n3"].message


def test_a_loop_whose_drain_is_refused_posts_a_warning_on_the_node(fake_kube):
    """The real loop, actuator and recorder: the fake API server gets the Warning Event."""
    from dataclasses import replace

    from autoscaler.act.kube_actuator import EvictionRefused
    from builders import make_group_nodes

    group, nodes = make_group_nodes(make_group("workers"), 2, created=NOW - timedelta(hours=3))
    pods = [replace(make_pod(f"job-{i}", cpu="100m", node=nodes[0].name), scheduled_at=NOW - timedelta(hours=3))
            for i in range(2)]
    pods.append(replace(make_pod("busy", cpu="3", node=nodes[1].name), scheduled_at=NOW - timedelta(hours=3)))
    kube = RecordingAdapter(fail={"evict": EvictionRefused("evict pod: HTTP 429 TooManyRequests", 429)})
    loop = make_loop(StubWorld(make_snapshot(pods=pods, nodes=nodes, groups=[group])),
                     make_settings(drain_utilization=0.5), kube=kube, events=recorder_for(fake_kube))
    assert loop.run_once().ok
    warnings = [event for event in fake_kube.list("events", namespace="default") if event["type"] == "Warning"]
    assert [(event["involvedObject"]["name"], event["reason"]) for event in warnings] == [(nodes[0].name, "DrainBlocked")]
    assert "default/job-0, default/job-1" in warnings[0]["message"]


# ---- posting ------------------------------------------------------------------------------------

def moment(text):
    # The client re-renders RFC 3339 times (+00:00 for Z); compare instants, not spellings.
    return datetime.fromisoformat(text)


def recorder_for(fake_kube, **options):
    return EventRecorder(connect(fake_kube.kubeconfig), host="test-host", **options)


def test_events_are_core_v1_events_with_source_and_counts(fake_kube):
    fake_kube.add(make_kube_pod("job-1"))
    uid = fake_kube.get("Pod", "job-1")["metadata"]["uid"]
    recorder = recorder_for(fake_kube)
    written = recorder.record([
        ClusterEvent("Pod", "default", "job-1", "TriggeredScaleUp", "pod triggered scale-up: ...", "Normal", uid),
        ClusterEvent("Node", "", "n1", "CordonedByAutoscaler", "cordoned by the autoscaler: idle"),
    ], NOW)
    assert written == 2
    events = {event["reason"]: event for event in fake_kube.list("events", namespace="default")}
    pod_event = events["TriggeredScaleUp"]
    assert pod_event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "name": "job-1",
                                           "namespace": "default", "uid": uid}
    assert pod_event["type"] == "Normal" and pod_event["source"] == {"component": COMPONENT, "host": "test-host"}
    assert pod_event["count"] == 1
    assert moment(pod_event["firstTimestamp"]) == moment(pod_event["lastTimestamp"]) == NOW
    assert events["CordonedByAutoscaler"]["involvedObject"] == {"apiVersion": "v1", "kind": "Node", "name": "n1"}


def test_a_repeated_event_is_counted_again_only_after_the_repeat_interval(fake_kube):
    recorder = recorder_for(fake_kube, repeat_seconds=300)
    event = ClusterEvent("Node", "", "n1", "CordonedByAutoscaler", "cordoned")
    assert recorder.record([event], NOW) == 1
    assert recorder.record([event], NOW + timedelta(seconds=60)) == 0
    assert recorder.record([event], NOW + timedelta(seconds=301)) == 1
    [stored] = fake_kube.list("events")
    assert stored["count"] == 2 and moment(stored["lastTimestamp"]) == NOW + timedelta(seconds=301)
    assert moment(stored["firstTimestamp"]) == NOW


def test_an_expired_event_is_posted_anew(fake_kube):
    recorder = recorder_for(fake_kube, repeat_seconds=0)
    event = ClusterEvent("Node", "", "n1", "CordonedByAutoscaler", "cordoned")
    recorder.record([event], NOW)
    fake_kube.delete("events", fake_kube.list("events")[0]["metadata"]["name"], "default")
    assert recorder.record([event], NOW + timedelta(seconds=1)) == 1
    assert [e["count"] for e in fake_kube.list("events")] == [1]


def test_posting_failures_never_raise_and_give_up_after_a_few(fake_kube):
    errors = []
    recorder = recorder_for(fake_kube, on_api_error=errors.append)
    fake_kube.fail_next("POST", r"/events$", status=403, count=100)
    fake_kube.clear_requests()
    events = [ClusterEvent("Node", "", f"n{i}", "CordonedByAutoscaler", "cordoned") for i in range(20)]
    assert recorder.record(events, NOW) == 0
    assert len([r for r in fake_kube.requests if r.method == "POST"]) == 3
    assert len(errors) == 3


def test_an_unexpected_error_while_posting_is_logged_and_never_raises(fake_kube, caplog):
    # Not a KubeError: an event the recorder cannot build (a bug), and a client that fails in a way
    # kube_call does not know. Neither may escape into the loop, and later events still go out.
    errors = []
    recorder = recorder_for(fake_kube, on_api_error=errors.append)
    broken = ClusterEvent("Node", "", None, "CordonedByAutoscaler", "cordoned")
    good = ClusterEvent("Node", "", "n1", "CordonedByAutoscaler", "cordoned")
    assert recorder.record([broken, good], NOW) == 1
    assert [e["involvedObject"]["name"] for e in fake_kube.list("events")] == ["n1"]
    assert "events: could not post CordonedByAutoscaler on Node None" in caplog.text
    assert "Traceback" in caplog.text and errors == []  # a bug, not an API error

    def failing_hook(_configuration):
        raise RuntimeError("exec plugin crashed")

    recorder.core.api_client.configuration.api_key["authorization"] = "Bearer stale"
    recorder.core.api_client.configuration.refresh_api_key_hook = failing_hook
    assert recorder.record([ClusterEvent("Node", "", "n2", "CordonedByAutoscaler", "cordoned")], NOW) == 0


# ---- through the CLI ----------------------------------------------------------------------------

def cluster_with_pending_pods(fake_aws, fake_kube):
    fake_aws.create_group("us-west-2", "cpu-west", "e2e", instance_type="m5.xlarge", max_size=20)
    fake_kube.add(make_kube_node("static-node", cpu="1", memory="1Gi"))
    fake_kube.add(make_kube_pod("job-1", cpu="2", memory="1Gi"))
    fake_kube.add(make_kube_pod("huge", cpu="200", memory="1Gi"))


def test_a_real_run_posts_events_on_the_pods(fake_aws, fake_kube, start_autoscaler):
    cluster_with_pending_pods(fake_aws, fake_kube)
    process = start_autoscaler("--regions", "us-west-2", "--over-provision", "0", "--once", "-vv")
    assert process.wait(120) == 0, process.log()
    events = {(e["involvedObject"]["name"], e["reason"]): e for e in fake_kube.list("events")}
    assert set(events) == {("job-1", "TriggeredScaleUp"), ("huge", "NotTriggerScaleUp")}
    assert "cpu-west (us-west-2) from 0 to 1" in events[("job-1", "TriggeredScaleUp")]["message"]
    assert "fits no instance type" in events[("huge", "NotTriggerScaleUp")]["message"]


def test_a_dry_run_posts_no_events():
    # In process: the subprocess dry run of test_end_to_end already sees no write at all.
    recorder = RecordingAdapter()
    snapshot = make_snapshot(pods=[make_pod("job", cpu="3"), make_pod("huge", cpu="64")], groups=[make_group("workers")])
    report = make_loop(StubWorld(snapshot), make_settings(dry_run=True), events=recorder).run_once()
    assert report.counters.by_action[p.SetDesiredCapacity] == 1
    assert recorder.calls == []
    # The summary says what it would have done, and nothing that it did.
    fields = report.counters.fields()
    assert fields["would_SetDesiredCapacity"] == 1 and fields["would_post_events"] == 2, fields
    assert not [name for name in fields if name.startswith("applied_") or name == "events"], fields


def test_a_real_run_counts_the_events_it_posted(fake_kube):
    snapshot = make_snapshot(pods=[make_pod("job", cpu="3"), make_pod("huge", cpu="64")], groups=[make_group("workers")])
    report = make_loop(StubWorld(snapshot), make_settings(), events=recorder_for(fake_kube)).run_once()
    fields = report.counters.fields()
    assert fields["applied_SetDesiredCapacity"] == 1 and fields["events"] == 2, fields
    assert "would_post_events" not in fields
