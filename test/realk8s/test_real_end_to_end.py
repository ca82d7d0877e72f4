"""The autoscaler as it runs in production, judged by a real control plane: ``python main.py`` with
deploy/base's ServiceAccount token against the real API server, moto for AWS, the real scheduler
deciding where pods go, the real Job, DaemonSet and disruption controllers, and simulated kubelets
for moto's instances.
"""
from __future__ import annotations

from daemon_process import poll
from workloads import CLUSTER, REGION, budget, job

GROUP = "workers"
# Short times, as the fake-API end-to-end tests use: nodes idle for 3 s go, new instances have
# two minutes to register (they take a second), and nothing but the test's pods is bought.
FAST = ("--sleep", "1", "--idle-threshold", "3", "--type-idle-threshold", "0", "--instance-init-time", "120",
        "--over-provision", "0", "--max-scale-in-fraction", "1")
MUTATING_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
# Creates that store nothing: the start's access review (run/preflight.py) asks, it does not write.
REVIEWS = {"selfsubjectaccessreviews", "selfsubjectreviews"}


def unschedulable(pod: dict) -> bool:
    return any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable" for c in pod["status"].get("conditions", ()))


def job_status(real, name: str) -> dict:
    return real.kube.get(f"/apis/batch/v1/namespaces/{real.namespace}/jobs/{name}")["status"]


def test_pending_jobs_buy_nodes_the_scheduler_uses_and_idle_nodes_go_when_they_end(real, kubelets, autoscalers):
    real.aws.create_group(REGION, GROUP, CLUSTER, instance_type="m5.xlarge", max_size=10)
    real.create(job("batch", parallelism=4, cpu="1", run_seconds=4))  # an m5.xlarge holds 3 (3920m allocatable)
    pods = poll(lambda: len(real.pods()) == 4 and all(map(unschedulable, real.pods())) and real.pods(), 30,
                "the scheduler to find the four pods unschedulable")

    daemon = autoscalers.start(*FAST)
    poll(lambda: real.group(GROUP)["DesiredCapacity"] == 2, 60, "the group raised to 2")
    poll(lambda: all(p["spec"].get("nodeName") for p in real.pods()), 60, "the scheduler to bind all four pods")
    assert len({p["spec"]["nodeName"] for p in real.pods()}) == 2
    triggered = real.events(real.namespace, uid=pods[0]["metadata"]["uid"])
    assert any(e["reason"] == "TriggeredScaleUp" and GROUP in e["message"] for e in triggered), triggered

    poll(lambda: job_status(real, "batch").get("succeeded") == 4, 60, "the Job to finish")
    node_names = [n["metadata"]["name"] for n in real.nodes()]
    poll(lambda: real.group(GROUP)["DesiredCapacity"] == 0 and not real.instances(GROUP), 90,
         "the idle instances terminated and the group lowered to 0")
    poll(lambda: not real.nodes(), 30, "their Nodes gone")
    for name in node_names:
        reasons = {e["reason"] for e in real.events("default", kind="Node", name=name)}
        assert {"CordonedByAutoscaler", "TerminatedByAutoscaler"} <= reasons, (name, reasons)
    assert daemon.popen.poll() is None, daemon.log()


