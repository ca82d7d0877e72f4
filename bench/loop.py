"""The whole first loop against the fakes: read pods and nodes over HTTP from the fake Kubernetes
API, groups and instances from FakeAws (moto over HTTP), decide, act in a dry run.

The cluster: pending pods of 20 shapes in 5 selector sets, 2.5 running pods per node, nodes
registered with providerIDs of the groups' instances, groups of 5 instance types in 3 regions
(half of them spot). Three processes, so that none waits for another's GIL: FakeAws (moto) runs in
this one, the fake Kubernetes API in a child of its own (seeded and stopped over a pipe), and the
loop in another child wired by ``autoscaler.run.daemon.build_loop`` (kubeconfig of the fake,
AWS_ENDPOINT_URL from FakeAws.env()). The fakes' CPU and memory are never counted as the
autoscaler's; and while moto renders 2,000 instances, the fake API still serves pods at full speed,
as a real API server would.

Phases are timed from outside the loop: the child wraps the kube reader's methods, World.read,
the ``decide`` and ``plan_scale_up`` names the loop calls, and the actuator's ``apply``.
Memory is the child's: its RSS before ``run_once`` (interpreter, libraries, clients), its peak RSS
(VmHWM) during it, and, in a second child, the peak of Python allocations in ``run_once`` by
tracemalloc (which slows the loop, hence a separate run). The fakes' CPU time during the loop is
shown apart, to tell the autoscaler's cost from theirs on a machine with fewer cores than busy
processes.

Run: /tmp/venv/bin/python bench/loop.py [--quick | --largest]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLUSTER = "bench"
REGIONS = ("us-west-2", "us-east-1", "eu-west-1")
GPU = "nvidia.com/gpu"
GPU_TAINT_TAG = f"k8s.io/cluster-autoscaler/node-template/taint/{GPU}"
TYPES = ("c5.4xlarge", "m5.4xlarge", "m5.xlarge", "p3.2xlarge", "r5.2xlarge")
POOLS = ("batch", "ml", "etl", "web")
ZERO, ONE_HOUR, TWO_HOURS = timedelta(0), timedelta(hours=1), timedelta(hours=2)
SELECTOR_SETS = (  # (nodeSelector, tolerations)
    ({}, ()),
    ({"pool": "batch"}, ()),
    ({"pool": "ml"}, ()),
    ({"aws/class": "r"}, ()),
    ({"pool": "gpu"}, ({"key": GPU, "operator": "Exists"},)),
)
# (pending pods, nodes = instances, groups); the original took 4 s, 58 s and 193 s at the first,
# second and last size (the original took minutes there). The 1,000-instance row at 50 groups shows how
# AWS calls grow with instances alone.
SIZES = ((1_000, 200, 10), (5_000, 1_000, 30), (10_000, 1_000, 50), (10_000, 2_000, 50))
ORIGINAL_SECONDS = {(1_000, 200): 4, (5_000, 1_000): 58, (10_000, 2_000): 193}


@dataclass(frozen=True)
class GroupSpec:
    name: str
    region: str
    instance_type: str
    pool: str
    zone: str
    spot: bool


def group_specs(count: int) -> list[GroupSpec]:
    specs = []
    for index in range(count):
        instance_type = TYPES[index % len(TYPES)]
        region = REGIONS[index % len(REGIONS)]
        pool = "gpu" if instance_type.startswith("p3") else POOLS[index % len(POOLS)]
        specs.append(GroupSpec(f"{pool}-{instance_type}-{index:02}", region, instance_type, pool,
                               f"{region}{'abc'[index % 3]}", spot=index % 2 == 0))
    return specs


# ------------------------------------------------------------------------------ building the cluster

def build_cluster(aws, kube, pending: int, node_count: int, group_count: int) -> dict:
    """Groups with ``node_count`` instances in all, a node per instance with 2 or 3 running pods,
    and ``pending`` pending pods. Returns how long each part took to build."""
    from autoscaler.fakes.kube_objects import make_node, make_pod
    from autoscaler.model.text import utc_text
    from autoscaler.model.objects import format_amount
    from autoscaler.read.capacity import allocatable, info_from_table

    now = datetime.now(timezone.utc)
    # Nodes up for two hours with a fresh heartbeat (alive, past their init time), pods an hour old.
    node_created, heartbeat, pod_created = (utc_text(now - age) for age in (TWO_HOURS, ZERO, ONE_HOUR))
    took = {}
    started = time.perf_counter()
    specs = group_specs(group_count)
    for index, spec in enumerate(specs):
        # Desired capacity at creation: moto launches the instances in the same call.
        desired = node_count // group_count + (1 if index < node_count % group_count else 0)
        tags = {"kube/pool": spec.pool}
        if spec.pool == "gpu":
            tags[GPU_TAINT_TAG] = "true:NoSchedule"
        aws.create_group(spec.region, spec.name, CLUSTER, instance_type=spec.instance_type, min_size=0,
                         max_size=1000, desired=desired, tags=tags, zones=[spec.zone],
                         spot_price="0.50" if spec.spot else None)
    took["groups"] = time.perf_counter() - started

    started = time.perf_counter()
    objects = []
    by_name = {spec.name: spec for spec in specs}
    node_number = 0
    for region in REGIONS:
        paginator = aws.client("autoscaling", region).get_paginator("describe_auto_scaling_groups")
        for page in paginator.paginate():
            for raw in page["AutoScalingGroups"]:
                spec = by_name[raw["AutoScalingGroupName"]]
                capacity = allocatable(info_from_table(spec.instance_type))
                resources = {name: format_amount(name, capacity.get(name)) for name in ("cpu", "memory", "pods")}
                share = capacity.get("cpu") // 4
                for instance in sorted(raw["Instances"], key=lambda i: i["InstanceId"]):
                    name = f"ip-10-{node_number // 62500}-{node_number // 250 % 250}-{node_number % 250}.ec2.internal"
                    objects.append(make_node(
                        name, cpu=resources["cpu"], memory=resources["memory"], pods=resources["pods"],
                        gpu=capacity.get(GPU) // 1000 or None, instance_type=spec.instance_type, zone=spec.zone,
                        labels={"pool": spec.pool, "aws/type": spec.instance_type, "aws/class": spec.instance_type[0]},
                        taints=[f"{GPU}=true:NoSchedule"] if spec.pool == "gpu" else (),
                        provider_id=f"aws:///{instance['AvailabilityZone']}/{instance['InstanceId']}",
                        creation_timestamp=node_created, heartbeat_timestamp=heartbeat,
                    ))
                    for slot in range(3 if node_number % 2 else 2):  # 2.5 running pods per node
                        objects.append(make_pod(f"running-{node_number}-{slot}", namespace="jobs", cpu=f"{share}m",
                                          memory="1Gi", node_name=name, phase="Running", owner_kind="Job",
                                          creation_timestamp=pod_created))
                    node_number += 1
    kube.add_all(objects)
    took["nodes and running pods"] = time.perf_counter() - started

    started = time.perf_counter()
    objects = []
    for number in range(pending):
        shape = number % 20
        selector, tolerations = SELECTOR_SETS[shape % 5]
        objects.append(make_pod(
            f"job-{shape}-{number}", namespace="jobs", cpu=f"{250 * (1 + shape % 8)}m",
            memory=f"{1 + shape % 6}Gi", gpu=1 if shape % 5 == 4 else None, node_selector=selector,
            tolerations=tolerations, owner_kind="Job", owner_name=f"job-{shape}",
            labels={"job-name": f"job-{shape}"}, creation_timestamp=pod_created,
        ))
    kube.add_all(objects)
    took["pending pods"] = time.perf_counter() - started
    return took


# ------------------------------------------------------------- the fake Kubernetes API's own process

def serve_kube_api(connection) -> None:
    """In the child: a FakeKubeApi answering the parent's (command, argument) messages with
    ("ok", value) or ("error", traceback) until told to stop; HTTP is served on its own thread."""
    from autoscaler.fakes.kube_api import FakeKubeApi

    with FakeKubeApi() as kube:
        commands = {
            "add_all": lambda objects: [kube.add(obj) for obj in objects] and None,
            "write_kubeconfig": lambda path: kube.write_kubeconfig(path),
            "clear_requests": lambda _: kube.clear_requests(),
            "request_count": lambda _: len(kube.requests),
            "cpu_seconds": lambda _: time.process_time(),
        }
        while True:
            command, argument = connection.recv()  # waits without holding the GIL
            if command == "stop":
                connection.send(("ok", None))
                return
            try:
                connection.send(("ok", commands[command](argument)))
            except Exception:  # noqa: BLE001 - the parent raises it
                connection.send(("error", traceback.format_exc()))


class KubeApiProcess:
    """The fake Kubernetes API in a process of its own, with the part of FakeKubeApi's interface
    the benchmark uses."""

    BATCH = 2_000  # objects per message: bounds the pickled size of one send

    def __init__(self) -> None:
        # spawn, not fork: this process runs moto's server threads, whose locks a fork would copy.
        context = multiprocessing.get_context("spawn")
        self._connection, self._child_end = context.Pipe()
        self._process = context.Process(target=serve_kube_api, args=(self._child_end,), name="fake-kube-api",
                                        daemon=True)

    def __enter__(self) -> "KubeApiProcess":
        self._process.start()
        self._child_end.close()
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self._call("stop")
        finally:
            self._process.join(timeout=30)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join()
            self._connection.close()

    def _call(self, command: str, argument=None):
        self._connection.send((command, argument))
        status, value = self._connection.recv()
        if status != "ok":
            raise RuntimeError(f"the fake Kubernetes API's process failed on {command}:\n{value}")
        return value

    def add_all(self, objects: list[dict]) -> None:
        for start in range(0, len(objects), self.BATCH):
            self._call("add_all", objects[start:start + self.BATCH])

    def write_kubeconfig(self, path: Path) -> Path:
        return self._call("write_kubeconfig", path)

    def clear_requests(self) -> None:
        self._call("clear_requests")

    def request_count(self) -> int:
        return self._call("request_count")

    def cpu_seconds(self) -> float:
        """CPU time of the fake API's process so far."""
        return self._call("cpu_seconds")


