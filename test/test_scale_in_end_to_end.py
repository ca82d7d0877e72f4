"""Scale in end to end: the real CLI (``python main.py --once``) as a subprocess, loop after loop,
against moto (through FakeAws) and the fake Kubernetes API server.

Every cluster here is one group whose instances launched two hours ago (FakeAws's clock), each
registered as a Node with a fresh Ready heartbeat, so only what a test sets up keeps a node.
"""
import os
import pathlib
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from slack_capture import SlackCapture

from autoscaler.fakes.kube_objects import make_node, make_pdb, make_pod
from autoscaler.model.objects import CORDONED_BY_AUTOSCALER_LABEL, LAST_BUSY_ANNOTATION

ROOT = pathlib.Path(__file__).resolve().parent.parent
CLUSTER = "e2e"
REGION = "us-west-2"
GROUP = "workers"
# Thresholds short enough that idle nodes go at once; the cap high enough not to interfere.
SHORT = ("--idle-threshold", "0", "--type-idle-threshold", "0", "--max-scale-in-fraction", "1", "--over-provision", "0")


def run_autoscaler(fake_aws, fake_kube, *args):
    command = [sys.executable, str(ROOT / "main.py"), "--cluster-name", CLUSTER, "--regions", REGION,
               "--kubeconfig", fake_kube.kubeconfig, "--once", "-vvv", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=fake_aws.env(inherit=os.environ),
                            timeout=120, cwd=ROOT)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_cluster(fake_aws, fake_kube, count, *, launched_ago=timedelta(hours=2), nodes=None):
    """A group of ``count`` instances launched ``launched_ago``; instance i becomes Node ``node-i``
    (``nodes`` maps an index to make_node options). Returns the instance ids by node name."""
    now = datetime.now(timezone.utc)
    fake_aws.set_clock(now - launched_ago)
    fake_aws.create_group(REGION, GROUP, CLUSTER, instance_type="m5.xlarge", desired=count, max_size=20)
    fake_aws.set_clock(None)
    group = describe_group(fake_aws)
    instances = sorted((i["InstanceId"], i["AvailabilityZone"]) for i in group["Instances"])
    assert len(instances) == count
    ids = {}
    for index, (instance_id, zone) in enumerate(instances):
        name = f"node-{index}"
        fake_kube.add(make_node(name, cpu="4", memory="16Gi", instance_type="m5.xlarge", zone=zone,
                                provider_id=f"aws:///{zone}/{instance_id}", creation_timestamp=iso(now - launched_ago),
                                heartbeat_timestamp=iso(now), **(nodes or {}).get(index, {})))
        ids[name] = instance_id
    return ids


def job(name, node, *, phase="Running", cpu="1", started_ago=timedelta(hours=2), labels=None):
    started = iso(datetime.now(timezone.utc) - started_ago)
    return make_pod(name, cpu=cpu, memory="1Gi", node_name=node, phase=phase, owner_kind="Job", labels=labels,
                    creation_timestamp=started)


def describe_group(fake_aws):
    groups = fake_aws.client("autoscaling", REGION).describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    return groups["AutoScalingGroups"][0]


def desired_and_instances(fake_aws):
    group = describe_group(fake_aws)
    return group["DesiredCapacity"], sorted(i["InstanceId"] for i in group["Instances"])


def node_names(fake_kube):
    return sorted(node["metadata"]["name"] for node in fake_kube.list("Node"))


def cordon_of(fake_kube, name):
    """(unschedulable, carries the autoscaler's label) of a node."""
    node = fake_kube.get("Node", name)
    labels = node["metadata"].get("labels") or {}
    return bool(node["spec"].get("unschedulable")), labels.get(CORDONED_BY_AUTOSCALER_LABEL) == "true"


AUTOSCALER_CORDON = {"unschedulable": True, "labels": {CORDONED_BY_AUTOSCALER_LABEL: "true"}}
PERSON_CORDON = {"unschedulable": True}


def test_idle_nodes_are_cordoned_then_terminated_through_the_group(fake_aws, fake_kube):
    ids = build_cluster(fake_aws, fake_kube, 3)
    fake_kube.add(job("running-job", "node-0"))
    fake_kube.add(job("finished-job", "node-1", phase="Succeeded"))  # node-2 never ran anything

    first = run_autoscaler(fake_aws, fake_kube, *SHORT)
    assert first.returncode == 0, first.stderr
    assert cordon_of(fake_kube, "node-0") == (False, False)  # still running a job: never cordoned
    assert cordon_of(fake_kube, "node-1") == (True, True)
    assert cordon_of(fake_kube, "node-2") == (True, True)
    assert desired_and_instances(fake_aws) == (3, sorted(ids.values()))  # nothing terminated a loop early

    second = run_autoscaler(fake_aws, fake_kube, *SHORT)
    assert second.returncode == 0, second.stderr
    assert desired_and_instances(fake_aws) == (1, [ids["node-0"]])  # desired lowered by one per node
    assert node_names(fake_kube) == ["node-0"]
    assert cordon_of(fake_kube, "node-0") == (False, False)
    assert f"Terminate instance {ids['node-1']} in {GROUP} ({REGION}), lowering desired capacity" in second.stderr


