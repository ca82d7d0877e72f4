"""The readers under malformed objects: a Kubernetes or AWS object with a field removed, nulled or of
the wrong type never crashes a loop. It is read with a default where one is safe, or skipped with a
warning naming it; and what is read can be decided on (the decisions then run on it here)."""
import copy
import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.decide.decision import decide
from autoscaler.decide.group_health import GroupHealthState
from autoscaler.fakes.kube_objects import make_node, make_pdb, make_pod
from autoscaler.model.config import Settings
from autoscaler.model.objects import LAST_BUSY_ANNOTATION, SAFE_TO_EVICT_ANNOTATION, Requirement, Snapshot
from autoscaler.read.aws_reader import LaunchSettings, _activity_from, _each, _spot_price_from, groups_from, instances_from
from autoscaler.read.capacity import CapacityCatalog
from autoscaler.read.kube_fields import convert_all
from autoscaler.read.kube_reader import budget_from_api, daemonset_from_api, node_from_api, pod_and_claims_from_api, pod_from_api
from autoscaler.read.kube_volumes import Volumes, read_claims, read_classes, read_volumes, with_claims
from builders import NOW, make_group

ZONE = "us-west-2a"
INSTANCE = "i-0123456789abcdef0"
STAMP = (NOW - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

NODE = make_node("node-1", labels={"hardware": "cpu"}, annotations={LAST_BUSY_ANNOTATION: STAMP},
                 provider_id=f"aws:///{ZONE}/{INSTANCE}", taints=["dedicated=batch:NoSchedule"], zone=ZONE,
                 creation_timestamp=STAMP, heartbeat_timestamp=STAMP, instance_type="m5.xlarge")
AFFINITY = {
    "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "hardware", "operator": "In", "values": ["cpu"]}],
         "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-9"]}]}]}},
    "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "etl"}}}]},
}
RUNNING = make_pod("running", node_name="node-1", phase="Running", owner_kind="Job", labels={"app": "etl"},
                   annotations={SAFE_TO_EVICT_ANNOTATION: "true"}, affinity=AFFINITY, creation_timestamp=STAMP,
                   tolerations=[{"key": "dedicated", "operator": "Equal", "value": "batch", "effect": "NoSchedule"}])
PENDING = make_pod("pending", cpu="2", memory="1Gi", gpu=1, node_selector={"hardware": "cpu"}, owner_kind="Job",
                   labels={"app": "etl"}, affinity=AFFINITY, creation_timestamp=STAMP,
                   tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}])
PENDING["spec"]["initContainers"] = [{"name": "init", "resources": {"requests": {"cpu": "3"}}}]
PENDING["spec"]["overhead"] = {"memory": "64Mi"}
BUDGET = make_pdb("budget", match_labels={"app": "etl"},
                  match_expressions=[{"key": "tier", "operator": "NotIn", "values": ["web"]}], min_available=1)
BUDGET["status"] = {"disruptionsAllowed": 1}

# Issue 17: what the scheduler looks at besides requests and placement. A pending pod with a
# sidecar, pod-level resources, scheduling gates, host ports, pod affinity and anti-affinity on
# other keys, spread constraints, claims of both kinds and the scheduler's message; a DaemonSet; a
# claim, a volume and a storage class.
SCHEDULED_AS_KUBERNETES = make_pod(
    "gated", cpu="1", memory="1Gi", node_selector={"hardware": "cpu"}, labels={"app": "etl", "version": "v2"},
    tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
    affinity={
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "topology.kubernetes.io/zone", "labelSelector": {"matchLabels": {"app": "db"}},
             "namespaceSelector": {"matchLabels": {"env": "prod"}}, "matchLabelKeys": ["version"]}]},
        "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"topologyKey": "rack", "labelSelector": {"matchExpressions": [
                {"key": "app", "operator": "In", "values": ["etl"]}]}, "namespaces": ["a", "b"],
             "mismatchLabelKeys": ["version"]}]},
    },
    volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
             {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {"storageClassName": "gp3"}}}}],
    creation_timestamp=STAMP)
