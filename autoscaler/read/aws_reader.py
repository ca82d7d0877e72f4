"""READ the AWS side into model objects: groups (with launch settings, labels and shapes),
instances, scaling activities and spot prices.

API cost per region and loop: one paginated DescribeAutoScalingGroups, one DescribeLaunchConfigurations
per 50 launch configurations, one DescribeLaunchTemplateVersions per launch template, one
DescribeInstances per 200 instances, one DescribeScalingActivities page per 100 new activities,
and DescribeInstanceTypes only for instance types never seen before. None of it grows with pods.
"""
from __future__ import annotations

import logging
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

import boto3
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.exceptions import BotoCoreError

from ..clients.aws_errors import CloudConfigurationError, CloudError, cloud_errors, refuse_web_pages  # noqa: F401 - re-exported
from ..clients.deadline import bound_aws_client
from ..clients.http_summary import first_line
from ..model.config import ConfigurationError, Settings
from ..model.group_labels import node_template, parse_hourly_price, parse_priority
from ..model.objects import Group, Instance, InstanceShape, Resources, ScalingActivity, SpotPrice, sort_shapes
from .capacity import DEFAULT_ROOT_VOLUME_GIB, CapacityCatalog, ephemeral_storage_allocatable
from .prices import on_demand_price
from .resources import QuantityError, parse_resources

log = logging.getLogger(__name__)

# A stalled endpoint costs at most MAX_ATTEMPTS x READ_TIMEOUT_SECONDS plus botocore's backoff
# between them, about 27 s; a throttled loop backs off as a whole (loop.py), so few attempts
# per call are enough. Adaptive mode also rate-limits the client itself once AWS throttles it.
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 8
MAX_ATTEMPTS = 3  # in all, the first try included
# The read timeout is per read: an endpoint that drips bytes would hold a call for ever. Each call
# (one page of a paginated one) has this many seconds in all, its retries and any credential
# fetch or refresh included (clients/deadline.py); a stalled endpoint fails sooner, by the above.
CALL_DEADLINE_SECONDS = 30

CLUSTER_TAG = "KubernetesCluster"
ROLE_TAGS = ("Role", "KubernetesRole")
# The original's README said Role=minion while its code took only the other two (README.md#auto-scaling-groups lists the roles).
MANAGED_ROLES = frozenset({"minion", "worker", "kubernetes-minion"})
GROUP_NAME_TAG = "aws:autoscaling:groupName"

LAUNCH_CONFIGURATION_BATCH = 50  # DescribeLaunchConfigurations' limit of names per request
# DescribeInstances by an instance-id filter rather than InstanceIds=: an id that vanished does
# not fail the whole request. 200 is EC2's limit of values in one filter.
INSTANCE_BATCH = 200


# ---------------------------------------------------------------------------------------- clients

@dataclass(frozen=True)
class RegionClients:
    region: str
    autoscaling: Any
    ec2: Any


class ClientSetupError(ConfigurationError, ValueError):
    """The AWS clients cannot be made (a malformed endpoint URL, an unknown profile, a bad AWS
    config file); known before any call."""


def client_config() -> Config:
    return Config(retries={"mode": "adaptive", "total_max_attempts": MAX_ATTEMPTS},
                  connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS)


def credential_client_config() -> Config:
    """For the clients botocore makes itself to fetch credentials (STS for IAM roles for service
    accounts and assumed roles, SSO): they would otherwise wait 60 s a read, 3 times. Instance
    metadata keeps botocore's own 1 s, one attempt (AWS_METADATA_SERVICE_TIMEOUT and
    AWS_METADATA_SERVICE_NUM_ATTEMPTS); ECS and EKS Pod Identity's endpoint, 2 s, 3 attempts."""
    return Config(retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
                  connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS)


