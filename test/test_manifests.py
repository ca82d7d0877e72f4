"""The Kubernetes manifests against what they describe: the kustomize base and overlays under
deploy/ (rendered with `kubectl kustomize`), and autoscaler-dep.yaml and autoscaler-secret.yaml,
the static-keys overlay rendered into the repository root. Checked against the Kubernetes schemas,
the CLI's flags and environment variables, and the Kubernetes API calls the code makes. The
original's manifest passed a flag its CLI did not define; these tests make that a failing test
instead of a crash-looping pod.
"""
from __future__ import annotations

import inspect
import os
import pathlib
import re
import shutil
import subprocess

import kubernetes.client
import kubernetes_validate
import pytest
import yaml
from kubernetes.utils import parse_quantity

import main
from autoscaler.run.leader import LEASE_NAME
from autoscaler.run.metrics import Metrics

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DEPLOYMENT_FILE = ROOT / "autoscaler-dep.yaml"
SECRET_FILE = ROOT / "autoscaler-secret.yaml"
OVERLAYS = ("irsa", "static-keys", "ha", "other-namespace")
MONITORING = DEPLOY / "components" / "monitoring"
OPERATIONS = ROOT / "docs" / "operations.md"  # the walk-through and its alerts (moved out of the README)

# The oldest Kubernetes minor still in providers' extended support, and the newest the package ships.
KUBERNETES_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
MEMORY_LIMIT_CEILING = parse_quantity("300Mi")  # one loop over 15,000 pods peaks below 200 MiB
# Custom resources of the Prometheus Operator: no schema offline, so their shape is checked instead.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
SCALED_NODE_LABEL = "kubernetes-ec2-autoscaler/scaled"
AWS_KEY_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"}

# (API group, resource, verb) the ClusterRole and the Role grant: what the code calls, plus
# get/watch next to each list (read access as a unit, so kubectl auth can-i checks read naturally).
EXPECTED_GRANTS = frozenset({
    ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"), ("", "nodes", "patch"), ("", "nodes", "delete"),
    ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"),
    ("", "pods/eviction", "create"),
    ("", "events", "create"), ("", "events", "patch"),
    ("policy", "poddisruptionbudgets", "list"), ("policy", "poddisruptionbudgets", "watch"),
    # list only, the least the reader needs (issue 17): what every new node carries, and pending pods' volumes.
    ("apps", "daemonsets", "list"),
    ("", "persistentvolumeclaims", "list"), ("", "persistentvolumes", "list"),
    ("storage.k8s.io", "storageclasses", "list"),
    ("coordination.k8s.io", "leases", "get"), ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
})
READ_VERBS = frozenset({"get", "list", "watch"})
# What the default ClusterRole system:basic-user grants every authenticated user: the start-up
# check's SelfSubjectAccessReview (run/preflight.py) needs no rule of ours.
GRANTED_TO_EVERY_USER = frozenset({("authorization.k8s.io", "selfsubjectaccessreviews", "create")})
PRODUCT_SOURCES = (ROOT / "main.py", *sorted(path for path in (ROOT / "autoscaler").rglob("*.py") if path.relative_to(ROOT / "autoscaler").parts[0] not in ("fakes", "sandbox")))

needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")


# ---------------------------------------------------------------------------------------- helpers

def documents(path: pathlib.Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomize(path: pathlib.Path) -> list[dict]:
    result = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc is not None]


_rendered: dict[str, list[dict]] = {}


def rendered(overlay: str) -> list[dict]:
    """The overlay as `kubectl kustomize` renders it (once per test run)."""
    if overlay not in _rendered:
        _rendered[overlay] = kustomize(DEPLOY / "overlays" / overlay)
    return _rendered[overlay]


def checked_in() -> list[dict]:
    return documents(DEPLOYMENT_FILE) + documents(SECRET_FILE)


