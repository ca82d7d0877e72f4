"""aws_actuator against moto in-process: each call really changes the (simulated) AWS state."""
import pytest
from botocore.stub import Stubber

from autoscaler.act.aws_actuator import AwsActuator
from autoscaler.clients.aws_errors import CloudError
from autoscaler.model.config import Settings
from autoscaler.read.aws_reader import AwsClients
from moto_builders import AMI, create_launch_configuration, create_moto_group

REGION = "us-west-2"


@pytest.fixture
def aws(moto_in_process):
    return AwsClients(Settings(cluster_name="batch", regions=(REGION,)))


def describe_group(aws, name="workers", region=REGION):
    return aws(region).autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]


def instance_state(aws, instance_id, region=REGION):
    reservations = aws(region).ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservations[0]["Instances"][0]["State"]["Name"]


@pytest.mark.parametrize("region", [REGION, "us-east-1"])
def test_set_desired_capacity_changes_the_group(aws, region):
    create_launch_configuration(aws(region))
    create_moto_group(aws(region), desired=1, zones=[region + "a"])
    AwsActuator(aws).set_desired_capacity("workers", region, 4)
    group = describe_group(aws, region=region)
    assert group["DesiredCapacity"] == 4
    assert len(group["Instances"]) == 4  # moto launches them, as AWS would


@pytest.mark.parametrize("decrement, desired_after", [(True, 1), (False, 2)], ids=["decrement", "keep"])
def test_terminate_instance_in_group(aws, decrement, desired_after):
    create_launch_configuration(aws(REGION))
    create_moto_group(aws(REGION), desired=2, zones=[REGION + "a"])
    instance_id = describe_group(aws)["Instances"][0]["InstanceId"]
    AwsActuator(aws).terminate_instance(instance_id, REGION, decrement)
    assert instance_state(aws, instance_id) in ("shutting-down", "terminated")
    group = describe_group(aws)
    assert group["DesiredCapacity"] == desired_after
    assert instance_id not in [i["InstanceId"] for i in group["Instances"]]


def test_cancel_spot_request(aws):
    ec2 = aws(REGION).ec2
    request_id = ec2.request_spot_instances(SpotPrice="0.5", InstanceCount=1, LaunchSpecification={
        "ImageId": AMI, "InstanceType": "m5.large"})["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
    AwsActuator(aws).cancel_spot_request(REGION, request_id)
    # moto forgets a cancelled request; AWS keeps it in state "cancelled". Either way it is no longer open.
    open_requests = [r for r in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
                     if r["SpotInstanceRequestId"] == request_id and r["State"] in ("open", "active")]
    assert open_requests == []


@pytest.mark.parametrize("call, client, operation, code, expected", [
    (lambda a: a.set_desired_capacity("workers", REGION, 3), "autoscaling", "set_desired_capacity", "AccessDenied",
     "autoscaling:SetDesiredCapacity"),
    (lambda a: a.set_desired_capacity("workers", REGION, 30), "autoscaling", "set_desired_capacity", "ValidationError",
     "setting desired capacity of workers (us-west-2) to 30: ValidationError"),
    (lambda a: a.terminate_instance("i-0123456789abcdef0", REGION, True), "autoscaling",
     "terminate_instance_in_auto_scaling_group", "AccessDenied", "autoscaling:TerminateInstanceInAutoScalingGroup"),
    (lambda a: a.cancel_spot_request(REGION, "sir-12345678"), "ec2", "cancel_spot_instance_requests",
     "UnauthorizedOperation", "ec2:CancelSpotInstanceRequests"),
], ids=["set-denied", "set-invalid", "terminate-denied", "cancel-denied"])
def test_errors_are_cloud_errors_with_a_clear_message(aws, call, client, operation, code, expected):
    with Stubber(getattr(aws(REGION), client)) as stub:
        stub.add_client_error(operation, service_error_code=code, service_message="refused")
        with pytest.raises(CloudError) as raised:
            call(AwsActuator(aws))
    assert raised.value.code == code and expected in str(raised.value)


@pytest.mark.parametrize("answer, log_text", [
    pytest.param({"error": "InvalidSpotInstanceRequestID.NotFound"}, "is already gone", id="request-gone"),
    pytest.param({"state": "cancelled"}, "now cancelled", id="request-already-cancelled"),
    pytest.param({"state": "closed"}, "now closed", id="request-already-closed"),
])
def test_cancel_tolerates_a_request_already_gone_or_cancelled(aws, caplog, answer, log_text):
    """What AWS answers (moto raises an internal error instead), so the stub plays AWS here."""
    caplog.set_level("INFO", logger="autoscaler.act.aws_actuator")
    with Stubber(aws(REGION).ec2) as stub:
        if "error" in answer:
            stub.add_client_error("cancel_spot_instance_requests", service_error_code=answer["error"],
                                  service_message="The spot instance request ID 'sir-12345678' does not exist")
        else:
            stub.add_response("cancel_spot_instance_requests", {"CancelledSpotInstanceRequests": [
                {"SpotInstanceRequestId": "sir-12345678", "State": answer["state"]}]})
        AwsActuator(aws).cancel_spot_request(REGION, "sir-12345678")  # no exception
    assert log_text in caplog.text
