"""ACT on Kubernetes: cordon, uncordon and annotate nodes (patches), evict pods, delete nodes.

Writes are JSON merge patches, never read-modify-replace: kubelet heartbeats bump a node's
resourceVersion every few seconds, and a replace would fail with a conflict.
"""
from __future__ import annotations

from kubernetes import client as kube_client

from ..clients.kube_connect import REQUEST_TIMEOUT
from ..clients.kube_errors import KubeError, kube_call
from ..model.objects import CORDONED_BY_AUTOSCALER_LABEL

MERGE_PATCH = "application/merge-patch+json"
# (connect, read) seconds for one write: a half-open connection must fail the action, not hang the loop.
WRITE_REQUEST_TIMEOUT = REQUEST_TIMEOUT


class EvictionRefused(KubeError):
    """The API refused the eviction (429): a PodDisruptionBudget holds the pod for now."""


class KubeActuator:
    def __init__(self, api_client: kube_client.ApiClient):
        self.core = kube_client.CoreV1Api(api_client)

    def _patch_node(self, what: str, name: str, body: dict) -> None:
        kube_call(what, self.core.patch_node, name, body, _content_type=MERGE_PATCH,
                  _request_timeout=WRITE_REQUEST_TIMEOUT)

    def cordon(self, node: str) -> None:
        body = {"metadata": {"labels": {CORDONED_BY_AUTOSCALER_LABEL: "true"}}, "spec": {"unschedulable": True}}
        self._patch_node(f"cordon node {node}", node, body)

    def uncordon(self, node: str) -> None:
        # null removes the label: only nodes carrying it are ever uncordoned by us.
        body = {"metadata": {"labels": {CORDONED_BY_AUTOSCALER_LABEL: None}}, "spec": {"unschedulable": False}}
        self._patch_node(f"uncordon node {node}", node, body)

    def annotate(self, node: str, key: str, value: str) -> None:
        self._patch_node(f"annotate node {node}", node, {"metadata": {"annotations": {key: value}}})

    def evict(self, namespace: str, name: str) -> bool:
        """Evict through the Eviction API so PodDisruptionBudgets hold.

        Returns False when the pod was already gone; raises EvictionRefused on 429."""
        eviction = kube_client.V1Eviction(metadata=kube_client.V1ObjectMeta(name=name, namespace=namespace))
        try:
            kube_call(f"evict pod {namespace}/{name}", self.core.create_namespaced_pod_eviction, name, namespace, eviction,
                      _request_timeout=WRITE_REQUEST_TIMEOUT)
        except KubeError as error:
            if error.status == 404:
                return False
            if error.status == 429:
                raise EvictionRefused(str(error), error.status, error.reason) from None
            raise
        return True

    def delete_node(self, node: str) -> bool:
        """Delete the Node object; False when it was already gone."""
        try:
            kube_call(f"delete node {node}", self.core.delete_node, node, _request_timeout=WRITE_REQUEST_TIMEOUT)
        except KubeError as error:
            if error.status == 404:
                return False
            raise
        return True