def with_monitoring(tmp_path: pathlib.Path) -> list[dict]:
    """An operator's overlay: irsa plus the monitoring component (kustomize wants relative paths)."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY / "overlays" / "irsa", tmp_path)],
        "components": [os.path.relpath(MONITORING, tmp_path)],
    }))
    return kustomize(tmp_path)


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: list[dict] | pathlib.Path, kind: str) -> dict:
    if isinstance(docs, pathlib.Path):
        docs = documents(docs)
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container(docs: list[dict] | None = None) -> dict:
    containers = one(docs if docs is not None else checked_in(), "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_environment(docs: list[dict]) -> dict[str, str]:
    """The variables the container gets that the CLI could read, as the kubelet resolves them: the
    ConfigMaps of envFrom, literal values, and fields of the pod (Secrets are left out)."""
    deployment = one(docs, "Deployment")
    spec = container(docs)
    environment: dict[str, str] = {}
    for source in spec.get("envFrom", ()):
        name = source["configMapRef"]["name"]
        environment.update(next(doc for doc in of_kind(docs, "ConfigMap") if doc["metadata"]["name"] == name)["data"])
    for item in spec.get("env", ()):
        if "value" in item:
            environment[item["name"]] = item["value"]
        elif item.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.namespace":
            environment[item["name"]] = deployment["metadata"]["namespace"]
    return environment


def settings_of(docs: list[dict], monkeypatch):
    """The Settings main.py's whole flag handling (click, then validation) makes of the container's
    args and environment; only the loop itself is replaced."""
    received = []
    monkeypatch.setattr("autoscaler.run.daemon.run", lambda settings: received.append(settings) or 0)
    for variable in (*AWS_KEY_VARIABLES, "SLACK_HOOK"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in container_environment(docs).items():
        monkeypatch.setenv(variable, value)
    assert main.main(list(container(docs)["args"])) == 0
    assert len(received) == 1
    return received[0]


def rules(docs: list[dict]) -> list[dict]:
    return [rule for doc in docs if doc["kind"] in ("ClusterRole", "Role") for rule in doc["rules"]]


def granted(path: pathlib.Path = DEPLOYMENT_FILE) -> set[tuple[str, str, str]]:
    """What the ClusterRole and the Role together grant, ignoring resourceNames."""
    grants = set()
    for rule in rules(documents(path)):
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
    calling it in place; a ``list_through(api_client, "/apis/...")`` of the reader's counts for its
    path. Only instantiated classes, because several share method names
    (CoreV1Api and EventsV1Api both have ``create_namespaced_event``, in different API groups)."""
    text = text_of_product()
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
    # Lists made through the client's lower layer (kube_reader.list_through) name their path.
    for path in re.findall(r"list_through\(\s*\w+,\s*\"([^\"]+)\"\)", text_of_product()):
        request = rbac_request("GET", path)
        if request:
            calls.setdefault(request, set()).add(f"list_through {path}")
    return calls


def text_of_product() -> str:
    return "\n".join(source.read_text() for source in PRODUCT_SOURCES)


# ------------------------------------------------------------------- kustomize and the rendered files

@needs_kubectl
def test_the_top_level_files_are_the_static_keys_overlay_as_rendered():
    """Regenerate them with `python deploy/render.py` after changing deploy/."""
    expected = rendered("static-keys")
    assert documents(DEPLOYMENT_FILE) == [doc for doc in expected if doc["kind"] != "Secret"]
    assert documents(SECRET_FILE) == [doc for doc in expected if doc["kind"] == "Secret"]


@needs_kubectl
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", [*OVERLAYS, "monitoring"])
def test_every_rendered_object_is_valid_against_the_kubernetes_schema(overlay, version, tmp_path):
    docs = with_monitoring(tmp_path) if overlay == "monitoring" else rendered(overlay)
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "Deployment",
            "Service", "PodDisruptionBudget"} <= {doc["kind"] for doc in docs}
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue  # their shape is checked in test_the_monitoring_component_*
        # strict: an unknown or misspelt field is an error, not silently dropped by the API server
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_checked_in_files_are_valid_against_the_kubernetes_schema(version):
    for doc in checked_in():
        kubernetes_validate.validate(doc, version, strict=True)


