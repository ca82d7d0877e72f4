"""The deploy manifests' RBAC against what the API server's audit log saw a user do: every request
it refused (403: a rule the manifests lack) and every rule they grant that no request used (a
rule the code does not need).

Read access is one unit, as test/test_manifests.py's EXPECTED_GRANTS has it: a resource the code
lists is granted get and watch too, so any of get, list or watch uses all three.
"""
from __future__ import annotations

import json
import pathlib
from typing import Iterable, Iterator, NamedTuple

READ_VERBS = frozenset({"get", "list", "watch"})


class Access(NamedTuple):
    group: str  # "" for the core group
    resource: str  # with its subresource: "pods/eviction"
    verb: str

    def __str__(self) -> str:
        return f"{self.verb} {self.resource}" + (f".{self.group}" if self.group else "")


# What Kubernetes' default ClusterRole system:basic-user lets every authenticated user do: the
# autoscaler's start-up check (run/preflight.py) uses the first, which no manifest needs to grant.
EVERY_AUTHENTICATED_USER = frozenset({
    Access("authorization.k8s.io", "selfsubjectaccessreviews", "create"),
    Access("authorization.k8s.io", "selfsubjectrulesreviews", "create"),
    Access("authentication.k8s.io", "selfsubjectreviews", "create"),
})


def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def granted(manifests: Iterable[dict]) -> set[Access]:
    """What the ClusterRoles and Roles among ``manifests`` grant (resourceNames aside)."""
    grants = set()
    for document in manifests:
        if document.get("kind") not in ("ClusterRole", "Role"):
            continue
        for rule in document.get("rules") or ():
            for group in rule.get("apiGroups", ()):
                for resource in rule.get("resources", ()):
                    for verb in rule.get("verbs", ()):
                        grants.add(Access(group, resource, verb))
    return grants


class AuditedRequest(NamedTuple):
    access: Access
    code: int
    uri: str


def read_audit_log(path: pathlib.Path, offset: int = 0) -> list[dict]:
    """The complete events from ``offset`` (bytes) on; a line still being written is left out."""
    with open(path, "rb") as log:
        log.seek(offset)
        text = log.read().decode()
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n") and line.strip()]


def requests_of(events: Iterable[dict], user: str) -> Iterator[AuditedRequest]:
    """The resource requests ``user`` made, answered (ResponseComplete) or refused (Panic aside)."""
    for event in events:
        if event.get("user", {}).get("username") != user or event.get("stage") != "ResponseComplete":
            continue
        ref = event.get("objectRef")
        if not ref:
            continue  # a non-resource URL (/version, /api): RBAC's nonResourceURLs, not granted here
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        yield AuditedRequest(Access(ref.get("apiGroup", ""), resource, event["verb"]),
                             event.get("responseStatus", {}).get("code", 0), event.get("requestURI", ""))


def refused(requests: Iterable[AuditedRequest]) -> list[AuditedRequest]:
    return [request for request in requests if request.code == 403]


def unused(grants: set[Access], requests: Iterable[AuditedRequest]) -> set[Access]:
    """The grants no allowed request used; read verbs used as a unit."""
    used = {request.access for request in requests if request.code != 403}
    read = {(access.group, access.resource) for access in used if access.verb in READ_VERBS}
    return {grant for grant in grants
            if grant not in used and not (grant.verb in READ_VERBS and (grant.group, grant.resource) in read)}


def describe_refusals(requests: list[AuditedRequest]) -> str:
    """One line per missing rule, with a request that needed it."""
    lines = {}
    for request in requests:
        lines.setdefault(request.access, f"  missing rule: {request.access} (refused: {request.access.verb.upper()} "
                                         f"{request.uri})")
    return "\n".join(lines[access] for access in sorted(lines))
