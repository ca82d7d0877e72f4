"""The Kubernetes reader's claims, volumes, storage classes and DaemonSets (issue 17), through the
fake API server: what a pending pod's volumes ask of its node, which claims keep it away from the
scheduler, what a DaemonSet puts on every new node, and reads the RBAC does not allow."""
from __future__ import annotations

import logging

import pytest

from autoscaler.clients.kube_connect import connect
from autoscaler.clients.kube_errors import KubeError
from autoscaler.fakes.kube_objects import make_pod
from autoscaler.model.objects import ZONE_LABEL, Requirement, Resources, Toleration
from autoscaler.read.kube_reader import DAEMON_TOLERATIONS, HOST_NETWORK_DAEMON_TOLERATION, KubeReader

LEGACY_ZONE = "failure-domain.beta.kubernetes.io/zone"


def reader(fake_kube, namespace=None):
    return KubeReader(connect(fake_kube.kubeconfig), namespace)


def claim(name, volume="", storage_class=None, namespace="default"):
    spec: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    if volume:
        spec["volumeName"] = volume
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "namespace": namespace},
            "spec": spec, "status": {"phase": "Bound" if volume else "Pending"}}


def volume(name, zones=(), labels=None, storage_class=None, claimed=False):
    spec: dict = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                  "awsElasticBlockStore": {"volumeID": f"vol-{name}"}}
    if storage_class is not None:
        spec["storageClassName"] = storage_class
    if claimed:
        spec["claimRef"] = {"namespace": "default", "name": "someone-else"}
    if zones:
        spec["nodeAffinity"] = {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": ZONE_LABEL, "operator": "In", "values": list(zones)}]}]}}
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": spec}


def storage_class(name, mode="WaitForFirstConsumer", zones=(), provisioner="ebs.csi.aws.com"):
    item = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": name},
            "provisioner": provisioner, "volumeBindingMode": mode}
    if zones:
        item["allowedTopologies"] = [{"matchLabelExpressions": [{"key": ZONE_LABEL, "values": list(zones)}]}]
    return item


def pvc_volume(claim_name, name="data"):
    return {"name": name, "persistentVolumeClaim": {"claimName": claim_name}}


