"""The layout is the architecture: base -> domain -> operations -> faces, no cycles.

Every import is read from the source (call-time imports inside functions included), so a
dependency hidden in a function body is caught like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import django_datadog_partner

PACKAGE = "django_datadog_partner"
#: The code that runs: the checkout, or the installed wheel when the suite runs against it.
ROOT = Path(django_datadog_partner.__file__).resolve().parent
MODULE_MAP = Path(__file__).resolve().parent.parent / "docs" / "explanation" / "architecture.rst"

#: Each module's layer, by the longest matching dotted prefix (relative to the package).
LAYERS = {
    "base": (
        "conf",
        "regions",
        "client",
        "crypto",
        "fields",
        "exceptions",
        "safejson",
        "signals",
        "error_reports",
        "deadline",
        "descriptors",
        "transport",
        "multiplex",
    ),
    "domain": (
        "models",
        "outbox",
        "leases",
        "alarms",
        "status",
        "oauth",
        "payloads",
        "packing",
        "permissions",
        "failures",
        "migrations",
    ),
    "operations": (
        "connections",
        "delivery",
        "tracking",
        "heartbeat",
        "api",
        "api_client",
        "listing",
        "metrics_metadata",
        "report",
        "schedules",
    ),
    "faces": (
        "views",
        "urls",
        "admin",
        "management",
        "tasks",
        "checks",
        "apps",
        "testing",
        "templatetags",
    ),
}
ORDER = ["base", "domain", "operations", "faces"]
#: The test kit runs the sandbox engine for host projects' tests; nothing else may.
SANDBOX_USERS = {"testing"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in ROOT.rglob("*.py")}


def imports_of(name: str, path: Path) -> set[str]:
    """Package modules ``name`` imports, at module level or inside functions."""
    is_package = path.name == "__init__.py"
    base = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target != PACKAGE:  # "from . import x" names x, not the package
                found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    modules = package_modules()
    return {target for target in found if target in modules and target != name}


def layer_of(name: str) -> str | None:
    relative = name.removeprefix(PACKAGE).lstrip(".")
    top = relative.split(".")[0]
    if not top:  # the package's own __init__: a version string
        return "base"
    if top == "sandbox":
        return None
    for layer, tops in LAYERS.items():
        if top in tops:
            return layer
    raise AssertionError(f"{name} has no layer: add it to LAYERS")


def graph() -> dict[str, set[str]]:
    return {name: imports_of(name, path) for name, path in package_modules().items()}


def test_every_module_has_a_layer():
    for name in package_modules():
        layer_of(name)


def test_no_module_imports_a_higher_layer():
    upward = []
    for name, targets in graph().items():
        here = layer_of(name)
        if here is None:
            continue
        for target in targets:
            there = layer_of(target)
            if there is None:
                if name.removeprefix(PACKAGE + ".").split(".")[0] not in SANDBOX_USERS:
                    upward.append(f"{name} -> {target} (the sandbox)")
            elif ORDER.index(there) > ORDER.index(here):
                upward.append(f"{name} ({here}) -> {target} ({there})")
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_the_import_graph_has_no_cycle():
    edges = graph()
    # A package's __init__ re-exports its submodules; that edge is not a dependency.
    for name in edges:
        edges[name] = {t for t in edges[name] if not t.startswith(name + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_checker_sees_call_time_imports():
    """The walk must not miss an import inside a function body (how cycles hide)."""
    targets = imports_of(f"{PACKAGE}.tasks", ROOT / "tasks.py")
    assert f"{PACKAGE}.delivery.kick" in targets


def test_the_module_map_says_where_every_module_is():
    """The docs' "Where things are" names every module, so the map cannot fall behind."""
    section = MODULE_MAP.read_text()
    missing = []
    for path in sorted(ROOT.glob("*.py")) + sorted(ROOT.glob("*/*.py")):
        if path.name == "__init__.py" or path.parent.name in ("migrations", "commands"):
            continue
        if path.parent == ROOT:
            named = f"``{path.name}``" in section
        elif path.parent.name in ("sandbox", "admin", "management"):
            named = f"``{path.parent.name}/``" in section
        else:
            named = f"``{path.parent.name}/``" in section and f"``{path.stem}``" in section
        if not named:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"not in docs/explanation/architecture.rst: {missing}"
