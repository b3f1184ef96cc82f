"""A throwaway PostgreSQL cluster for the tests: Debian's binaries, run as the ``postgres`` user, on loopback.

initdb writes the cluster into a fresh folder under /tmp owned by ``postgres`` (pytest's own temp tree is 0700 and
root's, which ``postgres`` cannot enter), pg_ctl starts it on 127.0.0.1 on a free port with its unix socket in that
folder, and a database with a password user is made for the Prefect server. ``stop`` ends it (fast mode: open
sessions are cut, everything committed stays) and removes the folder; ``restart`` is PostgreSQL going away and
coming back under a running server.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.up_helpers import free_port

BIN_GLOB = "/usr/lib/postgresql/*/bin"
USER = "postgres"  # the superuser, reached over the unix socket only
DATABASE = "prefect"
ROLE = "prefect"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(Path("/").glob(BIN_GLOB.lstrip("/")), key=lambda path: int(path.parent.name), reverse=True)
    return next((path for path in found if (path / "initdb").is_file() and (path / "pg_ctl").is_file()), None)


def why_not_usable() -> str | None:
    """Why no cluster can be made here (the skip reason), or None when it can."""
    if binaries() is None:
        return f"PostgreSQL is not installed (no initdb/pg_ctl in {BIN_GLOB}; .ci/run installs Debian's postgresql)"
    if os.geteuid() != 0:
        return "the cluster is made as the postgres user (runuser: initdb and pg_ctl refuse root), which needs root"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return "there is no postgres user to run initdb and pg_ctl as"
    return None


class PostgresCluster:
    """One cluster: ``start`` once, ``url`` for Prefect, ``psql`` to look inside, ``stop`` at the end."""

    def __init__(self) -> None:
        bin_folder = binaries()
        assert bin_folder is not None, why_not_usable()
        self.bin = bin_folder
        self.folder = Path(tempfile.mkdtemp(prefix="fta-pg-", dir="/tmp"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = 0
        self.password = secrets.token_urlsafe(16)
        self.start_seconds = 0.0
        account = pwd.getpwnam(USER)
        os.chown(self.folder, account.pw_uid, account.pw_gid)
        self.folder.chmod(0o700)

    @property
    def url(self) -> str:
        """What ``PREFECT_API_DATABASE_CONNECTION_URL`` takes: the password user, over TCP on loopback."""
        return f"postgresql+asyncpg://{ROLE}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"

    def _as_postgres(self, *argv: str, timeout: float = 120) -> str:
        done = subprocess.run(
            ["runuser", "-u", USER, "--", *argv], capture_output=True, text=True, timeout=timeout, cwd=self.folder
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} exited with {done.returncode}: {done.stderr.strip()}\n{log}")
        return done.stdout

    def start(self) -> None:
        """initdb, start on a free loopback port (another one if it was taken meanwhile), the database and role."""
        started = time.monotonic()
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, "-E", "UTF8", "--no-sync", "--no-instructions",
            "--auth-local=peer", "--auth-host=scram-sha-256",
        )  # fmt: skip
        for attempt in range(3):
            self.port = free_port()
            try:
                self._pg_ctl("start")
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{self.password}'")
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {ROLE}")
        self.start_seconds = time.monotonic() - started

    def _pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.folder}"
        self._as_postgres(
            str(self.bin / "pg_ctl"), action, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
            "-o", options, *extra,
        )  # fmt: skip

    def restart(self) -> None:
        """PostgreSQL stops (fast: every session is cut) and starts again on the same port."""
        self._pg_ctl("restart", "-m", "fast")

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` as the superuser over the unix socket; its rows, one per line, fields split by ``|``."""
        return self._as_postgres(
            str(self.bin / "psql"), "-h", str(self.folder), "-p", str(self.port), "-d", database,
            "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
        ).strip()  # fmt: skip

    def running(self) -> bool:
        done = subprocess.run(
            ["runuser", "-u", USER, "--", str(self.bin / "pg_ctl"), "status", "-D", str(self.data)],
            capture_output=True,
            timeout=30,
        )
        return done.returncode == 0

    def stop(self) -> None:
        """Stop (fast) if it runs, then remove the folder: nothing is left behind, even after a failed test."""
        try:
            if self.data.is_dir() and self.running():
                self._pg_ctl("stop", "-m", "fast")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
