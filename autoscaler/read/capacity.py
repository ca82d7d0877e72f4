"""Instance type -> what one such instance offers the scheduler (allocatable Resources).

Read from DescribeInstanceTypes (batched, cached for the life of the process), with a shipped
table for types the API does not return (old generations, or no ec2:DescribeInstanceTypes
permission). The estimate only matters until a node of the group exists; then its real
``status.allocatable`` wins (group_labels.effective_shapes).

Reserve, as the EKS-optimised AMI computes it (bootstrap.sh / eni-max-pods):
  max pods       = ENIs x (IPv4 addresses per ENI - 1) + 2
  kube reserved  = memory 255 MiB + 11 MiB x max pods;
                   cpu 6% of the first core, 1% of the second, 0.5% of the third and fourth,
                   0.25% of every core above four
  eviction       = memory 100 MiB (hard eviction threshold memory.available<100Mi)
  allocatable    = capacity - kube reserved - eviction; pods = max pods

Ephemeral storage, from the root volume the launch settings give (aws_reader.root_volume_gib), or
the EKS-optimised AMI's 20 GiB when they give none:
  allocatable    = volume - kube reserved 1 GiB - hard eviction nodefs.available<10% of the volume
(a 20 GiB volume gives 17 GiB; a real EKS node reports about 16.99 GiB, the filesystem being a
little smaller than its volume).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional

from botocore.exceptions import BotoCoreError, ClientError

from ..model.group_labels import kube_architecture
from ..model.objects import Resources

log = logging.getLogger(__name__)

MIB = 1 << 20
GIB = 1 << 30
EVICTION_THRESHOLD_MIB = 100
DEFAULT_ROOT_VOLUME_GIB = 20  # the EKS-optimised AMI's root volume
RESERVED_EPHEMERAL_GIB = 1  # kubeReserved ephemeral-storage, as the EKS AMI's bootstrap sets it
EVICTION_NODEFS_PERCENT = 10  # hard eviction threshold nodefs.available<10%
DESCRIBE_INSTANCE_TYPES_BATCH = 100  # the API's limit of instance types per request
GPU_RESOURCES = {"NVIDIA": "nvidia.com/gpu", "AMD": "amd.com/gpu"}

# type: (vCPUs, memory MiB, NVIDIA GPUs, ENIs on the default network card, IPv4 addresses per ENI),
# as DescribeInstanceTypes reports them (test_capacity checks the rows against moto's copy).
FALLBACK_TYPES: Mapping[str, tuple[int, int, int, int, int]] = {
    "m4.large": (2, 8192, 0, 2, 10),
    "m4.xlarge": (4, 16384, 0, 4, 15),
    "m4.2xlarge": (8, 32768, 0, 4, 15),
    "m4.4xlarge": (16, 65536, 0, 8, 30),
    "m4.10xlarge": (40, 163840, 0, 8, 30),
    "m4.16xlarge": (64, 262144, 0, 8, 30),
    "m5.large": (2, 8192, 0, 3, 10),
    "m5.xlarge": (4, 16384, 0, 4, 15),
    "m5.2xlarge": (8, 32768, 0, 4, 15),
    "m5.4xlarge": (16, 65536, 0, 8, 30),
    "m5.8xlarge": (32, 131072, 0, 8, 30),
    "m5.12xlarge": (48, 196608, 0, 8, 30),
    "m5.16xlarge": (64, 262144, 0, 15, 50),
    "m5.24xlarge": (96, 393216, 0, 15, 50),
    "m6i.large": (2, 8192, 0, 3, 10),
    "m6i.xlarge": (4, 16384, 0, 4, 15),
    "m6i.2xlarge": (8, 32768, 0, 4, 15),
    "m6i.4xlarge": (16, 65536, 0, 8, 30),
    "m6i.8xlarge": (32, 131072, 0, 8, 30),
    "m6i.16xlarge": (64, 262144, 0, 15, 50),
    "c4.large": (2, 3840, 0, 3, 10),
    "c4.xlarge": (4, 7680, 0, 4, 15),
    "c4.2xlarge": (8, 15360, 0, 4, 15),
    "c4.4xlarge": (16, 30720, 0, 8, 30),
    "c4.8xlarge": (36, 61440, 0, 8, 30),
    "c5.large": (2, 4096, 0, 3, 10),
    "c5.xlarge": (4, 8192, 0, 4, 15),
    "c5.2xlarge": (8, 16384, 0, 4, 15),
    "c5.4xlarge": (16, 32768, 0, 8, 30),
    "c5.9xlarge": (36, 73728, 0, 8, 30),
    "c5.18xlarge": (72, 147456, 0, 15, 50),
    "r5.large": (2, 16384, 0, 3, 10),
    "r5.xlarge": (4, 32768, 0, 4, 15),
    "r5.2xlarge": (8, 65536, 0, 4, 15),
    "r5.4xlarge": (16, 131072, 0, 8, 30),
    "r5.8xlarge": (32, 262144, 0, 8, 30),
    "t3.medium": (2, 4096, 0, 3, 6),
    "t3.large": (2, 8192, 0, 3, 12),
    "t3.xlarge": (4, 16384, 0, 4, 15),
    "t3.2xlarge": (8, 32768, 0, 4, 15),
    "m6g.large": (2, 8192, 0, 3, 10),
    "m6g.xlarge": (4, 16384, 0, 4, 15),
    "c7g.xlarge": (4, 8192, 0, 4, 15),
    "p2.xlarge": (4, 62464, 1, 4, 15),
    "p2.8xlarge": (32, 499712, 8, 8, 30),
    "p2.16xlarge": (64, 749568, 16, 8, 30),
    "p3.2xlarge": (8, 62464, 1, 4, 15),
    "p3.8xlarge": (32, 249856, 4, 8, 30),
    "p3.16xlarge": (64, 499712, 8, 8, 30),
    "p3dn.24xlarge": (96, 786432, 8, 15, 50),
    "g4dn.xlarge": (4, 16384, 1, 3, 10),
    "g4dn.2xlarge": (8, 32768, 1, 3, 10),
    "g4dn.4xlarge": (16, 65536, 1, 3, 10),
    "g4dn.12xlarge": (48, 196608, 4, 8, 30),
    "g5.xlarge": (4, 16384, 1, 4, 15),
    "g5.2xlarge": (8, 32768, 1, 4, 15),
    "g5.4xlarge": (16, 65536, 1, 8, 30),
    "g5.12xlarge": (48, 196608, 4, 15, 50),
    "g5.48xlarge": (192, 786432, 8, 7, 50),
    "p4d.24xlarge": (96, 1179648, 8, 15, 50),
}


@dataclass(frozen=True)
class InstanceTypeInfo:
    instance_type: str
    vcpus: int
    memory_mib: int
    enis: int
    ipv4_per_eni: int
    gpus: int = 0
    gpu_resource: str = "nvidia.com/gpu"
    architecture: str = "amd64"  # kubernetes.io/arch

    @property
    def max_pods(self) -> int:
        return self.enis * (self.ipv4_per_eni - 1) + 2


def reserved_cpu_milli(vcpus: int) -> int:
    """Kubelet cpu reserve in millicores, by the EKS AMI's ranges (integer arithmetic as there)."""
    ranges = ((0, 1000, 600), (1000, 2000, 100), (2000, 4000, 50), (4000, None, 25))  # basis points
    total = vcpus * 1000
    reserved = 0
    for start, end, basis_points in ranges:
        upper = total if end is None else min(total, end)
        if upper > start:
            reserved += (upper - start) * basis_points // 10000
    return reserved


