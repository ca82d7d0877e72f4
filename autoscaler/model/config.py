"""Settings: every flag of the CLI as one frozen value, validated before any API call."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Optional

# AWS region names: us-west-2, eu-central-1, us-gov-west-1, ap-southeast-3, cn-north-1, eusc-de-east-1, ...
REGION_PATTERN = re.compile(r"^[a-z]{2,}(-[a-z]+)+-\d+$")

# Defaults of the original project (its main.py), kept so an operator can switch without surprise.
DEFAULT_REGIONS = ("us-west-1",)
DEFAULT_SLEEP = 60
DEFAULT_IDLE_THRESHOLD = 3600
DEFAULT_TYPE_IDLE_THRESHOLD = 3600 * 24 * 7
DEFAULT_INSTANCE_INIT_TIME = 25 * 60
DEFAULT_OVER_PROVISION = 5
# --expander, in cluster-autoscaler's vocabulary: cheapest $/h, least unused room, or the original's order.
EXPANDERS = ("price", "least-waste", "priority")
DEFAULT_EXPANDER = "price"
DEFAULT_MAX_SCALE_IN_FRACTION = 0.1
# --scale-in-cap: the fraction as a rate (that many a loop) or as the original's all-or-nothing brake.
SCALE_IN_CAPS = ("rate", "brake")
DEFAULT_SCALE_IN_CAP = "rate"
DEFAULT_DRAIN_UTILIZATION = 0.0
DEFAULT_METRICS_PORT = 8080
DEFAULT_LEADER_ELECT_NAMESPACE = "kube-system"

# Fixed rules (docs/decisions.md), named so that tests and the sandbox can shorten them.
GROUP_TIMEOUT_SECONDS = 3600
DEAD_NODE_SECONDS = 3600
SPOT_WAIT_SECONDS = 300
SPARE_IDLE_NODES_PER_GROUP = 5
MISMATCH_MIN_SECONDS = 60  # the least a pod waits beside a node that fits it before the model is judged wrong
DRAIN_GRACE_SECONDS = 3600

# Upper bounds of the time flags: beyond them a value stops being a duration and starts
# overflowing a datetime (year 9999), a timestamp or a sleep. Ten years is no real threshold.
MAX_SECONDS = 10 * 365 * 24 * 3600
MAX_SLEEP_SECONDS = 24 * 3600  # a loop a day; longer is an autoscaler that does not scale
MAX_OVER_PROVISION = 10000  # more than any Auto Scaling group's max size (AWS's own limit is lower)
MAX_SANDBOX_SPEED = 1e6  # simulated seconds per real second; 0 already means "as fast as possible"


class SettingsError(ValueError):
    """A flag with a bad value. ``flag`` names it, so the CLI can say which one."""

    def __init__(self, flag: str, message: str):
        super().__init__(f"{flag}: {message}")
        self.flag = flag


class ConfigurationError(Exception):
    """An API answer that no retry can fix: no credentials, access denied, a server that is not the
    API it should be, a name that does not resolve. The message names the cause and what to do.
    Before the first successful loop it ends the process (exit 1); after one, it is logged,
    counted and retried like any failed read, since a rotated credential can recover (README
    "Configuration"). API adapters raise it mixed into their own error types."""


@dataclass(frozen=True)
class Settings:
    cluster_name: str
    regions: tuple[str, ...] = DEFAULT_REGIONS
    kubeconfig: Optional[str] = None
    pod_namespace: Optional[str] = None
    idle_threshold: float = DEFAULT_IDLE_THRESHOLD
    type_idle_threshold: float = DEFAULT_TYPE_IDLE_THRESHOLD
    instance_init_time: float = DEFAULT_INSTANCE_INIT_TIME
    sleep: float = DEFAULT_SLEEP
    over_provision: int = DEFAULT_OVER_PROVISION
    expander: str = DEFAULT_EXPANDER  # how scale up chooses among groups of one tier (docs/decisions.md#how-it-decides)
    max_scale_in_fraction: float = DEFAULT_MAX_SCALE_IN_FRACTION
    scale_in_cap: str = DEFAULT_SCALE_IN_CAP  # docs/decisions.md#scale-in
    drain_utilization: float = DEFAULT_DRAIN_UTILIZATION
    aws_access_key: Optional[str] = field(default=None, repr=False)
    aws_secret_key: Optional[str] = field(default=None, repr=False)
    slack_hook: Optional[str] = field(default=None, repr=False)
    dry_run: bool = False
    no_scale: bool = False
    no_maintenance: bool = False
    once: bool = False
    verbosity: int = 0
    group_timeout: float = GROUP_TIMEOUT_SECONDS
    # Taint keys a node carries while it starts (beside the built-in ones: decide/initialized.py);
    # --startup-taint, repeatable.
    startup_taints: tuple[str, ...] = ()
    # Fixed by the rules (docs/decisions.md); settings only so that tests and the sandbox can shorten them.
    dead_node_seconds: float = DEAD_NODE_SECONDS
    drain_grace_seconds: float = DRAIN_GRACE_SECONDS
    spot_wait_seconds: float = SPOT_WAIT_SECONDS
    spare_idle_nodes: int = SPARE_IDLE_NODES_PER_GROUP
    mismatch_min_seconds: float = MISMATCH_MIN_SECONDS  # decide/buy_guard.py
    # Operations (docs/operations.md#running-in-production): not read by decisions.
    metrics_port: int = DEFAULT_METRICS_PORT  # /metrics and /healthz; 0 turns the server off
    log_format: str = "text"  # or "json"
    leader_elect: Optional[bool] = None  # None: on in-cluster (no --kubeconfig), off otherwise
    leader_elect_namespace: str = DEFAULT_LEADER_ELECT_NAMESPACE

    @property
    def leader_election(self) -> bool:
        # A dry run writes nothing, the Lease included: it must never push the real one aside.
        if self.dry_run:
            return False
        return (self.kubeconfig is None) if self.leader_elect is None else self.leader_elect

    def region_rank(self, region: str) -> int:
        """Position of a region in --regions; unknown regions sort last."""
        try:
            return self.regions.index(region)
        except ValueError:
            return len(self.regions)


def check_number(flag: str, value: float, minimum: float, maximum: float, *, above_minimum: bool = False) -> float:
    """``value`` if it is a finite number within [minimum, maximum] (above ``minimum`` when
    ``above_minimum``); otherwise SettingsError naming the flag. NaN passes every comparison
    unless checked for, and infinity overflows the first datetime or sleep it meets."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingsError(flag, f"must be a finite number (got {value})")
    if value < minimum or (above_minimum and value == minimum):
        raise SettingsError(flag, f"must be {'more than' if above_minimum else 'at least'} {minimum:g} (got {value:g})")
    if value > maximum:
        raise SettingsError(flag, f"must be at most {maximum:g} (got {value:g})")
    return value


