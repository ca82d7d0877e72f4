"""Leader election on a coordination.k8s.io/v1 Lease: in process with a controlled clock, then two
real autoscaler processes of which exactly one acts, and the other takes over when it stops."""
import os
import socket
import threading

import pytest

from kubernetes import client as kube_client
from silent_server import DrippingServer

from autoscaler.clients.kube_connect import BoundedApiClient, connect
from autoscaler.fakes.kube_objects import make_pod
from autoscaler.run import daemon
from autoscaler.run import leader as leader_module
from autoscaler.run.leader import LEASE_NAME, LeaderElector, default_identity
from autoscaler.run.loop import LoopReport
from daemon_process import poll


class FakeMonotonic:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def electors(fake_kube):
    clocks = {}

    def make(identity):
        clocks[identity] = FakeMonotonic()
        return LeaderElector(connect(fake_kube.kubeconfig), identity=identity, monotonic=clocks[identity])

    make.clocks = clocks
    return make


def lease(fake_kube):
    return fake_kube.get("Lease", LEASE_NAME, "kube-system")


def test_the_first_replica_creates_the_lease_and_leads(fake_kube, electors):
    first, second = electors("a"), electors("b")
    assert first.try_acquire_or_renew() and first.is_leader()
    assert not second.try_acquire_or_renew() and not second.is_leader()
    spec = lease(fake_kube)["spec"]
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0


def test_a_standby_waits_while_the_holder_renews_and_takes_over_once_it_stops(fake_kube, electors):
    first, second = electors("a"), electors("b")
    clock_a, clock_b = electors.clocks["a"], electors.clocks["b"]
    first.try_acquire_or_renew()
    for _ in range(10):  # 20 s of renewals every 2 s: longer than the lease, never expired
        clock_a.now += 2
        clock_b.now += 2
        assert first.try_acquire_or_renew()
        assert not second.try_acquire_or_renew()
    # The holder stops renewing; it stops counting itself leader after the renew deadline...
    clock_a.now += 10
    assert not first.is_leader()
    # ...and the standby takes over once it has seen the same renewal for a lease duration.
    second.try_acquire_or_renew()
    clock_b.now += 14
    assert not second.try_acquire_or_renew()
    clock_b.now += 1
    assert second.try_acquire_or_renew() and second.is_leader()
    spec = lease(fake_kube)["spec"]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    # The old holder sees the new one and does not take the lease back.
    assert not first.try_acquire_or_renew()


def test_a_released_lease_is_taken_at_once(fake_kube, electors):
    first, second = electors("a"), electors("b")
    first.try_acquire_or_renew()
    assert not second.try_acquire_or_renew()
    first.release()
    assert not first.is_leader()
    assert lease(fake_kube)["spec"].get("holderIdentity") is None
    assert second.try_acquire_or_renew()  # no waiting for expiry


@pytest.mark.parametrize("method, status", [("PUT", 409), ("PUT", 500), ("GET", 500)],
                         ids=["conflict", "write-error", "read-error"])
def test_a_failed_renewal_is_not_leadership(fake_kube, electors, method, status):
    first = electors("a")
    first.try_acquire_or_renew()
    fake_kube.fail_next(method, r"/leases/", status=status, count=100)
    electors.clocks["a"].now += 2
    assert not first.try_acquire_or_renew()
    electors.clocks["a"].now += 10
    assert not first.is_leader()


def test_a_lease_call_to_a_server_that_drips_its_answer_ends_at_the_lease_s_own_timeout(monkeypatch, caplog):
    """The Lease's calls give one number (5 s in all): it is their total deadline too, shorter than
    other calls' (kube_connect.CALL_DEADLINE_SECONDS), so a renewal never outlives the renew deadline."""
    monkeypatch.setattr(leader_module, "REQUEST_TIMEOUT_SECONDS", 1)
    with DrippingServer() as server:  # its 5 s lifetime bounds the test
        elector = LeaderElector(BoundedApiClient(kube_client.Configuration(host=server.url)), identity="a")
        assert not elector.try_acquire_or_renew()
    assert "read lease kube-system/kubernetes-ec2-autoscaler: the Kubernetes API server timed out: no complete " \
           "answer within 1 s" in caplog.text


def test_waiting_for_leadership_ends_when_stopped(electors):
    standby = electors("b")
    stop = threading.Event()
    stop.set()
    assert standby.wait_for_leadership(stop, timeout=60) is False


def test_identities_are_unique_even_for_the_same_host_and_pid():
    first, second = default_identity(), default_identity()
    assert first != second
    assert first.startswith(f"{socket.gethostname()}_{os.getpid()}_")


def failing_token_refresh(elector, times, error):
    """The client's token refresh (an exec plugin) raises ``error`` on its next ``times`` calls."""
    configuration = elector.api.api_client.configuration
    remaining = [times]

    def refresh(_configuration):
        if remaining[0] > 0:
            remaining[0] -= 1
            raise error

    configuration.api_key["authorization"] = "Bearer token"
    configuration.refresh_api_key_hook = refresh
    return remaining


