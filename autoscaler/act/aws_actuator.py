"""ACT on AWS: the three calls that change anything there.

It does not know about dry runs: the dispatcher decides whether to call it at all.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from ..clients.aws_errors import CloudError, cloud_errors

log = logging.getLogger(__name__)

SPOT_REQUEST_NOT_FOUND = "InvalidSpotInstanceRequestID.NotFound"


class AwsActuator:
    """``clients_for_region(region)`` returns aws_reader.RegionClients (an AwsClients does)."""

    def __init__(self, clients_for_region: Callable[[str], Any]):
        self._clients_for_region = clients_for_region

    def set_desired_capacity(self, group: str, region: str, desired: int) -> None:
        # HonorCooldown=False: the autoscaler decides from pending pods, not from a cooldown
        # timer meant for metric-driven policies.
        autoscaling = self._clients_for_region(region).autoscaling
        with cloud_errors(autoscaling, f"setting desired capacity of {group} ({region}) to {desired}"):
            autoscaling.set_desired_capacity(AutoScalingGroupName=group, DesiredCapacity=desired, HonorCooldown=False)
        log.info("set desired capacity of %s (%s) to %d", group, region, desired)

    def terminate_instance(self, instance_id: str, region: str, decrement_desired: bool) -> None:
        """Terminate through the group, so it does not replace the instance when
        ``decrement_desired`` (scale in) and does replace it otherwise (a broken instance)."""
        autoscaling = self._clients_for_region(region).autoscaling
        with cloud_errors(autoscaling, f"terminating instance {instance_id} ({region})"):
            autoscaling.terminate_instance_in_auto_scaling_group(
                InstanceId=instance_id, ShouldDecrementDesiredCapacity=decrement_desired)
        log.info("terminated instance %s (%s), %s desired capacity", instance_id, region,
                 "lowering" if decrement_desired else "keeping")

    def cancel_spot_request(self, region: str, request_id: str) -> None:
        """Cancel an open spot request. One that is already gone is not an error: the goal (no
        open request) holds, and a request cancelled by someone else must not fail the loop."""
        ec2 = self._clients_for_region(region).ec2
        try:
            with cloud_errors(ec2, f"cancelling spot instance request {request_id} ({region})"):
                answer = ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[request_id])
        except CloudError as error:
            if error.code != SPOT_REQUEST_NOT_FOUND:
                raise
            log.info("spot instance request %s (%s) is already gone; nothing to cancel", request_id, region)
            return
        states = [r.get("State", "") for r in answer.get("CancelledSpotInstanceRequests", ())
                  if r.get("SpotInstanceRequestId") == request_id]
        # AWS answers a request that was already cancelled or closed with its state, not an error.
        log.info("cancelled spot instance request %s (%s), now %s", request_id, region, states[0] if states else "cancelled")
