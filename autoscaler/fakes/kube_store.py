"""The fake API server's state: one table of JSON objects per resource type, behind one lock.

Stored objects are copy-on-write: a write builds a new dict and swaps it in, and nothing mutates
a stored dict afterwards. So a reader may serialise what it got after releasing the lock, and a
LIST of 15,000 pods costs one ``json.dumps`` per page, not a deep copy of the store.

Semantics follow the real server where a client could tell the difference: uid,
resourceVersion (one counter for the whole store), creationTimestamp and generation are set on
create when absent; generation moves when spec changes; a stale resourceVersion is a 409
Conflict; for kinds with a status subresource a main-resource write keeps the stored status and
a status write changes only the status. Deletion is immediate (no finalizers, no grace period);
deleting a namespace deletes what is in it.
"""
from __future__ import annotations

import base64
import binascii
import bisect
import json
import pickle
import random
import string
import threading
import uuid
from datetime import datetime, timezone
from typing import Callable, Optional

from ..model.text import utc_text
from .kube_objects import make_namespace
from .kube_patch import PatchError, apply_patch
from .kube_resources import (
    INITIAL_NAMESPACES, RESOURCE_TYPES, ResourceType, already_exists, bad_request,
    conflict, invalid, not_found, resource_type_named,
)

NAMESPACES = resource_type_named("namespaces")
STALE = "the object has been modified; please apply your changes to the latest version and try again"
ObjectPredicate = Callable[[dict], bool]


def clone(obj):
    """A deep copy of a stored document (pickle is about twice as fast as a JSON round trip)."""
    return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))


def json_clone(obj):
    """A deep copy of a caller's document that also proves it is JSON (TypeError otherwise)."""
    return json.loads(json.dumps(obj))


class _Table:
    """Objects of one resource type keyed by (namespace, name); keys kept sorted for paging."""

    def __init__(self):
        self.objects: dict[tuple[str, str], dict] = {}
        self.keys: list[tuple[str, str]] = []

    def put(self, key: tuple[str, str], obj: dict) -> None:
        if key not in self.objects:
            bisect.insort(self.keys, key)
        self.objects[key] = obj

    def pop(self, key: tuple[str, str]) -> dict:
        self.keys.pop(bisect.bisect_left(self.keys, key))
        return self.objects.pop(key)

    def key_range(self, namespace: Optional[str]) -> tuple[int, int]:
        if namespace is None:
            return 0, len(self.keys)
        # "\x00" sorts before every character a namespace name can hold.
        return (bisect.bisect_left(self.keys, (namespace, "")),
                bisect.bisect_left(self.keys, (namespace + "\x00", "")))