def test_a_drain_evicts_what_the_disruption_controller_allows_and_keeps_what_it_refuses(real, kubelets, autoscalers):
    real.aws.create_group(REGION, GROUP, CLUSTER, instance_type="m5.xlarge", desired=2, max_size=10)
    [first, second] = sorted(n["metadata"]["name"] for n in poll(lambda: len(real.nodes()) == 2 and real.nodes(), 30,
                                                                  "the two nodes"))
    on = lambda node: {"nodeSelector": {"kubernetes.io/hostname": node}}  # noqa: E731
    # Running for two hours: past the hour after scheduling in which the autoscaler never drains a pod.
    real.create(job("loose", cpu="500m", run_seconds=3600, started_ago=7200, **on(first)))
    real.create(job("guarded", cpu="500m", run_seconds=3600, started_ago=7200, labels={"app": "guarded"}, **on(second)))
    real.create(budget("guarded", {"app": "guarded"}, min_available=1))
    pdb_path = f"/apis/policy/v1/namespaces/{real.namespace}/poddisruptionbudgets/guarded"
    poll(lambda: sum(p["status"].get("phase") == "Running" for p in real.pods()) == 2, 30, "both jobs running")
    poll(lambda: real.kube.get(pdb_path).get("status", {}).get("currentHealthy") == 1, 30,
         "the disruption controller to count the guarded pod healthy")
    assert real.kube.get(pdb_path)["status"]["disruptionsAllowed"] == 0

    # Both nodes are used below half their CPU: both are drained; the budget refuses one eviction.
    log = autoscalers.run_once(*FAST, "--drain-utilization", "0.5")
    evictions = [r for r in autoscalers.requests() if r.access.resource == "pods/eviction"]
    assert sorted(r.code for r in evictions) == [201, 429], evictions
    assert "eviction refused, will retry next loop" in log
    poll(lambda: not any(p["metadata"]["name"].startswith("loose") for p in real.pods()), 30, "the loose pod evicted")

    log = autoscalers.run_once(*FAST, "--drain-utilization", "0.5")
    poll(lambda: [n["metadata"]["name"] for n in real.nodes()] == [second], 30, "the drained node removed")
    [kept] = real.nodes()
    assert kept["spec"].get("unschedulable") is True  # cordoned, waiting for the budget
    assert any(p["metadata"]["name"].startswith("guarded") and p["status"]["phase"] == "Running" for p in real.pods())
    assert len(real.instances(GROUP)) == 1
    blocked = real.events("default", kind="Node", name=second)
    assert any(e["reason"] == "DrainBlocked" for e in blocked), blocked


def test_two_replicas_elect_one_leader_on_a_real_lease_and_the_other_takes_over(real, kubelets, autoscalers):
    real.aws.create_group(REGION, GROUP, CLUSTER, instance_type="m5.xlarge", max_size=10)
    real.create(job("batch", parallelism=2, cpu="1", run_seconds=3600))
    lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kubernetes-ec2-autoscaler"
    holder = lambda: ((real.kube.get(lease_path) or {}).get("spec") or {}).get("holderIdentity")  # noqa: E731

    replicas = [autoscalers.start(*FAST, "--leader-elect", name=name) for name in ("one", "two")]
    identity = poll(holder, 60, "a replica to take the lease")
    [leader] = [r for r in replicas if f"_{r.pid}_" in identity]
    [standby] = [r for r in replicas if r is not leader]
    poll(lambda: leader.log().count("Loop done:") >= 2, 60, "two loops of the leader")
    assert "Running Scaling Loop" not in standby.log()
    assert real.group(GROUP)["DesiredCapacity"] == 1
    poll(lambda: all(p["spec"].get("nodeName") for p in real.pods()), 60, "the pods bound to the new node")

    assert leader.terminate() == 0, leader.log()
    poll(lambda: holder() not in (None, identity) and f"_{standby.pid}_" in holder(), 30, "the standby to take the lease")
    standby.wait_for_log("Loop done:")
    assert real.group(GROUP)["DesiredCapacity"] == 1  # the pods are running: nothing more to buy
    assert standby.terminate() == 0, standby.log()


def test_a_dry_run_changes_nothing_on_the_real_server(real, kubelets, autoscalers):
    real.aws.create_group(REGION, GROUP, CLUSTER, instance_type="m5.xlarge", desired=1, max_size=10)
    real.aws.create_group(REGION, "large", CLUSTER, instance_type="m5.2xlarge", max_size=10)
    poll(lambda: len(real.nodes()) == 1, 30, "the node")
    real.create(job("big", cpu="6", run_seconds=3600))  # only an m5.2xlarge holds it
    poll(lambda: len(real.pods()) == 1 and all(map(unschedulable, real.pods())), 30, "the pod unschedulable")
    real.aws.clear_calls()

    log = autoscalers.run_once(*FAST, "--idle-threshold", "0", "--dry-run")
    assert "[dry-run] would cordon node" in log and "[dry-run] would set desired capacity of large" in log.lower(), log
    writes = [r for r in autoscalers.requests() if r.access.verb in MUTATING_VERBS and r.access.resource not in REVIEWS]
    assert writes == [], writes
    assert real.aws.mutating_calls() == []
    assert real.group("large")["DesiredCapacity"] == 0
    [node] = real.nodes()
    assert not node["spec"].get("unschedulable")
