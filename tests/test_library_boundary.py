"""The library never uses its CLI: no module under asgl/ imports asgl_cli or starts ``python -m asgl_cli``."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent.parent / "asgl"


def docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes of the module, its classes and functions (prose may name the CLI)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def cli_uses(path: Path) -> list[str]:
    """``file:line what`` for each import of asgl_cli, and each string that names it as a module to run or
    import (``"asgl_cli"``, ``"asgl_cli.main"``, ``"... -m asgl_cli ..."``), outside docstrings."""
    tree = ast.parse(path.read_text(), str(path))
    skip, uses = docstrings(tree), []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "asgl_cli"]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module] if (node.module or "").split(".")[0] == "asgl_cli" else []
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            text = node.value
            names = [text] if text.split(".")[0] == "asgl_cli" or "-m asgl_cli" in text else []
        else:
            continue
        uses += [(node.lineno, f"{path.name}:{node.lineno} {name}") for name in names]
    return [use for _, use in sorted(uses)]


def test_cli_uses_finds_imports_and_commands(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        '"""Run ``python -m asgl_cli train`` by hand."""\n'
        "import asgl_cli.main\n"
        "from asgl_cli import errors\n"
        'COMMAND = [sys.executable, "-m", "asgl_cli", "train"]\n'
        'SHELL = "python -m asgl_cli train x"\n'
        'OTHER = ["-m", "asgl.sweeps.cell"]\n'
    )
    assert cli_uses(module) == [
        "m.py:2 asgl_cli.main",
        "m.py:3 asgl_cli",
        "m.py:4 asgl_cli",
        "m.py:5 python -m asgl_cli train x",
    ]


def test_no_library_module_uses_the_cli():
    modules = sorted(LIBRARY.rglob("*.py"))
    assert len(modules) > 20
    assert [use for path in modules for use in cli_uses(path)] == []
