"""What a kubelet on an EC2 instance type reports, written down here independently of the
autoscaler's capacity catalog (autoscaler/read/capacity.py): the simulated kubelets must not take
the autoscaler's estimate as the truth they test it against.

Capacity is what the EKS-optimized AMI's kubelet reports (memory is MemTotal, below the nominal
GiB); allocatable subtracts kube-reserved as the EKS bootstrap script computes it (CPU: 6% of
the first core, 1% of the second, 0.5% of the next two, 0.25% of the rest; memory: 255 MiB plus
11 MiB per pod the ENIs allow) and the 100 MiB hard eviction threshold.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InstanceType:
    vcpus: int
    memory_mib: int  # MemTotal as the kubelet reports it
    max_pods: int  # the ENI limit the EKS AMI sets --max-pods to
    gpus: int = 0
    arch: str = "amd64"


INSTANCE_TYPES = {
    "m5.large": InstanceType(2, 7_742, 29),
    "m5.xlarge": InstanceType(4, 15_675, 58),
    "m5.2xlarge": InstanceType(8, 31_536, 58),
    "c5.xlarge": InstanceType(4, 7_550, 58),
    "r5.large": InstanceType(2, 15_675, 29),
    "m6g.large": InstanceType(2, 7_700, 29, arch="arm64"),
    "g4dn.xlarge": InstanceType(4, 15_720, 29, gpus=1),
    "p3.2xlarge": InstanceType(8, 61_010, 58, gpus=1),
}
EVICTION_HARD_MIB = 100


def reserved_cpu_milli(vcpus: int) -> int:
    steps = ((1, 60.0), (1, 10.0), (2, 5.0), (max(vcpus - 4, 0), 2.5))
    reserved, left = 0.0, vcpus
    for cores, milli_per_core in steps:
        taken = min(cores, left)
        reserved += taken * milli_per_core
        left -= taken
    return int(reserved)


def node_resources(instance_type: str) -> tuple[dict[str, str], dict[str, str]]:
    """(capacity, allocatable) as quantity strings, without GPUs (the device plugin adds them)."""
    shape = INSTANCE_TYPES[instance_type]
    capacity = {"cpu": str(shape.vcpus), "memory": f"{shape.memory_mib}Mi", "pods": str(shape.max_pods),
                "ephemeral-storage": "20959212Ki"}
    reserved_memory = 255 + 11 * shape.max_pods + EVICTION_HARD_MIB
    allocatable = {"cpu": f"{shape.vcpus * 1000 - reserved_cpu_milli(shape.vcpus)}m",
                   "memory": f"{shape.memory_mib - reserved_memory}Mi", "pods": str(shape.max_pods),
                   "ephemeral-storage": "18242267924"}
    return capacity, allocatable
