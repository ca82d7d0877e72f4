"""What the fake API server serves: its resource types, their discovery documents, and errors
in the shape of the real server's ``Status`` objects."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

READ_VERBS = ("get", "list", "watch")
ALL_VERBS = ("create", "delete", "get", "list", "patch", "update", "watch")
SERVER_VERSION = {
    "major": "1", "minor": "32", "gitVersion": "v1.32.0-fake", "gitCommit": "fake",
    "gitTreeState": "clean", "buildDate": "2024-01-01T00:00:00Z", "goVersion": "go1.23",
    "compiler": "gc", "platform": "linux/amd64",
}


@dataclass(frozen=True)
class Subresource:
    name: str
    kind: str
    verbs: tuple
    group: Optional[str] = None  # set when the subresource's body lives in another group
    version: Optional[str] = None


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple = ()
    subresources: tuple = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified_name(self) -> str:
        """``pods`` or ``leases.coordination.k8s.io``, as the server names it in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return any(s.name == "status" for s in self.subresources)

    def subresource(self, name: str) -> Optional[Subresource]:
        return next((s for s in self.subresources if s.name == name), None)


def _status(kind: str) -> Subresource:
    return Subresource("status", kind, ("get", "patch", "update"))


RESOURCE_TYPES = (
    ResourceType("", "v1", "namespaces", "Namespace", False, ("ns",), (_status("Namespace"),)),
    ResourceType("", "v1", "nodes", "Node", False, ("no",), (_status("Node"),)),
    ResourceType("", "v1", "pods", "Pod", True, ("po",), (
        _status("Pod"),
        Subresource("eviction", "Eviction", ("create",), group="policy", version="v1"),
        Subresource("binding", "Binding", ("create",)),
    )),
    ResourceType("", "v1", "events", "Event", True, ("ev",)),
    ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", True, ("pdb",),
                 (_status("PodDisruptionBudget"),)),
    ResourceType("coordination.k8s.io", "v1", "leases", "Lease", True),
    # Created and answered, never stored (as the real server does): the autoscaler's start-up check.
    ResourceType("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "SelfSubjectAccessReview", False),
    ResourceType("events.k8s.io", "v1", "events", "Event", True, ("ev",)),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, ("ds",), (_status("DaemonSet"),)),
    ResourceType("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ("pvc",),
                 (_status("PersistentVolumeClaim"),)),
    ResourceType("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), (_status("PersistentVolume"),)),
    ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
)
INITIAL_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def resource_types_in(group: str, version: str) -> list[ResourceType]:
    return [t for t in RESOURCE_TYPES if t.group == group and t.version == version]


def find_resource_type(group: str, version: str, plural: str) -> Optional[ResourceType]:
    return next((t for t in resource_types_in(group, version) if t.plural == plural), None)


def resource_type_named(name: str) -> ResourceType:
    """For the Python API: ``"Pod"``, ``"pods"``, ``"pod"``, ``"pdb"``, or a qualified name such
    as ``"events.events.k8s.io"``. Plain ``Event``/``events`` mean the core v1 kind."""
    wanted = name.lower()
    for resource_type in RESOURCE_TYPES:
        if wanted in (resource_type.kind.lower(), resource_type.plural, resource_type.qualified_name,
                      *resource_type.short_names):
            return resource_type
    raise KeyError(f"the fake API server does not serve {name!r}")


def resource_type_of(obj: dict) -> ResourceType:
    """The type an object declares with apiVersion and kind."""
    for resource_type in RESOURCE_TYPES:
        if resource_type.kind == obj.get("kind") and resource_type.api_version == obj.get("apiVersion"):
            return resource_type
    raise KeyError(f"the fake API server does not serve {obj.get('apiVersion')}/{obj.get('kind')}")


def group_versions() -> list[tuple[str, str]]:
    """The named (non-core) group versions, in a stable order."""
    return sorted({(t.group, t.version) for t in RESOURCE_TYPES if t.group})


def api_versions_document(server_address: str) -> dict:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def api_group_document(group: str) -> dict:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for g, v in group_versions() if g == group]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
            "preferredVersion": versions[0]}


def api_group_list_document() -> dict:
    groups = sorted({g for g, _ in group_versions()})
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [{k: v for k, v in api_group_document(g).items() if k not in ("kind", "apiVersion")}
                       for g in groups]}


def api_resource_list_document(group: str, version: str) -> dict:
    resources = []
    for resource_type in resource_types_in(group, version):
        resources.append({
            "name": resource_type.plural, "singularName": resource_type.kind.lower(),
            "namespaced": resource_type.namespaced, "kind": resource_type.kind,
            "verbs": list(ALL_VERBS), "shortNames": list(resource_type.short_names),
        })
        for sub in resource_type.subresources:
            entry = {"name": f"{resource_type.plural}/{sub.name}", "singularName": "",
                     "namespaced": resource_type.namespaced, "kind": sub.kind, "verbs": list(sub.verbs)}
            if sub.group is not None:
                entry.update(group=sub.group, version=sub.version)
            resources.append(entry)
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": resources}


class KubeApiError(Exception):
    """An API error; ``status()`` is the body the server sends, ``code`` its HTTP status."""

    def __init__(self, code: int, reason: str, message: str, details: Optional[dict] = None,
                 headers: Optional[dict] = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}  # extra HTTP response headers, such as Retry-After

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


def _details(resource_type: ResourceType, name: str) -> dict:
    return {"name": name, "group": resource_type.group, "kind": resource_type.plural}


def not_found(resource_type: ResourceType, name: str) -> KubeApiError:
    return KubeApiError(404, "NotFound", f'{resource_type.qualified_name} "{name}" not found',
                        _details(resource_type, name))


def already_exists(resource_type: ResourceType, name: str) -> KubeApiError:
    return KubeApiError(409, "AlreadyExists", f'{resource_type.qualified_name} "{name}" already exists',
                        _details(resource_type, name))


def conflict(resource_type: ResourceType, name: str, why: str) -> KubeApiError:
    return KubeApiError(409, "Conflict",
                        f'Operation cannot be fulfilled on {resource_type.qualified_name} "{name}": {why}',
                        _details(resource_type, name))


def bad_request(message: str) -> KubeApiError:
    return KubeApiError(400, "BadRequest", message)


def invalid(resource_type: ResourceType, name: str, message: str) -> KubeApiError:
    return KubeApiError(422, "Invalid", f'{resource_type.kind} "{name}" is invalid: {message}',
                        _details(resource_type, name))


def path_not_found() -> KubeApiError:
    return KubeApiError(404, "NotFound", "the server could not find the requested resource")


def method_not_allowed(method: str) -> KubeApiError:
    return KubeApiError(405, "MethodNotAllowed", f"the server does not allow this method on the "
                                                 f"requested resource ({method})")


REASONS_BY_CODE = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
    410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
    503: "ServiceUnavailable", 504: "Timeout",
}
