"""Notices about the same pods are sent once while nothing changes (issue 9, point 6)."""
from autoscaler.decide.notices import RepeatedNotices
from autoscaler.model.plan import Notify, SetDesiredCapacity
from builders import make_group, make_pod, make_snapshot
from loop_stubs import StubWorld, make_loop

FAILED_AB = Notify("scale-up-failed", "failed to scale up for 2 pending pods", pods=("ns/a", "ns/b"))
FAILED_A = Notify("scale-up-failed", "failed to scale up for 1 pending pod", pods=("ns/a",))
INFEASIBLE_A = Notify("infeasible-pods", "1 pending pod fits nothing", pods=("ns/a",))
RAISE = SetDesiredCapacity("g", "us-west-2", 2, 1, "pods")
DRAINED = Notify("drained", "drained a node")


def test_a_notice_about_the_same_pods_is_not_repeated_while_nothing_changed():
    notices = RepeatedNotices()
    # loop -> (actions decided, actions kept)
    loops = [
        ([RAISE, FAILED_AB], [RAISE, FAILED_AB]),  # first time: sent
        ([RAISE, FAILED_AB], [RAISE]),  # same pods: not again (raises are never held back)
        ([FAILED_AB, DRAINED], [DRAINED]),
        ([FAILED_A], [FAILED_A]),  # the pods changed: sent
        ([FAILED_A, INFEASIBLE_A], [INFEASIBLE_A]),  # another kind about the same pod is news
        ([], []),  # gone...
        ([FAILED_A], [FAILED_A]),  # ...and back: sent again
        ([DRAINED], [DRAINED]),
        ([DRAINED], [DRAINED]),  # notices about no pods always go out
    ]
    for decided, kept in loops:
        assert list(notices.filter(decided)) == kept


def test_the_loop_sends_a_failed_scale_up_once_while_the_same_pods_wait():
    full = make_group("full", max_size=0)
    waiting = make_snapshot([make_pod("job", cpu="1")], groups=[full])
    another = make_snapshot([make_pod("job", cpu="1"), make_pod("job-2", cpu="1")], groups=[full])
    loop = make_loop(StubWorld(waiting, waiting, another))
    sent = []
    loop.actuator.notifier.post = lambda text: sent.append(text) or True
    for _ in range(3):
        assert loop.run_once().ok
    assert [text.split(":")[0] for text in sent] == ["failed to scale up for 1 pending pods {any node}",
                                                     "failed to scale up for 2 pending pods {any node}"]