def parse_regions(text: Optional[str], known: Optional[frozenset[str]] = None) -> tuple[str, ...]:
    """``us-west-2, us-east-1`` -> ('us-west-2', 'us-east-1'); raises SettingsError. With ``known``
    (regions.known_regions(): the regions botocore knows for EC2 and Auto Scaling), any other
    name is refused too."""
    if text is None or not text.strip():
        raise SettingsError("--regions", "give at least one region, e.g. us-west-2,us-east-1")
    regions = tuple(part.strip() for part in text.split(","))
    for region in regions:
        if not region:
            raise SettingsError("--regions", f"empty region in {text!r}")
        if not REGION_PATTERN.match(region):
            raise SettingsError("--regions", f"{region!r} is not an AWS region name like us-west-2")
        if known is not None and region not in known:
            raise SettingsError("--regions", f"{region!r} is not a region this botocore knows for EC2 and Auto Scaling "
                                             "(a typo, or a region newer than the installed botocore: upgrade it)")
    if len(set(regions)) != len(regions):
        raise SettingsError("--regions", f"a region is listed twice in {text!r}")
    return regions


def number_flags(settings: Settings) -> dict[str, tuple[float, float, float, bool]]:
    """Every numeric flag: (value, minimum, maximum, whether the minimum itself is refused)."""
    return {
        "--idle-threshold": (settings.idle_threshold, 0, MAX_SECONDS, False),
        "--type-idle-threshold": (settings.type_idle_threshold, 0, MAX_SECONDS, False),
        "--instance-init-time": (settings.instance_init_time, 0, MAX_SECONDS, False),
        "--group-timeout": (settings.group_timeout, 0, MAX_SECONDS, False),
        "--sleep": (settings.sleep, 0, MAX_SLEEP_SECONDS, True),
        "--over-provision": (settings.over_provision, 0, MAX_OVER_PROVISION, False),
        "--max-scale-in-fraction": (settings.max_scale_in_fraction, 0, 1, False),
        "--drain-utilization": (settings.drain_utilization, 0, 1, False),
    }


def _is_web_url(text: str) -> bool:
    return re.match(r"^https?://[^/\s:]+(:\d+)?(/\S*)?$", text) is not None


# A taint key is a label key: an optional DNS-subdomain prefix and '/', then a name of at most 63
# characters, alphanumeric at both ends, with '-', '_' and '.' inside.
TAINT_KEY = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")

# A Kubernetes namespace name is an RFC 1123 label.
NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def validate(settings: Settings) -> Settings:
    """Return the settings if every value makes sense; otherwise raise SettingsError naming the flag."""
    if not settings.cluster_name or not settings.cluster_name.strip():
        raise SettingsError("--cluster-name", "is required and must not be empty")
    for flag, (value, minimum, maximum, above_minimum) in number_flags(settings).items():
        check_number(flag, value, minimum, maximum, above_minimum=above_minimum)
    if settings.slack_hook and not _is_web_url(settings.slack_hook):
        # The hook is a credential: say what is wrong with it, never what it is.
        raise SettingsError("--slack-hook", "is not an http(s) URL like https://hooks.slack.com/services/...")
    if bool(settings.aws_access_key) != bool(settings.aws_secret_key):
        flag = "--aws-secret-key" if settings.aws_access_key else "--aws-access-key"
        raise SettingsError(flag, "give both the access key and the secret key, or neither (to use the default credential chain)")
    if settings.expander not in EXPANDERS:
        raise SettingsError("--expander", f"must be one of {', '.join(EXPANDERS)} (got {settings.expander!r})")
    if settings.scale_in_cap not in SCALE_IN_CAPS:
        raise SettingsError("--scale-in-cap", f"must be one of {', '.join(SCALE_IN_CAPS)} (got {settings.scale_in_cap!r})")
    # The API server would answer 400 or 404 to every call: a typo, found before any call. An empty
    # --pod-namespace (an environment variable set to nothing) means every namespace.
    for flag, namespace in (("--pod-namespace", settings.pod_namespace or None),
                            ("--leader-elect-namespace", settings.leader_elect_namespace)):
        if namespace is not None and not NAMESPACE_NAME.fullmatch(namespace):
            raise SettingsError(flag, f"{namespace!r} is not a namespace name: at most 63 lower-case letters, digits "
                                      "and '-', starting and ending with a letter or digit")
    for key in settings.startup_taints:
        if not TAINT_KEY.fullmatch(key) or len(key.partition("/")[0] if "/" in key else "") > 253:
            raise SettingsError("--startup-taint", f"{key!r} is not a taint key like node.cilium.io/agent-not-ready")
    return settings
