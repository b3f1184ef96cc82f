"""A branch-coverage floor for each package, checked by the test command itself (a pytest plugin).

The floors are the table ``[tool.fta.coverage_floors]`` of pyproject.toml (package folder = lowest percentage),
beside the coverage settings they go with: changing one is a one-line change there, no code. pytest-cov's own floor
(``fail_under``) knows one total only; this plugin reads the data pytest-cov has just combined from the xdist workers
and computes each package's percentage as coverage does with branches on (statements and branches together, the
"Cover" column of the report). A package below its floor fails the run with one line naming it, its coverage and its
floor.

It runs where pytest-cov made its report, after it: in the controller (never in an xdist worker), not with
``--no-cov`` nor ``--collect-only``. It applies to whatever ran: a run of a few test files measures little of each
package and fails its floors, so run those with ``--no-cov``.
"""

from __future__ import annotations

import io
import math
import tomllib
from collections.abc import Generator, Iterable, Mapping
from pathlib import Path

import coverage
import pytest
from coverage.exceptions import NoDataError

TABLE = "[tool.fta.coverage_floors]"
WHERE = f"{TABLE} in pyproject.toml"
_FLOORS = pytest.StashKey[dict[str, float]]()
_MEASURED = pytest.StashKey[dict[str, float | None]]()


def read_floors(pyproject: Path) -> dict[str, float]:
    """The floors of pyproject.toml, by package folder; ValueError naming the entry that is not one."""
    table = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("tool", {}).get("fta", {}).get("coverage_floors")
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{pyproject}: no {TABLE} table")
    floors: dict[str, float] = {}
    for package, floor in table.items():
        if isinstance(floor, bool) or not isinstance(floor, int | float) or not 0 <= floor <= 100:
            raise ValueError(f"{pyproject} {TABLE}: {package} = {floor!r} is not a percentage from 0 to 100")
        if not (pyproject.parent / package).is_dir():
            raise ValueError(f"{pyproject} {TABLE}: {package} is not a folder beside pyproject.toml")
        floors[package] = float(floor)
    return floors


def measure(data_file: Path, root: Path, packages: Iterable[str], config_file: Path | bool) -> dict[str, float | None]:
    """Each package's coverage in ``data_file`` (percent), None where nothing of it was measured.

    ``config_file`` gives the exclusions (``exclude_also``) the report uses, so the figures match pytest-cov's table.
    """
    cov = coverage.Coverage(data_file=str(data_file), config_file=config_file)
    cov.load()
    measured: dict[str, float | None] = {}
    for package in packages:
        try:
            measured[package] = cov.report(include=[f"{root / package}/*"], file=io.StringIO(), ignore_errors=True)
        except NoDataError:
            measured[package] = None
    return measured


def shortfalls(measured: Mapping[str, float | None], floors: Mapping[str, float]) -> list[str]:
    """One line for each package below its floor (one not measured at all is below any floor above 0)."""
    lines = []
    for package, floor in floors.items():
        percent = measured.get(package)
        if percent is None and floor > 0:
            lines.append(f"coverage of {package}/: nothing measured, below its floor of {floor:g} % ({WHERE})")
        elif percent is not None and percent < floor:
            lines.append(f"coverage of {package}/ is {_shown(percent)}, below its floor of {floor:g} % ({WHERE})")
    return lines


def _shown(percent: float | None) -> str:
    """Two decimals, cut rather than rounded: a package just below its floor never shows as reaching it."""
    return "not measured" if percent is None else f"{math.floor(percent * 100) / 100:.2f} %"


def _combined_data_file(config: pytest.Config) -> Path | None:
    """The data file pytest-cov combined and reported on in this run; None where it made no report."""
    plugin = config.pluginmanager.getplugin("_cov")
    if plugin is None or getattr(plugin, "cov_total", None) is None:  # --no-cov, no report, or a failed one
        return None
    cov = plugin.cov_controller.cov  # what pytest-cov's own ``cov`` fixture hands out
    return Path(cov.get_data().data_filename())


def pytest_configure(config: pytest.Config) -> None:
    """Read the floors before any test runs: a wrong table stops the run at once, with one line."""
    if config.inipath is None:
        raise pytest.UsageError(f"the coverage floors are read from {TABLE} in pyproject.toml, and none was found")
    try:
        config.stash[_FLOORS] = read_floors(config.inipath)
    except (OSError, ValueError) as exc:  # tomllib's TOMLDecodeError is a ValueError
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(wrapper=True, tryfirst=True)  # the outermost wrapper: runs after pytest-cov has combined and reported
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    result = yield
    config = session.config
    if hasattr(config, "workerinput") or config.option.collectonly:
        return result
    data_file = _combined_data_file(config)
    if data_file is None:
        return result
    floors = config.stash[_FLOORS]
    measured = measure(data_file, config.rootpath, floors, config.inipath or False)
    config.stash[_MEASURED] = measured
    if shortfalls(measured, floors):
        session.testsfailed += 1  # the exit status pytest gives when a test failed
    return result


@pytest.hookimpl(trylast=True)  # below pytest-cov's table
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    measured = config.stash.get(_MEASURED, None)
    if measured is None:
        return
    floors = config.stash[_FLOORS]
    terminalreporter.write_line(f"coverage per package, with branches (floors: {WHERE})")
    for package, floor in floors.items():
        terminalreporter.write_line(f"  {package + '/':<14}{_shown(measured[package]):>14}   floor {floor:g}")
    for line in shortfalls(measured, floors):
        terminalreporter.write_line(f"FAIL {line}", red=True, bold=True)
