"""The core never imports Prefect (DESIGN: arrows only point down)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import fta


def test_core_modules_do_not_import_prefect() -> None:
    modules = [f"fta.{info.name}" for info in pkgutil.iter_modules(fta.__path__)]
    assert "fta.copier" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m == 'prefect' or m.startswith('prefect.'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
