"""The layering rule from the README, checked on the source: nothing imports upward.

models <- mobile_compress core <- converters, android_harness <- profiler <- CLI and pipeline
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOP_LAYER = ("mobile_compress.cli", "mobile_compress.pipeline", "mobile_compress.__main__")
OURS = ("models", "mobile_compress", "converters", "android_harness", "profiler")

# What each part may import from our own packages.
ALLOWED = {
    "models": {"models"},
    "core": {"models", "core"},
    "converters": {"models", "core", "converters"},
    "android_harness": {"models", "core", "android_harness"},
    "profiler": {"models", "core", "converters", "android_harness", "profiler"},
    "top": {"models", "core", "converters", "android_harness", "profiler", "top"},
}
FORBIDDEN_THIRD_PARTY = ("torchvision", "timm")


def part_of(module: str) -> str | None:
    if module.startswith(TOP_LAYER) or module in TOP_LAYER:
        return "top"
    head = module.split(".")[0]
    if head == "mobile_compress":
        return "core"
    return head if head in OURS else None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append(node.module)
            found.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return found


SOURCES = sorted(p for pkg in OURS for p in (ROOT / pkg).rglob("*.py"))


def test_every_package_exists() -> None:
    for pkg in OURS:
        assert (ROOT / pkg / "__init__.py").is_file(), pkg


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_upward_imports(path: Path) -> None:
    me = part_of(module_name(path))
    bad = []
    for imported in imports_of(path):
        target = part_of(imported)
        if target is not None and target not in ALLOWED[me]:
            bad.append(f"{imported} ({target})")
        if imported.split(".")[0] in FORBIDDEN_THIRD_PARTY:
            bad.append(f"{imported} (cannot be imported with the CPU torch)")
    assert not bad, f"{path.relative_to(ROOT)} is in layer '{me}' and imports {bad}"


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("from profiler import report\nimport mobile_compress.cli\n")
    found = [part_of(m) for m in imports_of(bad)]
    assert "profiler" in found and "top" in found
    assert not {"profiler", "top"} <= ALLOWED["core"]