def reserved_memory_mib(max_pods: int) -> int:
    """Kubelet memory reserve plus the hard eviction threshold, in MiB."""
    return 255 + 11 * max_pods + EVICTION_THRESHOLD_MIB


def allocatable(info: InstanceTypeInfo) -> Resources:
    memory_mib = max(0, info.memory_mib - reserved_memory_mib(info.max_pods))
    amounts = {
        "cpu": info.vcpus * 1000 - reserved_cpu_milli(info.vcpus),
        "memory": memory_mib * MIB * 1000,
        "pods": info.max_pods * 1000,
    }
    if info.gpus:
        amounts[info.gpu_resource] = info.gpus * 1000
    return Resources(amounts)


def ephemeral_storage_allocatable(volume_gib: int) -> int:
    """Allocatable ephemeral-storage (milli-bytes) of a node whose root volume has this size."""
    volume = volume_gib * GIB
    allocatable_bytes = volume - RESERVED_EPHEMERAL_GIB * GIB - volume * EVICTION_NODEFS_PERCENT // 100
    return max(0, allocatable_bytes) * 1000


def info_from_table(instance_type: str) -> Optional[InstanceTypeInfo]:
    row = FALLBACK_TYPES.get(instance_type)
    if row is None:
        return None
    vcpus, memory_mib, gpus, enis, ipv4_per_eni = row
    return InstanceTypeInfo(instance_type, vcpus, memory_mib, enis, ipv4_per_eni, gpus=gpus,
                            architecture=kube_architecture(instance_type))


