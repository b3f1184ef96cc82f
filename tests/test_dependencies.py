"""The distributions the agent declares are the ones it imports: none missing (an install would not pull it in)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fta", "flows", "tasks", "deployments", "blocks")


def normalized(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``prometheus_client`` is ``prometheus-client``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names: set[str] = set()
    for requirement in project["dependencies"]:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match is not None, f"unreadable requirement {requirement!r} in pyproject.toml"
        names.add(normalized(match.group()))
    return names


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file, those inside functions included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the files importing it, for modules neither in the standard library nor the agent's own."""
    found: dict[str, set[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in imported_modules(path):
                if name not in sys.stdlib_module_names and name not in PACKAGES:
                    found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency() -> None:
    providers = importlib.metadata.packages_distributions()
    wanted = declared()
    imports = third_party_imports()
    assert "prometheus_client" in imports  # the walk sees the imports (fta/metrics.py)
    missing = []
    for module, files in sorted(imports.items()):
        distributions = {normalized(name) for name in providers.get(module, [])}
        if not distributions:
            missing.append(f"{module} (imported by {', '.join(sorted(files))}) is not installed at all")
        elif not distributions & wanted:
            missing.append(
                f"{module} (imported by {', '.join(sorted(files))}) comes from {', '.join(sorted(distributions))},"
                " which pyproject.toml's [project] dependencies do not declare"
            )
    assert not missing, "undeclared imports:\n" + "\n".join(missing)


def test_the_import_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "late.py"
    module.write_text(
        "import os\n\ndef f():\n    from yaml import safe_load\n    import httpx.auth\n", encoding="utf-8"
    )
    assert imported_modules(module) == {"os", "yaml", "httpx"}
