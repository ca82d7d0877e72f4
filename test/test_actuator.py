"""The dispatcher: dry-run changes nothing, each action is applied on its own, Slack is never fatal."""
import logging

import pytest
from silent_server import DrippingServer
from slack_capture import SlackCapture

from autoscaler.model import plan as p
from autoscaler.act.actuator import Actuator
from autoscaler.clients.kube_errors import KubeUnreachable
from autoscaler.act import notifier as notifier_module
from autoscaler.act.notifier import SlackNotifier


class Recorder:
    """Stands in for the AWS and Kubernetes actuators; records what reached them, fails on demand."""

    def __init__(self, fail_on=()):
        self.calls = []
        self.fail_on = set(fail_on)

    def __getattr__(self, name):
        def call(*args):
            if name in self.fail_on:
                raise RuntimeError(f"{name} refused")
            self.calls.append((name, *args))
            return True
        return call


@pytest.fixture
def slack():
    capture = SlackCapture()
    yield capture
    capture.close()


PLAN = (
    p.SetDesiredCapacity("gpu", "us-west-2", 3, 1, "2 pods need 2 instances", pods=("default/a", "default/b")),
    p.Cordon("n1", "idle"),
    p.TerminateInstance("i-1", "gpu", "us-west-2", True, "idle", node="n2"),
    p.Notify("infeasible-pods", "1 pod fits no instance type"),
)


def test_dry_run_logs_every_action_and_calls_nothing(slack, caplog):
    aws, kube = Recorder(), Recorder()
    with caplog.at_level(logging.INFO):
        result = Actuator(aws, kube, SlackNotifier(slack.url), dry_run=True).apply(PLAN)
    assert aws.calls == [] and kube.calls == [] and slack.messages == []
    assert "[dry-run] would set desired capacity of gpu (us-west-2) from 1 to 3" in caplog.text
    assert "[dry-run] would terminate instance i-1" in caplog.text
    assert "1 pod fits no instance type" in caplog.text  # the operator still sees the warning
    assert sum(result.applied.values()) == len(PLAN)


def test_real_run_applies_in_order_and_posts_to_slack(slack):
    aws, kube = Recorder(), Recorder()
    result = Actuator(aws, kube, SlackNotifier(slack.url), dry_run=False).apply(PLAN)
    assert aws.calls == [("set_desired_capacity", "gpu", "us-west-2", 3), ("terminate_instance", "i-1", "us-west-2", True)]
    assert kube.calls == [("cordon", "n1"), ("delete_node", "n2")]
    assert slack.messages[0] == "Scaled up gpu (us-west-2) by 2, from 1 to 3 instances, for pods: default/a, default/b"
    assert slack.messages[1] == "1 pod fits no instance type"
    assert result.cloud_errors == 0


def test_one_failed_action_does_not_stop_the_others(slack, caplog):
    aws, kube = Recorder(fail_on={"set_desired_capacity"}), Recorder()
    result = Actuator(aws, kube, SlackNotifier(slack.url), dry_run=False).apply(PLAN)
    assert ("cordon", "n1") in kube.calls and ("terminate_instance", "i-1", "us-west-2", True) in aws.calls
    assert result.failed[p.SetDesiredCapacity] == 1 and result.cloud_errors == 1
    assert "set_desired_capacity refused" in caplog.text


def test_a_failing_slack_hook_is_logged_without_its_url_and_never_fatal(caplog):
    failing = SlackCapture(status=500)
    try:
        aws, kube = Recorder(), Recorder()
        result = Actuator(aws, kube, SlackNotifier(failing.url), dry_run=False).apply(PLAN)
    finally:
        failing.close()
    assert result.cloud_errors == 0 and aws.calls
    assert "Slack notification failed" in caplog.text and "secret-token" not in caplog.text


def test_unreachable_slack_hook_is_not_fatal(caplog):
    notifier = SlackNotifier("http://127.0.0.1:9/hook")
    assert notifier.post("hello") is False and notifier.failed == 1


