"""The test harness's own client of the real API server: plain JSON over HTTPS with a bearer token.

Deliberately not the autoscaler's client (the `kubernetes` package through autoscaler/clients):
the harness plays the kubelets and the operator, and should not share a bug with what it judges.
"""
from __future__ import annotations

import pathlib
from typing import Any, Optional

import requests

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


class KubeError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} {path}: {status} {body[:500]}")
        self.status = status


class KubeHttp:
    def __init__(self, server: str, token: str, ca_file: pathlib.Path):
        self.server = server
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        # Per request, not session.verify: requests lets REQUESTS_CA_BUNDLE override a session's.
        self.ca_file = str(ca_file)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                params: Optional[dict] = None, missing_ok: bool = False) -> Any:
        answer = self.session.request(method, self.server + path, json=body, params=params, timeout=30, verify=self.ca_file,
                                      headers={"Content-Type": content_type} if body is not None else {})
        if answer.status_code == 404 and missing_ok:
            return None
        if answer.status_code >= 400:
            raise KubeError(method, path, answer.status_code, answer.text)
        return answer.json() if answer.content else None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None, missing_ok=True)

    def list(self, path: str, **params: Any) -> list[dict]:
        return self.request("GET", path, params=params or None)["items"]

    def create(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body)

    def patch(self, path: str, body: dict, content_type: str = MERGE) -> dict:
        return self.request("PATCH", path, body, content_type)

    def delete(self, path: str, **params: Any) -> Any:
        return self.request("DELETE", path, params=params or None, missing_ok=True)


# Where each kind the tests create lives in the API: (path prefix, namespaced, plural).
KINDS = {
    "Namespace": ("/api/v1", False, "namespaces"),
    "Node": ("/api/v1", False, "nodes"),
    "Pod": ("/api/v1", True, "pods"),
    "ConfigMap": ("/api/v1", True, "configmaps"),
    "Secret": ("/api/v1", True, "secrets"),
    "Service": ("/api/v1", True, "services"),
    "ServiceAccount": ("/api/v1", True, "serviceaccounts"),
    "PersistentVolume": ("/api/v1", False, "persistentvolumes"),
    "PersistentVolumeClaim": ("/api/v1", True, "persistentvolumeclaims"),
    "DaemonSet": ("/apis/apps/v1", True, "daemonsets"),
    "Deployment": ("/apis/apps/v1", True, "deployments"),
    "Job": ("/apis/batch/v1", True, "jobs"),
    "PodDisruptionBudget": ("/apis/policy/v1", True, "poddisruptionbudgets"),
    "Lease": ("/apis/coordination.k8s.io/v1", True, "leases"),
    "StorageClass": ("/apis/storage.k8s.io/v1", False, "storageclasses"),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", False, "clusterroles"),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", False, "clusterrolebindings"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", True, "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", True, "rolebindings"),
}


def collection(kind: str, namespace: Optional[str] = None) -> str:
    prefix, namespaced, plural = KINDS[kind]
    if namespaced:
        if not namespace:
            raise ValueError(f"{kind} is namespaced: give a namespace")
        return f"{prefix}/namespaces/{namespace}/{plural}"
    return f"{prefix}/{plural}"


def object_path(kind: str, name: str, namespace: Optional[str] = None) -> str:
    return f"{collection(kind, namespace)}/{name}"


def create_object(kube: KubeHttp, body: dict, namespace: Optional[str] = None) -> dict:
    """Create ``body`` in its kind's collection (``namespace`` unless its metadata names one)."""
    namespace = body.get("metadata", {}).get("namespace") or namespace
    return kube.create(collection(body["kind"], namespace if KINDS[body["kind"]][1] else None), body)