def test_validation_catches_a_misspelt_field():
    deployment = one(DEPLOYMENT_FILE, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_pieces_refer_to_each_other():
    docs = checked_in()
    account = one(docs, "ServiceAccount")
    deployment = one(docs, "Deployment")
    namespace = account["metadata"]["namespace"]
    assert namespace == deployment["metadata"]["namespace"] == one(docs, "Secret")["metadata"]["namespace"] == "kube-system"
    subject = [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": namespace}]
    for binding_kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding, role = one(docs, binding_kind), one(docs, role_kind)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role["metadata"]["name"]}
        assert binding["subjects"] == subject
    pod = deployment["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == account["metadata"]["name"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one(docs, "Service")["spec"]["selector"].items() <= labels.items()
    assert one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # One autoscaler at a time, also during a rollout.
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}


CLUSTER_SCOPED_KINDS = {"ClusterRole", "ClusterRoleBinding"}


def check_one_namespace(docs: list[dict], namespace: str, monkeypatch) -> None:
    """Every namespaced object, every binding's subject and the Lease the pod elects itself on are
    in `namespace`: the service account the bindings grant is the one the pod runs as."""
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED_KINDS:
            assert doc["metadata"].get("namespace") == namespace, (doc["kind"], doc["metadata"])
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    bindings = of_kind(docs, "ClusterRoleBinding") + of_kind(docs, "RoleBinding")
    assert len(bindings) == 2
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": namespace}], binding
    # The Lease: no flag pins it elsewhere, and the Settings the pod's CLI makes name this namespace.
    assert not any(arg.startswith("--leader-elect-namespace") for arg in container(docs)["args"])
    settings = settings_of(docs, monkeypatch)
    assert settings.leader_elect and settings.leader_elect_namespace == namespace
    quotas = of_kind(docs, "ResourceQuota")
    priority = one(docs, "Deployment")["spec"]["template"]["spec"]["priorityClassName"]
    if namespace != "kube-system":  # the API server admits system-* priority classes there only, or with a quota
        assert any({"scopeName": "PriorityClass", "operator": "In", "values": [priority]}
                   in quota["spec"]["scopeSelector"]["matchExpressions"] for quota in quotas), quotas


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_keeps_bindings_lease_and_objects_in_one_namespace(overlay, monkeypatch):
    expected = "autoscaling" if overlay == "other-namespace" else "kube-system"
    check_one_namespace(rendered(overlay), expected, monkeypatch)


@needs_kubectl
def test_an_operators_overlay_in_its_own_namespace_moves_the_bindings_subjects_too(tmp_path, monkeypatch):
    """The other-namespace overlay's recipe on top of ha, into a namespace of the test's: plain
    `namespace:` would leave the subjects on kube-system (kustomize rewrites only subjects named
    `default`), so the pod would run without its rights."""
    shutil.copy(DEPLOY / "overlays" / "other-namespace" / "resourcequota.yaml", tmp_path)  # files: at or below
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(DEPLOY / "overlays" / "ha", tmp_path), "resourcequota.yaml"],
        "transformers": [yaml.safe_dump({
            "apiVersion": "builtin", "kind": "NamespaceTransformer",
            "metadata": {"name": "ns", "namespace": "platform-autoscaler"},
            "setRoleBindingSubjects": "allServiceAccounts", "unsetOnly": False})],
    }))
    docs = kustomize(tmp_path)
    check_one_namespace(docs, "platform-autoscaler", monkeypatch)
    assert one(docs, "Deployment")["spec"]["replicas"] == 2


# ------------------------------------------------------------------------------ CLI and environment

def test_the_container_args_and_variables_are_flags_the_cli_accepts(monkeypatch):
    settings = settings_of(checked_in(), monkeypatch)
    assert settings.cluster_name and settings.regions
    assert settings.dry_run is False and settings.once is False, "the Deployment must run the real loop"
    # Two replicas during a node drain must not both act: the Lease lives next to the Deployment,
    # where the Role lets it be written.
    assert settings.leader_elect is not False
    assert settings.leader_elect_namespace == one(DEPLOYMENT_FILE, "Deployment")["metadata"]["namespace"]
    assert settings.leader_elect_namespace == one(DEPLOYMENT_FILE, "Role")["metadata"]["namespace"]


