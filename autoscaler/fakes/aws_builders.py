"""Builders for Auto Scaling groups as the autoscaler finds them: tagged, protected, launchable.

They go through the public API (boto3), so they exercise the same moto paths as the product.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

# A syntactically valid image id; never looked up (DescribeImages is slow in moto).
FAKE_AMI_ID = "ami-0fa4e0000000c0de"

LaunchKind = Literal["config", "template", "mixed"]


def create_group(
    autoscaling: Any,
    ec2: Any,
    region: str,
    name: str,
    cluster: str,
    *,
    instance_type: str = "m5.large",
    min_size: int = 0,
    max_size: int = 10,
    desired: int = 0,
    role: str = "worker",
    tags: Mapping[str, str] | None = None,
    zones: Sequence[str] | None = None,
    launch: LaunchKind = "config",
    overrides: Sequence[str] | None = None,
    spot_price: str | None = None,
    protect: bool = True,
) -> str:
    """Create the launch settings and the group; return the group name.

    `overrides` are the instance types of a mixed-instances policy (default: `instance_type`);
    `spot_price` makes a launch configuration bid, or a mixed policy all-spot with that max price.
    """
    all_tags = {"KubernetesCluster": cluster, "Role": role, **(tags or {})}
    request: dict[str, Any] = {
        "AutoScalingGroupName": name,
        "MinSize": min_size,
        "MaxSize": max_size,
        "DesiredCapacity": desired,
        "AvailabilityZones": list(zones) if zones else [f"{region}a"],
        "NewInstancesProtectedFromScaleIn": protect,
        "Tags": [
            {
                "ResourceId": name,
                "ResourceType": "auto-scaling-group",
                "Key": key,
                "Value": value,
                "PropagateAtLaunch": True,
            }
            for key, value in sorted(all_tags.items())
        ],
    }
    if launch == "config":
        config: dict[str, Any] = {
            "LaunchConfigurationName": f"{name}-config",
            "ImageId": FAKE_AMI_ID,
            "InstanceType": instance_type,
        }
        if spot_price is not None:
            config["SpotPrice"] = spot_price
        autoscaling.create_launch_configuration(**config)
        request["LaunchConfigurationName"] = config["LaunchConfigurationName"]
    elif launch in ("template", "mixed"):
        template_name = f"{name}-template"
        ec2.create_launch_template(
            LaunchTemplateName=template_name,
            LaunchTemplateData={"ImageId": FAKE_AMI_ID, "InstanceType": instance_type},
        )
        template = {"LaunchTemplateName": template_name, "Version": "$Default"}
        if launch == "template":
            request["LaunchTemplate"] = template
        else:
            request["MixedInstancesPolicy"] = _mixed_instances_policy(
                template, overrides or [instance_type], spot_price
            )
    else:
        raise ValueError(f"launch must be 'config', 'template' or 'mixed', not {launch!r}")
    autoscaling.create_auto_scaling_group(**request)
    return name


def _mixed_instances_policy(
    template: dict[str, str], overrides: Sequence[str], spot_price: str | None
) -> dict[str, Any]:
    distribution: dict[str, Any] = {"OnDemandBaseCapacity": 0}
    if spot_price is None:
        distribution["OnDemandPercentageAboveBaseCapacity"] = 100
    else:
        distribution["OnDemandPercentageAboveBaseCapacity"] = 0
        distribution["SpotMaxPrice"] = spot_price
    return {
        "LaunchTemplate": {
            "LaunchTemplateSpecification": template,
            "Overrides": [{"InstanceType": instance_type} for instance_type in overrides],
        },
        "InstancesDistribution": distribution,
    }
