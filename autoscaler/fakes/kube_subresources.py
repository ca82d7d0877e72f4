"""Pod subresources with behaviour of their own: ``eviction`` (PodDisruptionBudgets hold) and
``binding`` (what a scheduler posts).

There is no disruption controller here, so a budget is evaluated live at eviction time, against
the pods of the namespace its selector matches: expected = matching pods, healthy = matching pods
that are Running and not terminating. As in the real server, a pod that is Pending, finished or
already terminating is evicted without consulting budgets, and a pod covered by two budgets
cannot be evicted at all (500).
"""
from __future__ import annotations

import math
from typing import Optional

from .kube_resources import KubeApiError, bad_request, conflict, invalid, resource_type_named
from .kube_selectors import SelectorError, match_label_selector
from .kube_store import KubeStore

PODS = resource_type_named("pods")
PDBS = resource_type_named("poddisruptionbudgets")
BUDGET_VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."


def success_status(code: int) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}


def scaled_value(value, total: int, name: str) -> int:
    """An int-or-percentage against ``total``, rounding up, as the disruption controller does."""
    if isinstance(value, bool) or value is None:
        raise invalid(PDBS, name, f"{value!r} is not an int or percentage")
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%") and text[:-1].isdigit():
        return math.ceil(int(text[:-1]) * total / 100)
    raise invalid(PDBS, name, f"{value!r} is not an int or percentage")


def is_healthy(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") == "Running" and not pod["metadata"].get("deletionTimestamp")


def budget_counts(pdb: dict, matching_pods: list[dict]) -> tuple[int, int]:
    """(desired healthy, currently healthy) for one budget."""
    spec, name = pdb.get("spec") or {}, pdb["metadata"]["name"]
    expected = len(matching_pods)
    healthy = sum(1 for pod in matching_pods if is_healthy(pod))
    if spec.get("maxUnavailable") is not None:
        desired = max(0, expected - scaled_value(spec["maxUnavailable"], expected, name))
    elif spec.get("minAvailable") is not None:
        desired = scaled_value(spec["minAvailable"], expected, name)
    else:
        desired = 0
    return desired, healthy


def _labels(obj: dict) -> dict:
    return obj["metadata"].get("labels") or {}


def _ignores_budgets(pod: dict) -> bool:
    phase = pod.get("status", {}).get("phase")
    return phase in ("Pending", "Succeeded", "Failed") or bool(pod["metadata"].get("deletionTimestamp"))


def _check_budgets(store: KubeStore, namespace: str, pod: dict) -> None:
    try:
        budgets = [pdb for pdb in store.list_page(PDBS, namespace)[0]
                   if match_label_selector((pdb.get("spec") or {}).get("selector"), _labels(pod))]
    except SelectorError as error:
        raise bad_request(str(error)) from None
    if not budgets:
        return
    if len(budgets) > 1:
        raise KubeApiError(500, "InternalError", "This pod has more than one PodDisruptionBudget, "
                                                 "which the eviction subresource does not support.")
    budget = budgets[0]
    selector = budget["spec"]["selector"]
    matching = [p for p in store.list_page(PODS, namespace)[0] if match_label_selector(selector, _labels(p))]
    desired, healthy = budget_counts(budget, matching)
    # A healthy pod leaving must keep the budget; an unhealthy one may go while the budget holds.
    allowed = healthy - desired >= 1 if is_healthy(pod) else healthy >= desired
    if not allowed:
        cause = (f"The disruption budget {budget['metadata']['name']} needs {desired} healthy pods "
                 f"and has {healthy} currently")
        raise KubeApiError(429, "TooManyRequests", BUDGET_VIOLATION,
                           {"causes": [{"reason": "DisruptionBudget", "message": cause}]})


def _check_body(body, kind: str, name: Optional[str]) -> dict:
    if not isinstance(body, dict) or body.get("kind") not in (None, kind):
        raise bad_request(f"the body of the request must be a {kind} object")
    body_name = (body.get("metadata") or {}).get("name")
    if name is not None and body_name not in (None, "", name):
        raise bad_request(f"name in URL does not match name in {kind} object")
    return body


def evict(store: KubeStore, namespace: str, name: str, body) -> dict:
    """POST pods/{name}/eviction: delete the pod unless a budget forbids it (429)."""
    _check_body(body, "Eviction", name)
    with store.lock:
        pod = store.get(PODS, namespace, name)
        if not _ignores_budgets(pod):
            _check_budgets(store, namespace, pod)
        store.delete(PODS, namespace, name)
    return success_status(201)


def bind(store: KubeStore, namespace: str, name: Optional[str], body) -> dict:
    """POST pods/{name}/binding (or namespaces/{ns}/bindings): set spec.nodeName once."""
    _check_body(body, "Binding", name)
    pod_name = name or (body.get("metadata") or {}).get("name")
    node_name = (body.get("target") or {}).get("name")
    if not pod_name or not node_name:
        raise invalid(PODS, pod_name or "", "a binding needs metadata.name and target.name")
    with store.lock:
        pod = store.get(PODS, namespace, pod_name)
        assigned = pod.get("spec", {}).get("nodeName")
        if assigned:
            raise conflict(PODS, pod_name, f"pod {pod_name} is already assigned to node \"{assigned}\"")

        def assign(draft: dict) -> None:
            draft.setdefault("spec", {})["nodeName"] = node_name

        store.update(PODS, namespace, pod_name, assign)
    return success_status(201)
