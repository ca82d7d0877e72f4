"""The command line: ``kubernetes-ec2-autoscaler`` (installed) or ``python main.py`` (a checkout).

    kubernetes-ec2-autoscaler --cluster-name NAME --regions us-west-2,us-east-1 [--dry-run] [-vvv] ...

Flags and defaults follow the original project (see README.md). Every flag can also be given as
an environment variable ``AUTOSCALER_<FLAG>`` (click's auto_envvar_prefix); the original's
variables for the AWS keys and the Slack hook keep working and win over those. Bad flags end with
one line on stderr naming the flag, and exit code 2, before any API call.
"""
from __future__ import annotations

import os
import sys
from typing import Optional

import click

from .. import __version__
from ..clients.regions import known_regions
from ..model import config
from ..model.config import Settings, SettingsError

PROGRAM = "kubernetes-ec2-autoscaler"
ENV_PREFIX = "AUTOSCALER"
ENV_EPILOG = (f"Every flag can also come from an environment variable: {ENV_PREFIX}_ and the flag's name in "
              f"upper case with underscores (--cluster-name: {ENV_PREFIX}_CLUSTER_NAME=my-cluster; "
              f"--dry-run: {ENV_PREFIX}_DRY_RUN=true; -v: {ENV_PREFIX}_VERBOSE=2). A flag on the command line "
              f"wins over its variable; the variables named in a flag's help win over {ENV_PREFIX}_ ones.")


class Number(click.ParamType):
    """A finite number within bounds (config.check_number): click's FloatRange lets NaN through,
    since every comparison with it is false, and infinity through an open upper end."""

    name = "number"

    def __init__(self, minimum: float, maximum: float, above_minimum: bool = False, integer: bool = False):
        self.minimum, self.maximum, self.above_minimum, self.integer = minimum, maximum, above_minimum, integer
        self.name = "integer" if integer else "float"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(value, 10) if self.integer else float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not {'a whole number' if self.integer else 'a number'}", param, ctx)
        try:
            return config.check_number(param.opts[0] if param else "value", number, self.minimum, self.maximum,
                                       above_minimum=self.above_minimum)
        except SettingsError as error:
            self.fail(str(error).split(": ", 1)[1], param, ctx)

    def get_metavar(self, param, ctx=None):
        low = f"{self.minimum:g}<x" if self.above_minimum else f"{self.minimum:g}<=x"
        return f"{'INTEGER' if self.integer else 'FLOAT'} [{low}<={self.maximum:g}]"


def _regions(ctx, param, value):
    try:
        return config.parse_regions(value, known_regions())
    except SettingsError as error:
        raise click.BadParameter(str(error).split(": ", 1)[1]) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True,
                                 "auto_envvar_prefix": ENV_PREFIX, "max_content_width": 120},
               epilog=ENV_EPILOG)
@click.version_option(__version__, "--version", prog_name=PROGRAM, message="%(prog)s %(version)s")
@click.option("--cluster-name", default=None, show_default=False,
              help="Value of the KubernetesCluster tag of the groups to manage (required, except with --sandbox).")
@click.option("--regions", default=",".join(config.DEFAULT_REGIONS), callback=_regions,
              help="Comma-separated regions in order of preference; pods overflow to the next one.")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False, readable=True),
              help="Path to a kubeconfig. Without it, the in-cluster service account is used.")
@click.option("--pod-namespace", default=None, help="Only consider pods of this namespace (default: all).")
@click.option("--idle-threshold", type=Number(0, config.MAX_SECONDS), default=config.DEFAULT_IDLE_THRESHOLD,
              help="Seconds a node may stay idle before it is removed.")
@click.option("--type-idle-threshold", type=Number(0, config.MAX_SECONDS), default=config.DEFAULT_TYPE_IDLE_THRESHOLD,
              help="Seconds the few spare idle nodes kept per group may stay idle.")