def test_cordons_of_people_are_kept_and_the_autoscalers_given_back(fake_aws, fake_kube):
    ids = build_cluster(fake_aws, fake_kube, 4, nodes={0: PERSON_CORDON, 1: AUTOSCALER_CORDON, 2: PERSON_CORDON})
    fake_kube.add(job("job-0", "node-0"))  # a person cordoned a busy node
    fake_kube.add(job("job-1", "node-1"))  # work landed before the autoscaler's cordon took effect
    # node-2: cordoned by a person and idle; node-3: idle and schedulable.

    result = run_autoscaler(fake_aws, fake_kube, *SHORT)
    assert result.returncode == 0, result.stderr
    assert cordon_of(fake_kube, "node-0") == (True, False)  # stays cordoned, never uncordoned
    assert cordon_of(fake_kube, "node-1") == (False, False)  # busy again: uncordoned, label gone
    assert cordon_of(fake_kube, "node-3") == (True, True)
    # An idle cordoned node goes whoever cordoned it (openai/detached=true keeps one).
    assert "node-2" not in node_names(fake_kube)
    assert ids["node-2"] not in desired_and_instances(fake_aws)[1]
    assert ids["node-0"] in desired_and_instances(fake_aws)[1]


def test_a_restart_does_not_reset_idle_time(fake_aws, fake_kube):
    build_cluster(fake_aws, fake_kube, 2)
    fake_kube.add(job("job-0", "node-0"))
    keep_idle_nodes_for_ten_minutes = ("--idle-threshold", "600", "--type-idle-threshold", "0",
                                       "--max-scale-in-fraction", "1")

    first = run_autoscaler(fake_aws, fake_kube, *keep_idle_nodes_for_ten_minutes)
    assert first.returncode == 0, first.stderr
    written = fake_kube.get("Node", "node-0")["metadata"]["annotations"][LAST_BUSY_ANNOTATION]
    assert abs(datetime.strptime(written, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
               - datetime.now(timezone.utc)) < timedelta(minutes=5)
    assert cordon_of(fake_kube, "node-1") == (True, True)  # idle since launch, two hours ago

    # The job finishes; a new process knows nothing but what the cluster tells it.
    fake_kube.update("Pod", "job-0", "default", lambda pod: pod["status"].update(phase="Succeeded"))
    second = run_autoscaler(fake_aws, fake_kube, *keep_idle_nodes_for_ten_minutes)
    assert second.returncode == 0, second.stderr
    # Launched two hours ago, but busy a moment ago: within --idle-threshold, so kept.
    assert cordon_of(fake_kube, "node-0") == (False, False)
    assert "node node-0: grace-period" in second.stderr
    assert "node-1" not in node_names(fake_kube)


def test_drain_evicts_waits_for_a_budget_and_tells_slack(fake_aws, fake_kube):
    slack = SlackCapture()
    try:
        ids = build_cluster(fake_aws, fake_kube, 3)
        fake_kube.add(job("small-job", "node-0", cpu="500m"))
        fake_kube.add(job("guarded-job", "node-1", cpu="500m", labels={"app": "guarded"}))
        fake_kube.add(make_pdb("guarded", match_labels={"app": "guarded"}, min_available=1))
        fake_kube.add(job("big-job", "node-2", cpu="3"))  # well used: kept
        draining = (*SHORT, "--drain-utilization", "0.5", "--slack-hook", slack.url)

        first = run_autoscaler(fake_aws, fake_kube, *draining)
        assert first.returncode == 0, first.stderr  # a refused eviction is no failure of the loop
        assert fake_kube.get("Pod", "small-job", "default") is None
        assert fake_kube.get("Pod", "guarded-job", "default") is not None
        assert cordon_of(fake_kube, "node-0") == (True, True)
        assert cordon_of(fake_kube, "node-1") == (True, True)  # refused: stays cordoned
        assert cordon_of(fake_kube, "node-2") == (False, False)
        assert any("draining node node-0" in m and "default/small-job" in m for m in slack.messages)
        assert any("draining node node-1" in m and "default/guarded-job" in m for m in slack.messages)

        second = run_autoscaler(fake_aws, fake_kube, *draining)
        assert second.returncode == 0, second.stderr
        assert desired_and_instances(fake_aws) == (2, sorted([ids["node-1"], ids["node-2"]]))
        assert "eviction refused, will retry next loop: evict pod default/guarded-job" in second.stderr
        assert cordon_of(fake_kube, "node-1") == (True, True)
        assert any(m.startswith("terminating 1 instance(s): node-0") for m in slack.messages)
    finally:
        slack.close()


def test_the_cap_removes_at_the_rate_or_with_the_brake_none(fake_aws, fake_kube):
    # node-0 idle since two hours ago, node-1 since one: node-0 is the longest idle.
    ids = build_cluster(fake_aws, fake_kube, 4, nodes={
        0: AUTOSCALER_CORDON,
        1: dict(AUTOSCALER_CORDON, annotations={LAST_BUSY_ANNOTATION: iso(datetime.now(timezone.utc) - timedelta(hours=1))})})
    fake_kube.add(job("job-2", "node-2"))
    fake_kube.add(job("job-3", "node-3"))
    capped = ("--idle-threshold", "0", "--type-idle-threshold", "0", "--max-scale-in-fraction", "0.25")  # 4: 1 a loop

    brake = run_autoscaler(fake_aws, fake_kube, *capped, "--scale-in-cap", "brake")
    assert brake.returncode == 0, brake.stderr
    assert desired_and_instances(fake_aws) == (4, sorted(ids.values()))
    assert node_names(fake_kube) == ["node-0", "node-1", "node-2", "node-3"]
    assert " - ERROR - scale in would remove 2 of 4 instances" in brake.stderr

    rate = run_autoscaler(fake_aws, fake_kube, *capped)  # the default: --scale-in-cap rate
    assert rate.returncode == 0, rate.stderr
    assert desired_and_instances(fake_aws) == (3, sorted(ids[name] for name in ("node-1", "node-2", "node-3")))
    assert node_names(fake_kube) == ["node-1", "node-2", "node-3"]
    assert " - ERROR - " not in rate.stderr and "1 more wait for later loops" in rate.stderr

    last = run_autoscaler(fake_aws, fake_kube, *capped)  # 3 instances: still at least one a loop
    assert last.returncode == 0, last.stderr
    assert node_names(fake_kube) == ["node-2", "node-3"]


def test_a_loop_whose_pod_list_fails_removes_nothing(fake_aws, fake_kube):
    """Without the pods a busy node looks idle: the read fails the loop before any decision."""
    ids = build_cluster(fake_aws, fake_kube, 3, nodes={0: AUTOSCALER_CORDON, 1: AUTOSCALER_CORDON})
    fake_kube.add(job("job-2", "node-2"))
    fake_kube.fail_next("GET", r"^/api/v1/pods$", status=500, count=50)
    fake_aws.clear_calls()
    result = run_autoscaler(fake_aws, fake_kube, *SHORT)
    assert result.returncode == 1, result.stderr
    assert fake_aws.mutating_calls() == [] and fake_kube.mutating_requests() == []
    assert desired_and_instances(fake_aws) == (3, sorted(ids.values()))


def test_a_pod_list_that_fails_on_a_later_page_is_no_list(fake_kube, monkeypatch):
    """A partial list would make the nodes of the missing pods look idle: the reader gives all the
    pages or raises, never the pages it got."""
    from autoscaler.clients.kube_connect import connect
    from autoscaler.clients.kube_errors import KubeError
    from autoscaler.read import kube_reader

    monkeypatch.setattr(kube_reader, "PAGE_SIZE", 2)
    for index in range(5):
        fake_kube.add(job(f"job-{index}", "node-0"))
    reader = kube_reader.KubeReader(connect(fake_kube.kubeconfig), None)
    assert len(reader.read_pods()) == 5
    pages = reader.core.list_pod_for_all_namespaces

    def second_page_fails(**query):
        if query.get("_continue"):
            fake_kube.fail_next("GET", r"^/api/v1/pods$", status=500, count=50)
        return pages(**query)

    monkeypatch.setattr(reader.core, "list_pod_for_all_namespaces", second_page_fails)
    with pytest.raises(KubeError):
        reader.read_pods()


@pytest.mark.parametrize("flag", ["--dry-run", "--no-maintenance"])
def test_dry_run_and_no_maintenance_change_nothing(fake_aws, fake_kube, flag):
    build_cluster(fake_aws, fake_kube, 2, nodes={1: AUTOSCALER_CORDON})
    fake_aws.clear_calls()
    fake_kube.clear_requests()
    result = run_autoscaler(fake_aws, fake_kube, *SHORT, flag)
    assert result.returncode == 0, result.stderr
    assert fake_aws.mutating_calls() == [] and fake_kube.mutating_requests() == []
    assert cordon_of(fake_kube, "node-0") == (False, False)
    assert node_names(fake_kube) == ["node-0", "node-1"]
    if flag == "--dry-run":
        assert "[dry-run] would cordon node node-0" in result.stderr
        assert "[dry-run] would terminate instance" in result.stderr
    else:
        assert "Scale in is off (--no-maintenance)" in result.stderr and "would" not in result.stderr


def test_a_cordoned_idle_node_a_pending_pod_fits_is_taken_back_not_terminated(fake_aws, fake_kube):
    ids = build_cluster(fake_aws, fake_kube, 2, nodes={0: AUTOSCALER_CORDON})
    fake_kube.add(job("job-1", "node-1", cpu="3"))
    fake_kube.add(make_pod("waiting", cpu="2", memory="1Gi", owner_kind="Job"))  # fits node-0 only
    result = run_autoscaler(fake_aws, fake_kube, *SHORT)
    assert result.returncode == 0, result.stderr
    assert cordon_of(fake_kube, "node-0") == (False, False)
    assert desired_and_instances(fake_aws) == (2, sorted(ids.values()))