SCHEDULED_AS_KUBERNETES["spec"].update(
    initContainers=[{"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "500m"}},
                     "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]},
                    {"name": "init", "resources": {"requests": {"cpu": "2"}}}],
    resources={"requests": {"memory": "2Gi"}, "limits": {"memory": "4Gi"}},
    schedulingGates=[{"name": "kueue.x-k8s.io/admission"}],
    hostNetwork=True,
    topologySpreadConstraints=[{"maxSkew": 1, "minDomains": 2, "topologyKey": "topology.kubernetes.io/zone",
                                "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "etl"}},
                                "matchLabelKeys": ["version"]}])
SCHEDULED_AS_KUBERNETES["spec"]["containers"][0]["ports"] = [{"containerPort": 9000, "hostPort": 9000, "protocol": "UDP"}]
SCHEDULED_AS_KUBERNETES["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                                    "message": "0/1 nodes are available: 1 Insufficient cpu."}]
DAEMONSET = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "kube-system"},
             "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
                 "metadata": {"labels": {"app": "agent"}},
                 "spec": {"hostNetwork": True, "nodeSelector": {"hardware": "cpu"}, "affinity": AFFINITY,
                          "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                          "initContainers": [{"name": "side", "restartPolicy": "Always",
                                              "resources": {"requests": {"cpu": "50m"}}}],
                          "containers": [{"name": "agent", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                                          "ports": [{"containerPort": 9100}]}]}}}}
CLAIM = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"},
         "spec": {"volumeName": "pv-1", "storageClassName": "gp3"}}
SCRATCH_CLAIM = {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                 "metadata": {"name": "gated-scratch", "namespace": "default"}, "spec": {"storageClassName": "gp3"}}
VOLUME = {"apiVersion": "v1", "kind": "PersistentVolume",
          "metadata": {"name": "pv-1", "labels": {"failure-domain.beta.kubernetes.io/zone": "us-west-2a__us-west-2b"}},
          "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
              {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [ZONE]}]}]}}}}
STORAGE_CLASS = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "gp3"},
                 "volumeBindingMode": "WaitForFirstConsumer",
                 "allowedTopologies": [{"matchLabelExpressions": [{"key": "topology.kubernetes.io/zone",
                                                                   "values": [ZONE]}]}]}

WRONG_VALUES = ("<removed>", None, 0, -1, 1e308, float("nan"), "", "x", "-5Gi", [], {}, True, [1], {"a": 1},
                ["x", {"b": None}])
SETTINGS = Settings(cluster_name="fuzz", regions=("us-west-2",), idle_threshold=0, type_idle_threshold=0,
                    drain_utilization=0.9, spare_idle_nodes=0)
