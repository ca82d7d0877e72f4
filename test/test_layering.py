"""The layering rules of design.md, checked by parsing imports: decision code does no I/O, and the
production path never imports the simulated cluster."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "autoscaler"
PURE_MODULES = ["model", "plan", "config", "scheduling", "packing", "scale_up", "scale_down", "node_state", "group_health", "decide", "group_labels", "real_capacity",
                "pending_shapes", "live_fit", "infeasible", "offers", "group_plan", "demand_classes", "choose", "improve", "greedy", "over_provision", "scale_up_actions", "notices"]
IO_LIBRARIES = {"boto3", "botocore", "kubernetes", "requests", "urllib3", "socket", "http", "subprocess"}
PURE_ALLOWED_LOCAL = {"model", "plan", "config", "scheduling", "packing", "node_state", "group_health", "scale_up", "scale_down", "group_labels", "real_capacity",
                      "pending_shapes", "live_fit", "infeasible", "offers", "group_plan", "demand_classes", "choose", "improve", "greedy", "over_provision", "scale_up_actions", "notices"}


def imports_of(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level
            if node.module:
                names.add(prefix + node.module)
            else:  # from . import config
                names.update(prefix + alias.name for alias in node.names)
    return names


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_no_io_library(module):
    path = PACKAGE / f"{module}.py"
    if not path.exists():
        pytest.skip(f"{module}.py not written yet")
    for name in imports_of(path):
        top = name.lstrip(".").split(".")[0]
        if name.startswith("."):
            assert top in PURE_ALLOWED_LOCAL, f"{module} imports {name}, which is not a pure module"
        else:
            assert top not in IO_LIBRARIES, f"{module} imports {name}: decision code must not do I/O"


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_not_read_the_clock(module):
    path = PACKAGE / f"{module}.py"
    if not path.exists():
        pytest.skip(f"{module}.py not written yet")
    text = path.read_text()
    for call in ("datetime.now(", "datetime.utcnow(", "time.time(", "time.monotonic("):
        assert call not in text, f"{module} reads the clock ({call}); take `now` as an argument"


def test_production_modules_never_import_the_simulated_cluster():
    """Only the CLI loads the sandbox, and only inside the command, once --sandbox was given."""
    for path in PACKAGE.glob("*.py"):
        names = imports_of(path) if path.name != "cli.py" else module_level_imports_of(path)
        for name in names:
            assert "fakes" not in name and "sandbox" not in name, f"{path.name} imports {name}"


def module_level_imports_of(path: pathlib.Path) -> set[str]:
    body = ast.parse(path.read_text()).body
    return {name for statement in body if isinstance(statement, (ast.Import, ast.ImportFrom))
            for name in imports_of_statement(statement)}


def imports_of_statement(statement) -> set[str]:
    if isinstance(statement, ast.Import):
        return {alias.name for alias in statement.names}
    prefix = "." * statement.level
    return {prefix + statement.module} if statement.module else {prefix + alias.name for alias in statement.names}
