"""``prefect server start`` for ``fta up``'s own server, with SQLite's page cache bounded for the whole process.

Run as ``python -m deployments.prefect_server prefect server start ...``: the arguments after the module are
Prefect's command line, ``prefect`` first, as a shell would give them.

Prefect opens every SQLite connection of its pool with ``PRAGMA cache_size = 20000`` (80 MB of 4 KiB pages each)
and offers no setting for it. Under a backlog of 5,000 small files the server's RSS grew from about 200 MB to
468 MB. SQLite's soft heap limit is one per process (``sqlite3_soft_heap_limit64``, set here through Python's own
``sqlite3``, the library Prefect's ``aiosqlite`` connections use): set before Prefect opens its pool, SQLite reuses
its cache pages once its heap is at the limit instead of asking for more. The same backlog then peaked at 354 MB
with a 32 MiB limit; with 16 MiB and ``MALLOC_ARENA_MAX`` 2 (``local_server``), at 300 MB, for about 5 % more server
CPU per file. A limit is soft: SQLite goes over it rather than fail a statement.
"""

from __future__ import annotations

import sqlite3
import sys

SOFT_HEAP_LIMIT = 16 * 2**20  # bytes of SQLite heap the process keeps to; pages beyond it are reused, not added


def bound_sqlite_heap(limit: int = SOFT_HEAP_LIMIT) -> int:
    """Set this process's SQLite soft heap limit; the limit now in force (SQLite's answer)."""
    connection = sqlite3.connect(":memory:")
    try:
        row = connection.execute(f"PRAGMA soft_heap_limit = {int(limit)}").fetchone()
    finally:
        connection.close()
    return int(row[0])


def main(argv: list[str]) -> None:
    if not argv or argv[0] != "prefect":
        raise SystemExit("usage: python -m deployments.prefect_server prefect server start [OPTIONS]")
    bound_sqlite_heap()
    from prefect.cli import app

    sys.argv = argv
    app()


if __name__ == "__main__":
    main(sys.argv[1:])
