"""What ships: the package (pyproject.toml, one version, the console command, settings from the
environment), the runtime requirements and their lock, and the Dockerfile that installs them.

The image cannot be built here (no Docker engine), so its two promises are checked without it:
the runtime lock installs into a fresh virtualenv where the command starts and that stays small,
and no production module imports anything only the tests or the sandbox have.
"""
from __future__ import annotations

import ast
import json
import os
import pathlib
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions

import pytest
from packaging.requirements import Requirement

import autoscaler
import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "autoscaler"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
REQUIREMENTS = ROOT / "requirements"
RUNTIME_LOCK = REQUIREMENTS / "runtime.lock"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMMAND = "kubernetes-ec2-autoscaler"
SITE_PACKAGES_CEILING_MB = 250
# Packages of the tests and the simulated cluster, and what they bring: none of them may be
# imported by the modules the image runs (everything outside autoscaler/fakes and autoscaler/sandbox).
NOT_IN_THE_IMAGE = {"pytest", "_pytest", "moto", "matplotlib", "hypothesis", "kubernetes_validate", "werkzeug",
                    "flask", "responses", "cfnlint", "sympy", "numpy", "jsonschema", "docker", "mypy", "ruff"}
SIMULATION_PACKAGES = ("fakes", "sandbox")


# ---------------------------------------------------------------------------------------- helpers

def requirement_names(path: pathlib.Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(canonical(Requirement(line).name))
    return names


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def production_modules() -> list[pathlib.Path]:
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if path.relative_to(PACKAGE).parts[0] not in SIMULATION_PACKAGES]


def imported_top_levels(path: pathlib.Path) -> set[str]:
    """Every absolute import of the module, anywhere in it (deferred ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    """(stage name, its instructions) of the Dockerfile, continuation lines joined, comments dropped."""
    result: list[tuple[str, list[tuple[str, str]]]] = [("", [])]
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            name = arguments.split(" AS ")[-1].strip() if " AS " in arguments else ""
            result.append((name, []))
        result[-1][1].append((keyword.upper(), arguments.strip()))
    return result


def stage(name: str) -> list[tuple[str, str]]:
    found = [instructions for stage_name, instructions in stages() if stage_name == name]
    assert len(found) == 1, f"expected one stage {name}"
    return found[0]


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1][1]


def copy_sources(arguments: str) -> list[str]:
    words = [w for w in shlex.split(arguments) if not w.startswith("--")]
    return [w.rstrip("/") for w in words[:-1]]


def dockerignore_patterns() -> list[str]:
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]


def build_args() -> dict[str, str]:
    """The Dockerfile's ARG defaults, global and per stage."""
    args = {}
    for _, instructions in stages():
        for keyword, arguments in instructions:
            if keyword == "ARG" and "=" in arguments:
                name, value = arguments.split("=", 1)
                args[name] = value
    return args


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SLACK", "AUTOSCALER_"))}
    environment.update({"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_EC2_METADATA_DISABLED": "true"})
    environment.update(env or {})
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          env=environment, timeout=60, cwd=ROOT)


# ------------------------------------------------------------------------------ package and version

def test_one_version_for_the_package_the_command_and_the_image():
    assert re.fullmatch(r"\d+\.\d+\.\d+", autoscaler.__version__)
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "autoscaler.__version__"}
    assert build_args()["VERSION"] == autoscaler.__version__
    labels = " ".join(arguments for keyword, arguments in final_stage() if keyword == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


def test_version_flag_prints_the_version():
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{COMMAND} {autoscaler.__version__}"


def test_the_console_command_is_the_cli_of_main_py():
    assert PYPROJECT["project"]["scripts"] == {COMMAND: "autoscaler.run.cli:main"}
    assert main.main is autoscaler.run.cli.main and main.cli is autoscaler.run.cli.cli


def test_the_package_carries_its_data_files():
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["autoscaler"]
    assert {"data/*.json", "sandbox/*.yaml"} <= set(patterns)
    assert list((PACKAGE / "sandbox").glob("*.yaml")), "the bundled trace"


def test_dependencies_and_optional_groups_come_from_the_requirement_files():
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]
    assert dynamic["dependencies"] == {"file": ["requirements/runtime.txt"]}
    groups = dynamic["optional-dependencies"]
    assert {"test", "sandbox", "dev"} <= groups.keys()
    for group in groups.values():
        for path in group["file"]:
            assert (ROOT / path).exists(), path
    # A checkout gets every group: the README's two commands need the sandbox's and the tests' packages.
    included = re.findall(r"^-r (\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    assert {"requirements/runtime.txt", "requirements/sandbox.txt", "requirements/test.txt",
            "requirements/dev.txt"} <= set(included)


