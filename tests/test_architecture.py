"""The layering rule from the README, checked on the source: one layer per top-level folder, nothing imports upward,
and a layer uses only the public names of the layers below it.

models <- mobile_compress (core) <- converters, android_harness <- profiler <- workflows

Imports are read from the AST of every module, those under ``if TYPE_CHECKING:`` and inside functions included.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600

# What each top-level package may import from the others (itself aside).
ALLOWED: dict[str, set[str]] = {
    "models": set(),
    "mobile_compress": {"models"},
    "converters": {"models", "mobile_compress"},
    "android_harness": {"models", "mobile_compress"},
    "profiler": {"models", "mobile_compress", "converters", "android_harness"},
    "workflows": {"models", "mobile_compress", "converters", "android_harness", "profiler"},
}
OURS = tuple(ALLOWED)
FORBIDDEN_THIRD_PARTY = ("torchvision", "timm")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, str | None]]:
    """(module, imported name or None) for every absolute import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.extend((node.module, alias.name) for alias in node.names)
    return found


def folder_of(module: str) -> str | None:
    head = module.split(".")[0]
    return head if head in OURS else None


def public_problem(module: str, name: str | None) -> str | None:
    """Why importing ``name`` from ``module`` of another layer reaches past its public names, or None.

    A layer's public names are its package, its first-level modules and subpackages (``mobile_compress.errors``,
    ``mobile_compress.pruning``), and what those export: deeper modules (``mobile_compress.pruning.cost``) and
    names with a leading underscore are its own business. Where the module lists ``__all__``, the name must be in it.
    """
    parts = module.split(".")
    if len(parts) > 2:
        return f"{module} is an internal module (use {'.'.join(parts[:2])})"
    if any(p.startswith("_") for p in parts):
        return f"{module} is private"
    if name is None:
        return None
    if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):  # __version__ is public
        return f"{module}.{name} is private"
    exported = _exports(module)
    if exported is not None and name not in exported and not _is_submodule(module, name):
        return f"{name} is not in {module}.__all__"
    return None


def _module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_submodule(module: str, name: str) -> bool:
    return _module_file(f"{module}.{name}") is not None


def _exports(module: str) -> set[str] | None:
    path = _module_file(module)
    if path is None:
        return None
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return {ast.literal_eval(e) for e in node.value.elts}  # type: ignore[attr-defined]
    return None


SOURCES = sorted(p for pkg in OURS for p in (ROOT / pkg).rglob("*.py"))


def test_every_package_exists() -> None:
    for pkg in OURS:
        assert (ROOT / pkg / "__init__.py").is_file(), pkg


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    me = folder_of(module_name(path))
    assert me is not None
    bad = []
    for module, name in imports_of(path):
        target = folder_of(module)
        if module.split(".")[0] in FORBIDDEN_THIRD_PARTY:
            bad.append(f"{module} (cannot be imported with the CPU torch)")
        if target is None or target == me:
            continue
        if target not in ALLOWED[me]:
            bad.append(f"{module} (the {target} layer is above {me})")
        elif problem := public_problem(module, name):
            bad.append(problem)
    assert not bad, f"{path.relative_to(ROOT)} (layer {me}) imports: {bad}"


def test_the_folder_graph_is_acyclic() -> None:
    """Folder-level edges as imported, not as allowed: a cycle would need an upward edge somewhere."""
    edges = {pkg: set() for pkg in OURS}
    for path in SOURCES:
        me = folder_of(module_name(path))
        for module, _ in imports_of(path):
            target = folder_of(module)
            if target and target != me:
                edges[me].add(target)
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: tuple[str, ...]) -> None:
        if state.get(node) == 1:
            pytest.fail(f"import cycle between top-level packages: {' -> '.join(trail + (node,))}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(edges[node]):
            visit(nxt, trail + (node,))
        state[node] = 2
        order.append(node)

    for pkg in OURS:
        visit(pkg, ())
    assert order.index("models") < order.index("mobile_compress") < order.index("profiler") < order.index("workflows")


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_over_600_lines(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: split it by responsibility"


def test_the_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from profiler import report\n"
                   "import workflows.cli\nfrom mobile_compress.pruning.cost import CostModel\n"
                   "from mobile_compress.errors import _hidden\n")
    found = imports_of(bad)
    assert {folder_of(m) for m, _ in found} >= {"profiler", "workflows", "mobile_compress"}
    assert not {"profiler", "workflows"} & ALLOWED["mobile_compress"]
    assert "internal module" in public_problem("mobile_compress.pruning.cost", "CostModel")
    assert "private" in public_problem("mobile_compress.errors", "_hidden")
    assert public_problem("mobile_compress.pruning", "CostModel") is None
    assert "not in" in public_problem("mobile_compress.pruning", "allocate_nothing")