def info_from_api(entry: Mapping[str, Any]) -> InstanceTypeInfo:
    """One DescribeInstanceTypes entry -> InstanceTypeInfo."""
    instance_type = entry["InstanceType"]
    network = entry.get("NetworkInfo", {})
    # Types with several network cards (p4d: 4 x 15 ENIs) give pods addresses from the default
    # card only, as EKS's max-pods calculator counts them.
    default_card = network.get("DefaultNetworkCardIndex", 0)
    enis = next((card["MaximumNetworkInterfaces"] for card in network.get("NetworkCards", ())
                 if card.get("NetworkCardIndex") == default_card), network.get("MaximumNetworkInterfaces", 1))
    gpus, gpu_resource = 0, "nvidia.com/gpu"
    for gpu in entry.get("GpuInfo", {}).get("Gpus", ()):
        resource = GPU_RESOURCES.get(str(gpu.get("Manufacturer", "")).upper())
        if resource:
            gpus, gpu_resource = gpus + int(gpu.get("Count", 0)), resource
    return InstanceTypeInfo(
        instance_type=instance_type,
        vcpus=int(entry["VCpuInfo"]["DefaultVCpus"]),
        memory_mib=int(entry["MemoryInfo"]["SizeInMiB"]),
        enis=int(enis),
        ipv4_per_eni=int(network.get("Ipv4AddressesPerInterface", 1)),
        gpus=gpus,
        gpu_resource=gpu_resource,
        architecture=kube_architecture(instance_type, entry.get("ProcessorInfo", {}).get("SupportedArchitectures", ())),
    )


class CapacityCatalog:
    """Instance type facts for the whole process. ``prefetch`` once per loop with every type the
    groups can launch, then ``get`` per type: one API call per 100 new types, none for known ones.

    ``clients_for_region(region)`` returns an object with an ``ec2`` client (aws_reader.RegionClients).
    """

    def __init__(self, clients_for_region: Callable[[str], Any]):
        self._clients_for_region = clients_for_region
        self._from_api: dict[str, InstanceTypeInfo] = {}
        self._asked: set[str] = set()  # types the API was asked about, known to it or not
        # Regions are read on threads of their own: one asks about a type while the others wait
        # for its answer, rather than all asking at once.
        self._lock = threading.Lock()

    def prefetch(self, region: str, instance_types: Iterable[str]) -> None:
        """Ask DescribeInstanceTypes about the types not asked about yet. On failure, warn and let
        the shipped table stand in; the next prefetch asks again."""
        with self._lock:
            self._prefetch(region, instance_types)

    def _prefetch(self, region: str, instance_types: Iterable[str]) -> None:
        missing = sorted({t for t in instance_types if t and t not in self._asked})
        if not missing:
            return
        paginator = self._clients_for_region(region).ec2.get_paginator("describe_instance_types")
        for start in range(0, len(missing), DESCRIBE_INSTANCE_TYPES_BATCH):
            batch = missing[start:start + DESCRIBE_INSTANCE_TYPES_BATCH]
            try:
                # A filter, not InstanceTypes=: one unknown name would fail the whole request.
                for page in paginator.paginate(Filters=[{"Name": "instance-type", "Values": batch}]):
                    for entry in page.get("InstanceTypes", ()):
                        info = info_from_api(entry)
                        self._from_api[info.instance_type] = info
            except (ClientError, BotoCoreError) as error:
                log.warning("cannot describe instance types in %s (%s); using the shipped table for %s",
                            region, error, ", ".join(batch))
                return
            self._asked.update(batch)

    def info(self, instance_type: str) -> Optional[InstanceTypeInfo]:
        return self._from_api.get(instance_type) or info_from_table(instance_type)

    def get(self, instance_type: str) -> Optional[Resources]:
        """Allocatable of one instance of the type; None if neither the API nor the table knows it."""
        info = self.info(instance_type)
        return allocatable(info) if info else None

    def architecture(self, instance_type: str) -> Optional[str]:
        info = self._from_api.get(instance_type)
        return info.architecture if info else None