@click.option("--instance-init-time", type=Number(0, config.MAX_SECONDS), default=config.DEFAULT_INSTANCE_INIT_TIME,
              help="Seconds an instance may take to become a node before it is considered unhealthy.")
@click.option("--sleep", type=Number(0, config.MAX_SLEEP_SECONDS, above_minimum=True), default=config.DEFAULT_SLEEP,
              help="Seconds between loops.")
@click.option("--over-provision", type=Number(0, config.MAX_OVER_PROVISION, integer=True), default=config.DEFAULT_OVER_PROVISION,
              help="Extra instances added to every scale up of a group.")
@click.option("--expander", type=click.Choice(config.EXPANDERS), default=config.DEFAULT_EXPANDER,
              help="How scale up chooses among groups of one priority and region: price (least $/h), "
                   "least-waste (least unused room) or priority (the original's order: single-AZ, spot, name).")
@click.option("--max-scale-in-fraction", type=Number(0, 1), default=config.DEFAULT_MAX_SCALE_IN_FRACTION,
              help="Most of all instances one loop may remove (rounded up); see --scale-in-cap.")
@click.option("--scale-in-cap", type=click.Choice(config.SCALE_IN_CAPS), default=config.DEFAULT_SCALE_IN_CAP,
              help="rate: each loop removes at most --max-scale-in-fraction of all instances, the longest idle "
                   "first; brake (the original's): a loop that would remove more removes none.")
@click.option("--drain-utilization", type=Number(0, 1), default=config.DEFAULT_DRAIN_UTILIZATION,
              help="Drain busy nodes used below this fraction of their capacity (0 turns draining off).")
@click.option("--group-timeout", type=Number(0, config.MAX_SECONDS), default=config.GROUP_TIMEOUT_SECONDS,
              help="Seconds a group whose launches failed is skipped by scale up.")
@click.option("--startup-taint", "startup_taints", multiple=True, metavar="KEY", show_default=False,
              help="A taint key that nodes carry while they start and lose by themselves (repeatable); "
                   "built in: the node lifecycle ones, Cilium's, the EBS/EFS CSI drivers', and "
                   "startup-taint.cluster-autoscaler.kubernetes.io/*.")
@click.option("--aws-access-key", envvar=["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"], default=None, show_default=False,
              help="AWS access key [env AWS_ACCESS_KEY_ID or AWS_ACCESS_KEY]; default: the AWS credential chain.")
@click.option("--aws-secret-key", envvar="AWS_SECRET_ACCESS_KEY", default=None, show_default=False,
              help="AWS secret key [env AWS_SECRET_ACCESS_KEY].")
@click.option("--slack-hook", envvar="SLACK_HOOK", default=None, show_default=False,
              help="Slack incoming webhook for scaling notifications [env SLACK_HOOK].")
@click.option("--dry-run", is_flag=True, help="Decide everything, change nothing: actions are only logged.")
@click.option("--no-scale", is_flag=True, help="Do not scale up.")
@click.option("--no-maintenance", is_flag=True, help="Do not scale in (no cordon, drain or terminate).")
@click.option("--once", is_flag=True, help="Run one loop, then exit 0 on success, 1 on failure.")
@click.option("--sandbox", is_flag=True,
              help="Run against a simulated cluster (moto and a fake Kubernetes API) in this process, replaying a job trace.")
@click.option("--sandbox-trace", default=None, show_default=False, metavar="NAME|FILE",
              help="Job trace for --sandbox: a bundled one by name (demo, mixed) or a YAML file; default: demo.")
@click.option("--sandbox-speed", type=Number(0, config.MAX_SANDBOX_SPEED), default=None, show_default=False,
              help="Simulated seconds per real second for --sandbox (default 100; 0: as fast as possible).")
@click.option("--sandbox-out", type=click.Path(file_okay=False), default="out/sandbox",
              help="Where --sandbox writes report.json and the chart.")
