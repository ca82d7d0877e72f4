"""Builders of Auto Scaling groups and their launch settings in moto, for the adapter tests that
run moto in process (``moto_in_process``). ``clients`` is one region's clients (``aws(region)``
of an ``AwsClients``): the group is created through the public API, as an operator would.

Distinct from ``builders.make_group``, which builds the model's Group for the pure tests.
"""
from __future__ import annotations

CLUSTER = "batch"
AMI = "ami-12345678"


def create_launch_configuration(clients, name="lc", instance_type="m5.large", **extra) -> None:
    clients.autoscaling.create_launch_configuration(LaunchConfigurationName=name, ImageId=AMI, InstanceType=instance_type,
                                                    **extra)


def create_launch_template(clients, name="tmpl", instance_type="m5.large", **data) -> None:
    clients.ec2.create_launch_template(LaunchTemplateName=name,
                                       LaunchTemplateData={"ImageId": AMI, "InstanceType": instance_type, **data})


def create_moto_group(clients, name="workers", *, cluster=CLUSTER, role=("Role", "minion"), tags=None, zones=None,
                      desired=0, **launch) -> None:
    """A group tagged for ``cluster`` with ``role`` (a (key, value) tag, or None), in ``zones``
    (default: the region's a and b). ``launch``: its launch settings as CreateAutoScalingGroup
    takes them (LaunchConfigurationName, LaunchTemplate or MixedInstancesPolicy), created
    beforehand; default the launch configuration "lc"."""
    all_tags = {"KubernetesCluster": cluster, **({role[0]: role[1]} if role else {}), **(tags or {})}
    if not launch:
        launch = {"LaunchConfigurationName": "lc"}
    clients.autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=name, MinSize=0, MaxSize=10, DesiredCapacity=desired,
        AvailabilityZones=list(zones or [clients.region + "a", clients.region + "b"]),
        Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in all_tags.items()], **launch)
