"""The coverage floors per package (tests/coverage_floors.py): measured from real coverage data, checked by pytest.

A small project in tmp_path has two packages: ``pkg_a`` runs half of its one branch (3 of 4 statements, 1 of 2
branches: (3 + 1) / (4 + 2) = 66.67 %), ``pkg_b`` runs fully (100 %), ``pkg_c`` is never measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.coverage_floors import WHERE, measure, read_floors, shortfalls

REPO = Path(__file__).resolve().parent.parent
PKG_A = "def choose(flag):\n    if flag:\n        return 1\n    return 2\n"
PKG_A_PERCENT = 100 * (3 + 1) / (4 + 2)


def small_project(root: Path, floors: str) -> Path:
    """Packages pkg_a, pkg_b, pkg_c and a pyproject.toml with ``floors`` as its table; returns the pyproject."""
    for package, module in [("pkg_a", PKG_A), ("pkg_b", "VALUE = 1\n"), ("pkg_c", "VALUE = 2\n")]:
        (root / package).mkdir()
        (root / package / "__init__.py").write_text("")
        (root / package / "mod.py").write_text(module)
    (root / "checks").mkdir()
    (root / "checks" / "test_a.py").write_text("from pkg_a.mod import choose\n\ndef test_a():\n    choose(True)\n")
    (root / "checks" / "test_b.py").write_text("import pkg_b.mod\n\ndef test_b():\n    assert pkg_b.mod.VALUE\n")
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        "[tool.pytest.ini_options]\n"
        'addopts = "-p tests.coverage_floors --cov --cov-branch --cov-report=term -n 2 --dist loadfile"\n'
        'testpaths = ["checks"]\n'
        "[tool.coverage.run]\n"
        'source = ["pkg_a", "pkg_b"]\n'
        f"[tool.fta.coverage_floors]\n{floors}\n"
    )
    return pyproject


def run_in(root: Path, *command: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
    """``command`` run in ``root``, with this repository's ``tests`` package importable (the plugin)."""
    env = os.environ | {"PYTHONPATH": str(REPO)} | extra_env
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


def pytest_in(root: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """pytest in ``root`` with xdist and pytest-cov only (the other installed plugins take seconds to load)."""
    plugins = ["-p", "xdist.plugin", "-p", "pytest_cov.plugin", "-p", "no:cacheprovider"]
    command = [sys.executable, "-m", "pytest", *plugins, *options]
    return run_in(root, *command, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")


def test_each_package_is_measured_on_its_own(tmp_path: Path) -> None:
    small_project(tmp_path, "pkg_a = 0")
    (tmp_path / "main.py").write_text("import pkg_b.mod\nfrom pkg_a.mod import choose\nchoose(True)\n")
    data = tmp_path / "measured.coverage"
    ran = run_in(tmp_path, sys.executable, "-m", "coverage", "run", "--branch", f"--data-file={data}",
                 "--source=pkg_a,pkg_b", "main.py")  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    measured = measure(data, tmp_path, ["pkg_a", "pkg_b", "pkg_c"], config_file=False)
    assert measured == {"pkg_a": pytest.approx(PKG_A_PERCENT), "pkg_b": 100.0, "pkg_c": None}


def test_a_package_below_its_floor_is_named_with_its_figure_and_floor() -> None:
    measured = {"pkg_a": PKG_A_PERCENT, "pkg_b": 100.0, "pkg_c": None}
    floors = {"pkg_a": 70.0, "pkg_b": 100.0, "pkg_c": 50.0, "pkg_d": 0.0}
    assert shortfalls(measured, floors) == [
        f"coverage of pkg_a/ is 66.66 %, below its floor of 70 % ({WHERE})",
        f"coverage of pkg_c/: nothing measured, below its floor of 50 % ({WHERE})",
    ]
    assert shortfalls(measured, {"pkg_a": 66.0, "pkg_b": 100.0}) == []  # reaching the floor is enough
    just_below = shortfalls({"pkg_a": 89.999}, {"pkg_a": 90.0})
    assert just_below == [f"coverage of pkg_a/ is 89.99 %, below its floor of 90 % ({WHERE})"]  # never "90.00"


def test_the_floors_table_is_read_and_checked(tmp_path: Path) -> None:
    pyproject = small_project(tmp_path, "pkg_a = 66.5\npkg_b = 100")
    assert read_floors(pyproject) == {"pkg_a": 66.5, "pkg_b": 100.0}
    for table, named in [
        ('pkg_a = "90"', "pkg_a = '90'"),
        ("pkg_a = 101", "pkg_a = 101"),
        ("pkg_a = true", "pkg_a = True"),
        ("pkg_z = 50", "pkg_z is not a folder"),
    ]:
        pyproject.write_text(f"[tool.fta.coverage_floors]\n{table}\n")
        with pytest.raises(ValueError, match=named):
            read_floors(pyproject)
    pyproject.write_text("[tool.other]\nx = 1\n")
    with pytest.raises(ValueError, match=r"no \[tool.fta.coverage_floors\] table"):
        read_floors(pyproject)


def test_pytest_under_two_workers_fails_on_a_package_below_its_floor_and_passes_above(tmp_path: Path) -> None:
    pyproject = small_project(tmp_path, "pkg_a = 70\npkg_b = 100")
    below = pytest_in(tmp_path)
    assert below.returncode == 1, below.stdout + below.stderr
    assert "2 passed" in below.stdout
    assert f"FAIL coverage of pkg_a/ is 66.66 %, below its floor of 70 % ({WHERE})" in below.stdout
    assert "pkg_b/ is" not in below.stdout  # at its floor: not named

    pyproject.write_text(pyproject.read_text().replace("pkg_a = 70", "pkg_a = 60"))
    above = pytest_in(tmp_path)
    assert above.returncode == 0, above.stdout + above.stderr
    assert "66.66 %   floor 60" in above.stdout and "100.00 %   floor 100" in above.stdout
    assert "FAIL" not in above.stdout

    no_cov = pytest_in(tmp_path, "--no-cov")
    assert no_cov.returncode == 0 and "coverage per package" not in no_cov.stdout  # nothing measured, nothing checked


def test_a_wrong_floors_table_stops_the_run_with_one_line(tmp_path: Path) -> None:
    small_project(tmp_path, 'pkg_a = "high"')
    ran = pytest_in(tmp_path)
    assert ran.returncode == pytest.ExitCode.USAGE_ERROR, ran.stdout + ran.stderr
    assert "pkg_a = 'high' is not a percentage from 0 to 100" in ran.stderr
