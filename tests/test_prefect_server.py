"""``fta up``'s server process: SQLite's page cache bounded for the whole process before Prefect starts."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest

from deployments import prefect_server
from deployments.local_server import SERVER_COMMAND


def limit_in_force() -> int:
    """The soft heap limit a new connection of this process reports."""
    connection = sqlite3.connect(":memory:")
    try:
        return int(connection.execute("PRAGMA soft_heap_limit").fetchone()[0])
    finally:
        connection.close()


@pytest.fixture
def unbounded() -> Iterator[None]:
    prefect_server.bound_sqlite_heap(0)
    yield
    prefect_server.bound_sqlite_heap(0)  # 0: no limit, SQLite's default


def test_the_limit_holds_for_every_connection_of_the_process(unbounded: None) -> None:
    assert limit_in_force() == 0
    assert prefect_server.bound_sqlite_heap(3 * 2**20) == 3 * 2**20
    assert limit_in_force() == 3 * 2**20


def test_prefect_starts_with_its_own_command_line_after_the_limit_is_set(
    unbounded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prefect.cli

    seen: list[tuple[list[str], int]] = []
    monkeypatch.setattr(prefect.cli, "app", lambda: seen.append((list(sys.argv), limit_in_force())))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    prefect_server.main(["prefect", "server", "start", "--port", "4200"])
    assert seen == [(["prefect", "server", "start", "--port", "4200"], prefect_server.SOFT_HEAP_LIMIT)]


def test_anything_but_a_prefect_command_line_is_refused() -> None:
    with pytest.raises(SystemExit, match=r"usage: python -m deployments\.prefect_server prefect"):
        prefect_server.main(["server", "start"])


def test_the_launcher_runs_prefect_as_a_module() -> None:
    """The command ``fta up`` starts its server with reaches Prefect's command line (its version, here)."""
    import prefect

    done = subprocess.run([*SERVER_COMMAND, "version"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert prefect.__version__ in done.stdout