# ---------------------------------------------------------------------------- the child: one loop

def vm_status(field: str) -> int:
    """A VmRSS/VmHWM line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    """Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def timed(times: dict, phase: str, function):
    """``function``, recording how long each call took under ``phase`` (from any thread)."""
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            times.setdefault(phase, []).append(time.perf_counter() - started)  # list.append is atomic
    return wrapper


def time_server_waits(times: dict) -> None:
    """Count the time spent waiting for the fakes' answers (request sent to body received) apart:
    it is the servers' cost, moto's above all, not the autoscaler's."""
    import botocore.endpoint
    import kubernetes.client.rest

    def send_and_read(send):
        def wrapper(*args, **kwargs):
            response = send(*args, **kwargs)
            response.content  # noqa: B018 - read the body here, so the wait counts in full
            return response
        return wrapper

    def request_and_read(request):
        def wrapper(*args, **kwargs):
            response = request(*args, **kwargs)
            response.data  # noqa: B018
            return response
        return wrapper

    botocore.endpoint.Endpoint._send = timed(times, "AWS server", send_and_read(botocore.endpoint.Endpoint._send))
    rest = kubernetes.client.rest.RESTClientObject
    rest.request = timed(times, "kube server", request_and_read(rest.request))


def time_garbage_collection(times: dict) -> None:
    import gc

    started = []

    def on_collect(phase, info):
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            times.setdefault("garbage collection", []).append(time.perf_counter() - started.pop())
    gc.callbacks.append(on_collect)