def encode_continue(key: tuple[str, str], resource_version: int) -> str:
    raw = json.dumps({"after": list(key), "rv": resource_version}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> tuple[str, str]:
    try:
        namespace, name = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
        return str(namespace), str(name)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise bad_request(f"continue key is not valid: {token!r}") from None


class KubeStore:
    """Thread-safe object store; methods take a ResourceType and raise KubeApiError.

    Bodies passed to create/replace/patch become the stored object: pass a private copy (a
    freshly parsed request body is one); ``add``/``put`` copy their argument themselves."""

    def __init__(self, clock: Optional[Callable[[], datetime]] = None):
        self.lock = threading.RLock()
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._tables = {resource_type: _Table() for resource_type in RESOURCE_TYPES}
        self._resource_version = 0
        for name in INITIAL_NAMESPACES:
            self.create(NAMESPACES, None, make_namespace(name))

    @property
    def resource_version(self) -> int:
        return self._resource_version

    def _next_resource_version(self) -> str:
        self._resource_version += 1
        return str(self._resource_version)

    @staticmethod
    def _key(resource_type: ResourceType, namespace: Optional[str], name: str) -> tuple[str, str]:
        return (namespace or "") if resource_type.namespaced else "", name

    def find(self, resource_type: ResourceType, namespace: Optional[str], name: str) -> Optional[dict]:
        """The stored object (do not mutate it) or None."""
        with self.lock:
            return self._tables[resource_type].objects.get(self._key(resource_type, namespace, name))

    def get(self, resource_type: ResourceType, namespace: Optional[str], name: str) -> dict:
        found = self.find(resource_type, namespace, name)
        if found is None:
            raise not_found(resource_type, name)
        return found

    def list_page(self, resource_type: ResourceType, namespace: Optional[str],
                  predicates: tuple = (), limit: int = 0,
                  continue_token: Optional[str] = None) -> tuple[list[dict], str, Optional[str]]:
        """(items, list resourceVersion, continue token or None); items are stored objects.

        A continued list resumes after the last key returned and sees the store as it is now."""
        with self.lock:
            table = self._tables[resource_type]
            start, end = table.key_range(namespace)
            if continue_token:
                start = max(start, bisect.bisect_right(table.keys, decode_continue(continue_token)))
            items: list[dict] = []
            next_token: Optional[str] = None
            for index in range(start, end):
                obj = table.objects[table.keys[index]]
                if all(predicate(obj) for predicate in predicates):
                    if limit and len(items) == limit:
                        next_token = encode_continue(self._key_of(resource_type, items[-1]),
                                                     self._resource_version)
                        break
                    items.append(obj)
            return items, str(self._resource_version), next_token

    def _key_of(self, resource_type: ResourceType, obj: dict) -> tuple[str, str]:
        metadata = obj["metadata"]
        return self._key(resource_type, metadata.get("namespace"), metadata["name"])

    def create(self, resource_type: ResourceType, namespace: Optional[str], body: dict) -> dict:
        obj = self._checked_body(resource_type, namespace, body, name=None)
        metadata = obj["metadata"]
        with self.lock:
            if resource_type.namespaced:
                self._require_namespace(metadata["namespace"])
            if not metadata.get("name"):
                if not metadata.get("generateName"):
                    raise invalid(resource_type, "", "metadata.name: Required value: name or generateName is required")
                metadata["name"] = self._generated_name(resource_type, metadata)
            key = self._key(resource_type, metadata.get("namespace"), metadata["name"])
            table = self._tables[resource_type]
            if key in table.objects:
                raise already_exists(resource_type, metadata["name"])
            metadata.setdefault("uid", str(uuid.uuid4()))
            metadata.setdefault("creationTimestamp", utc_text(self._clock()))
            metadata.setdefault("generation", 1)
            metadata["resourceVersion"] = self._next_resource_version()
            if resource_type.kind == "Pod":
                obj.setdefault("status", {}).setdefault("phase", "Pending")
            if resource_type.kind == "Namespace":
                obj.setdefault("status", {}).setdefault("phase", "Active")
            table.put(key, obj)
            return obj

    def _generated_name(self, resource_type: ResourceType, metadata: dict) -> str:
        table = self._tables[resource_type]
        alphabet = string.ascii_lowercase + string.digits
        while True:
            name = metadata["generateName"] + "".join(random.choices(alphabet, k=5))
            if self._key(resource_type, metadata.get("namespace"), name) not in table.objects:
                return name

    def _require_namespace(self, namespace: str) -> None:
        if ("", namespace) not in self._tables[NAMESPACES].objects:
            raise not_found(NAMESPACES, namespace)

    def _checked_body(self, resource_type: ResourceType, namespace: Optional[str], body,
                      name: Optional[str]) -> dict:
        """A request body (owned by the store from now on) checked against its path."""
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request must be a {resource_type.kind} object")
        if body.get("kind") not in (None, resource_type.kind):
            raise bad_request(f"the object provided is of kind {body.get('kind')!r}, "
                              f"not {resource_type.kind!r}")
        obj = body
        obj["kind"], obj["apiVersion"] = resource_type.kind, resource_type.api_version
        metadata = obj.get("metadata")
        if metadata is None:
            metadata = obj["metadata"] = {}
        if not isinstance(metadata, dict):
            raise bad_request("metadata must be an object")
        if name is not None and metadata.get("name") not in (None, name):
            raise bad_request(f"the name of the object ({metadata.get('name')}) does not match "
                              f"the name on the URL ({name})")
        if name is not None:
            metadata["name"] = name
        if resource_type.namespaced:
            if namespace and metadata.get("namespace") not in (None, "", namespace):
                raise bad_request("the namespace of the provided object does not match the "
                                  "namespace sent on the request")
            metadata["namespace"] = namespace or metadata.get("namespace") or "default"
        else:
            metadata.pop("namespace", None)
        return obj

    def replace(self, resource_type: ResourceType, namespace: Optional[str], name: str, body: dict,
                subresource: Optional[str] = None) -> dict:
        """PUT: a stale resourceVersion in the body is a Conflict; none means unconditional."""
        obj = self._checked_body(resource_type, namespace, body, name)
        with self.lock:
            current = self.get(resource_type, namespace, name)
            return self._commit_update(resource_type, current, obj, subresource)

    def patch(self, resource_type: ResourceType, namespace: Optional[str], name: str,
              content_type: str, patch, subresource: Optional[str] = None) -> dict:
        with self.lock:
            current = self.get(resource_type, namespace, name)
            try:
                patched = apply_patch(content_type, current, patch)
            except PatchError as error:
                if error.invalid:
                    raise invalid(resource_type, name, str(error)) from None
                raise bad_request(str(error)) from None
            if not isinstance(patched.get("metadata"), dict):
                raise bad_request("the patch removed metadata")
            patched["metadata"] = {**patched["metadata"], "name": name}
            obj = self._checked_body(resource_type, namespace, patched, name)
            # A resourceVersion the patch carries is a precondition; the merged-in current one is not.
            if obj["metadata"].get("resourceVersion") == current["metadata"]["resourceVersion"]:
                obj["metadata"].pop("resourceVersion")
            return self._commit_update(resource_type, current, obj, subresource)

    def update(self, resource_type: ResourceType, namespace: Optional[str], name: str,
               change: Callable[[dict], Optional[dict]]) -> dict:
        """The simulator's write: ``change`` gets a private copy (status included) and edits it
        in place or returns a replacement; no resourceVersion check, status is written too."""
        with self.lock:
            current = self.get(resource_type, namespace, name)
            draft = clone(current)
            changed = change(draft)
            obj = self._checked_body(resource_type, namespace,
                                     draft if changed is None else json_clone(changed), name)
            obj["metadata"].pop("resourceVersion", None)
            return self._commit_update(resource_type, current, obj, subresource=None, keep_status=False)

    def _commit_update(self, resource_type: ResourceType, current: dict, obj: dict,
                       subresource: Optional[str], keep_status: bool = True) -> dict:
        metadata, old_metadata = obj["metadata"], current["metadata"]
        name = old_metadata["name"]
        given_version = metadata.get("resourceVersion")
        if given_version not in (None, "") and given_version != old_metadata["resourceVersion"]:
            raise conflict(resource_type, name, STALE)
        if metadata.get("uid") not in (None, "", old_metadata["uid"]):
            raise conflict(resource_type, name, "Precondition failed: UID in object meta does not match")
        if subresource == "status":
            obj = {**current, "status": obj.get("status", {})}
            metadata = obj["metadata"] = dict(old_metadata)
        elif keep_status and resource_type.has_status:
            obj.pop("status", None)
            if "status" in current:
                obj["status"] = current["status"]
        for immutable in ("uid", "creationTimestamp", "deletionTimestamp", "generation"):
            if immutable in old_metadata:
                metadata[immutable] = old_metadata[immutable]
            else:
                metadata.pop(immutable, None)
        if obj.get("spec") != current.get("spec"):
            metadata["generation"] = old_metadata.get("generation", 0) + 1
        metadata["resourceVersion"] = self._next_resource_version()
        self._tables[resource_type].put(self._key_of(resource_type, current), obj)
        return obj

    def put(self, resource_type: ResourceType, obj: dict) -> dict:
        """Seeding: create, or replace whatever is stored under that name (status included)."""
        metadata = obj.get("metadata") or {}
        namespace = (metadata.get("namespace") or "default") if resource_type.namespaced else None
        with self.lock:
            if self.find(resource_type, namespace, metadata.get("name", "")) is None:
                return self.add(resource_type, obj)
            return self.update(resource_type, namespace, metadata["name"], lambda _draft: obj)

    def add(self, resource_type: ResourceType, obj: dict) -> dict:
        """Seeding: create, making the namespace first if it does not exist yet."""
        namespace = (obj.get("metadata") or {}).get("namespace") or "default"
        with self.lock:
            if resource_type.namespaced and self.find(NAMESPACES, None, namespace) is None:
                self.create(NAMESPACES, None, make_namespace(namespace))
            return self.create(resource_type, namespace if resource_type.namespaced else None,
                               json_clone(obj))

    def delete(self, resource_type: ResourceType, namespace: Optional[str], name: str,
               preconditions: Optional[dict] = None) -> dict:
        with self.lock:
            current = self.get(resource_type, namespace, name)
            for field, why in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                wanted = (preconditions or {}).get(field)
                if wanted and wanted != current["metadata"][field]:
                    raise conflict(resource_type, name, f"Precondition failed: {why} in precondition: "
                                                        f"{wanted}, {why} in object meta: "
                                                        f"{current['metadata'][field]}")
            self._resource_version += 1
            removed = self._tables[resource_type].pop(self._key_of(resource_type, current))
            if resource_type is NAMESPACES:
                self._delete_namespace_contents(name)
            return removed

    def _delete_namespace_contents(self, namespace: str) -> None:
        for resource_type, table in self._tables.items():
            if resource_type.namespaced:
                start, end = table.key_range(namespace)
                for key in table.keys[start:end]:
                    table.objects.pop(key)
                del table.keys[start:end]
