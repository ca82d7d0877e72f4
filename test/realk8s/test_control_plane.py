"""The harness itself: the pinned control plane answers as that release, enforces RBAC, and with
the simulated kubelets behaves as a cluster does (registration, binding, DaemonSets, Jobs ending,
start-up taints, late GPUs, labels that differ from the group's tags)."""
from __future__ import annotations

import ipaddress
import os
import pathlib

from daemon_process import poll
from kube_http import KubeError, KubeHttp
from kubelets import NodeProfile
from workloads import CLUSTER, REGION, container, daemon_set, job, pod, with_claim, zonal_volume

import pytest


def listening_addresses(pid: int) -> set[str]:
    """The local addresses of the TCP sockets process ``pid`` listens on (Linux /proc)."""
    inodes = set()
    for fd in pathlib.Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    addresses = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in pathlib.Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address = bytes.fromhex(fields[1].split(":")[0])
                words = [address[i:i + 4][::-1] for i in range(0, len(address), 4)]  # each 32-bit word is little-endian
                addresses.add(str(ipaddress.ip_address(b"".join(words))) if width == 32 else str(ipaddress.ip_address(words[0])))
    return addresses


def test_the_api_server_is_the_pinned_release_and_nothing_listens_beyond_loopback(control_plane, kube):
    version = kube.get("/version")
    assert version["gitVersion"] == "v1.35.4" and (version["major"], version["minor"]) == ("1", "35")
    for component in control_plane.components:
        addresses = listening_addresses(component.popen.pid)
        assert addresses and addresses <= {"127.0.0.1"}, (component.name, addresses)


def test_the_autoscaler_s_token_gets_what_deploy_base_grants_and_nothing_else(control_plane, autoscaler_kubeconfig, kube):
    token = next(line.split("token: ", 1)[1].strip() for line in autoscaler_kubeconfig.read_text().splitlines()
                 if "token: " in line)
    autoscaler = KubeHttp(control_plane.server, token, control_plane.ca_file)
    autoscaler.list("/api/v1/nodes")
    with pytest.raises(KubeError) as refused:
        autoscaler.list("/api/v1/secrets")
    assert refused.value.status == 403


def test_instances_register_as_nodes_and_the_scheduler_binds_pods_to_them(real, kubelets):
    real.aws.create_group(REGION, "workers", CLUSTER, instance_type="m5.xlarge", desired=2,
                          tags={"kube/team": "batch", "k8s.io/cluster-autoscaler/node-template/label/tier": "spot"})
    [a, b] = sorted(i["InstanceId"] for i in real.instances("workers"))
    nodes = poll(lambda: len(real.nodes()) == 2 and real.nodes(), 30, "two nodes")
    node = next(n for n in nodes if n["spec"]["providerID"].endswith(a))
    labels = node["metadata"]["labels"]
    assert node["spec"]["providerID"] == f"aws:///{REGION}a/{a}"
    assert labels["node.kubernetes.io/instance-type"] == "m5.xlarge" and labels["topology.kubernetes.io/zone"] == "us-west-2a"
    assert labels["team"] == "batch" and labels["tier"] == "spot"
    assert node["status"]["allocatable"]["cpu"] == "3920m"
    assert kubelets.node_of_instance(b) is not None

    real.create(daemon_set("logs"))
    real.create(job("work", parallelism=2, cpu="1", run_seconds=1))
    poll(lambda: sum(p["status"].get("phase") == "Running" for p in real.pods() if "daemon" in p["metadata"]["labels"]) == 2,
         30, "a DaemonSet pod Running on each node")
    poll(lambda: (real.kube.get(f"/apis/batch/v1/namespaces/{real.namespace}/jobs/work")["status"].get("succeeded") == 2),
         30, "the Job to succeed")


def test_start_up_taints_go_and_gpus_appear_late_and_labels_can_differ_from_the_tags(real, kubelets):
    kubelets.profiles["gpus"] = NodeProfile(
        labels={"accelerator": "t4"}, missing_labels=("team",),
        startup_taints=({"key": "node.cilium.io/agent-not-ready", "effect": "NoSchedule"},), startup_taint_seconds=3,
        gpu_delay_seconds=4)
    real.aws.create_group(REGION, "gpus", CLUSTER, instance_type="g4dn.xlarge", desired=1, tags={"kube/team": "ml"})
    [node] = poll(lambda: real.nodes(), 30, "the node")
    # The node lifecycle controller may not have seen the Ready condition yet: its not-ready taint,
    # which a real node carries for a moment too, is not the simulator's to control.
    taints = [t for t in node["spec"]["taints"] if t["key"] != "node.kubernetes.io/not-ready"]
    assert taints == [{"key": "node.cilium.io/agent-not-ready", "effect": "NoSchedule"}]
    assert "nvidia.com/gpu" not in node["status"]["allocatable"]
    assert node["metadata"]["labels"]["accelerator"] == "t4" and "team" not in node["metadata"]["labels"]

    real.create(pod("trainer", containers=[{"name": "main", "image": "x", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]))
    poll(lambda: any(c.get("reason") == "Unschedulable" for c in real.pod("trainer")["status"].get("conditions", ())), 10,
         "the scheduler to find no GPU yet")
    poll(lambda: real.pod("trainer")["status"].get("phase") == "Running", 30, "the GPU pod to run once the GPU appears")
    node = real.kube.get(f"/api/v1/nodes/{node['metadata']['name']}")
    assert not node["spec"].get("taints") and node["status"]["allocatable"]["nvidia.com/gpu"] == "1"


def test_a_claim_of_a_zonal_volume_runs_in_the_volume_s_zone_and_host_ports_keep_pods_apart(real, kubelets):
    """The fidelity worlds can be met: given nodes in both zones, the scheduler and the volume
    binder put the claim's pod in zone b, and two pods on one host port on two nodes."""
    for zone in "ab":
        real.aws.create_group(REGION, f"west-{zone}", CLUSTER, instance_type="m5.xlarge", desired=2, zones=[f"{REGION}{zone}"])
    poll(lambda: len(real.nodes()) == 4, 30, "four nodes")
    for body in zonal_volume("data", f"{REGION}b"):
        real.create(body)
    real.create(job("db", cpu="1", run_seconds=3600, **with_claim("data")))
    port = container(cpu="500m", ports=[{"containerPort": 8080, "hostPort": 8080}])
    real.create(job("web", parallelism=2, run_seconds=3600, containers=[port], nodeSelector={"topology.kubernetes.io/zone": f"{REGION}a"}))
    poll(lambda: sum(p["status"].get("phase") == "Running" for p in real.pods()) == 3, 30, "the three pods running")
    zone_of = {n["metadata"]["name"]: n["metadata"]["labels"]["topology.kubernetes.io/zone"] for n in real.nodes()}
    [db] = [p for p in real.pods() if p["metadata"]["name"].startswith("db")]
    assert zone_of[db["spec"]["nodeName"]] == f"{REGION}b"
    web_nodes = {p["spec"]["nodeName"] for p in real.pods() if p["metadata"]["name"].startswith("web")}
    assert len(web_nodes) == 2