def child(kubeconfig: str, trace: bool) -> dict:
    import threading
    import tracemalloc

    import autoscaler.decide.decision
    import autoscaler.run.loop
    from autoscaler.model.config import Settings
    from autoscaler.run.daemon import build_loop, configure_logging

    settings = Settings(cluster_name=CLUSTER, regions=REGIONS, kubeconfig=kubeconfig, dry_run=True, once=True,
                        verbosity=2)
    configure_logging(settings)  # -vv as in production; stderr goes to a file
    started = time.perf_counter()
    loop = build_loop(settings, threading.Event())
    build_seconds = time.perf_counter() - started

    times: dict[str, list[float]] = {}
    kube = loop.world.kube
    for method in ("read_nodes", "read_pods", "read_budgets", "read_daemonsets"):
        setattr(kube, method, timed(times, "read kube", getattr(kube, method)))
    if hasattr(loop.world, "_read_region"):  # regions read on threads of their own
        loop.world._read_region = timed(times, "read region", loop.world._read_region)
    loop.world.read = timed(times, "read world", loop.world.read)
    autoscaler.run.loop.decide = timed(times, "decide", autoscaler.run.loop.decide)
    autoscaler.decide.decision.plan_scale_up = timed(times, "scale-up decision", autoscaler.decide.decision.plan_scale_up)
    loop.actuator.apply = timed(times, "act", loop.actuator.apply)
    time_server_waits(times)
    time_garbage_collection(times)

    rss_before = vm_status("VmRSS")
    reset_peak_rss()
    if trace:
        tracemalloc.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    report = loop.run_once()
    total, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    traced_peak = tracemalloc.get_traced_memory()[1] if trace else None
    # The process's CPU from its start to the end of its first loop: the interpreter, every import
    # (the Kubernetes client's are most of them), the clients, and the loop.
    usage = resource.getrusage(resource.RUSAGE_SELF)
    if "read region" not in times:  # one region after the other, after Kubernetes
        times["read region"] = [sum(times["read world"]) - sum(times["read kube"])]
    return {
        "ok": report.ok, "error": report.error, "counters": report.counters.fields(), "times": times, "total": total, "cpu": cpu,
        "build_loop": build_seconds, "rss_before": rss_before, "rss_peak": vm_status("VmHWM"),
        "traced_peak": traced_peak, "cpu_first_loop": usage.ru_utime + usage.ru_stime,
    }


