"""deploy/base, rendered by kustomize as an operator's `kubectl apply -k` would, applied to the real
API server; and the autoscaler's ServiceAccount token, from the TokenRequest API."""
from __future__ import annotations

import pathlib
import subprocess

import yaml
from kube_http import KubeHttp, collection, object_path

ROOT = pathlib.Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy" / "base"
NAMESPACE = "kube-system"  # deploy/base's kustomization puts everything there
SERVICE_ACCOUNT = "autoscaler"


def render(kubectl: pathlib.Path, directory: pathlib.Path = BASE) -> list[dict]:
    """``kubectl``: the pinned release's, built with the control plane, so the tier needs none installed."""
    result = subprocess.run([str(kubectl), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory} failed: {result.stderr}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def apply(kube: KubeHttp, documents: list[dict]) -> None:
    """Create each object, or replace it when it exists (a test that changed a rule put it back)."""
    for document in documents:
        metadata = document["metadata"]
        path = object_path(document["kind"], metadata["name"], metadata.get("namespace"))
        current = kube.get(path)
        if current is None:
            kube.create(collection(document["kind"], metadata.get("namespace")), document)
        else:
            body = {**document, "metadata": {**metadata, "resourceVersion": current["metadata"]["resourceVersion"]}}
            kube.request("PUT", path, body)


def service_account_token(kube: KubeHttp, seconds: int = 3600) -> str:
    answer = kube.create(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": seconds}})
    return answer["status"]["token"]