def test_a_flag_the_cli_does_not_define_fails_the_check(monkeypatch, capsys):
    monkeypatch.setattr("autoscaler.run.daemon.run", lambda settings: 0)
    args = [arg.replace("--sleep", "--loop-sleep") for arg in container()["args"]]
    assert main.main(args) == 2
    assert "--loop-sleep" in capsys.readouterr().err


def test_a_settings_variable_the_cli_does_not_read_fails_the_check(monkeypatch):
    """AUTOSCALER_<FLAG> for a flag that does not exist would be ignored silently: each one in the
    manifests must name a flag."""
    flags = {param.name.upper() for param in main.cli.params}
    for name in container_environment(checked_in()):
        if name.startswith("AUTOSCALER_"):
            assert name.removeprefix("AUTOSCALER_") in flags, f"{name}: no such flag"


def test_static_keys_credentials_come_from_optional_secret_keys_the_cli_reads():
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
        # optional: a key left out of the Secret is simply not set
        assert reference.get("optional") is True, name
        referenced.add(reference["key"])
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "SLACK_HOOK"} <= env.keys()
    assert referenced == set(secret["stringData"]) == {"aws-access-key-id", "aws-secret-access-key", "slack-hook"}
    assert all("REPLACE" in value for value in secret["stringData"].values()), "the Secret must hold placeholders only"