def test_a_slack_hook_that_drips_its_answer_fails_the_post_at_its_deadline(monkeypatch, caplog):
    monkeypatch.setattr(notifier_module, "POST_TIMEOUT_SECONDS", 1)
    with DrippingServer() as server:  # closes its connections after 5 s: the post fails otherwise, unnamed
        notifier = SlackNotifier(f"{server.url}/services/T000/B000/secret-token")
        assert notifier.post("hello") is False and notifier.failed == 1
    assert "Slack notification failed (DeadlineExceeded)" in caplog.text and "secret-token" not in caplog.text


def test_the_scale_up_message_counts_every_pod_of_the_raise(slack):
    raise_for_24 = p.SetDesiredCapacity("cpu", "us-west-2", 9, 1, "24 pods", pods=tuple(f"d/{i}" for i in range(20)),
                                        pod_count=24)
    Actuator(Recorder(), Recorder(), SlackNotifier(slack.url), dry_run=False).apply((raise_for_24,))
    assert slack.messages == ["Scaled up cpu (us-west-2) by 8, from 1 to 9 instances, for pods: "
                              "d/0, d/1, d/2, d/3, d/4 and 19 more"]


TERMINATIONS = (p.TerminateInstance("i-1", "gpu", "us-west-2", True, "idle", node="n1"),
                p.TerminateInstance("i-2", "gpu", "us-west-2", True, "idle", node="n2"))


class RefusingOne(Recorder):
    def terminate_instance(self, instance_id, *args):
        if instance_id == "i-1":
            raise RuntimeError("ValidationError: Instance is in a transitional state")
        self.calls.append(("terminate_instance", instance_id, *args))


@pytest.mark.parametrize("aws, sent", [
    pytest.param(Recorder(), ["terminating 2 instance(s): n1 (gpu), n2 (gpu)"], id="all-done"),
    pytest.param(RefusingOne(), ["terminating 1 instance(s): n2 (gpu)",
                                 "1 of 2 action(s) failed (nodes-terminated): terminate instance i-1 in gpu (us-west-2), "
                                 "lowering desired capacity: idle: ValidationError: Instance is in a transitional state"],
                 id="one-failed"),
    pytest.param(Recorder(fail_on={"terminate_instance"}), None, id="all-failed"),
])
def test_a_notice_names_only_what_was_done_and_a_failure_gets_its_own_message(slack, aws, sent):
    notice = p.Notify("nodes-terminated", p.terminations_message(TERMINATIONS), about=TERMINATIONS)
    Actuator(aws, Recorder(), SlackNotifier(slack.url), dry_run=False).apply(TERMINATIONS + (notice,))
    if sent is None:  # nothing was terminated: no "terminating" message at all
        assert len(slack.messages) == 1 and slack.messages[0].startswith("2 of 2 action(s) failed (nodes-terminated)")
    else:
        assert slack.messages == sent


def test_a_failed_scale_up_is_announced_as_failed(slack):
    Actuator(Recorder(fail_on={"set_desired_capacity"}), Recorder(), SlackNotifier(slack.url), dry_run=False).apply(PLAN[:1])
    assert slack.messages == ["Failed to set desired capacity of gpu (us-west-2) from 1 to 3: 2 pods need 2 instances: "
                              "set_desired_capacity refused"]


class Unanswering(Recorder):
    """An API server that stopped answering: every cordon waits out its timeout."""

    def cordon(self, node):
        self.calls.append(("cordon", node))
        raise KubeUnreachable(f"cordon node {node}: cannot reach the Kubernetes API server (timed out)")


def test_a_plan_stops_after_two_calls_in_a_row_get_no_answer():
    kube = Unanswering()
    plan = tuple(p.Cordon(f"n{i}", "idle") for i in range(10))
    result = Actuator(Recorder(), kube, SlackNotifier(None), dry_run=False).apply(plan)
    assert kube.calls == [("cordon", "n0"), ("cordon", "n1")]
    assert result.failed[p.Cordon] == 2 and result.not_attempted == 8


def test_an_answer_between_two_unanswered_calls_lets_the_plan_go_on():
    kube = Unanswering()
    plan = (p.Cordon("n0", "idle"), p.Uncordon("n1", "busy"), p.Cordon("n2", "idle"), p.Uncordon("n3", "busy"))
    result = Actuator(Recorder(), kube, SlackNotifier(None), dry_run=False).apply(plan)
    assert result.not_attempted == 0 and result.applied[p.Uncordon] == 2
