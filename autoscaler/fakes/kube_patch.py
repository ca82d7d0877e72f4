"""The three PATCH flavours the API server accepts, applied to plain dicts.

- JSON merge patch (RFC 7386): maps merge recursively, ``null`` deletes, lists are replaced.
- Strategic merge patch: a merge patch in which the lists Kubernetes declares with a merge key
  (containers by name, taints by key, conditions by type, ...) merge element-wise, with the
  ``$patch: delete|replace``, ``$deleteFromPrimitiveList/<field>`` and ``$setElementOrder/<field>``
  directives kubectl generates. Enough for node patches and ``kubectl cordon``.
- JSON patch (RFC 6902): add, remove, replace, move, copy, test.

Every function returns a new document and leaves its input untouched; errors raise PatchError.
"""
from __future__ import annotations

import copy
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE_PATCH, STRATEGIC_MERGE_PATCH, JSON_PATCH)

# patchMergeKey of the list fields in the core types the autoscaler and kubectl touch.
STRATEGIC_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "env": "name",
    "ports": "containerPort",
    "taints": "key",
    "conditions": "type",
    "addresses": "type",
    "ownerReferences": "uid",
    "imagePullSecrets": "name",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
}


class PatchError(ValueError):
    """A patch the server would refuse; ``invalid`` distinguishes 422 (failed test) from 400."""

    def __init__(self, message: str, invalid: bool = False):
        super().__init__(message)
        self.invalid = invalid


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge patch over the merge keys in STRATEGIC_MERGE_KEYS."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive is not None:
        raise PatchError(f"unknown patch directive $patch: {directive!r}")
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key == "$retainKeys":
            # Ordering and retention hints; the merged content is the same without them.
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            doomed = value if isinstance(value, list) else [value]
            result[field] = [item for item in result.get(field) or [] if item not in doomed]
            continue
        if key.startswith("$"):
            raise PatchError(f"unsupported strategic merge directive {key!r}")
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and STRATEGIC_MERGE_KEYS.get(key):
            result[key] = _merge_list_by_key(result.get(key) or [], value, STRATEGIC_MERGE_KEYS[key])
        else:
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _merge_list_by_key(current: list, patch: list, merge_key: str) -> list:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    merged = [dict(item) if isinstance(item, dict) else item for item in current]
    positions = {item.get(merge_key): i for i, item in enumerate(merged) if isinstance(item, dict)}
    doomed = set()
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise PatchError(f"list element {item!r} lacks the merge key {merge_key!r}")
        index = positions.get(item[merge_key])
        if item.get("$patch") == "delete":
            if index is not None:
                doomed.add(index)
        elif index is None:
            positions[item[merge_key]] = len(merged)
            merged.append(strategic_merge_patch({}, item))
        else:
            merged[index] = strategic_merge_patch(merged[index], item)
    return [item for i, item in enumerate(merged) if i not in doomed]


def _pointer_parts(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def _resolve_parent(document: Any, parts: list[str]) -> tuple[Any, str]:
    parent = document
    for part in parts[:-1]:
        parent = _child(parent, part)
    return parent, parts[-1]


def _child(container: Any, part: str) -> Any:
    if isinstance(container, dict):
        if part not in container:
            raise PatchError(f"path segment {part!r} not found")
        return container[part]
    if isinstance(container, list):
        return container[_list_index(container, part, allow_end=False)]
    raise PatchError(f"cannot descend into {type(container).__name__} at {part!r}")


def _list_index(container: list, part: str, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(container)
    if not part.isdigit():
        raise PatchError(f"invalid list index {part!r}")
    index = int(part)
    limit = len(container) + (1 if allow_end else 0)
    if index >= limit:
        raise PatchError(f"list index {index} out of range")
    return index


def _add(document: Any, pointer: str, value: Any) -> Any:
    parts = _pointer_parts(pointer)
    if not parts:
        return copy.deepcopy(value)
    parent, last = _resolve_parent(document, parts)
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_list_index(parent, last, allow_end=True), copy.deepcopy(value))
    else:
        raise PatchError(f"cannot add at {pointer!r}")
    return document


def _remove(document: Any, pointer: str) -> tuple[Any, Any]:
    parts = _pointer_parts(pointer)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent, last = _resolve_parent(document, parts)
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"cannot remove {pointer!r}: not found")
        return document, parent.pop(last)
    if isinstance(parent, list):
        return document, parent.pop(_list_index(parent, last, allow_end=False))
    raise PatchError(f"cannot remove {pointer!r}")


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902; a failed ``test`` raises PatchError(invalid=True)."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"malformed JSON patch operation {operation!r}")
        op, path = operation["op"], operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"JSON patch {op} at {path!r} needs a value")
        if op == "add":
            result = _add(result, path, operation["value"])
        elif op == "remove":
            result, _ = _remove(result, path)
        elif op == "replace":
            result, _ = _remove(result, path)
            result = _add(result, path, operation["value"])
        elif op in ("move", "copy"):
            source = operation.get("from")
            if source is None:
                raise PatchError(f"JSON patch {op} needs 'from'")
            if op == "move":
                result, value = _remove(result, source)
            else:
                value = _child_at(result, source)
            result = _add(result, path, value)
        elif op == "test":
            if _child_at(result, path) != operation["value"]:
                raise PatchError(f"test operation at {path!r} failed", invalid=True)
        else:
            raise PatchError(f"unknown JSON patch operation {op!r}")
    return result


def _child_at(document: Any, pointer: str) -> Any:
    value = document
    for part in _pointer_parts(pointer):
        value = _child(value, part)
    return value


def apply_patch(content_type: str, document: dict, patch: Any) -> dict:
    """Dispatch on the request's Content-Type (one of PATCH_TYPES)."""
    if content_type == JSON_PATCH:
        result = json_patch(document, patch)
    elif not isinstance(patch, dict):
        raise PatchError("a merge patch must be a JSON object")
    elif content_type == MERGE_PATCH:
        result = merge_patch(document, patch)
    elif content_type == STRATEGIC_MERGE_PATCH:
        result = strategic_merge_patch(document, patch)
    else:
        raise ValueError(f"unsupported patch type {content_type}")
    if not isinstance(result, dict):
        raise PatchError("the patch did not leave an object")
    return result
