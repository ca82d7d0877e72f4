"""The deployment files against what they describe: the Dockerfile against the repository, the
manifests against the Kubernetes schemas, main.py's flags and the Kubernetes API calls the code
makes. The original's manifest passed a flag its CLI did not define; these tests make that a
failing test instead of a crash-looping pod.
"""
from __future__ import annotations

import inspect
import json
import pathlib
import re
import shlex

import kubernetes.client
import kubernetes_validate
import pytest
import yaml
from kubernetes.utils import parse_quantity

import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOYMENT_FILE = ROOT / "autoscaler-dep.yaml"
SECRET_FILE = ROOT / "autoscaler-secret.yaml"
# The files these tests and test_iam_policy.py read; the image must carry them to run the tests.
DEPLOYMENT_FILES = ("Dockerfile", ".dockerignore", "autoscaler-dep.yaml", "autoscaler-secret.yaml", "iam-policy.json")

# The oldest Kubernetes minor still in providers' extended support, and the newest the package ships.
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
MEMORY_LIMIT_CEILING = parse_quantity("300Mi")  # one loop over 15,000 pods peaks below 200 MiB

# (API group, resource, verb) the ClusterRole grants: what the code calls, plus get/watch next to
# each list (read access as a unit, so an operator's kubectl auth can-i checks read naturally).
EXPECTED_GRANTS = frozenset({
    ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"), ("", "nodes", "patch"), ("", "nodes", "delete"),
    ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"),
    ("", "pods/eviction", "create"),
    ("", "events", "create"), ("", "events", "patch"),
    ("policy", "poddisruptionbudgets", "list"), ("policy", "poddisruptionbudgets", "watch"),
    ("coordination.k8s.io", "leases", "get"), ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
})
READ_VERBS = frozenset({"get", "list", "watch"})
PRODUCT_SOURCES = (ROOT / "main.py", *sorted((ROOT / "autoscaler").glob("*.py")))


# ---------------------------------------------------------------------------------------- helpers

def documents(path: pathlib.Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def one(path: pathlib.Path, kind: str) -> dict:
    found = [doc for doc in documents(path) if doc["kind"] == kind]
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def container() -> dict:
    containers = one(DEPLOYMENT_FILE, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def granted(path: pathlib.Path = DEPLOYMENT_FILE) -> set[tuple[str, str, str]]:
    grants = set()
    for rule in one(path, "ClusterRole")["rules"]:
        for group in rule.get("apiGroups", ()):
            for resource in rule.get("resources", ()):
                for verb in rule.get("verbs", ()):
                    grants.add((group, resource, verb))
    return grants


def rbac_request(method: str, path: str, query: dict | None = None) -> tuple[str, str, str] | None:
    """(API group, resource[/subresource], verb) that RBAC checks for one HTTP request, or None
    for discovery and other non-resource paths. Works on templated paths (``{name}``) too."""
    parts = [part for part in path.split("?")[0].split("/") if part]
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    if len(rest) > 2 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return None
    resource = rest[0] if len(rest) < 3 else f"{rest[0]}/{rest[2]}"
    is_collection = len(rest) == 1
    if method == "GET":
        verb = "watch" if str((query or {}).get("watch", "")).lower() == "true" else ("list" if is_collection else "get")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "deletecollection" if is_collection else "delete"}[method]
    return group, resource, verb


def kube_calls_in_code() -> dict[tuple[str, str, str], set[str]]:
    """(group, resource, verb) -> the client methods of the product that need it. A method of an
    API class the product instantiates (``CoreV1Api(...)``), named anywhere in the product's
    source, counts as called: the reader passes ``core.list_node`` to its pager rather than
    calling it in place. Only instantiated classes, because several share method names
    (CoreV1Api and EventsV1Api both have ``create_namespaced_event``, in different API groups)."""
    text = "\n".join(source.read_text() for source in PRODUCT_SOURCES)
    names = set(re.findall(r"\.([a-z][a-z0-9_]*)\b", text))
    api_classes = [getattr(kubernetes.client, name) for name in sorted(set(re.findall(r"\b(\w+V\d\w*Api)\(", text)))]
    assert api_classes, "no Kubernetes API class found in the product"
    calls: dict[tuple[str, str, str], set[str]] = {}
    for api_class in api_classes:
        for name in sorted(names):
            serializer = getattr(api_class, f"_{name}_serialize", None)
            if serializer is None:
                continue
            text = inspect.getsource(serializer)
            method = re.search(r"method='(\w+)'", text).group(1)
            path = re.search(r"resource_path='([^']+)'", text).group(1)
            request = rbac_request(method, path)
            if request:
                calls.setdefault(request, set()).add(f"{api_class.__name__}.{name}")
    return calls


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def copy_sources(arguments: str) -> list[str]:
    words = [w for w in shlex.split(arguments) if not w.startswith("--")]
    return [w.rstrip("/") for w in words[:-1]]


def dockerignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
            if line.strip() and not line.startswith("#")]


