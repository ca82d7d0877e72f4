"""The layering rules import-linter does not check, by parsing imports: the pure packages
(autoscaler/model/ and autoscaler/decide/) import no I/O library, not even the standard library's, and never read
the clock; production code never imports the simulated cluster (autoscaler/fakes/, autoscaler/sandbox/). The layer
contracts themselves are import-linter's, in pyproject.toml (`lint-imports`)."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "autoscaler"
PURE_PACKAGES = ('model', 'decide')
SIMULATED = ('fakes', 'sandbox')
# Every module of the pure packages: being there is what makes a module pure.
PURE_MODULES = sorted(f"{package}.{path.stem}" for package in PURE_PACKAGES
                      for path in (PACKAGE / package).glob("*.py") if path.stem != "__init__")
IO_LIBRARIES = {"boto3", "botocore", "kubernetes", "requests", "urllib3", "socket", "http", "subprocess"}
CLOCK_CALLS = ("datetime.now(", "datetime.utcnow(", "time.time(", "time.monotonic(")
# The CLI loads the sandbox inside its --sandbox command only: its module-level imports are checked.
DEFERRED_SANDBOX = {PACKAGE / "run" / "cli.py"}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: pathlib.Path, module_level_only: bool = False) -> set[str]:
    """Absolute names of what the module imports (relative imports resolved; for ``from x import
    y``, both ``x`` and ``x.y``)."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names = set()
    for node in (tree.body if module_level_only else ast.walk(tree)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def test_the_pure_packages_hold_the_decisions_and_the_model():
    assert {"decide.scale_up", "decide.scale_down", "model.plan"} <= set(PURE_MODULES)


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_no_io_library(module):
    for name in imports_of(PACKAGE.joinpath(*module.split(".")).with_suffix(".py")):
        parts = name.split(".")
        if parts[0] == "autoscaler":
            assert len(parts) > 1 and parts[1] in PURE_PACKAGES, f"{module} imports {name}, which is not pure"
        else:
            assert parts[0] not in IO_LIBRARIES, f"{module} imports {name}: decision code must not do I/O"


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_not_read_the_clock(module):
    text = PACKAGE.joinpath(*module.split(".")).with_suffix(".py").read_text()
    for call in CLOCK_CALLS:
        assert call not in text, f"{module} reads the clock ({call}); take `now` as an argument"


def test_production_modules_never_import_the_simulated_cluster():
    production = [path for path in PACKAGE.rglob("*.py") if path.relative_to(PACKAGE).parts[0] not in SIMULATED]
    assert len(production) > 20
    for path in production:
        for name in imports_of(path, module_level_only=path in DEFERRED_SANDBOX):
            parts = name.split(".")
            assert not (parts[0] == "autoscaler" and len(parts) > 1 and parts[1] in SIMULATED), \
                f"{path.relative_to(ROOT)} imports {name}"


# The sandbox's scheduler (and its DaemonSet controller) judge what the autoscaler decided: built
# on the reader's arithmetic or the planner's placement rules, they would agree with any mistake.
INDEPENDENT_SANDBOX = ("scheduler", "plugins", "daemonsets")


@pytest.mark.parametrize("module", INDEPENDENT_SANDBOX)
def test_the_sandbox_scheduler_imports_neither_the_reader_nor_the_planner(module):
    path = PACKAGE / "sandbox" / f"{module}.py"
    for name in imports_of(path):
        parts = name.split(".")
        assert not (parts[0] == "autoscaler" and len(parts) > 1 and parts[1] in ("read", "decide")), \
            f"sandbox/{module}.py imports {name}"