def run_child(aws, kubeconfig: Path, trace: bool, log_path: Path) -> dict:
    command = [sys.executable, __file__, "--child", str(kubeconfig)] + (["--trace"] if trace else [])
    with open(log_path, "w") as log_file:
        finished = subprocess.run(command, stdout=subprocess.PIPE, stderr=log_file, text=True, cwd=ROOT,
                                  env=aws.env(inherit=os.environ), timeout=600)
    if finished.returncode != 0:
        raise RuntimeError(f"the loop's process failed (exit {finished.returncode}); see {log_path}")
    return json.loads(finished.stdout)


# ---------------------------------------------------------------------------------------- the parent

def measure(aws, size: tuple[int, int, int], workdir: Path) -> dict:
    pending, nodes, groups = size
    aws.reset()
    with KubeApiProcess() as kube:
        build = build_cluster(aws, kube, pending, nodes, groups)
        kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
        log_path = workdir / f"loop-{pending}-{nodes}-{groups}.log"
        aws.clear_calls()
        kube.clear_requests()
        # This process does nothing but serve moto while the loop's process runs.
        aws_cpu, kube_cpu = time.process_time(), kube.cpu_seconds()
        result = run_child(aws, kubeconfig, trace=False, log_path=log_path)
        result["aws_cpu"], result["kube_cpu"] = time.process_time() - aws_cpu, kube.cpu_seconds() - kube_cpu
        result["aws_calls"] = Counter(f"{call.service}:{call.action}" for call in aws.calls)
        result["kube_requests"] = kube.request_count()
        result["traced_peak"] = run_child(aws, kubeconfig, trace=True, log_path=workdir / "trace.log")["traced_peak"]
        result["build"] = build
        result["log"] = str(log_path)
    return result


def mib(amount: int) -> str:
    return f"{amount / (1 << 20):.0f} MiB"