# ------------------------------------------------------------------------------------- Dockerfile

def test_dockerfile_builds_on_the_official_slim_python():
    froms = [args for keyword, args in dockerfile_instructions() if keyword == "FROM"]
    assert len(froms) == 1, froms
    assert re.fullmatch(r"python:3\.(1[1-9])-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", froms[0]), froms[0]


def test_dockerfile_runs_as_a_numeric_non_root_user():
    instructions = dockerfile_instructions()
    users = [index for index, (keyword, _) in enumerate(instructions) if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = instructions[users[-1]][1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: numeric, so runAsNonRoot can verify it"
    assert int(user.split(":")[0]) != 0
    assert all(keyword != "RUN" for keyword, _ in instructions[users[-1]:]), "RUN after USER would run unprivileged by accident"


def test_dependencies_are_installed_in_their_own_layer_before_the_source():
    instructions = dockerfile_instructions()
    copies = [(index, copy_sources(args)) for index, (keyword, args) in enumerate(instructions) if keyword == "COPY"]
    requirements_copy = next(index for index, sources in copies if sources == ["requirements.txt"])
    install = next(index for index, (keyword, args) in enumerate(instructions)
                   if keyword == "RUN" and re.search(r"pip install .*-r requirements\.txt", args))
    source_copies = [index for index, sources in copies if {"main.py", "autoscaler"} & set(sources)]
    assert source_copies, "the source is never copied"
    assert requirements_copy < install < min(source_copies)


def test_entrypoint_runs_main_and_python_writes_no_bytecode():
    instructions = dockerfile_instructions()
    entrypoints = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints and json.loads(entrypoints[-1]) in (["python", "main.py"], ["python3", "main.py"])
    environment = " ".join(args for keyword, args in instructions if keyword == "ENV")
    for variable in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        assert re.search(rf"\b{variable}=1\b", environment), variable


def test_the_image_gets_what_the_program_and_its_tests_need_and_nothing_ignored():
    copied = {source for keyword, args in dockerfile_instructions() if keyword == "COPY" for source in copy_sources(args)}
    assert {"requirements.txt", "main.py", "autoscaler", "test", *DEPLOYMENT_FILES} <= copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    patterns = dockerignore_patterns()
    for source in copied:
        assert not any(pathlib.PurePath(source).match(p.rstrip("/")) for p in patterns), f"{source} is in .dockerignore"


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    patterns = set(dockerignore_patterns())
    assert {".git", ".venv", "**/__pycache__", "**/*.pyc", "out/"} <= patterns


# ----------------------------------------------------------------------------- Kubernetes schemas

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", [DEPLOYMENT_FILE, SECRET_FILE], ids=lambda p: p.name)
def test_every_document_is_valid_against_the_kubernetes_schema(path, version):
    docs = documents(path)
    assert docs
    for doc in docs:
        # strict: an unknown or misspelt field is an error, not silently dropped by the API server
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_catches_a_misspelt_field():
    deployment = one(DEPLOYMENT_FILE, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_pieces_refer_to_each_other():
    account = one(DEPLOYMENT_FILE, "ServiceAccount")
    role = one(DEPLOYMENT_FILE, "ClusterRole")
    binding = one(DEPLOYMENT_FILE, "ClusterRoleBinding")
    deployment = one(DEPLOYMENT_FILE, "Deployment")
    secret = one(SECRET_FILE, "Secret")
    namespace = account["metadata"]["namespace"]
    assert namespace == deployment["metadata"]["namespace"] == secret["metadata"]["namespace"] == "kube-system"
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}]
    pod = deployment["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    # One autoscaler at a time, also during a rollout.
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}


# ------------------------------------------------------------------------------------ CLI and env

def test_the_container_args_are_flags_main_py_accepts(monkeypatch):
    """The args go through main.py's whole flag handling (click, then Settings validation); only
    the loop itself is replaced."""
    received = []
    monkeypatch.setattr("autoscaler.daemon.run", lambda settings: received.append(settings) or 0)
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "SLACK_HOOK"):
        monkeypatch.delenv(variable, raising=False)
    args = container()["args"]
    assert main.main(list(args)) == 0
    assert len(received) == 1
    assert received[0].cluster_name and received[0].regions
    settings = received[0]
    assert settings.dry_run is False and settings.once is False, "the Deployment must run the real loop"
    # Two replicas during a node drain must not both act: the Lease lives next to the Deployment.
    assert settings.leader_elect is not False
    assert settings.leader_elect_namespace == one(DEPLOYMENT_FILE, "Deployment")["metadata"]["namespace"]


def test_a_flag_the_cli_does_not_define_fails_the_check(monkeypatch, capsys):
    monkeypatch.setattr("autoscaler.daemon.run", lambda settings: 0)
    args = [arg.replace("--regions", "--aws-regions") for arg in container()["args"]]  # the original's mistake
    assert main.main(args) == 2
    assert "--aws-regions" in capsys.readouterr().err


