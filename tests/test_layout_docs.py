"""The README's Layout, its "life of a file" table and the core's module list name what is really there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import fta

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("fta", "flows", "tasks", "deployments", "blocks")


def modules_on_disk() -> set[str]:
    return {f"{package}/{path.name}" for package in PACKAGES for path in (ROOT / package).glob("*.py")} - {
        f"{package}/__init__.py" for package in PACKAGES
    }


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def layout_modules() -> set[str]:
    """``package/`` lines open a package; the lines below it name its modules (``module.py``, several to a line;
    ``other/module.py`` is a mention, not an entry)."""
    block = readme_section("Layout").split("```")[1]
    named: set[str] = set()
    package = None
    for line in block.splitlines():
        opening = re.match(r"(\w+)/\s", line + " ")
        if opening:
            package = opening.group(1) if opening.group(1) in PACKAGES else None
            line = line[opening.end() :]
        if package is not None:
            named |= {f"{package}/{name}" for name in re.findall(r"(?<![/\w])(\w+\.py)\b", line)}
    return named


def test_the_layout_names_every_module_and_no_other() -> None:
    named, present = layout_modules(), modules_on_disk()
    assert not present - named, f"modules missing from README's Layout: {sorted(present - named)}"
    assert not named - present, f"README's Layout names modules that are not there: {sorted(named - present)}"


def test_the_core_docstring_lists_every_core_module() -> None:
    listed = set(re.findall(r"^    (\w+)\s{2,}", fta.__doc__ or "", flags=re.MULTILINE))
    present = {path.stem for path in (ROOT / "fta").glob("*.py")} - {"__init__"}
    assert listed == present, f"missing: {sorted(present - listed)}, not there: {sorted(listed - present)}"


def defined_names(path: Path) -> set[str]:
    """Functions, classes and ``Class.method`` names defined in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        if isinstance(node, ast.ClassDef):
            names |= {
                f"{node.name}.{item.name}"
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return names


def test_every_place_in_the_life_of_a_file_exists() -> None:
    table = readme_section("Layout").split("### The life of a file", 1)[1]
    places = re.findall(r"`(\w+/\w+\.py):([\w.]+)`", table)
    assert len(places) >= 10, "the table names where each status is set"
    missing = [f"{file}:{name}" for file, name in places if name not in defined_names(ROOT / file)]
    assert not missing, f"the life of a file names places that are not there: {missing}"