# ----------------------------------------------------------------------------- settings from the env

def test_every_flag_can_come_from_an_autoscaler_variable():
    """The flags a command line would give, as variables only: the same decision, here a refusal
    of --max-scale-in-fraction 1.5 that only the variable could have set."""
    result = run_cli("--once", env={"AUTOSCALER_CLUSTER_NAME": "c", "AUTOSCALER_REGIONS": "us-west-2",
                                    "AUTOSCALER_MAX_SCALE_IN_FRACTION": "1.5"})
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "--max-scale-in-fraction" in result.stderr


@pytest.mark.parametrize("variables, expected", [
    ({"AUTOSCALER_CLUSTER_NAME": "from-env", "AUTOSCALER_REGIONS": "eu-west-1,us-east-1",
      "AUTOSCALER_DRY_RUN": "true", "AUTOSCALER_VERBOSE": "2", "AUTOSCALER_LEADER_ELECT": "false"},
     {"cluster_name": "from-env", "regions": ("eu-west-1", "us-east-1"), "dry_run": True, "verbosity": 2,
      "leader_elect": False}),
    # The original's variables keep working, and win over the prefixed ones.
    ({"AUTOSCALER_CLUSTER_NAME": "c", "AWS_ACCESS_KEY_ID": "AKIAORIGINAL", "AWS_SECRET_ACCESS_KEY": "s",
      "AUTOSCALER_AWS_ACCESS_KEY": "AKIAPREFIXED", "SLACK_HOOK": "https://hooks.example/x"},
     {"aws_access_key": "AKIAORIGINAL", "aws_secret_key": "s", "slack_hook": "https://hooks.example/x"}),
    ({"AUTOSCALER_CLUSTER_NAME": "c", "AUTOSCALER_AWS_ACCESS_KEY": "AKIAPREFIXED", "AUTOSCALER_AWS_SECRET_KEY": "s"},
     {"aws_access_key": "AKIAPREFIXED", "aws_secret_key": "s"}),
], ids=["prefixed", "original-variables-win", "prefixed-keys"])
def test_settings_from_variables(monkeypatch, variables, expected):
    received = []
    monkeypatch.setattr("autoscaler.run.daemon.run", lambda settings: received.append(settings) or 0)
    for name in list(os.environ):
        if name.startswith(("AWS_", "SLACK", "AUTOSCALER_")):
            monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert main.main([]) == 0
    settings = received[0]
    for field, value in expected.items():
        assert getattr(settings, field) == value, field


def test_a_flag_wins_over_its_variable(monkeypatch):
    received = []
    monkeypatch.setattr("autoscaler.run.daemon.run", lambda settings: received.append(settings) or 0)
    monkeypatch.setenv("AUTOSCALER_CLUSTER_NAME", "from-env")
    assert main.main(["--cluster-name", "from-flag"]) == 0
    assert received[0].cluster_name == "from-flag"


