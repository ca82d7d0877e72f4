"""The Helm chart (charts/kubernetes-ec2-autoscaler) rendered with `helm template`, held to the
checks of the kustomize manifests: test_manifests.py's own tests run again on the chart's
output (RBAC exactly what the code calls, the Lease Role, securityContext, resources,
self-protection, flags and variables the CLI accepts, probes), plus what the values choose:
namespace, replicas with leader election and anti-affinity, IRSA or a Secret, and the monitoring
objects with the same alerts as deploy/components/monitoring.

helm is built from the Go module proxy by tools/build_helm.sh (pinned, cached outside the work
tree); the tests skip where there is no Go to build it with and no helm built yet.
"""
from __future__ import annotations

import pathlib
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml

import autoscaler
import test_manifests
from test_manifests import (CUSTOM_KINDS, KUBERNETES_VERSIONS, MONITORING, check_one_namespace, container,
                            container_environment, of_kind, one, rendered, settings_of)

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "kubernetes-ec2-autoscaler"
BUILD_HELM = ROOT / "tools" / "build_helm.sh"
BASE_VALUES = {"clusterName": "prod-cluster", "regions": ["us-west-2", "us-east-1"],
               "aws": {"roleArn": "arn:aws:iam::111122223333:role/kubernetes-ec2-autoscaler"}}


@pytest.fixture(scope="module")
def helm() -> str:
    """The pinned helm: built on first use (a few minutes), then taken from the cache."""
    built = subprocess.run(["bash", str(BUILD_HELM)], capture_output=True, text=True, timeout=1800)
    if built.returncode != 0 and "needs Go" in built.stderr and shutil.which("go") is None:
        pytest.skip("no helm built and no Go to build it with (tools/build_helm.sh)")
    assert built.returncode == 0, built.stderr[-3000:]
    return built.stdout.strip().splitlines()[-1]