def seconds(phase: str, combine=sum, digits: int = 2):
    return lambda result, size: f"{combine(result['times'].get(phase) or [0.0]):.{digits}f}"


def print_results(results: dict) -> None:
    columns = [f"{p:,} pend/{n:,} nodes/{g} grp" for p, n, g in results]
    width = max(len(c) for c in columns) + 2
    rows = [
        ("pods read (pending + running)", lambda r, s: f"{r['counters'].get('pods', 0):,}"),
        ("read, World.read (s)", seconds("read world")),
        ("  Kubernetes: nodes + pods + budgets (s)", seconds("read kube")),
        ("  AWS: slowest region (s)", seconds("read region", max)),
        ("  waiting for the fake API server, all threads (s)", seconds("kube server")),
        ("  waiting for moto, all threads (s)", seconds("AWS server")),
        ("decide (s)", seconds("decide")),
        ("  of which scale-up decision (s)", seconds("scale-up decision", digits=3)),
        ("act, dry run (s)", seconds("act", digits=3)),
        ("whole loop, run_once (s)", lambda r, s: f"{r['total']:.2f}"),
        ("  CPU time of the loop's process (s)", lambda r, s: f"{r['cpu']:.2f}"),
        ("CPU of the process from its start to the end of its first loop, imports included (s)",
         lambda r, s: f"{r['cpu_first_loop']:.2f}"),
        ("  of which garbage collection (s)", seconds("garbage collection")),
        ("CPU time of moto's process during the loop (s)", lambda r, s: f"{r['aws_cpu']:.2f}"),
        ("CPU time of the fake API's process during the loop (s)", lambda r, s: f"{r['kube_cpu']:.2f}"),
        ("original (s)", lambda r, s: str(ORIGINAL_SECONDS.get(s[:2], "-"))),
        ("RSS before the loop", lambda r, s: mib(r["rss_before"])),
        ("peak RSS during the loop", lambda r, s: mib(r["rss_peak"])),
        ("  peak RSS minus RSS before", lambda r, s: mib(r["rss_peak"] - r["rss_before"])),
        ("tracemalloc peak of run_once", lambda r, s: mib(r["traced_peak"])),
        ("Kubernetes API requests", lambda r, s: str(r["kube_requests"])),
        ("AWS calls", lambda r, s: str(sum(r["aws_calls"].values()))),
    ]
    actions = sorted({action for r in results.values() for action in r["aws_calls"]})
    rows += [(f"  {action}", (lambda a: lambda r, s: str(r["aws_calls"].get(a, 0)))(action)) for action in actions]
    rows += [("pods placed on nodes / to new instances", lambda r, s: f"{r['counters'].get('placed_on_nodes', 0):,} / "
                                                                      f"{r['counters'].get('pods_for_new_instances', 0):,}"),
             ("groups raised", lambda r, s: str(r["counters"].get("groups_raised", 0)))]
    label_width = max(len(label) for label, _ in rows) + 2
    print(f"{'':<{label_width}}" + "".join(f"{c:>{width}}" for c in columns))
    for label, value in rows:
        print(f"{label:<{label_width}}" + "".join(f"{value(r, s):>{width}}" for s, r in results.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", metavar="KUBECONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="only the smallest size")
    sizes.add_argument("--largest", action="store_true", help="only the largest size")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.trace)))
        return

    from autoscaler.fakes.aws import FakeAws

    results = {}
    workdir = tempfile.mkdtemp(prefix="bench-loop-")
    with FakeAws() as aws:
        for size in SIZES[:1] if args.quick else SIZES[-1:] if args.largest else SIZES:
            results[size] = result = measure(aws, size, Path(workdir))
            if not result["ok"]:
                print(f"loop at {size} failed: {result['error']}", file=sys.stderr)
            built = ", ".join(f"{part} {seconds:.1f} s" for part, seconds in result["build"].items())
            print(f"built {size[0]:,} pending pods / {size[1]:,} nodes / {size[2]} groups ({built}); "
                  f"loop log: {result['log']}", file=sys.stderr, flush=True)
        print_results(results)


if __name__ == "__main__":
    main()