FUZZ = settings(max_examples=120, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def paths(value, prefix=()):
    """Every path to a value inside nested dicts and lists."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield prefix + (index,)
            yield from paths(item, prefix + (index,))


def mutated(obj, path, value):
    obj = copy.deepcopy(obj)
    parent = obj
    for step in path[:-1]:
        parent = parent[step]
    if value == "<removed>":
        del parent[path[-1]]
    else:
        parent[path[-1]] = copy.deepcopy(value)
    return obj


def mutations(base):
    return st.tuples(st.sampled_from(list(paths(base))), st.sampled_from(WRONG_VALUES))


def decide_on(nodes=(), pods=(), budgets=()):
    """The whole decision over what was read, with a managed group the good node belongs to."""
    group = make_group("workers", labels={"hardware": "cpu"}, max_size=5, desired=1, instance_ids=(INSTANCE,))
    snapshot = Snapshot(nodes=tuple(nodes), pods=tuple(pods), groups=(group,), budgets=tuple(budgets), instances={})
    return decide(snapshot, SETTINGS, NOW, GroupHealthState())


def read(kind, convert, raw, caplog):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="autoscaler.read.kube_reader"):
        converted = convert_all([raw], convert, kind)
    if not converted:
        assert f"skipping {kind} " in caplog.text, "a skipped object is named in a warning"
    return converted


def read_pod_with_claims(item, claims=(CLAIM, SCRATCH_CLAIM), volumes=(VOLUME,), classes=(STORAGE_CLASS,)):
    """As KubeReader.read_pods does: the pod, then what its claims ask."""
    pod, names = pod_and_claims_from_api(item)
    found = Volumes()
    found.claims = read_claims(claims, found)
    found.volumes = read_volumes(volumes, found)
    found.classes = read_classes(classes, found)
    return with_claims(pod, names, found)


def decide_on_daemonsets(daemonsets):
    group = make_group("workers", labels={"hardware": "cpu"}, max_size=5, desired=1, instance_ids=(INSTANCE,))
    snapshot = Snapshot(nodes=(node_from_api(NODE),), pods=(pod_from_api(PENDING),), groups=(group,),
                        daemonsets=tuple(daemonsets), instances={})
    return decide(snapshot, SETTINGS, NOW, GroupHealthState())


KUBE_CASES = {
    "node": (NODE, node_from_api, lambda read: decide_on(nodes=read, pods=(pod_from_api(RUNNING),))),
    "running-pod": (RUNNING, pod_from_api, lambda read: decide_on(nodes=(node_from_api(NODE),), pods=read)),
    "pending-pod": (PENDING, pod_from_api, lambda read: decide_on(nodes=(node_from_api(NODE),), pods=read)),
    "poddisruptionbudget": (BUDGET, budget_from_api, lambda read: decide_on(
        nodes=(node_from_api(NODE),), pods=(pod_from_api(RUNNING),), budgets=read)),
    "pod-as-the-scheduler-sees-it": (SCHEDULED_AS_KUBERNETES, read_pod_with_claims,
                                     lambda read: decide_on(nodes=(node_from_api(NODE),), pods=read)),
    "daemonset": (DAEMONSET, daemonset_from_api, decide_on_daemonsets),
}
KINDS = {pod_from_api: "pod", read_pod_with_claims: "pod", node_from_api: "node", budget_from_api: "poddisruptionbudget",
         daemonset_from_api: "daemonset"}


def test_the_unmutated_objects_are_read():
    for base, convert, _ in KUBE_CASES.values():
        assert convert(base)


@pytest.mark.parametrize("case", KUBE_CASES.values(), ids=KUBE_CASES.keys())
def test_a_malformed_kubernetes_object_is_read_or_skipped_and_never_fails_the_loop(case, caplog):
    base, convert, decide_over = case
    kind = KINDS[convert]

    @FUZZ
    @given(mutations(base))
    def check(mutation):
        objects = read(kind, convert, mutated(base, *mutation), caplog)
        decide_over(objects)

    check()


def test_the_unmutated_pod_is_read_as_the_scheduler_sees_it():
    pod = read_pod_with_claims(SCHEDULED_AS_KUBERNETES)
    # cpu: app 1 + sidecar 500m = 1500m, init 2 + sidecar 500m = 2500m; memory: the pod's own 2Gi.
    assert (pod.requests.get("cpu"), pod.requests.get("memory")) == (2500, 2 * (1 << 30) * 1000)
    assert pod.scheduling_gates and pod.host_ports == ("TCP/8080", "UDP/9000") and pod.spread
    assert pod.affinity[0].namespaces == ("*",) and pod.anti_affinity[0].namespaces == ("a", "b")
    # The bound volume's zone, and the class's allowed topology for the ephemeral claim: the same terms, kept once.
    zone_a = (((Requirement("topology.kubernetes.io/zone", "In", (ZONE,)),),),)
    assert pod.placement.volume_affinity == zone_a and pod.unbound_claims == () and pod.unschedulable_message


VOLUME_CASES = {
    "persistentvolumeclaim": (CLAIM, lambda raw: read_pod_with_claims(SCHEDULED_AS_KUBERNETES, claims=(raw,))),
    "persistentvolume": (VOLUME, lambda raw: read_pod_with_claims(SCHEDULED_AS_KUBERNETES, volumes=(raw,))),
    "storageclass": (STORAGE_CLASS, lambda raw: read_pod_with_claims(SCHEDULED_AS_KUBERNETES, classes=(raw,))),
}


@pytest.mark.parametrize("case", VOLUME_CASES.values(), ids=VOLUME_CASES.keys())
def test_a_malformed_claim_volume_or_class_never_fails_the_loop(case, caplog):
    """A claim, volume or class that cannot be read is named in a warning and asks nothing."""
    base, read_with = case

    @FUZZ
    @given(mutations(base))
    def check(mutation):
        pod = read_with(mutated(base, *mutation))
        decide_on(nodes=(node_from_api(NODE),), pods=(pod,))

    check()


@pytest.mark.parametrize("raw", [None, [], "text", 7, {"metadata": []}, {"metadata": {"name": 5}}])
def test_an_object_that_is_not_one_is_skipped_with_a_warning(raw, caplog):
    assert read("pod", pod_from_api, raw, caplog) == ()


# ---- AWS: DescribeAutoScalingGroups, DescribeInstances and DescribeScalingActivities entries --------

CREATED = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
GROUP = {
    "AutoScalingGroupName": "workers", "MinSize": 0, "MaxSize": 5, "DesiredCapacity": 1,
    "Instances": [{"InstanceId": INSTANCE, "AvailabilityZone": ZONE, "LifecycleState": "InService"}],
    "AvailabilityZones": [ZONE], "CreatedTime": CREATED, "LaunchConfigurationName": "lc",
    "Tags": [{"Key": "KubernetesCluster", "Value": "fuzz"}, {"Key": "Role", "Value": "worker"},
             {"Key": "kube/hardware", "Value": "cpu"}, {"Key": "k8s.io/cluster-autoscaler/node-template/resources/"
                                                               "ephemeral-storage", "Value": "100Gi"}],
}
INSTANCE_ENTRY = {
    "InstanceId": INSTANCE, "InstanceType": "m5.xlarge", "LaunchTime": CREATED, "Placement": {"AvailabilityZone": ZONE},
    "State": {"Name": "running"}, "Tags": [{"Key": "aws:autoscaling:groupName", "Value": "workers"}],
    "InstanceLifecycle": "spot", "SpotInstanceRequestId": "sir-1",
}
ACTIVITY = {"ActivityId": "a-1", "AutoScalingGroupName": "workers", "StatusCode": "Failed",
            "StatusMessage": "We currently do not have sufficient m5.xlarge capacity", "Description": "Launching",
            "Cause": "At 2026 a user request update", "StartTime": CREATED, "EndTime": CREATED}
CATALOG = CapacityCatalog(lambda region: None)  # the shipped table only: nothing here calls AWS


def aws_decide(groups=(), instances=(), activities=()):
    node = node_from_api(NODE)
    snapshot = Snapshot(nodes=(node,), pods=(pod_from_api(PENDING),), groups=tuple(groups),
                        instances={i.id: i for i in instances}, activities=tuple(activities))
    return decide(snapshot, SETTINGS, NOW, GroupHealthState())


@FUZZ
@given(mutations(GROUP))
def test_a_malformed_group_is_read_or_skipped_and_never_fails_the_loop(mutation):
    raw = mutated(GROUP, *mutation)
    name = raw.get("AutoScalingGroupName")
    launch = {name: LaunchSettings(("m5.xlarge",))} if isinstance(name, str) else {}
    aws_decide(groups=groups_from([raw], launch, "us-west-2", CATALOG))


@FUZZ
@given(mutations(INSTANCE_ENTRY))
def test_a_malformed_instance_keeps_its_id_or_is_skipped(mutation):
    raw = mutated(INSTANCE_ENTRY, *mutation)
    instances = instances_from([raw], "us-west-2")
    # A node whose instance is not read looks terminated and is deleted: only a missing id drops one.
    assert len(instances) == (1 if isinstance(raw.get("InstanceId"), str) else 0)
    aws_decide(instances=instances)


@FUZZ
@given(mutations(ACTIVITY))
def test_a_malformed_scaling_activity_is_read_or_skipped(mutation):
    raw = mutated(ACTIVITY, *mutation)
    activities = _each([raw], lambda entry: _activity_from(entry, "us-west-2"), "activity", "us-west-2")
    group = groups_from([GROUP], {"workers": LaunchSettings(("m5.xlarge",))}, "us-west-2", CATALOG)
    aws_decide(groups=group, activities=[replace(a, start_time=min(a.start_time, NOW)) for a in activities])


SPOT_PRICE = {"AvailabilityZone": ZONE, "InstanceType": "m5.xlarge", "ProductDescription": "Linux/UNIX",
              "SpotPrice": "0.0412", "Timestamp": CREATED}


@FUZZ
@given(mutations(SPOT_PRICE))
def test_a_malformed_spot_price_is_read_or_skipped(mutation):
    raw = mutated(SPOT_PRICE, *mutation)
    prices = _each([raw], lambda entry: _spot_price_from(entry, "us-west-2"), "spot price", "us-west-2")
    assert all(price.price >= 0 and isinstance(price.instance_type, str) for price in prices)
