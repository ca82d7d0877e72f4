"""Leader election on a coordination.k8s.io/v1 Lease: in process with a controlled clock, then two
real autoscaler processes of which exactly one acts, and the other takes over when it stops."""
import threading

import pytest

from autoscaler.fakes.kube_objects import make_pod
from autoscaler.kube_connect import connect
from autoscaler.leader import LEASE_NAME, LeaderElector
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


def test_waiting_for_leadership_ends_when_stopped(electors):
    standby = electors("b")
    stop = threading.Event()
    stop.set()
    assert standby.wait_for_leadership(stop, timeout=60) is False


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
    [leader] = [r for r in replicas if identity.endswith(f"_{r.pid}")]
    [standby] = [r for r in replicas if r is not leader]
    poll(lambda: leader.log().count("Loop done:") >= 2, 60, "two loops of the leader")
    assert "Running Scaling Loop" not in standby.log()
    raises = [call for call in fake_aws.mutating_calls() if call.action == "SetDesiredCapacity"]
    assert len(raises) == 1

    assert leader.terminate() == 0, leader.log()
    assert "released the lease" in leader.log()
    new_identity = poll(lambda: holder(fake_kube) not in (None, identity) and holder(fake_kube), 30,
                        "the standby to take the lease")
    assert new_identity.endswith(f"_{standby.pid}")
    standby.wait_for_log("Loop done:")
    assert len([c for c in fake_aws.mutating_calls() if c.action == "SetDesiredCapacity"]) == 1, \
        "booting instances count as spare: the new leader does not raise again"
    assert standby.terminate() == 0, standby.log()