def test_help_says_how_flags_come_from_the_environment():
    result = run_cli("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "AUTOSCALER_CLUSTER_NAME" in text and "environment variable" in text
    assert "AWS_ACCESS_KEY_ID" in text and "SLACK_HOOK" in text


# ------------------------------------------------------------------------------ runtime dependencies

def test_production_modules_import_no_test_or_sandbox_dependency():
    for path in production_modules():
        found = imported_top_levels(path) & NOT_IN_THE_IMAGE
        assert not found, f"{path.relative_to(ROOT)} imports {sorted(found)}, which the image does not have"


def test_the_static_check_sees_a_deferred_import():
    """The check above must see imports inside functions too (the CLI defers its heavy ones)."""
    assert "moto" in imported_top_levels(PACKAGE / "fakes" / "aws.py")
    assert {"click", "os"} <= imported_top_levels(PACKAGE / "run" / "cli.py")


def test_every_third_party_import_of_production_code_is_a_declared_runtime_requirement():
    declared = requirement_names(REQUIREMENTS / "runtime.txt")
    distributions = packages_distributions()
    standard = sys.stdlib_module_names
    for path in production_modules():
        for name in sorted(imported_top_levels(path) - standard - {"autoscaler"}):
            owners = {canonical(dist) for dist in distributions.get(name, ())}
            assert owners, f"{path.name} imports {name}, which no installed distribution provides"
            assert owners & declared, f"{path.name} imports {name} ({sorted(owners)}): not in requirements/runtime.txt"


def test_the_lock_pins_every_runtime_requirement_with_hashes():
    text = RUNTIME_LOCK.read_text()
    pinned = {canonical(name): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, re.MULTILINE)}
    assert requirement_names(REQUIREMENTS / "runtime.txt") <= pinned.keys()
    assert not pinned.keys() & {canonical(name) for name in NOT_IN_THE_IMAGE}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n\n", 1)[-1]):
        if "==" in block:
            assert "--hash=sha256:" in block, block.splitlines()[0]
    for name, version in pinned.items():  # the lock satisfies the ranges it was made from
        for line in (REQUIREMENTS / "runtime.txt").read_text().splitlines():
            spec = line.split("#", 1)[0].strip()
            if spec and canonical(Requirement(spec).name) == name:
                assert Requirement(spec).specifier.contains(version, prereleases=True), f"{name}=={version} vs {spec}"


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def lean_venv(tmp_path_factory):
    """A fresh virtualenv with the runtime lock (hashes required) and the package, as the image's
    final stage installs them. Needs PyPI: skipped offline, and with AUTOSCALER_TEST_OFFLINE=1."""
    if os.environ.get("AUTOSCALER_TEST_OFFLINE") == "1" or not _pypi_reachable():
        pytest.skip("PyPI cannot be reached (or AUTOSCALER_TEST_OFFLINE=1): the lean install needs it")
    base = tmp_path_factory.mktemp("lean")
    source = base / "src"  # a copy: building in the checkout would leave build/ and *.egg-info in it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(REQUIREMENTS, source / "requirements")
    shutil.copytree(PACKAGE, source / "autoscaler", ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--quiet", "--disable-pip-version-check"]
    for command in ([*pip, "install", "--require-hashes", "--no-deps", "-r", str(RUNTIME_LOCK)],
                    [*pip, "install", "--no-deps", str(source)]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    return venv


@pytest.mark.network
def test_the_runtime_lock_alone_runs_the_command(lean_venv, tmp_path):
    command = str(lean_venv / "bin" / COMMAND)
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    version = subprocess.run([command, "--version"], capture_output=True, text=True, timeout=60, env=clean, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"{COMMAND} {autoscaler.__version__}", version.stderr
    helped = subprocess.run([command, "--help"], capture_output=True, text=True, timeout=60, env=clean, cwd=tmp_path)
    assert helped.returncode == 0 and "--cluster-name" in helped.stdout, helped.stderr
    # Every production module imports with the runtime set alone (the CLI defers most of them).
    modules = [".".join(path.relative_to(ROOT).with_suffix("").parts) for path in production_modules()]
    modules = [name.removesuffix(".__init__") for name in modules]
    imported = subprocess.run([str(lean_venv / "bin" / "python"), "-c", f"import importlib; [importlib.import_module(m) for m in {modules!r}]"],
                              capture_output=True, text=True, timeout=120, env=clean, cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr[-2000:]
    # The sandbox is not in it, and says so in one line.
    sandbox = subprocess.run([command, "--sandbox"], capture_output=True, text=True, timeout=60, env=clean, cwd=tmp_path)
    assert sandbox.returncode == 2 and sandbox.stderr.count("\n") == 1 and "--sandbox" in sandbox.stderr, sandbox.stderr


@pytest.mark.network
def test_the_runtime_set_stays_small_and_holds_no_test_tool(lean_venv):
    python = str(lean_venv / "bin" / "python")
    listing = subprocess.run([python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                             capture_output=True, text=True, check=True, timeout=60)
    installed = {canonical(item["name"]) for item in json.loads(listing.stdout)}
    assert not installed & {canonical(name) for name in NOT_IN_THE_IMAGE}
    site = pathlib.Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                       capture_output=True, text=True, check=True).stdout.strip())
    size_mb = sum(path.stat().st_size for path in site.rglob("*") if path.is_file()) / 2**20
    print(f"runtime site-packages: {size_mb:.0f} MB, {len(installed)} distributions")
    assert size_mb < SITE_PACKAGES_CEILING_MB


# -------------------------------------------------------------------------------------- Dockerfile

def test_every_stage_builds_on_the_official_slim_python():
    image = build_args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.(1[1-9])-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image
    for name, instructions in stages()[1:]:
        assert instructions[0][1].split()[0] == "${PYTHON_IMAGE}", name


def test_the_base_image_is_pinned_by_digest_with_how_to_bump_it():
    image = build_args()["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.\d+-slim(-[a-z]+)?@sha256:[0-9a-f]{64}", image), \
        f"{image}: pin the tag's digest, so a re-pushed tag cannot change the build"
    text = DOCKERFILE.read_text()
    comment = text[:text.index("ARG PYTHON_IMAGE=")].rsplit("\n\n", 1)[-1]
    tag = image.split("@")[0]
    assert "bump" in comment and f"imagetools inspect {tag}" in comment, "say how to get the next digest"


def test_the_runtime_image_has_no_installers_after_the_last_install():
    """pip, setuptools and wheel are build tools: gone from the final stage once the package is in,
    and checked gone in the same RUN (a later layer cannot bring them back unnoticed)."""
    runs = [arguments for keyword, arguments in final_stage() if keyword == "RUN"]
    installs = [index for index, arguments in enumerate(runs) if "pip install" in arguments]
    last = runs[installs[-1]]
    assert last.index("pip install") < last.index("pip uninstall --yes pip setuptools wheel"), last
    assert re.search(r"find_spec.*\(\s*\"pip\", \"setuptools\", \"wheel\"\)", last), "the removal is not checked"
    assert not any("pip" in arguments for arguments in runs[installs[-1] + 1:])


def test_the_default_target_is_the_runtime_stage_and_a_test_target_exists():
    assert stages()[-1][0] == "runtime"
    assert stage("test")


def test_the_runtime_stage_installs_the_lock_with_hashes_and_the_package_only():
    instructions = final_stage()
    copies = [copy_sources(arguments) for keyword, arguments in instructions if keyword == "COPY"]
    copied = {source for sources in copies for source in sources}
    assert copied == {"requirements/runtime.lock", "/wheels"}, copied
    installs = [arguments for keyword, arguments in instructions if keyword == "RUN" and "pip install" in arguments]
    assert any(re.search(r"pip install --require-hashes .*-r \S*runtime\.lock", arguments) for arguments in installs)
    # The package without dependencies: nothing beyond the lock gets in.
    assert all("--require-hashes" in arguments or "--no-deps" in arguments for arguments in installs), installs
    lock_install = next(i for i, (k, a) in enumerate(instructions) if k == "RUN" and "runtime.lock" in a)
    package_copy = next(i for i, (k, a) in enumerate(instructions) if k == "COPY" and "/wheels" in a)
    assert lock_install < package_copy, "the dependency layer must not be rebuilt on every source change"


def test_the_runtime_stage_runs_the_command_as_a_numeric_non_root_user():
    instructions = final_stage()
    users = [index for index, (keyword, _) in enumerate(instructions) if keyword == "USER"]
    assert users, "no USER: the container would run as root"
    user = instructions[users[-1]][1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: numeric, so runAsNonRoot can verify it"
    assert int(user.split(":")[0]) != 0
    assert all(keyword != "RUN" for keyword, _ in instructions[users[-1]:]), "RUN after USER would run unprivileged by accident"
    entrypoint = [arguments for keyword, arguments in instructions if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint[-1]) == [COMMAND]
    environment = " ".join(arguments for keyword, arguments in instructions if keyword == "ENV")
    for variable in ("PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"):
        assert re.search(rf"\b{variable}=1\b", environment), variable


def test_the_test_stage_gets_what_the_tests_read_and_nothing_ignored():
    copied = {source for keyword, arguments in stage("test") if keyword == "COPY" for source in copy_sources(arguments)}
    assert {"requirements.txt", "requirements", "main.py", "autoscaler", "test", "deploy", "pyproject.toml",
            "Dockerfile", ".dockerignore", "autoscaler-dep.yaml", "autoscaler-secret.yaml", "iam-policy.json",
            "docs", "charts", "tools"} <= copied
    every_copy = {source for _, instructions in stages() for keyword, arguments in instructions if keyword == "COPY"
                  and "--from" not in arguments for source in copy_sources(arguments)}
    patterns = dockerignore_patterns()
    for source in every_copy:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not any(pathlib.PurePath(source).match(p.rstrip("/")) for p in patterns), f"{source} is in .dockerignore"


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    patterns = set(dockerignore_patterns())
    assert {".git", ".venv", "**/__pycache__", "**/*.pyc", "out/"} <= patterns


# -------------------------------------------------------------------------------------------- lint

def test_ci_runs_lint_and_type_checks_after_the_tests():
    script = (ROOT / ".ci" / "run").read_text()
    tests = script.index("python -m pytest test/ -q")
    assert tests < script.index("ruff check") and tests < script.index("mypy")
    strict = [override for override in PYPROJECT["tool"]["mypy"]["overrides"]
              if override.get("disallow_untyped_defs") and override.get("disallow_any_generics")]
    assert strict, "no strict override for the decision modules"
    assert {"autoscaler.decide.decision", "autoscaler.decide.scale_up", "autoscaler.decide.scale_down", "autoscaler.model.objects"} <= set(strict[0]["module"])


def test_the_changelog_starts_at_this_version():
    headings = re.findall(r"^## (\d+\.\d+\.\d+)\b", (ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings and headings[0] == autoscaler.__version__