EPHEMERAL = {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
    "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "resources": {"requests": {"storage": "1Gi"}}}}}}


def in_zones(*zones):
    """One volume's node terms: a single term, zone In zones."""
    return ((Requirement(ZONE_LABEL, "In", tuple(zones)),),)


VOLUMES = {
    "bound-to-a-zonal-volume": ([pvc_volume("data")], [claim("data", "pv-a")], [volume("pv-a", ["us-west-2a"])], [],
                                (in_zones("us-west-2a"),), ()),
    "two-volumes-each-must-hold": ([pvc_volume("data"), pvc_volume("logs", "logs")],
                                   [claim("data", "pv-a"), claim("logs", "pv-b")],
                                   [volume("pv-a", ["us-west-2a"]), volume("pv-b", ["us-west-2a", "us-west-2b"])], [],
                                   (in_zones("us-west-2a"), in_zones("us-west-2a", "us-west-2b")), ()),
    "legacy-zone-label-without-node-affinity": ([pvc_volume("data")], [claim("data", "pv-a")],
                                                [volume("pv-a", labels={LEGACY_ZONE: "us-west-2b"})], [],
                                                (in_zones("us-west-2b"),), ()),
    "legacy-multi-zone-label": ([pvc_volume("data")], [claim("data", "pv-a")],
                                [volume("pv-a", labels={ZONE_LABEL: "us-west-2b__us-west-2a"})], [],
                                (in_zones("us-west-2a", "us-west-2b"),), ()),
    "node-affinity-wins-over-labels": ([pvc_volume("data")], [claim("data", "pv-a")],
                                       [volume("pv-a", ["us-west-2c"], labels={LEGACY_ZONE: "us-west-2b"})], [],
                                       (in_zones("us-west-2c"),), ()),
    "a-volume-anywhere-asks-nothing": ([pvc_volume("data")], [claim("data", "pv-a")], [volume("pv-a")], [], (), ()),
    "unbound-wait-for-first-consumer-asks-nothing": ([pvc_volume("data")], [claim("data", storage_class="gp3")], [],
                                                     [storage_class("gp3")], (), ()),
    "wait-for-first-consumer-within-allowed-topologies": ([pvc_volume("data")], [claim("data", storage_class="gp3")], [],
                                                          [storage_class("gp3", zones=["us-west-2b"])],
                                                          (in_zones("us-west-2b"),), ()),
    # A class of volumes made by hand: the claim binds to one of its available volumes, so the pod
    # runs where one of them is (the scheduler's VolumeBinding), and waits while there is none.
    "static-class-binds-where-its-volumes-are": ([pvc_volume("data")], [claim("data", storage_class="local")],
                                                 [volume("pv-b", ["us-west-2b"], storage_class="local"),
                                                  volume("pv-c", ["us-west-2c"], storage_class="local"),
                                                  volume("pv-taken", ["us-west-2a"], storage_class="local", claimed=True),
                                                  volume("pv-other", ["us-west-2a"], storage_class="other")],
                                                 [storage_class("local", provisioner="kubernetes.io/no-provisioner")],
                                                 (((Requirement(ZONE_LABEL, "In", ("us-west-2b",)),),
                                                   (Requirement(ZONE_LABEL, "In", ("us-west-2c",)),)),), ()),
    "static-class-without-an-available-volume-waits": ([pvc_volume("data")], [claim("data", storage_class="local")],
                                                       [volume("pv-taken", ["us-west-2a"], storage_class="local",
                                                               claimed=True)],
                                                       [storage_class("local", provisioner="kubernetes.io/no-provisioner")],
                                                       (), ("data",)),
    "unbound-immediate-waits": ([pvc_volume("data")], [claim("data", storage_class="io2")], [],
                                [storage_class("io2", "Immediate")], (), ("data",)),
    "binding-mode-unset-is-immediate": ([pvc_volume("data")], [claim("data", storage_class="io2")], [],
                                        [{k: v for k, v in storage_class("io2").items() if k != "volumeBindingMode"}],
                                        (), ("data",)),
    "unbound-of-a-missing-class-waits": ([pvc_volume("data")], [claim("data", storage_class="gone")], [], [], (), ("data",)),
    "unbound-of-no-class-waits": ([pvc_volume("data")], [claim("data")], [], [], (), ("data",)),
    "a-missing-claim-waits": ([pvc_volume("data")], [], [], [], (), ("data",)),
    "a-claim-of-another-namespace-is-missing": ([pvc_volume("data")], [claim("data", "pv-a", namespace="other")],
                                                [volume("pv-a", ["us-west-2a"])], [], (), ("data",)),
    "bound-to-a-missing-volume-waits": ([pvc_volume("data")], [claim("data", "pv-gone")], [], [], (), ("data",)),
    # The ephemeral-volume controller names the claim <pod>-<volume>.
    "generic-ephemeral-volume-made-on-first-consumer": ([EPHEMERAL], [claim("p-scratch", storage_class="gp3")], [],
                                                        [storage_class("gp3")], (), ()),
    "generic-ephemeral-volume-not-made-yet-waits": ([EPHEMERAL], [], [], [storage_class("gp3")], (), ("p-scratch",)),
    "one-bound-one-waiting": ([pvc_volume("data"), pvc_volume("new", "new")],
                              [claim("data", "pv-a"), claim("new", storage_class="io2")],
                              [volume("pv-a", ["us-west-2a"])], [storage_class("io2", "Immediate")],
                              (in_zones("us-west-2a"),), ("new",)),
}


@pytest.mark.parametrize("pod_volumes, claims, volumes, classes, affinity, unbound", VOLUMES.values(), ids=VOLUMES.keys())
def test_what_a_pending_pods_claims_ask(fake_kube, pod_volumes, claims, volumes, classes, affinity, unbound):
    for item in (*claims, *volumes, *classes):
        fake_kube.add(item)
    fake_kube.add(make_pod("p", volumes=pod_volumes))
    (pod,) = reader(fake_kube).read_pods()
    assert pod.placement.volume_affinity == affinity
    assert pod.unbound_claims == unbound
    assert pod.is_gated is bool(unbound)


def listed(fake_kube):
    return sorted({request.path for request in fake_kube.requests if request.method == "GET"})


def test_claims_are_listed_only_for_pending_pods_with_claims_and_only_the_kinds_needed(fake_kube):
    fake_kube.add(claim("data", "pv-a"))
    fake_kube.add(volume("pv-a", ["us-west-2a"]))
    fake_kube.add(make_pod("running", node_name="n1", phase="Running", volumes=[pvc_volume("data")]))
    fake_kube.add(make_pod("pending-without-claims"))
    fake_kube.clear_requests()
    reader(fake_kube).read_pods()
    assert listed(fake_kube) == ["/api/v1/pods"]  # a running pod's volumes are where they are

    fake_kube.add(make_pod("pending", volumes=[pvc_volume("data")]))
    fake_kube.clear_requests()
    pods = {pod.name: pod for pod in reader(fake_kube).read_pods()}
    # Bound: its volume is read, no storage class is.
    assert listed(fake_kube) == ["/api/v1/persistentvolumeclaims", "/api/v1/persistentvolumes", "/api/v1/pods"]
    assert pods["pending"].placement.volume_affinity == (in_zones("us-west-2a"),)
    assert pods["running"].placement.volume_affinity == ()


def test_claims_are_listed_page_by_page(fake_kube):
    for index in range(501):
        fake_kube.add(claim(f"c{index}", storage_class="gp3"))
    fake_kube.add(storage_class("gp3", zones=["us-west-2a"]))
    fake_kube.add(make_pod("p", volumes=[pvc_volume("c500")]))
    fake_kube.clear_requests()
    (pod,) = reader(fake_kube).read_pods()
    assert pod.placement.volume_affinity == (in_zones("us-west-2a"),)
    assert sum(1 for r in fake_kube.requests if r.path == "/api/v1/persistentvolumeclaims") == 2


def test_pod_namespace_limits_the_claims_read(fake_kube):
    fake_kube.add(claim("data", "pv-a", namespace="batch"))
    fake_kube.add(volume("pv-a", ["us-west-2a"]))
    fake_kube.add(make_pod("p", namespace="batch", volumes=[pvc_volume("data")]))
    fake_kube.clear_requests()
    (pod,) = reader(fake_kube, "batch").read_pods()
    assert "/api/v1/namespaces/batch/persistentvolumeclaims" in listed(fake_kube)
    assert pod.placement.volume_affinity == (in_zones("us-west-2a"),)


# --- DaemonSets --------------------------------------------------------------------------------------

def daemonset(name, namespace="kube-system", **spec):
    pod_spec = {"containers": [{"name": "agent", "image": "agent", "resources": {"requests": {"cpu": "100m"}}}]}
    pod_spec.update(spec)
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": pod_spec}}}


def test_daemonsets_of_every_namespace_are_read_with_the_controllers_tolerations(fake_kube):
    gpu_only = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "hardware", "operator": "In", "values": ["gpu"]}]}]}}}
    fake_kube.add(daemonset(
        "logs", namespace="logging", nodeSelector={"kubernetes.io/os": "linux"}, affinity=gpu_only,
        tolerations=[{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"},
                     {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}],
        # KEP-753: 100m + a sidecar of 50m run together; the init container of 120m + 50m before it: 170m.
        initContainers=[{"name": "side", "image": "s", "restartPolicy": "Always",
                         "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
                        {"name": "init", "image": "i", "resources": {"requests": {"cpu": "120m"}}}],
        containers=[{"name": "agent", "image": "a", "resources": {"requests": {"cpu": "100m"}},
                     "ports": [{"containerPort": 24224, "hostPort": 24224}]}]))
    fake_kube.add(daemonset("node-exporter", hostNetwork=True,
                            containers=[{"name": "e", "image": "e", "resources": {"limits": {"cpu": "200m"}},
                                         "ports": [{"containerPort": 9100}]}]))
    # With --pod-namespace too: a DaemonSet of any namespace lands on every new node.
    exporter, logs = reader(fake_kube, namespace="batch").read_daemonsets()  # in key order
    assert (logs.key, exporter.key) == ("logging/logs", "kube-system/node-exporter")
    assert logs.requests == Resources({"cpu": 170, "memory": 64 * (1 << 20) * 1000, "pods": 1000})
    assert logs.placement.node_selector == (("kubernetes.io/os", "linux"),)
    assert logs.placement.node_affinity == ((Requirement("hardware", "In", ("gpu",)),),)
    own = (Toleration("dedicated", "Exists", "", "NoSchedule"),
           Toleration("node.kubernetes.io/unschedulable", "Exists", "", "NoSchedule"))
    # The pod's own first, then each of the controller's it lacks (the unschedulable one it has).
    assert logs.placement.tolerations == own + tuple(t for t in DAEMON_TOLERATIONS if t not in own)
    assert logs.host_ports == ("TCP/24224",)
    assert HOST_NETWORK_DAEMON_TOLERATION not in logs.placement.tolerations
    assert exporter.placement.tolerations == DAEMON_TOLERATIONS + (HOST_NETWORK_DAEMON_TOLERATION,)
    assert exporter.requests == Resources({"cpu": 200, "pods": 1000}) and exporter.host_ports == ("TCP/9100",)


def test_a_daemonset_that_cannot_be_read_is_skipped_with_a_warning(fake_kube, caplog):
    bad = daemonset("bad")
    bad["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "lots"
    fake_kube.add(bad)
    fake_kube.add(daemonset("good"))
    assert [d.name for d in reader(fake_kube).read_daemonsets()] == ["good"]
    assert "skipping daemonset kube-system/bad" in caplog.text


# --- reads the RBAC may not allow --------------------------------------------------------------------

OPTIONAL_READS = {
    # what is refused, the path, what is read instead, how the loop goes on
    "daemonsets": ("/apis/apps/v1/daemonsets", '"list" on daemonsets in API group "apps"',
                   lambda r: r.read_daemonsets(), lambda read: read == ()),
    "claims": ("/api/v1/persistentvolumeclaims", '"list" on persistentvolumeclaims in the core API group',
               lambda r: r.read_pods(), lambda pods: pods[0].unbound_claims == () and not pods[0].placement.volume_affinity),
    "volumes": ("/api/v1/persistentvolumes", '"list" on persistentvolumes in the core API group',
                lambda r: r.read_pods(), lambda pods: pods[0].unbound_claims == () and not pods[0].placement.volume_affinity),
    "storage-classes": ("/apis/storage.k8s.io/v1/storageclasses", '"list" on storageclasses in API group "storage.k8s.io"',
                        lambda r: r.read_pods(), lambda pods: pods[0].unbound_claims == ()),
}


@pytest.mark.parametrize("path, permission, read, fine", OPTIONAL_READS.values(), ids=OPTIONAL_READS.keys())
def test_a_refused_optional_read_warns_once_and_the_loop_goes_on_without_it(fake_kube, caplog, path, permission, read,
                                                                            fine):
    fake_kube.add(daemonset("agent"))
    fake_kube.add(claim("data", "pv-a"))
    fake_kube.add(claim("new", storage_class="gp3"))
    fake_kube.add(volume("pv-a", ["us-west-2a"]))
    fake_kube.add(make_pod("p", volumes=[pvc_volume("data") if "class" not in path else pvc_volume("new")]))
    the_reader = reader(fake_kube)
    fake_kube.fail_next("GET", f"^{path}$", status=403, count=2)
    with caplog.at_level(logging.WARNING):
        assert fine(read(the_reader))
        assert fine(read(the_reader))
    warnings = [r.getMessage() for r in caplog.records if "cannot list" in r.getMessage()]
    assert len(warnings) == 1 and permission in warnings[0] and "HTTP 403" in warnings[0], warnings
    assert read(the_reader)  # granted again: read as usual, and a later refusal warns again
    fake_kube.fail_next("GET", f"^{path}$", status=403, count=1)
    read(the_reader)
    assert sum("cannot list" in r.getMessage() for r in caplog.records) == 2


def test_another_failure_of_an_optional_read_fails_the_read(fake_kube):
    fake_kube.add(daemonset("agent"))
    fake_kube.fail_next("GET", "^/apis/apps/v1/daemonsets$", status=500, count=1)
    with pytest.raises(KubeError) as raised:
        reader(fake_kube).read_daemonsets()
    assert raised.value.status == 500
