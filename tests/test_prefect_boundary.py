"""Prefect's internals are reached from ``flows/prefect_internals.py`` only: at an upgrade, one module to read.

Ruff's SLF001 keeps ``obj._private`` out of flows/, tasks/, deployments/ and blocks/. This walks every file of the
project (imports inside functions included) for what SLF001 does not see: private Prefect modules, and in those four
packages private attributes reached by name (``getattr(runner, "_scheduled_run_poller")``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The module that owns the internals, and its contract tests, which must reach them to check them.
ALLOWED = {"flows/prefect_internals.py", "tests/test_prefect_internals.py"}
SKIPPED_FOLDERS = {".venv", ".git", "build", "dist", "__pycache__"}
AGENT_PACKAGES = ("flows", "tasks", "deployments", "blocks")  # where SLF001 applies


def private_prefect_module(name: str) -> bool:
    """``prefect._internal...``, ``prefect.runner._control_channel``: a Prefect module with a private part."""
    parts = name.split(".")
    return parts[0] == "prefect" and any(part.startswith("_") and not part.startswith("__") for part in parts[1:])


def private_prefect_imports(source: str, filename: str = "<source>") -> list[str]:
    """Each import of a private Prefect module in ``source``, as ``line: module``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif (  # importlib.import_module("prefect._internal...") or __import__(...)
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            modules = [node.args[0].value]
        line = getattr(node, "lineno", 0)  # the nodes that name modules are statements and calls: they have one
        found.extend(f"{line}: {module}" for module in modules if private_prefect_module(module))
    return found


def private_attributes_by_name(source: str, filename: str = "<source>") -> list[str]:
    """Each ``getattr``/``setattr``/``hasattr``/``delattr`` of a private attribute named by a constant."""
    found = []
    for node in ast.walk(ast.parse(source, filename=filename)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and node.args[1].value.startswith("_")
            and not node.args[1].value.startswith("__")
        ):
            found.append(f"{node.lineno}: {node.args[1].value}")
    return found


def project_files() -> list[Path]:
    return [
        path
        for path in sorted(ROOT.rglob("*.py"))
        if not SKIPPED_FOLDERS & set(path.relative_to(ROOT).parts[:-1]) and str(path.relative_to(ROOT)) not in ALLOWED
    ]


def test_no_module_but_prefect_internals_imports_a_private_prefect_module() -> None:
    files = project_files()
    assert ROOT / "flows" / "watch_folder.py" in files and ROOT / "tests" / "conftest.py" in files
    offenders = [
        f"{path.relative_to(ROOT)}:{where}"
        for path in files
        for where in private_prefect_imports(path.read_text(encoding="utf-8"), str(path))
    ]
    assert not offenders, (
        "private Prefect modules imported outside flows/prefect_internals.py (give the use a named function there,"
        " with a contract test in tests/test_prefect_internals.py):\n" + "\n".join(offenders)
    )


def test_no_agent_module_but_prefect_internals_reaches_a_private_attribute_by_name() -> None:
    files = [path for path in project_files() if path.relative_to(ROOT).parts[0] in AGENT_PACKAGES]
    assert ROOT / "deployments" / "serve.py" in files
    offenders = [
        f"{path.relative_to(ROOT)}:{where}"
        for path in files
        for where in private_attributes_by_name(path.read_text(encoding="utf-8"), str(path))
    ]
    assert not offenders, "private attributes reached by name outside flows/prefect_internals.py:\n" + "\n".join(
        offenders
    )


def test_the_walk_finds_private_attributes_named_as_strings() -> None:
    source = (
        "poller = getattr(runner, '_scheduled_run_poller', None)\n"
        "setattr(f, 'warned', True)\n"
        "hasattr(x, '__dict__')\n"
        "def g():\n"
        "    return hasattr(x, '_queue')\n"
    )
    assert private_attributes_by_name(source) == ["1: _scheduled_run_poller", "5: _queue"]


def test_the_walk_finds_each_form_of_private_import() -> None:
    source = (
        "import prefect._internal.concurrency.services\n"
        "def f():\n"
        "    from prefect._internal.control_listener import get_intent\n"
        "    from prefect.runner import _control_channel\n"
        "    from prefect.runner._scheduled_run_poller import ScheduledRunPoller\n"
        "    importlib.import_module('prefect._internal.concurrency')\n"
        "from prefect.runner import Runner\n"
        "from prefect.context import FlowRunContext, __all__\n"
        "from . import _private\n"
    )
    assert private_prefect_imports(source) == [
        "1: prefect._internal.concurrency.services",
        "3: prefect._internal.control_listener",
        "3: prefect._internal.control_listener.get_intent",
        "4: prefect.runner._control_channel",
        "5: prefect.runner._scheduled_run_poller",
        "5: prefect.runner._scheduled_run_poller.ScheduledRunPoller",
        "6: prefect._internal.concurrency",
    ]
