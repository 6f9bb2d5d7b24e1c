"""The code's floors and size limits, checked on the source (ast), so a change that breaks them fails here.

Floors, from the bottom: shared utilities (registry, store, errors, hashing, device, ...), components
(data, models, drift, methods, generate, metrics, classify), orchestration (runner, report), entry points
(cli, commands). A module never imports from a floor above its own; methods never import generate.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ldbench"
COMPONENTS = ("data", "models", "drift", "methods", "generate", "metrics", "classify")
ORCHESTRATION = ("runner", "report")
ENTRY_POINTS = ("cli", "cli_inputs", "commands", "commands_extractors")
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_PARAMETERS = 400, 60, 7
LONG_BY_DESIGN = {("cli.py", "_parser")}  # argparse set-up: one flat declaration of every command


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Every ldbench subpackage / module a file imports (at any depth: lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "ldbench" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_reaches_up_a_floor(path):
    part, imported = _part(path), _imports(path)
    if part in COMPONENTS:
        assert not imported & set(ORCHESTRATION + ENTRY_POINTS), f"{path.name} imports {imported}"
    if part in ORCHESTRATION:
        assert not imported & set(ENTRY_POINTS), f"{path.name} imports {imported}"
    if part == "methods":
        assert "generate" not in imported, f"{path.name}: methods never import generate"
    if part == "models":
        assert not imported & {"methods", "generate", "metrics"}, f"{path.name} imports {imported}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.name}: {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if (path.name, node.name) in LONG_BY_DESIGN:
            continue
        lines = node.end_lineno - node.lineno + 1
        assert lines <= MAX_FUNCTION_LINES, f"{path.name}:{node.lineno} {node.name} is {lines} lines"
        args = node.args
        params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs if a.arg not in ("self", "cls")]
        assert len(params) <= MAX_PARAMETERS, f"{path.name}:{node.lineno} {node.name} takes {len(params)}"
