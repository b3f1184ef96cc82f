"""The core never imports Prefect nor the layers above it (DESIGN: arrows only point down).

Two checks: every file of ``fta/`` read as source (an import inside a function, or under ``TYPE_CHECKING``, counts
as much as one at the top), and every module imported for real (nothing pulls Prefect in on the way).
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import fta

CORE = Path(fta.__file__).resolve().parent
# Prefect itself, and the project's packages that stand on it.
ABOVE_THE_CORE = {"prefect", "prefect_shell", "flows", "tasks", "blocks", "deployments"}
DYNAMIC_IMPORTS = {"import_module", "__import__"}


def _imported_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) for every import statement anywhere in ``tree``, and every import_module("...") call."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            yield node.lineno, node.module
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)
            if name in DYNAMIC_IMPORTS and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def forbidden_imports(source: str, filename: str = "<source>") -> list[str]:
    """``file:line module`` for each import of Prefect or of a layer above the core in ``source``."""
    tree = ast.parse(source, filename=filename)
    return [
        f"{filename}:{line} {module}"
        for line, module in _imported_names(tree)
        if module.split(".")[0] in ABOVE_THE_CORE
    ]


@pytest.mark.parametrize(
    "source",
    [
        "import prefect",
        "from prefect.blocks.core import Block",
        "import os, prefect_shell",
        "def run():\n    from flows.watch_folder import watch_folder\n",
        "class C:\n    def m(self):\n        import deployments.serve as serve\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from blocks.transfer_config import TransferConfig\n",
        "try:\n    import tasks.copy\nexcept ImportError:\n    pass\n",
        "import importlib\nimportlib.import_module('prefect.client')\n",
        "__import__('flows')\n",
    ],
)
def test_the_check_sees_every_kind_of_import(source: str) -> None:
    assert len(forbidden_imports(source)) == 1


@pytest.mark.parametrize(
    "source",
    ["import fta.settings", "from fta import probe", "from . import probe", "import prefecture", "import flowsheet"],
)
def test_the_check_lets_the_core_and_look_alike_names_pass(source: str) -> None:
    assert forbidden_imports(source) == []


def test_no_core_file_imports_prefect_or_a_layer_above() -> None:
    files = sorted(CORE.rglob("*.py"))
    assert CORE / "copier.py" in files and CORE / "commands.py" in files
    found = [hit for path in files for hit in forbidden_imports(path.read_text(), str(path.relative_to(CORE.parent)))]
    assert found == []


def test_core_modules_do_not_import_prefect() -> None:
    modules = [f"fta.{info.name}" for info in pkgutil.iter_modules(fta.__path__)]
    assert "fta.copier" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {sorted(ABOVE_THE_CORE)!r})\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