def test_credentials_come_from_optional_secret_keys_the_cli_reads():
    env = {item["name"]: item for item in container()["env"]}
    cli_variables = set()
    for param in main.cli.params:
        envvar = getattr(param, "envvar", None)
        cli_variables.update([envvar] if isinstance(envvar, str) else envvar or ())
    secret = one(SECRET_FILE, "Secret")
    referenced = set()
    for name, item in env.items():
        reference = item.get("valueFrom", {}).get("secretKeyRef")
        if reference is None:
            continue
        assert name in cli_variables, f"{name}: main.py reads no such environment variable"
        assert reference["name"] == secret["metadata"]["name"]
        # optional: with IAM roles for service accounts the keys are simply left out of the Secret
        assert reference.get("optional") is True, name
        referenced.add(reference["key"])
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SLACK_HOOK"} <= env.keys()
    assert referenced == set(secret["stringData"]) == {"aws-access-key-id", "aws-secret-access-key", "slack-hook"}
    assert all("REPLACE" in value for value in secret["stringData"].values()), "the Secret must hold placeholders only"


def test_the_probes_and_the_scrape_ask_the_port_main_py_serves_on():
    spec = container()
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    served = main.cli.make_context("main.py", list(spec["args"])).params["metrics_port"]
    assert ports["metrics"] == served > 0
    for probe in ("livenessProbe", "readinessProbe"):
        http = spec[probe]["httpGet"]
        assert http["path"] == "/healthz", probe
        assert http["port"] in ("metrics", served), probe
    annotations = one(DEPLOYMENT_FILE, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(served) and annotations["prometheus.io/path"] == "/metrics"


# ------------------------------------------------------------------------- resources and security

def test_resources_are_bounded():
    resources = container()["resources"]
    for resource in ("cpu", "memory"):
        request = parse_quantity(resources["requests"][resource])
        limit = parse_quantity(resources["limits"][resource])
        assert 0 < request <= limit, resource
    assert parse_quantity(resources["limits"]["memory"]) <= MEMORY_LIMIT_CEILING


def test_security_context_is_restrictive_and_matches_the_image_user():
    image_user = [args for keyword, args in dockerfile_instructions() if keyword == "USER"][-1]
    uid = int(image_user.split(":")[0])
    pod = one(DEPLOYMENT_FILE, "Deployment")["spec"]["template"]["spec"]["securityContext"]
    context = container()["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == uid
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsNonRoot"] is True and context["runAsUser"] == uid
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context.get("privileged", False) is False


# ------------------------------------------------------------------------------------------- RBAC

def test_rbac_has_no_wildcards_and_grants_exactly_the_expected_rules():
    for rule in one(DEPLOYMENT_FILE, "ClusterRole")["rules"]:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, ()), rule
        assert not rule.get("nonResourceURLs"), rule
    assert granted() == EXPECTED_GRANTS


def test_every_kubernetes_call_in_the_code_is_granted():
    calls = kube_calls_in_code()
    assert ("", "nodes", "patch") in calls and ("", "pods/eviction", "create") in calls, "the call finder is broken"
    missing = {request: sorted(methods) for request, methods in calls.items() if request not in granted()}
    assert not missing, f"the ClusterRole lacks what these calls need: {missing}"


def test_every_granted_write_is_used_by_the_code():
    """Read verbs come as a set (get/list/watch); a write nobody calls is privilege for nothing."""
    calls = kube_calls_in_code()
    unused = sorted(grant for grant in granted() if grant[2] not in READ_VERBS and grant not in calls)
    assert not unused, f"granted but never called: {unused}"
    read_resources = {(group, resource) for group, resource, verb in calls if verb in READ_VERBS}
    unread = sorted(grant for grant in granted() if grant[2] in READ_VERBS and grant[:2] not in read_resources)
    assert not unread, f"read access to resources the code never reads: {unread}"


@pytest.mark.parametrize(
    "method, path, query, expected",
    [
        pytest.param("GET", "/api/v1/nodes", {}, ("", "nodes", "list"), id="list-nodes"),
        pytest.param("GET", "/api/v1/pods", {"watch": "true"}, ("", "pods", "watch"), id="watch-pods"),
        pytest.param("PATCH", "/api/v1/nodes/n1", {}, ("", "nodes", "patch"), id="patch-node"),
        pytest.param("POST", "/api/v1/namespaces/default/pods/p/eviction", {}, ("", "pods/eviction", "create"), id="evict"),
        pytest.param("GET", "/apis/policy/v1/poddisruptionbudgets", {}, ("policy", "poddisruptionbudgets", "list"), id="list-pdbs"),
        pytest.param("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x", {},
                     ("coordination.k8s.io", "leases", "update"), id="update-lease"),
        pytest.param("GET", "/api/v1/namespaces/kube-system", {}, ("", "namespaces", "get"), id="get-namespace"),
        pytest.param("GET", "/apis", {}, None, id="discovery"),
    ],
)
def test_rbac_request_names_what_rbac_checks(method, path, query, expected):
    assert rbac_request(method, path, query) == expected
