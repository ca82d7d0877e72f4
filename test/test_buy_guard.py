"""buy_guard: where the scheduler does not place a pod that the model says fits, the autoscaler
stops buying for it there and stops holding the node for it: never a buy loop.

Each test runs decide() over several loops of a world in which the scheduler never places the pod
(a rule the model does not know), advancing the clock and turning every instance bought into an
initialized node, as a cluster would."""
from dataclasses import replace
from datetime import timedelta

from autoscaler.decide.buy_guard import GuardState, grace_seconds
from autoscaler.decide.decision import decide
from autoscaler.decide.group_health import GroupHealthState
from autoscaler.model.config import Settings
from autoscaler.model.objects import NodeState
from autoscaler.model.plan import Notify, SetDesiredCapacity
from builders import NOW, make_group, make_group_nodes, make_pod, make_shape, make_snapshot

SETTINGS = Settings(cluster_name="test", regions=("us-west-2",), over_provision=0)
LARGE = make_group("large", shapes=[make_shape("m5.large", cpu="2", memory="8Gi")], max_size=20)
XLARGE = make_group("xlarge", shapes=[make_shape("m5.xlarge", cpu="4", memory="16Gi")], max_size=20)


class World:
    """Groups whose desired capacity turns into initialized nodes one loop later; pods that stay
    pending whatever the nodes (the scheduler refuses them for a reason the model does not know)."""

    def __init__(self, groups, pods, settings=SETTINGS):
        self.groups = {group.name: group for group in groups}
        self.nodes = []
        self.pods = list(pods)
        self.settings = settings
        self.health = GroupHealthState()
        self.guard = GuardState()
        self.now = NOW
        self.bought = {name: 0 for name in self.groups}
        self.notices = []

    def loop(self):
        snapshot = make_snapshot(pods=self.pods, nodes=self.nodes, groups=list(self.groups.values()))
        decision = decide(snapshot, self.settings, self.now, self.health, self.guard)
        self.health, self.guard = decision.health, decision.guard
        self.notices.extend(a for a in decision.actions if isinstance(a, Notify) and a.kind == "model-mismatch")
        for action in decision.actions:
            if isinstance(action, SetDesiredCapacity) and action.desired > action.previous:
                group = self.groups[action.group]
                self.bought[action.group] += action.desired - action.previous
                grown, nodes = make_group_nodes(group, action.desired - len(group.instance_ids),
                                                created=self.now + timedelta(seconds=30))
                self.groups[action.group] = replace(grown, desired=action.desired)
                self.nodes.extend(nodes)
        self.now += timedelta(seconds=self.settings.sleep)
        return decision


def test_an_instance_that_came_up_empty_stops_the_buying_for_its_pod_in_that_group():
    world = World([LARGE], [make_pod("job", cpu="1800m")])
    decisions = [world.loop() for _ in range(12)]
    assert world.bought == {"large": 1}  # not one per loop up to max size
    assert [n.pods for n in world.notices] == [("default/job",)]  # said once
    assert "an instance was bought for it and came up empty" in world.notices[0].message
    assert sum(d.counts.model_mismatches for d in decisions) == 1
    # ... and scale in no longer holds the node for the pod: it is an idle node like any other.
    last = decide(make_snapshot(pods=world.pods, nodes=world.nodes, groups=list(world.groups.values())),
                  SETTINGS, world.now, world.health, world.guard)
    assert last.counts.nodes_by_state.get(NodeState.POD_PENDING, 0) == 0


def test_the_pod_then_gets_the_next_group_and_the_buying_ends_after_one_instance_per_group():
    world = World([LARGE, XLARGE], [make_pod("job", cpu="1800m")])
    for _ in range(20):
        world.loop()
    assert world.bought == {"large": 1, "xlarge": 1}
    assert len(world.notices) == 2


def test_with_over_provision_the_buying_is_still_bounded():
    world = World([LARGE], [make_pod("job", cpu="1800m")], replace(SETTINGS, over_provision=5))
    for _ in range(12):
        world.loop()
    assert world.bought == {"large": 6}


def test_a_pod_waiting_beside_a_node_that_fits_is_not_held_for_past_the_grace():
    """No instance was bought for it: the node was there. Scale in holds the node pod-pending for
    a few loops, then treats it as idle, and the pod is not planned onto the node again."""
    group, nodes = make_group_nodes(LARGE, 1, created=NOW - timedelta(hours=3))
    world = World([group], [make_pod("job", cpu="1")])
    world.nodes = nodes
    states = []
    for _ in range(6):
        decision = world.loop()
        states.append(decision.counts.nodes_by_state)
    grace_loops = int(grace_seconds(SETTINGS) // SETTINGS.sleep)
    assert all(s.get(NodeState.POD_PENDING) == 1 for s in states[:grace_loops])
    assert all(not s.get(NodeState.POD_PENDING) for s in states[grace_loops + 1:])
    assert len(world.notices) == 1 and "waited" in world.notices[0].message
    assert world.bought == {"large": 0}  # and nothing is bought for it in the group whose node it spurned


def test_a_pod_the_scheduler_places_is_never_a_mismatch():
    """The pod runs on the instance bought for it: nothing to report, nothing remembered."""
    world = World([LARGE], [make_pod("job", cpu="1800m")])
    world.loop()
    world.loop()  # the node is there now
    world.pods = [make_pod("job", cpu="1800m", node=world.nodes[0].name)]
    for _ in range(6):
        world.loop()
    assert world.notices == [] and world.guard.mismatches == {} and world.guard.bought == {}