@needs_kubectl
@pytest.mark.parametrize("overlay", ["irsa", "ha"])
def test_irsa_has_the_role_annotation_and_no_aws_keys_anywhere(overlay):
    docs = rendered(overlay)
    assert not of_kind(docs, "Secret")
    env = {item["name"] for item in container(docs).get("env", ())}
    assert not env & AWS_KEY_VARIABLES
    assert not any(name.startswith("AUTOSCALER_AWS_") for name in container_environment(docs))
    role = one(docs, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", role), role


def test_the_probes_and_the_scrape_ask_the_port_the_cli_serves_on(monkeypatch):
    docs = checked_in()
    spec = container(docs)
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    served = settings_of(docs, monkeypatch).metrics_port
    assert ports["metrics"] == served > 0
    for probe in ("livenessProbe", "readinessProbe"):
        http = spec[probe]["httpGet"]
        assert http["path"] == "/healthz", probe
        assert http["port"] in ("metrics", served), probe
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(served) and annotations["prometheus.io/path"] == "/metrics"
    service_port = one(docs, "Service")["spec"]["ports"][0]
    assert service_port["name"] == "metrics" and service_port["targetPort"] in ("metrics", served)


def test_the_image_is_this_version():
    from autoscaler import __version__

    assert container()["image"].rsplit(":", 1)[1] == __version__


# ------------------------------------------------------------------------------------------- HA

@needs_kubectl
def test_ha_runs_two_replicas_apart_that_roll_one_at_a_time_with_leader_election(monkeypatch):
    docs = rendered("ha")
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    # No surge: the required anti-affinity would leave a third pod pending on a two-node system pool.
    assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    required = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert [term["topologyKey"] for term in required] == ["kubernetes.io/hostname"]
    assert required[0]["labelSelector"]["matchLabels"].items() <= labels.items()
    # The self-protection of the base survives the patch.
    assert "nodeAffinity" in deployment["spec"]["template"]["spec"]["affinity"]
    assert settings_of(docs, monkeypatch).leader_elect is True
    # A node drain may take one replica, never both.
    budget = one(docs, "PodDisruptionBudget")["spec"]
    assert deployment["spec"]["replicas"] - budget["maxUnavailable"] >= 1


# ------------------------------------------------------------------------------- self-protection

def test_the_pod_protects_itself_from_the_scale_in_it_does():
    pod = one(DEPLOYMENT_FILE, "Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    terms = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    # Every term (they are ORed) keeps it off nodes labelled as scaled by it.
    assert terms and all({"key": SCALED_NODE_LABEL, "operator": "DoesNotExist"} in term["matchExpressions"] for term in terms)
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in pod["spec"]["tolerations"]


def test_the_scaled_node_label_is_one_a_group_tag_can_give():
    """The README tells operators to tag the groups kube/<label>=true: that tag must make exactly
    this node label for scale from zero (autoscaler/model/group_labels.py)."""
    from autoscaler.model.group_labels import node_template

    template = node_template({f"kube/{SCALED_NODE_LABEL}": "true"}, ["m5.large"], "us-west-2")
    assert template.labels.get(SCALED_NODE_LABEL) == "true"


# ------------------------------------------------------------------------- resources and security

def test_resources_are_bounded():
    resources = container()["resources"]
    for resource in ("cpu", "memory"):
        request = parse_quantity(resources["requests"][resource])
        limit = parse_quantity(resources["limits"][resource])
        assert 0 < request <= limit, resource
    assert parse_quantity(resources["limits"]["memory"]) <= MEMORY_LIMIT_CEILING


def test_security_context_is_restrictive_and_matches_the_image_user():
    from test_package import final_stage

    image_user = [args for keyword, args in final_stage() if keyword == "USER"][-1]
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
    for rule in rules(documents(DEPLOYMENT_FILE)):
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, ()), rule
        assert not rule.get("nonResourceURLs"), rule
    assert granted() == EXPECTED_GRANTS


def test_leases_are_granted_in_the_autoscalers_namespace_and_only_its_own():
    cluster_wide = {(group, resource) for rule in one(DEPLOYMENT_FILE, "ClusterRole")["rules"]
                    for group in rule["apiGroups"] for resource in rule["resources"]}
    assert ("coordination.k8s.io", "leases") not in cluster_wide
    role = one(DEPLOYMENT_FILE, "Role")
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"] and rule["resources"] == ["leases"], rule
        if set(rule["verbs"]) != {"create"}:  # create cannot be limited by name
            assert rule.get("resourceNames") == [LEASE_NAME], rule


def test_every_kubernetes_call_in_the_code_is_granted():
    calls = kube_calls_in_code()
    assert ("", "nodes", "patch") in calls and ("", "pods/eviction", "create") in calls, "the call finder is broken"
    missing = {request: sorted(methods) for request, methods in calls.items()
               if request not in granted() | GRANTED_TO_EVERY_USER}
    assert not missing, f"the RBAC rules lack what these calls need: {missing}"


def test_the_optional_reads_are_granted_list_and_nothing_more():
    """DaemonSets, claims, volumes and storage classes (issue 17) are only listed: no get, no
    watch, and the code lists each of them (the namespaced claims too, under --pod-namespace)."""
    calls = kube_calls_in_code()
    optional = {("apps", "daemonsets"), ("", "persistentvolumeclaims"), ("", "persistentvolumes"),
                ("storage.k8s.io", "storageclasses")}
    for group, resource in optional:
        assert {verb for g, r, verb in granted() if (g, r) == (group, resource)} == {"list"}, resource
        assert (group, resource, "list") in calls, f"the code does not list {resource}: the finder or the reader changed"
    claim_listers = calls[("", "persistentvolumeclaims", "list")]
    assert {"CoreV1Api.list_namespaced_persistent_volume_claim",
            "CoreV1Api.list_persistent_volume_claim_for_all_namespaces"} <= claim_listers


def test_every_granted_write_is_used_by_the_code():
    """Read verbs come as a set (get/list/watch); a write nobody calls is privilege for nothing."""
    calls = kube_calls_in_code()
    unused = sorted(grant for grant in granted() if grant[2] not in READ_VERBS and grant not in calls)
    assert not unused, f"granted but never called: {unused}"
    read_resources = {(group, resource) for group, resource, verb in calls if verb in READ_VERBS}
    unread = sorted(grant for grant in granted() if grant[2] in READ_VERBS and grant[:2] not in read_resources)
    assert not unread, f"read access to resources the code never reads: {unread}"


# ----------------------------------------------------------------------------- monitoring component

def readme_alerts() -> set[str]:
    """The alert expressions docs/operations.md lists (its Metrics section, in backticks after 'Alerts')."""
    text = OPERATIONS.read_text()
    section = text[text.index("Alerts worth having"):]
    section = section[:section.index("\n\n")]
    return set(re.findall(r"`([^`]+)`", section))


def alert_expression(rule: dict) -> str:
    return rule["expr"] + (f" for {rule['for']}" if "for" in rule else "")


@needs_kubectl
def test_the_monitoring_component_scrapes_the_metrics_service(tmp_path):
    docs = with_monitoring(tmp_path)
    monitor, service = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    port_names = {port["name"] for port in service["spec"]["ports"]}
    assert [endpoint["port"] for endpoint in monitor["spec"]["endpoints"]] == ["metrics"]
    assert "metrics" in port_names and monitor["spec"]["endpoints"][0]["path"] == "/metrics"


@needs_kubectl
def test_the_monitoring_component_holds_the_readme_alerts_on_metrics_that_exist(tmp_path):
    rule = one(with_monitoring(tmp_path), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = [entry for group in rule["spec"]["groups"] for entry in group["rules"]]
    assert alerts and all({"alert", "expr", "labels", "annotations"} <= entry.keys() for entry in alerts)
    assert all(entry["labels"]["severity"] in ("warning", "critical") for entry in alerts)
    assert all(re.fullmatch(r"\d+[smh]", entry.get("for", "0s")) for entry in alerts)
    assert {alert_expression(entry) for entry in alerts} == readme_alerts()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",), "info": ("_info",)}
    exposed = {family.name + suffix for family in Metrics().registry.collect() for suffix in suffixes.get(family.type, ("",))}
    for entry in alerts:
        for name in re.findall(r"\bautoscaler_\w+", entry["expr"]):
            assert name in exposed, f"{entry['alert']}: no metric {name}"


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
        pytest.param("GET", "/apis/apps/v1/daemonsets", {}, ("apps", "daemonsets", "list"), id="list-daemonsets"),
        pytest.param("GET", "/api/v1/namespaces/batch/persistentvolumeclaims", {},
                     ("", "persistentvolumeclaims", "list"), id="list-claims-of-a-namespace"),
        pytest.param("GET", "/api/v1/persistentvolumes", {}, ("", "persistentvolumes", "list"), id="list-volumes"),
        pytest.param("GET", "/apis/storage.k8s.io/v1/storageclasses", {}, ("storage.k8s.io", "storageclasses", "list"),
                     id="list-storage-classes"),
        pytest.param("GET", "/apis", {}, None, id="discovery"),
    ],
)
def test_rbac_request_names_what_rbac_checks(method, path, query, expected):
    assert rbac_request(method, path, query) == expected