def template(helm: str, tmp_path: pathlib.Path, values: dict, namespace: str = "kube-system",
             expect_failure: bool = False):
    """The chart rendered for ``values`` into ``namespace``: its objects, or helm's error text."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    result = subprocess.run([helm, "template", "autoscaler", str(CHART), "--namespace", namespace,
                             "--kube-version", KUBERNETES_VERSIONS[-1], "--values", str(values_file)],
                            capture_output=True, text=True, timeout=120)
    if expect_failure:
        assert result.returncode != 0, result.stdout
        return result.stderr
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def with_values(**overrides) -> dict:
    values = yaml.safe_load(yaml.safe_dump(BASE_VALUES))
    for key, value in overrides.items():
        values[key] = value
    return values


@pytest.fixture
def default_render(helm, tmp_path) -> list[dict]:
    return template(helm, tmp_path, BASE_VALUES)


# ---------------------------------------------------------- test_manifests.py's checks, on the chart

REUSED_CHECKS = [
    "test_the_container_args_and_variables_are_flags_the_cli_accepts",
    "test_the_probes_and_the_scrape_ask_the_port_the_cli_serves_on",
    "test_the_image_is_this_version",
    "test_the_pod_protects_itself_from_the_scale_in_it_does",
    "test_resources_are_bounded",
    "test_security_context_is_restrictive_and_matches_the_image_user",
    "test_rbac_has_no_wildcards_and_grants_exactly_the_expected_rules",
    "test_leases_are_granted_in_the_autoscalers_namespace_and_only_its_own",
    "test_every_kubernetes_call_in_the_code_is_granted",
    "test_every_granted_write_is_used_by_the_code",
]


@pytest.mark.parametrize("namespace", ["kube-system", "autoscaling"])
@pytest.mark.parametrize("check", REUSED_CHECKS)
def test_the_chart_passes_the_kustomize_manifests_checks(helm, tmp_path, monkeypatch, check, namespace):
    docs = template(helm, tmp_path, BASE_VALUES, namespace)
    rendered_file = tmp_path / "chart.yaml"
    rendered_file.write_text(yaml.safe_dump_all(docs))
    empty = tmp_path / "none.yaml"
    empty.write_text("")
    original_granted = test_manifests.granted
    monkeypatch.setattr(test_manifests, "DEPLOYMENT_FILE", rendered_file)
    monkeypatch.setattr(test_manifests, "SECRET_FILE", empty)
    monkeypatch.setattr(test_manifests, "granted", lambda path=rendered_file: original_granted(path))
    function = getattr(test_manifests, check)
    function(monkeypatch) if "monkeypatch" in function.__code__.co_varnames[:function.__code__.co_argcount] else function()


def test_the_chart_grants_the_same_rules_as_the_kustomize_base(default_render):
    base = rendered("irsa")
    for kind in ("ClusterRole", "Role"):
        assert one(default_render, kind)["rules"] == one(base, kind)["rules"], kind


def test_pod_and_container_security_match_the_kustomize_base(default_render):
    base_pod = one(rendered("irsa"), "Deployment")["spec"]["template"]["spec"]
    pod = one(default_render, "Deployment")["spec"]["template"]["spec"]
    for field in ("securityContext", "priorityClassName", "terminationGracePeriodSeconds", "volumes", "tolerations"):
        assert pod[field] == base_pod[field], field
    for field in ("securityContext", "resources", "livenessProbe", "readinessProbe", "volumeMounts", "ports"):
        assert pod["containers"][0][field] == base_pod["containers"][0][field], field
    assert pod["affinity"]["nodeAffinity"] == base_pod["affinity"]["nodeAffinity"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("case", ["default", "ha-other-namespace-monitoring", "static-keys"])
def test_every_rendered_object_is_valid_against_the_kubernetes_schema(helm, tmp_path, version, case):
    values, namespace = {
        "default": (BASE_VALUES, "kube-system"),
        "ha-other-namespace-monitoring": (with_values(replicaCount=2, metrics={
            "serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}), "autoscaling"),
        "static-keys": (with_values(aws={"existingSecret": "autoscaler"}, slack={"existingSecret": "autoscaler"}),
                        "kube-system"),
    }[case]
    docs = template(helm, tmp_path, values, namespace)
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ConfigMap", "Deployment",
            "Service", "PodDisruptionBudget"} <= {doc["kind"] for doc in docs}
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)


# ------------------------------------------------------------------------------ what the values say

@pytest.mark.parametrize("namespace", ["kube-system", "autoscaling", "platform-autoscaler"])
def test_any_namespace_keeps_bindings_lease_and_quota_consistent(helm, tmp_path, monkeypatch, namespace):
    check_one_namespace(template(helm, tmp_path, BASE_VALUES, namespace), namespace, monkeypatch)


def test_the_namespace_value_wins_over_the_releases(helm, tmp_path, monkeypatch):
    docs = template(helm, tmp_path, with_values(namespace="autoscaling"), "default")
    check_one_namespace(docs, "autoscaling", monkeypatch)


def test_one_replica_recreates_and_two_roll_apart_with_leader_election(helm, tmp_path, monkeypatch, default_render):
    deployment = one(default_render, "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "podAntiAffinity" not in deployment["spec"]["template"]["spec"]["affinity"]

    docs = template(helm, tmp_path, with_values(replicaCount=2))
    deployment = one(docs, "Deployment")
    ha = one(rendered("ha"), "Deployment")
    assert deployment["spec"]["replicas"] == 2 and deployment["spec"]["strategy"] == ha["spec"]["strategy"]
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    required = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert [term["topologyKey"] for term in required] == ["kubernetes.io/hostname"]
    assert required[0]["labelSelector"]["matchLabels"].items() <= labels.items()
    preferred = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert [term["podAffinityTerm"]["topologyKey"] for term in preferred] == ["topology.kubernetes.io/zone"]
    assert settings_of(docs, monkeypatch).leader_elect is True
    budget = one(docs, "PodDisruptionBudget")["spec"]
    assert budget["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["replicas"] - budget["maxUnavailable"] >= 1


def test_irsa_or_keys_from_a_secret(helm, tmp_path, default_render):
    account = one(default_render, "ServiceAccount")
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == BASE_VALUES["aws"]["roleArn"]
    assert not {item["name"] for item in container(default_render)["env"]} & test_manifests.AWS_KEY_VARIABLES
    assert not of_kind(default_render, "Secret"), "the chart never holds credentials"

    docs = template(helm, tmp_path, with_values(aws={"existingSecret": "aws-keys"}, slack={"existingSecret": "hooks"}))
    env = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in container(docs)["env"] if "valueFrom" in item
           and "secretKeyRef" in item["valueFrom"]}
    assert env == {
        "AWS_ACCESS_KEY_ID": {"name": "aws-keys", "key": "aws-access-key-id", "optional": True},
        "AWS_SECRET_ACCESS_KEY": {"name": "aws-keys", "key": "aws-secret-access-key", "optional": True},
        "SLACK_HOOK": {"name": "hooks", "key": "slack-hook", "optional": True},
    }
    assert "annotations" not in one(docs, "ServiceAccount")["metadata"]


def test_settings_reach_the_cli(helm, tmp_path, monkeypatch):
    docs = template(helm, tmp_path, with_values(settings={"AUTOSCALER_IDLE_THRESHOLD": 1800,
                                                          "AUTOSCALER_SCALE_IN_CAP": "brake"},
                                                image={"repository": "example.org/autoscaler",
                                                       "digest": "sha256:" + "a" * 64}))
    settings = settings_of(docs, monkeypatch)
    assert settings.cluster_name == "prod-cluster" and settings.regions == ("us-west-2", "us-east-1")
    assert settings.idle_threshold == 1800 and settings.scale_in_cap == "brake"
    assert container(docs)["image"] == "example.org/autoscaler@sha256:" + "a" * 64
    assert container_environment(docs)["AUTOSCALER_CLUSTER_NAME"] == "prod-cluster"
    defaults = settings_of(template(helm, tmp_path, BASE_VALUES), monkeypatch)  # the base's args, as settings
    base = settings_of(rendered("irsa"), monkeypatch)
    for name in ("sleep", "idle_threshold", "over_provision", "log_format", "verbosity", "metrics_port", "leader_elect"):
        assert getattr(defaults, name) == getattr(base, name), name


@pytest.mark.parametrize("values, says", [
    ({"regions": ["us-west-2"]}, "clusterName is required"),
    (with_values(replicaCount=2, leaderElection={"enabled": False}), "needs leaderElection.enabled"),
    (with_values(aws={"roleArn": "arn:aws:iam::111122223333:role/x", "existingSecret": "keys"}), "choose one"),
])
def test_values_that_cannot_work_fail_the_render(helm, tmp_path, values, says):
    assert says in template(helm, tmp_path, values, expect_failure=True)


def test_monitoring_objects_match_the_kustomize_component(helm, tmp_path):
    docs = template(helm, tmp_path, with_values(metrics={"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
                                                         "prometheusRule": {"enabled": True}}))
    component_rule = test_manifests.documents(MONITORING / "prometheusrule.yaml")[0]
    component_monitor = test_manifests.documents(MONITORING / "servicemonitor.yaml")[0]
    assert one(docs, "PrometheusRule")["spec"] == component_rule["spec"]
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"] == component_monitor["spec"]["endpoints"]
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert {port["name"] for port in service["spec"]["ports"]} >= {e["port"] for e in monitor["spec"]["endpoints"]}
    assert not {"ServiceMonitor", "PrometheusRule"} & {doc["kind"] for doc in template(helm, tmp_path, BASE_VALUES)}


def test_the_chart_version_is_the_autoscalers():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == chart["version"] == autoscaler.__version__
