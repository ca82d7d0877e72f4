"""In-process stand-ins for the loop's collaborators: a world that returns given snapshots (or
raises), and AWS/Kubernetes adapters that record calls (or raise), behind the real Actuator."""
from __future__ import annotations

from autoscaler.act.actuator import Actuator
from autoscaler.act.notifier import SlackNotifier
from autoscaler.model.config import Settings
from autoscaler.run.loop import Loop
from autoscaler.run.observer import Observers
from builders import NOW


class StubWorld:
    """``read`` returns (or raises) the next item of ``results``; the last one repeats."""

    def __init__(self, *results):
        self.results = list(results)
        self.reads = 0

    def read(self, now):
        result = self.results[min(self.reads, len(self.results) - 1)]
        self.reads += 1
        if isinstance(result, BaseException):
            raise result
        return result


class RecordingAdapter:
    """Any method call is recorded as (name, args); ``fail`` maps a method name to the error it raises."""

    def __init__(self, fail=None, before_call=None):
        self.calls = []
        self.fail = dict(fail or {})
        self.before_call = before_call

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)

        def call(*args):
            if self.before_call:
                self.before_call(name, args)
            self.calls.append((name, args))
            if name in self.fail:
                raise self.fail[name]
            return True
        return call


def make_settings(**overrides) -> Settings:
    options = dict(cluster_name="test", regions=("us-west-2",), over_provision=0, sleep=60)
    options.update(overrides)
    return Settings(**options)


def make_loop(world, settings=None, aws=None, kube=None, *, events=None, metrics=None, liveness=None,
              **loop_options) -> Loop:
    """The loop over the real Actuator, wired as the daemon wires it: ``events`` posts through the
    actuator, ``metrics`` and ``liveness`` observe the loop."""
    settings = settings or make_settings()
    actuator = Actuator(aws or RecordingAdapter(), kube or RecordingAdapter(), SlackNotifier(None), settings.dry_run,
                        events=events)
    loop_options.setdefault("clock", lambda: NOW)
    loop_options.setdefault("observer", Observers(*(each for each in (metrics, liveness) if each is not None)))
    return Loop(world, actuator, settings, **loop_options)
