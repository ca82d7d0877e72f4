"""At start, one cheap authenticated call to each API, before leader election and the first loop.

Without it, credentials were first used by the first loop, and only by a replica that acts: a
standby waiting for the Lease never called AWS, so a rejected key stayed hidden until failover.
Here a refusal no retry fixes (a rejected token or key, a missing permission, an address that is
not the API) ends the process with one ``error:`` line and exit code 1, whatever the groups are
(README "Bad configuration fails fast"); weather (no answer, throttling, a 5xx) is logged and
left to the loop, which retries it.

- Kubernetes: a SelfSubjectAccessReview of ``list pods`` (in --pod-namespace, or every namespace).
  Every authenticated user may create one (the default ClusterRole ``system:basic-user``), so it
  needs no RBAC of its own; it proves the token is accepted, and the answer says whether the
  service account may list the pods the loop reads.
- AWS: one DescribeAutoScalingGroups (one record) per region of --regions, the permission the
  loop needs first anyway: it proves the credentials (IRSA's web identity exchange included) and
  that the region is enabled for the account.
"""
from __future__ import annotations

import logging
from typing import Any

from kubernetes import client as kube_client

from ..clients.aws_errors import CloudConfigurationError, CloudError, cloud_errors
from ..clients.kube_errors import KubeConfigurationError, KubeError, kube_call
from ..model.config import Settings
from ..read.aws_reader import AwsClients

log = logging.getLogger("autoscaler.cluster")

KUBE_CHECK_TIMEOUT_SECONDS = 5  # one small answer, in all (as the Lease's calls)


def check_kubernetes(api_client: Any, settings: Settings) -> None:
    """Raise KubeConfigurationError when the API server refuses the credentials, or says the
    autoscaler may not list the pods it reads."""
    namespace = settings.pod_namespace or None
    review = kube_client.V1SelfSubjectAccessReview(
        api_version="authorization.k8s.io/v1", kind="SelfSubjectAccessReview",
        spec=kube_client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=kube_client.V1ResourceAttributes(verb="list", resource="pods", namespace=namespace)))
    answer = kube_call("check the Kubernetes credentials (create a SelfSubjectAccessReview)",
                       kube_client.AuthorizationV1Api(api_client).create_self_subject_access_review, review,
                       _request_timeout=KUBE_CHECK_TIMEOUT_SECONDS)
    status = getattr(answer, "status", None)
    if status is not None and status.allowed is False:
        where = f"in namespace {namespace}" if namespace else "in all namespaces"
        why = f" ({status.reason})" if status.reason else ""
        raise KubeConfigurationError(
            f"the Kubernetes credentials are accepted, but may not list pods {where}{why}; see README \"Setup\" "
            "for the RBAC the autoscaler needs", 403, "Forbidden")


def check_aws(aws: AwsClients, settings: Settings) -> None:
    """Raise CloudConfigurationError when AWS refuses the credentials in a region of --regions."""
    for region in settings.regions:
        clients = aws(region)
        with cloud_errors(clients.autoscaling, f"checking the AWS credentials in {region}"):
            clients.autoscaling.describe_auto_scaling_groups(MaxRecords=1)


def check_credentials(api_client: Any, aws: AwsClients, settings: Settings) -> None:
    """Both checks. Raises the configuration error of the first API that refuses; weather is
    logged (the first loop meets it again and retries)."""
    for name, check in (("Kubernetes", lambda: check_kubernetes(api_client, settings)),
                        ("AWS", lambda: check_aws(aws, settings))):
        try:
            check()
        except (KubeConfigurationError, CloudConfigurationError):
            raise
        except (KubeError, CloudError) as error:
            log.warning("could not check the %s credentials at start (the loop will try again): %s", name, error)