def test_an_unexpected_error_is_a_failed_renewal(electors, caplog):
    first = electors("a")
    assert first.try_acquire_or_renew()
    failing_token_refresh(first, 1, RuntimeError("exec plugin crashed"))
    assert not first.try_acquire_or_renew()
    assert "renewing the lease failed unexpectedly" in caplog.text and "Traceback" in caplog.text
    assert first.try_acquire_or_renew()


def test_the_renewing_thread_outlives_unexpected_errors(fake_kube):
    elector = LeaderElector(connect(fake_kube.kubeconfig), identity="a", lease_duration=3, renew_deadline=2,
                            retry_period=0.05)
    remaining = failing_token_refresh(elector, 3, RuntimeError("exec plugin crashed"))
    stop = threading.Event()
    elector.start(stop)
    try:
        poll(elector.is_leader, 10, "the lease, once the token refresh works again")
        assert remaining == [0]
    finally:
        stop.set()
        elector.join()


def stale_lease(fake_kube, duration=15, holder="dead-pod_1_0a1b2c3d"):
    """A lease whose holder died: renewed once, long ago, never again."""
    fake_kube.add({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": LEASE_NAME, "namespace": "kube-system"},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "leaseTransitions": 0,
                 "acquireTime": "2026-11-27T08:00:00.000000Z", "renewTime": "2026-11-27T09:00:00.000000Z"},
    })


# name -> (the holder's lease duration, whether the holder still renews, taken, seconds waited at most)
ACQUIRE_CASES = {
    "dead-holder": (15, False, True, 17),
    "dead-holder-with-a-longer-lease": (30, False, True, 32),
    "live-holder": (15, True, False, 17),
}


@pytest.mark.parametrize("duration, renewing, taken, waited", ACQUIRE_CASES.values(), ids=ACQUIRE_CASES.keys())
def test_acquire_waits_for_a_stale_lease_to_expire(fake_kube, electors, duration, renewing, taken, waited):
    stale_lease(fake_kube, duration)
    elector = electors("once")
    clock = electors.clocks["once"]
    holder = electors("holder")
    if renewing:
        holder.identity = lease(fake_kube)["spec"]["holderIdentity"]
    started = clock.now

    def wait(seconds):
        clock.now += seconds
        if renewing:
            assert holder.try_acquire_or_renew()

    assert elector.acquire(threading.Event(), wait=wait) is taken
    assert clock.now - started <= waited
    assert (lease(fake_kube)["spec"]["holderIdentity"] == "once") is taken


def test_once_with_election_takes_a_lease_left_by_a_dead_holder(fake_kube):
    stale_lease(fake_kube, duration=1)
    elector = LeaderElector(connect(fake_kube.kubeconfig), identity="once", lease_duration=1, renew_deadline=0.5,
                            retry_period=0.1)

    class OneLoop:
        def run_once(self):
            self.held = lease(fake_kube)["spec"]["holderIdentity"]
            return LoopReport(True)

    loop = OneLoop()
    assert daemon._run_once(loop, elector, threading.Event()) == 0
    assert loop.held == "once"
    assert lease(fake_kube)["spec"].get("holderIdentity") is None  # released at the end


# ---- two processes ------------------------------------------------------------------------------

def holder(fake_kube):
    found = lease(fake_kube)
    return (found or {}).get("spec", {}).get("holderIdentity")


def test_two_replicas_one_acts_and_the_other_takes_over_when_it_stops(fake_aws, fake_kube, start_autoscaler):
    fake_aws.create_group("us-west-2", "cpu-west", "e2e", instance_type="m5.xlarge", max_size=20)
    for index in range(3):
        fake_kube.add(make_pod(f"job-{index}", cpu="1", memory="1Gi"))
    args = ("--regions", "us-west-2", "--over-provision", "0", "--sleep", "1", "--metrics-port", "0",
            "--leader-elect", "-vv")
    replicas = [start_autoscaler(*args, name="one"), start_autoscaler(*args, name="two")]
    identity = poll(lambda: holder(fake_kube), 60, "a replica to take the lease")
    [leader] = [r for r in replicas if f"_{r.pid}_" in identity]
    [standby] = [r for r in replicas if r is not leader]
    poll(lambda: leader.log().count("Loop done:") >= 2, 60, "two loops of the leader")
    assert "Running Scaling Loop" not in standby.log()
    raises = [call for call in fake_aws.mutating_calls() if call.action == "SetDesiredCapacity"]
    assert len(raises) == 1

    assert leader.terminate() == 0, leader.log()
    assert "released the lease" in leader.log()
    new_identity = poll(lambda: holder(fake_kube) not in (None, identity) and holder(fake_kube), 30,
                        "the standby to take the lease")
    assert f"_{standby.pid}_" in new_identity
    standby.wait_for_log("Loop done:")
    assert len([c for c in fake_aws.mutating_calls() if c.action == "SetDesiredCapacity"]) == 1, \
        "booting instances count as spare: the new leader does not raise again"
    assert standby.terminate() == 0, standby.log()
