"""The workload: submits a trace's jobs as pods when they arrive, and plays their Job controller.

Every job is one pod, owned by a Job (so the autoscaler may drain it like a real batch pod), with
the pod spec fields the trace gives (labels, tolerations, affinity, spread, host ports, a sidecar
and an init container, a scheduling gate the workload removes at ``gated_until``, a claim bound
to a volume in ``volume_zone``). A
pod that disappears before it finished (evicted by a drain, or lost with its node) is submitted
again under a new name, as a Job controller would; the job's wait still counts from its first
submission.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Optional

from ..fakes.kube_api import FakeKubeApi
from ..fakes.kube_objects import make_pod
from .scheduler import DURATION_ANNOTATION
from .trace import JobGroup, Trace

NAMESPACE = "default"
JOB_LABEL = "sandbox.autoscaler/job"
GATE = "sandbox.autoscaler/held"


@dataclass
class JobRun:
    name: str
    group: JobGroup
    submitted: float  # simulated seconds from the start
    pod: str = ""
    attempts: int = 0
    started: Optional[float] = None
    finished: Optional[float] = None
    restarts: list = field(default_factory=list)  # when a pod of it was lost

    @property
    def wait(self) -> Optional[float]:
        return None if self.started is None else self.started - self.submitted


class Workload:
    def __init__(self, kube: FakeKubeApi, trace: Trace):
        self.kube = kube
        self.trace = trace
        self._arrivals = [(job.arrival(i), job.name, i) for job in trace.jobs for i in range(job.count)]
        heapq.heapify(self._arrivals)
        self._groups = {job.name: job for job in trace.jobs}
        self.jobs: dict[str, JobRun] = {}  # job name -> run, in submission order
        self._job_of_pod: dict[str, str] = {}
        self._finished = 0
        self._gated: list[tuple[float, str]] = []  # (when its gate goes, pod name)

    @property
    def all_submitted(self) -> bool:
        return not self._arrivals

    @property
    def not_yet_submitted(self) -> int:
        return len(self._arrivals)

    @property
    def finished_count(self) -> int:
        return self._finished

    @property
    def unfinished(self) -> int:
        """Jobs not finished, submitted or not."""
        return self.trace.job_count - self.finished_count

    def submit_due(self, seconds: float) -> int:
        """Submit every job that has arrived by ``seconds``; returns how many."""
        submitted = 0
        while self._arrivals and self._arrivals[0][0] <= seconds:
            arrival, group_name, index = heapq.heappop(self._arrivals)
            run = JobRun(f"{group_name}-{index + 1:04d}", self._groups[group_name], arrival)
            self.jobs[run.name] = run
            self._submit(run, seconds)
            submitted += 1
        return submitted

    def _submit(self, run: JobRun, seconds: float) -> None:
        run.attempts += 1
        run.pod = run.name if run.attempts == 1 else f"{run.name}-{run.attempts}"
        job = run.group
        pod = make_pod(
            run.pod, namespace=NAMESPACE, cpu=None, memory=None,
            node_selector=job.node_selector or None, owner_kind="Job", owner_name=run.name,
            labels={JOB_LABEL: run.name}, annotations={DURATION_ANNOTATION: f"{job.duration:g}"},
        )
        pod["spec"]["containers"][0]["resources"] = _resources(job.requests)
        pod["metadata"]["labels"].update(job.labels)
        spec = pod["spec"]
        if job.tolerations:
            spec["tolerations"] = [dict(t) for t in job.tolerations]
        if job.affinity:
            spec["affinity"] = dict(job.affinity)
        if job.topology_spread:
            spec["topologySpreadConstraints"] = [dict(c) for c in job.topology_spread]
        if job.host_ports:
            spec["containers"][0]["ports"] = [{"containerPort": p, "hostPort": p, "protocol": "TCP"} for p in job.host_ports]
        inits = []
        if job.init:
            inits.append({"name": "setup", "image": "busybox", "resources": _resources(job.init)})
        if job.sidecars:
            inits.append({"name": "sidecar", "image": "busybox", "restartPolicy": "Always",
                          "resources": _resources(job.sidecars)})
        if inits:
            spec["initContainers"] = inits
        if job.gated_until is not None and job.gated_until > seconds:
            spec["schedulingGates"] = [{"name": GATE}]
            self._gated.append((job.gated_until, run.pod))
        if job.volume_zone:
            claim = self._volume(run.pod, job.volume_zone)
            spec["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
        self.kube.add(pod)
        self._job_of_pod[run.pod] = run.name

    def _volume(self, pod_name: str, zone: str) -> str:
        """A PersistentVolume in the zone (an EBS volume's node affinity and zone label) and a claim
        bound to it; returns the claim's name."""
        name = f"data-{pod_name}"
        self.kube.add({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": f"pv-{name}", "labels": {"topology.kubernetes.io/zone": zone}},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "gp3",
                     "claimRef": {"namespace": NAMESPACE, "name": name},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [zone]}]}]}}},
            "status": {"phase": "Bound"},
        })
        self.kube.add({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp3", "volumeName": f"pv-{name}",
                     "resources": {"requests": {"storage": "10Gi"}}},
            "status": {"phase": "Bound"},
        })
        return name

    def release_gates(self, seconds: float) -> int:
        """Remove the scheduling gate of every pod whose gate is due; returns how many."""
        due = sorted(pod for when, pod in self._gated if when <= seconds)
        self._gated = [(when, pod) for when, pod in self._gated if when > seconds]
        for pod in due:
            if self.kube.get("Pod", pod, NAMESPACE) is not None:
                self.kube.update("Pod", pod, NAMESPACE, _ungate)
        return len(due)

    def started(self, pod_name: str, seconds: float) -> None:
        run = self.jobs[self._job_of_pod[pod_name]]
        run.started = seconds

    def finished(self, pod_name: str, seconds: float) -> None:
        run = self.jobs[self._job_of_pod.pop(pod_name)]
        run.finished = seconds
        self._finished += 1

    def resubmit_lost(self, present_pods: Iterable[str], seconds: float) -> list[str]:
        """Submit again every unfinished job whose pod is gone; returns the jobs resubmitted."""
        present = set(present_pods)
        lost = [run for run in self.jobs.values() if run.finished is None and run.pod not in present]
        for run in lost:
            self._job_of_pod.pop(run.pod, None)
            run.restarts.append(seconds)
            run.started = None
            self._submit(run, seconds)
        return [run.name for run in lost]


def _resources(requests: Mapping[str, str]) -> dict:
    # Extended resources such as GPUs must have limits equal to their requests.
    return {"requests": dict(requests), "limits": {name: q for name, q in requests.items() if "/" in name}}


def _ungate(pod: dict) -> None:
    pod["spec"].pop("schedulingGates", None)