def parse_timestamp(value: Any) -> datetime:
    """An AWS timestamp (ISO 8601 in every API read here) by the standard library; anything else
    (epoch seconds, RFC 822) by botocore's own parser. botocore's default goes through dateutil,
    which costs about 0.1 ms a timestamp: a DescribeInstances page of 1,000 instances has 5,000."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    return botocore.utils.parse_timestamp(value)


def make_session(settings: Settings) -> boto3.session.Session:
    """Explicit keys when given, else the default credential chain (environment, profile,
    instance profile, IAM roles for service accounts)."""
    with _client_setup(None):
        core = botocore.session.get_session()
        core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
        core.register("before-parse", refuse_web_pages)
        # Every client made from this session starts from it; ours override it (client_config).
        core.set_default_client_config(credential_client_config())
        if settings.aws_access_key and settings.aws_secret_key:
            # Keys that came from the environment may be temporary ones: their token must go along.
            token = os.environ.get("AWS_SESSION_TOKEN") if settings.aws_access_key == os.environ.get("AWS_ACCESS_KEY_ID") else None
            return boto3.session.Session(aws_access_key_id=settings.aws_access_key,
                                         aws_secret_access_key=settings.aws_secret_key,
                                         aws_session_token=token, botocore_session=core)
        return boto3.session.Session(botocore_session=core)


def aws_clients(settings: Settings, region: str, session: Optional[boto3.session.Session] = None) -> RegionClients:
    """Fresh clients for one region. AWS_ENDPOINT_URL (and AWS_ENDPOINT_URL_EC2, ...) is honoured
    by boto3 itself, which is how tests point the product at a moto server."""
    with _client_setup(region):
        session = session or make_session(settings)
        config = client_config()
        return RegionClients(region=region,
                             autoscaling=bound_aws_client(session.client("autoscaling", region_name=region, config=config),
                                                          CALL_DEADLINE_SECONDS),
                             ec2=bound_aws_client(session.client("ec2", region_name=region, config=config),
                                                  CALL_DEADLINE_SECONDS))


@contextmanager
def _client_setup(region: Optional[str]) -> Iterator[None]:
    """"Invalid endpoint: banana", an unknown AWS_PROFILE, an AWS config file that does not parse:
    ClientSetupError, one line."""
    try:
        yield
    except (BotoCoreError, ValueError) as error:
        where = f" for {region}" if region else ""
        raise ClientSetupError(f"cannot make the AWS clients{where}: {first_line(str(error), 240)}; "
                               "check AWS_ENDPOINT_URL*, AWS_PROFILE and the AWS config files") from None


class AwsClients:
    """Clients per region, made on first use and kept for the life of the process; call it with a
    region. One session, so credentials are resolved (and refreshed) once for all regions."""

    def __init__(self, settings: Settings, session: Optional[boto3.session.Session] = None):
        self._settings = settings
        self._session = session
        self._by_region: dict[str, RegionClients] = {}

    def __call__(self, region: str) -> RegionClients:
        clients = self._by_region.get(region)
        if clients is None:
            if self._session is None:
                with _client_setup(region):
                    self._session = make_session(self._settings)
            clients = self._by_region[region] = aws_clients(self._settings, region, self._session)
        return clients

    def pricing(self) -> Any:
        """A Price List API client (its endpoint is in us-east-1 for every region's prices), from
        the same session, with the same deadline as every other call (read/price_list.py)."""
        with _client_setup("the Price List API"):
            if self._session is None:
                self._session = make_session(self._settings)
            return bound_aws_client(self._session.client("pricing", region_name="us-east-1", config=client_config()),
                                    CALL_DEADLINE_SECONDS)


ClientsArg = Union[RegionClients, AwsClients]


def _for_region(clients: ClientsArg, region: str) -> RegionClients:
    return clients(region) if isinstance(clients, AwsClients) else clients


# ----------------------------------------------------------------------------------------- groups

# The root device names of the Amazon Linux / EKS-optimised AMIs and of Ubuntu's (the AMI itself,
# which says for sure, is not read).
ROOT_DEVICE_NAMES = ("/dev/xvda", "/dev/sda1")
# Allocation strategy of a mixed-instances group whose new instances may be on-demand or spot
# (a split distribution, or an on-demand base not yet filled under an all-spot policy): AWS's two
# strategies may pick different types, so which type is launched is not determined.
MIXED_MARKETS = "mixed"


@dataclass(frozen=True)
class LaunchSettings:
    instance_types: tuple[str, ...]
    ami_id: Optional[str] = None
    is_spot: bool = False
    spot_price: Optional[str] = None
    # Mixed-instances policies with two or more types: the overrides in order, and the strategy.
    override_order: tuple[str, ...] = ()
    allocation_strategy: str = ""
    root_volume_gib: Optional[int] = None  # None: the launch settings do not size it

    def __post_init__(self):
        bad = [t for t in self.instance_types if not isinstance(t, str) or not t]
        if bad:
            raise TypeError(f"instance type {bad[0]!r} is not a name")


def read_groups(clients: ClientsArg, settings: Settings, region: str,
                catalog: Optional[CapacityCatalog] = None) -> tuple[Group, ...]:
    """The managed groups of the region, sorted by name. Pass the loop's CapacityCatalog so
    instance types are described once per process, not once per call."""
    clients = _for_region(clients, region)
    raw_groups = _describe_managed_groups(clients, settings.cluster_name, region)
    launch = _read_launch_settings(clients, region, raw_groups)
    catalog = catalog or CapacityCatalog(lambda _region: clients)
    catalog.prefetch(region, sorted({t for s in launch.values() if isinstance(s, LaunchSettings) for t in s.instance_types}))
    return groups_from(raw_groups, launch, region, catalog)


def groups_from(raw_groups: Iterable[Any], launch: Mapping[str, Union[LaunchSettings, str]], region: str,
                catalog: CapacityCatalog) -> tuple[Group, ...]:
    """Model groups from DescribeAutoScalingGroups entries; an entry that cannot be read is skipped
    with a warning naming it (one odd group must not stop every other from scaling)."""
    return tuple(_each(raw_groups, lambda raw: _group_from(
        raw, launch.get(raw["AutoScalingGroupName"], "its launch settings were not read"), region, catalog),
        "group", region))


def _each(raws: Iterable[Any], convert, kind: str, region: str) -> list:
    """``convert`` applied to each raw AWS object; those it fails on are logged and skipped."""
    converted = []
    for raw in raws:
        try:
            converted.append(convert(raw))
        except Exception as error:  # noqa: BLE001 - any malformed field of one object: skip that object
            log.warning("skipping %s %s (%s): cannot read it (%s: %s)", kind, _name_of(raw), region,
                        type(error).__name__, first_line(str(error), 200))
    return converted


def _name_of(raw: Any) -> str:
    if isinstance(raw, Mapping):
        for key in ("AutoScalingGroupName", "InstanceId", "ActivityId", "InstanceType"):
            if isinstance(raw.get(key), str):
                return raw[key]
    return "?"


def _mapping(value: Any) -> Mapping[str, Any]:
    """A field that should hold a structure: itself, or empty when it is missing or not one."""
    return value if isinstance(value, Mapping) else {}


def _tags(raw: Mapping[str, Any]) -> dict[str, str]:
    tags = raw.get("Tags") if isinstance(raw, Mapping) else None
    return {tag["Key"]: str(tag.get("Value") or "") for tag in tags or ()
            if isinstance(tag, Mapping) and isinstance(tag.get("Key"), str)} if isinstance(tags, list) else {}


def _describe_managed_groups(clients: RegionClients, cluster_name: str, region: str) -> list[dict]:
    paginator = clients.autoscaling.get_paginator("describe_auto_scaling_groups")
    groups = []
    with cloud_errors(clients.autoscaling, f"reading Auto Scaling groups in {region}"):
        for page in paginator.paginate(Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster_name]}]):
            for raw in page.get("AutoScalingGroups", ()):
                if not isinstance(raw, dict) or not isinstance(raw.get("AutoScalingGroupName"), str):
                    log.warning("skipping a group without a name in %s", region)
                    continue
                tags = _tags(raw)
                if tags.get(CLUSTER_TAG) == cluster_name and any(tags.get(k) in MANAGED_ROLES for k in ROLE_TAGS):
                    groups.append(raw)
    return sorted(groups, key=lambda raw: raw["AutoScalingGroupName"])


def _template_key(spec: Mapping[str, Any]) -> tuple[tuple[str, str], str]:
    """((name-or-id parameter, value), version) of a launch template specification; the name when
    given (it is what an operator recognises in a warning); version defaults to $Default."""
    key = ("LaunchTemplateName", spec["LaunchTemplateName"]) if spec.get("LaunchTemplateName") else ("LaunchTemplateId", spec.get("LaunchTemplateId", ""))
    return key, str(spec.get("Version") or "$Default")


def _read_launch_settings(clients: RegionClients, region: str, raw_groups: Sequence[dict]) -> dict[str, Union[LaunchSettings, str]]:
    """Group name -> its LaunchSettings, or a sentence saying why they could not be read."""
    configs = _describe_launch_configurations(clients, region, sorted({
        raw["LaunchConfigurationName"] for raw in raw_groups if isinstance(raw.get("LaunchConfigurationName"), str)}))
    template_specs = {}
    result: dict[str, Union[LaunchSettings, str]] = {}
    for raw in raw_groups:
        try:
            spec = _mapping(_mapping(_mapping(raw.get("MixedInstancesPolicy")).get("LaunchTemplate")).get(
                "LaunchTemplateSpecification")) or _mapping(raw.get("LaunchTemplate"))
            if spec:
                template_specs[raw["AutoScalingGroupName"]] = _template_key(spec)
        except Exception as error:  # noqa: BLE001 - a malformed field: this group only goes without
            result[raw["AutoScalingGroupName"]] = f"its launch template is unreadable ({type(error).__name__}: {error})"
    templates = _describe_template_versions(clients, region, set(template_specs.values()))

    for raw in raw_groups:
        name = raw["AutoScalingGroupName"]
        if name in result:
            continue
        try:
            result[name] = _launch_settings_of(raw, name, configs, template_specs, templates)
        except Exception as error:  # noqa: BLE001 - a malformed field: this group only goes without
            result[name] = f"its launch settings are unreadable ({type(error).__name__}: {error})"
    return result


def _launch_settings_of(raw: Mapping[str, Any], name: str, configs: Mapping[str, dict], template_specs: Mapping,
                        templates: Mapping) -> Union[LaunchSettings, str]:
    config_name = raw.get("LaunchConfigurationName")
    if config_name:
        config = configs.get(config_name)
        return _from_launch_configuration(config) if config else f"launch configuration {config_name} not found"
    if name in template_specs:
        (_, template), version = template_specs[name]
        data = templates[template_specs[name]]
        if isinstance(data, str):
            return data
        if raw.get("MixedInstancesPolicy"):
            return _from_mixed_policy(raw["MixedInstancesPolicy"], data, template, version, _whole(raw, "DesiredCapacity"))
        return _from_template(data, template, version)
    return "neither a launch configuration nor a launch template"


def _describe_launch_configurations(clients: RegionClients, region: str, names: Sequence[str]) -> dict[str, dict]:
    paginator = clients.autoscaling.get_paginator("describe_launch_configurations")
    configs = {}
    with cloud_errors(clients.autoscaling, f"reading launch configurations in {region}"):
        for start in range(0, len(names), LAUNCH_CONFIGURATION_BATCH):
            for page in paginator.paginate(LaunchConfigurationNames=list(names[start:start + LAUNCH_CONFIGURATION_BATCH])):
                for config in page.get("LaunchConfigurations", ()):
                    configs[config["LaunchConfigurationName"]] = config
    return configs


def _describe_template_versions(clients: RegionClients, region: str, wanted: Iterable[tuple[tuple[str, str], str]]
                                ) -> dict[tuple[tuple[str, str], str], Union[dict, str]]:
    """(template key, version) -> LaunchTemplateData, or why not. One call per template, asking
    for every version any group uses."""
    versions_by_template: dict[tuple[str, str], set[str]] = {}
    for key, version in wanted:
        versions_by_template.setdefault(key, set()).add(version)
    result: dict[tuple[tuple[str, str], str], Union[dict, str]] = {}
    for key in sorted(versions_by_template):
        versions = sorted(versions_by_template[key])
        try:
            entries = _describe_versions(clients, region, key, versions)
        except CloudError as error:
            if len(versions) == 1:
                result[(key, versions[0])] = str(error)
                continue
            # One missing version fails the whole request; ask again per version, so only the
            # groups that use the missing one are left without launch settings.
            for version in versions:
                try:
                    found = _describe_versions(clients, region, key, [version])
                    result[(key, version)] = found[0].get("LaunchTemplateData", {}) if found else str(error)
                except CloudError as version_error:
                    result[(key, version)] = str(version_error)
            continue
        for version in versions:
            if version == "$Default":
                found = [e for e in entries if e.get("DefaultVersion")]
            elif version == "$Latest":
                found = sorted(entries, key=lambda e: e["VersionNumber"])[-1:]
            else:
                found = [e for e in entries if str(e["VersionNumber"]) == version]
            result[(key, version)] = found[0].get("LaunchTemplateData", {}) if found else f"launch template {key[1]} has no version {version}"
    return result


def _describe_versions(clients: RegionClients, region: str, key: tuple[str, str], versions: list[str]) -> list[dict]:
    paginator = clients.ec2.get_paginator("describe_launch_template_versions")
    with cloud_errors(clients.ec2, f"reading launch template {key[1]} in {region}"):
        return [entry for page in paginator.paginate(**{key[0]: key[1]}, Versions=versions)
                for entry in page.get("LaunchTemplateVersions", ())]


def root_volume_gib(mappings: Sequence[Mapping[str, Any]]) -> Optional[int]:
    """Size of the root volume in a block device mapping list (launch configuration or template).

    The mapping named like an AMI root device (/dev/xvda, /dev/sda1) when there is one, else the
    first EBS mapping with a size (Bottlerocket keeps container storage on its second volume,
    /dev/xvdb, which this picks). None when neither sizes a volume: the AMI's own size stands
    (see capacity.DEFAULT_ROOT_VOLUME_GIB)."""
    def size(mapping: Mapping[str, Any]) -> Optional[int]:
        value = (mapping.get("Ebs") or {}).get("VolumeSize")
        # NoDevice suppresses the mapping: a boolean in Auto Scaling's API, any string in EC2's.
        suppressed = mapping.get("NoDevice") not in (None, False)
        return int(value) if value and not suppressed else None

    for mapping in mappings:
        if mapping.get("DeviceName") in ROOT_DEVICE_NAMES:
            return size(mapping)
    return next((gib for mapping in mappings if (gib := size(mapping))), None)


def _from_launch_configuration(config: Mapping[str, Any]) -> LaunchSettings:
    spot_price = config.get("SpotPrice") or None
    return LaunchSettings((config["InstanceType"],), config.get("ImageId"), spot_price is not None, spot_price,
                          root_volume_gib=root_volume_gib(config.get("BlockDeviceMappings") or ()))


def _from_template(data: Mapping[str, Any], template: str, version: str) -> Union[LaunchSettings, str]:
    if not data.get("InstanceType"):
        return f"launch template {template} version {version} sets no instance type"
    market = data.get("InstanceMarketOptions", {})
    is_spot = market.get("MarketType") == "spot"
    spot_price = market.get("SpotOptions", {}).get("MaxPrice") if is_spot else None
    return LaunchSettings((data["InstanceType"],), data.get("ImageId"), is_spot, spot_price or None,
                          root_volume_gib=root_volume_gib(data.get("BlockDeviceMappings") or ()))


def _from_mixed_policy(policy: Mapping[str, Any], data: Mapping[str, Any], template: str, version: str,
                       desired: int = 0) -> Union[LaunchSettings, str]:
    overrides = policy.get("LaunchTemplate", {}).get("Overrides", ())
    types = tuple(dict.fromkeys(o["InstanceType"] for o in overrides if o.get("InstanceType")))
    if overrides and not types:
        return "its mixed instances policy selects types by attributes (InstanceRequirements), which is not supported"
    if not types:
        if not data.get("InstanceType"):
            return f"launch template {template} version {version} sets no instance type and the policy has no overrides"
        types = (data["InstanceType"],)
    distribution = policy.get("InstancesDistribution", {})
    # Only an all-spot policy (above the on-demand base) counts as a spot group; AWS's default is 100.
    is_spot = int(distribution.get("OnDemandPercentageAboveBaseCapacity", 100)) == 0
    spot_price = (distribution.get("SpotMaxPrice") or None) if is_spot else None
    return LaunchSettings(types, data.get("ImageId"), is_spot, spot_price,
                          override_order=types if len(types) > 1 else (),
                          allocation_strategy=allocation_strategy(distribution, desired) if len(types) > 1 else "",
                          root_volume_gib=root_volume_gib(data.get("BlockDeviceMappings") or ()))


def allocation_strategy(distribution: Mapping[str, Any], desired: int) -> str:
    """The strategy AWS picks the next instances' type by, from the InstancesDistribution (AWS's
    defaults: base 0, 100 % on-demand above it, on-demand "prioritized", spot "lowest-price").

    On-demand only (100 % above the base): OnDemandAllocationStrategy. Spot only (0 % above a base
    already filled by ``desired``): SpotAllocationStrategy. Otherwise new instances may come from
    either market: MIXED_MARKETS."""
    base = int(distribution.get("OnDemandBaseCapacity", 0) or 0)
    on_demand_percent = int(distribution.get("OnDemandPercentageAboveBaseCapacity", 100))
    if on_demand_percent >= 100:
        return distribution.get("OnDemandAllocationStrategy") or "prioritized"
    if on_demand_percent <= 0 and desired >= base:
        return distribution.get("SpotAllocationStrategy") or "lowest-price"
    return MIXED_MARKETS


def _group_from(raw: Mapping[str, Any], launch: Union[LaunchSettings, str], region: str, catalog: CapacityCatalog) -> Group:
    name = raw["AutoScalingGroupName"]
    tags = _tags(raw)
    zones = tuple(sorted(_strings(raw.get("AvailabilityZones"), "AvailabilityZones")))
    instance_ids = tuple(sorted(_strings([_mapping(i).get("InstanceId") for i in _list(raw.get("Instances"), "Instances")],
                                         "Instances' InstanceId")))
    created = raw.get("CreatedTime")
    settings = launch if isinstance(launch, LaunchSettings) else LaunchSettings(())
    if isinstance(launch, str):
        log.warning("group %s (%s): cannot read its launch settings (%s); scale up will skip it", name, region, launch)
    architectures = {t: a for t in settings.instance_types if (a := catalog.architecture(t))}
    template = node_template(tags, settings.instance_types, region, zones, settings.ami_id, architectures)
    declared = _declared_resources(template.resource_quantities, name)
    storage = Resources({"ephemeral-storage": ephemeral_storage_allocatable(
        settings.root_volume_gib or DEFAULT_ROOT_VOLUME_GIB)})
    shapes = []
    for instance_type in settings.instance_types:
        capacity = catalog.get(instance_type)
        if capacity is None:
            log.warning("group %s (%s): instance type %s is unknown to DescribeInstanceTypes and to the shipped "
                        "table; it is left out of the group's shapes", name, region, instance_type)
            continue
        # A declared quantity replaces the estimate for that resource (e.g. ephemeral-storage).
        overridden = Resources({k: v for k, v in (capacity + storage).items() if k not in declared.names()})
        shapes.append(InstanceShape(instance_type, overridden + declared, on_demand_price(region, instance_type)))
    return Group(
        name=name, region=region,
        min_size=_whole(raw, "MinSize"), max_size=_whole(raw, "MaxSize"), desired=_whole(raw, "DesiredCapacity"),
        instance_ids=instance_ids,
        zones=zones, labels=template.labels, taints=template.taints, shapes=sort_shapes(shapes),
        is_spot=settings.is_spot, spot_price=settings.spot_price, priority=parse_priority(tags, name),
        tags=tags, created=created if isinstance(created, datetime) and created.tzinfo else None,
        override_order=settings.override_order, allocation_strategy=settings.allocation_strategy,
        hourly_price_override=parse_hourly_price(tags, name),
    )


def _whole(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"{key} {value!r} is not a whole number")
    return value


def _list(value: Any, what: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TypeError(f"{what} is {type(value).__name__}, not a list")
    return value


def _strings(values: Any, what: str) -> list[str]:
    values = _list(values, what)
    if not all(isinstance(value, str) and value for value in values):
        raise TypeError(f"{what} holds something that is not a name")
    return values


def _declared_resources(quantities: Sequence[tuple[str, str]], group_name: str) -> Resources:
    declared = Resources()
    for resource, text in quantities:
        try:
            declared = declared + parse_resources({resource: text})
        except QuantityError as error:
            log.warning("group %s: ignoring node-template resource tag: %s", group_name, error)
    return declared


# ------------------------------------------------------------------------------------- instances

def read_instances(clients: ClientsArg, region: str, instance_ids: Iterable[str]) -> dict[str, Instance]:
    """The EC2 instances with these ids that still exist, by id."""
    clients = _for_region(clients, region)
    ids = sorted(set(instance_ids))
    paginator = clients.ec2.get_paginator("describe_instances")
    instances: dict[str, Instance] = {}
    with cloud_errors(clients.ec2, f"reading instances in {region}"):
        for start in range(0, len(ids), INSTANCE_BATCH):
            batch = ids[start:start + INSTANCE_BATCH]
            for page in paginator.paginate(Filters=[{"Name": "instance-id", "Values": batch}], PaginationConfig={"PageSize": 1000}):
                for reservation in page.get("Reservations", ()):
                    instances.update((i.id, i) for i in instances_from(_mapping(reservation).get("Instances") or (), region))
    return instances


def instances_from(raws: Iterable[Any], region: str) -> list[Instance]:
    """Model instances from DescribeInstances entries. A field missing or of the wrong type takes
    its default (the instance must not look terminated for it: its node would be deleted); only
    an entry without an id is skipped, with a warning."""
    return _each(raws, lambda raw: _instance_from(raw, region), "instance", region)


def _instance_from(raw: Mapping[str, Any], region: str) -> Instance:
    if not isinstance(raw.get("InstanceId"), str):
        raise ValueError("no InstanceId")
    launch_time = raw.get("LaunchTime")
    return Instance(
        id=raw["InstanceId"], region=region,
        zone=_text(_mapping(raw.get("Placement")).get("AvailabilityZone")),
        state=_text(_mapping(raw.get("State")).get("Name"), "unknown"),
        instance_type=_text(raw.get("InstanceType")),
        launch_time=launch_time if isinstance(launch_time, datetime) and launch_time.tzinfo else None,
        group_name=_tags(raw).get(GROUP_NAME_TAG),
        lifecycle="spot" if raw.get("InstanceLifecycle") == "spot" else "on-demand",
        spot_request_id=raw.get("SpotInstanceRequestId") if isinstance(raw.get("SpotInstanceRequestId"), str) else None,
    )


def _text(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


# ------------------------------------------------------------------------------------ activities

def read_activities(clients: ClientsArg, region: str, group_names: Iterable[str], since: datetime) -> tuple[ScalingActivity, ...]:
    """Scaling activities of these groups that started at or after ``since`` (timezone-aware),
    oldest first. AWS returns newest first, so paging stops at the first older activity.

    One group: filtered by its name. Several: unfiltered (every group of the account, one stream),
    which costs pages of new activities rather than a call per group every loop.
    """
    clients = _for_region(clients, region)
    names = sorted(set(group_names))
    if not names:
        return ()
    query = {"AutoScalingGroupName": names[0]} if len(names) == 1 else {}
    wanted = set(names)
    activities = []
    paginator = clients.autoscaling.get_paginator("describe_scaling_activities")
    with cloud_errors(clients.autoscaling, f"reading scaling activities in {region}"):
        for page in paginator.paginate(**query):
            reached_older = False
            for activity in _each(page.get("Activities", ()), lambda raw: _activity_from(raw, region), "activity", region):
                if activity.start_time < since:
                    reached_older = True
                elif activity.group_name in wanted:
                    activities.append(activity)
            if reached_older:
                break
    return tuple(sorted(activities, key=lambda a: (a.start_time, a.activity_id)))


def _activity_from(raw: Mapping[str, Any], region: str) -> ScalingActivity:
    if not isinstance(raw.get("StartTime"), datetime) or raw["StartTime"].tzinfo is None:
        raise ValueError(f"StartTime {raw.get('StartTime')!r} is not a time")
    end = raw.get("EndTime")
    for key in ("ActivityId", "AutoScalingGroupName"):
        if not isinstance(raw.get(key), str):
            raise ValueError(f"no {key}")
    return ScalingActivity(
        activity_id=raw["ActivityId"], group_name=raw["AutoScalingGroupName"], region=region,
        status_code=_text(raw.get("StatusCode")), status_message=_text(raw.get("StatusMessage")),
        description=_text(raw.get("Description")), cause=_text(raw.get("Cause")),
        start_time=raw["StartTime"], end_time=end if isinstance(end, datetime) and end.tzinfo else None,
    )


def read_spot_prices(clients: ClientsArg, region: str, instance_types: Iterable[str], since: datetime) -> tuple[SpotPrice, ...]:
    """Linux spot price history of these types since ``since``, by type, zone, then time."""
    clients = _for_region(clients, region)
    types = sorted(set(instance_types))
    if not types:
        return ()
    prices = []
    paginator = clients.ec2.get_paginator("describe_spot_price_history")
    with cloud_errors(clients.ec2, f"reading spot price history in {region}"):
        for page in paginator.paginate(InstanceTypes=types, ProductDescriptions=["Linux/UNIX"], StartTime=since):
            prices.extend(_each(page.get("SpotPriceHistory", ()), lambda raw: _spot_price_from(raw, region),
                                "spot price", region))
    return tuple(sorted(prices, key=lambda p: (p.instance_type, p.zone, p.timestamp)))


def _spot_price_from(raw: Mapping[str, Any], region: str) -> SpotPrice:
    price = float(raw["SpotPrice"])
    if not isinstance(raw.get("InstanceType"), str) or not isinstance(raw.get("Timestamp"), datetime) \
            or not math.isfinite(price) or price < 0:
        raise ValueError("not a spot price of an instance type at a time")
    return SpotPrice(region=region, zone=_text(raw.get("AvailabilityZone")), instance_type=raw["InstanceType"],
                     timestamp=raw["Timestamp"], price=price)