@click.option("-v", "--verbose", count=True, help="-v warnings, -vv info, -vvv debug.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=config.DEFAULT_METRICS_PORT,
              help="Port of /metrics (Prometheus) and /healthz; 0 turns the server off. Not served with --once.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              help="text: the original's format; json: one object per line, the loop's counters as fields.")
@click.option("--leader-elect/--no-leader-elect", default=None, show_default=False,
              help="Act only while holding the Lease kubernetes-ec2-autoscaler (in --leader-elect-namespace), so replicas never "
                   "both act. Default: on in-cluster (no --kubeconfig), off with --kubeconfig.")
@click.option("--leader-elect-namespace", default=config.DEFAULT_LEADER_ELECT_NAMESPACE,
              help="Namespace of the leader election Lease.")
def cli(**flags):
    settings = Settings(
        cluster_name=flags["cluster_name"],
        regions=flags["regions"],
        kubeconfig=flags["kubeconfig"],
        pod_namespace=flags["pod_namespace"],
        idle_threshold=flags["idle_threshold"],
        type_idle_threshold=flags["type_idle_threshold"],
        instance_init_time=flags["instance_init_time"],
        sleep=flags["sleep"],
        over_provision=flags["over_provision"],
        expander=flags["expander"],
        max_scale_in_fraction=flags["max_scale_in_fraction"],
        scale_in_cap=flags["scale_in_cap"],
        drain_utilization=flags["drain_utilization"],
        group_timeout=flags["group_timeout"],
        startup_taints=tuple(flags["startup_taints"]),
        aws_access_key=flags["aws_access_key"],
        aws_secret_key=flags["aws_secret_key"],
        slack_hook=flags["slack_hook"],
        dry_run=flags["dry_run"],
        no_scale=flags["no_scale"],
        no_maintenance=flags["no_maintenance"],
        once=flags["once"],
        verbosity=flags["verbose"],
        metrics_port=flags["metrics_port"],
        log_format=flags["log_format"],
        leader_elect=flags["leader_elect"],
        leader_elect_namespace=flags["leader_elect_namespace"],
    )
    context = click.get_current_context()
    given = frozenset(name for name in flags
                      if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT)
    if not flags["sandbox"]:
        for name in sorted(given & {"sandbox_trace", "sandbox_speed", "sandbox_out"}):
            raise SettingsError("--" + name.replace("_", "-"), "only means something with --sandbox")
    if flags["sandbox"]:
        # The sandbox talks only to its own fakes, which set what they need: a profile, config file
        # or service endpoint of the user's would reach them (moto reads the profile on import).
        for name in [name for name in os.environ if name.startswith("AWS_")]:
            del os.environ[name]
        try:
            from .. import sandbox  # deferred: the production path never loads the simulators
        except ImportError as error:  # the image and a plain install have no moto or matplotlib
            raise SettingsError("--sandbox", f"needs the sandbox's dependencies ({error}); "
                                f"pip install '{PROGRAM}[sandbox]' or -r requirements.txt") from None

        return sandbox.run(settings, given, flags["sandbox_trace"], flags["sandbox_speed"], flags["sandbox_out"])
    config.validate(settings)
    from .daemon import run  # deferred: --help and flag errors stay fast and import nothing heavy

    return run(settings)


def main(argv: Optional[list[str]] = None) -> int:
    """The entry point of both commands; the program name in usage lines is the one that was run."""
    try:
        return cli.main(args=argv, prog_name=os.path.basename(sys.argv[0]) or PROGRAM, standalone_mode=False) or 0
    except click.UsageError as error:
        # One line naming the flag, not click's usage block: this is read in a pod's log.
        click.echo(f"error: {error.format_message()}", err=True)
        return 2
    except SettingsError as error:
        click.echo(f"error: {error}", err=True)
        return 2
    except click.Abort:
        return 130


if __name__ == "__main__":
    sys.exit(main())