@needs_kubectl
def test_the_readme_overlay_renders_what_it_promises(tmp_path):
    """The walk-through's own kustomization (with a local path for the repository), plus its patch
    that requires a system node group: the operator's cluster, image, role and affinity come out."""
    text = OPERATIONS.read_text()
    overlay = re.search(r"```yaml\n# kustomization.yaml\n(.*?)```", text, re.S).group(1)
    affinity_patch = re.search(r"```yaml\n(  - target: \{kind: Deployment.*?)```", text, re.S).group(1)
    remote = re.search(r"https://github\.com/\S+//deploy/overlays/irsa\S*", overlay).group(0)
    overlay = overlay.replace(remote, os.path.relpath(DEPLOY / "overlays" / "irsa", tmp_path))
    (tmp_path / "kustomization.yaml").write_text(overlay + affinity_patch)
    docs = kustomize(tmp_path)
    environment = container_environment(docs)
    assert environment["AUTOSCALER_CLUSTER_NAME"] == "prod-cluster"
    assert container(docs)["image"].endswith("/kubernetes-ec2-autoscaler:1.0.0")
    assert "111122223333" in one(docs, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    terms = one(docs, "Deployment")["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "eks.amazonaws.com/nodegroup", "operator": "In", "values": ["system"]}]}]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
