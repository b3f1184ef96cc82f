"""The Prefect server ``fta up`` starts (and the temporary one of ``fta watch``/``fta once``), known as its own.

The server runs as a child process in a session of its own: a signal to the whole process group (Ctrl-C in a
terminal, a group-wide stop) reaches the agent and its flow runs, never the server, which the agent stops last,
once the runs have recorded their end. It binds 127.0.0.1 only and requires the credential (basic auth,
``PREFECT_SERVER_API_AUTH_STRING``); every client of this machine sends it (``PREFECT_API_AUTH_STRING``).

"Its own" is checked, not assumed: the port must be free before the start, the child must still be running once
the port answers, and the answer must accept this credential and refuse a request without it. Another agent's
server (another credential), a server without authentication or any other program fails one of these.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from fta.credential import USER, CredentialError, ensure_credential, private_folder, tighten_tree

# The run history is the audit log, so the server must record a burst of copies promptly and completely. Prefect's
# defaults write each task-run event in a transaction of its own and fall behind a burst of small files; in batches
# of up to 500, flushed every second, the history keeps up (BENCHMARKS.md has the figures). An operator's
# environment still overrides each of these.
#
# The server lives for months on an ingest machine. Prefect removes events after 7 days, but keeps every flow run
# with its task runs, logs and artifacts unless its flow-run vacuum is on: the storage report alone ends 1,440 flow
# runs a day. With it, ended flow runs go 90 days after their end (PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD
# in seconds to change that; ``...ENABLED=events`` keeps them all). The running watch run is never touched.
#
SERVER_DEFAULTS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
}
# The server's process only (not the flow runs): glibc's malloc makes up to 8 arenas per core for a threaded process
# (Prefect's SQLite connections each run in a thread of their own), and memory freed in one is not reused by another.
# Two arenas: a 5,000-file backlog peaked at 394 MB of server RSS instead of 468 MB, at the same drain rate.
SERVER_PROCESS_DEFAULTS = {"MALLOC_ARENA_MAX": "2"}
# ``prefect server start`` with SQLite's page cache bounded for the process (deployments/prefect_server.py).
SERVER_COMMAND = (sys.executable, "-m", "deployments.prefect_server", "prefect")
# A copy under a shared limit (``shared_limit_tag``) holds its slot through a lease; the slot count is in the
# database, the leases in the server's memory by default. A central server killed while a copy held the slot lost
# the lease and the slot with it: the count stayed at the limit and no copy of any agent ever started again. Kept as
# files in PREFECT_HOME, a lease outlives the server: released by its copy, or freed once it expires (60 s
# unrenewed). Only ``fta server`` keeps them there: with the leases on disk, a full disk under ``fta up``'s own server
# stopped every copy of the agent (tests/test_server_full.py), and a single host has no one to share a limit with.
LEASES_ON_DISK = {"PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": "prefect.server.concurrency.lease_storage.filesystem"}
LOCK_FILE = "fta-up.lock"
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*:")


class StartError(Exception):
    """The agent cannot start; one readable line. ``code`` 2: configuration or start problem."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Can host:port be bound now (as the server binds it, SO_REUSEADDR: a closing socket does not count)?"""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def who_answers(port: int) -> str:
    """A few words on what holds the port, for the one-line error."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=3) as answer:
            if answer.status == 200:
                return "another Prefect server (another agent's?)"
    except (urllib.error.URLError, OSError, ValueError):
        pass
    return "another program"


def port_taken(port: int) -> StartError:
    return StartError(
        f"port {port} is already in use by {who_answers(port)}; set server_port (--server-port, FTA_SERVER_PORT)"
    )


def basic_auth(credential: str | None) -> dict[str, str]:
    """The header a client of the local server sends (none without a credential)."""
    if not credential:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(credential.encode()).decode()}


def status_with(url: str, credential: str | None) -> int | None:
    """The HTTP status of GET ``url`` with (or without) the credential; None when nothing answers."""
    request = urllib.request.Request(url, headers=basic_auth(credential))
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)
    except (urllib.error.URLError, OSError, ValueError):
        return None


class LocalServer:
    """``prefect server start`` as a child process, on loopback, in its own session, with basic auth.

    ``data_path`` given: the database and Prefect's home are there (``fta up``), with the credential kept in it.
    ``data_path`` None: Prefect's own home and database, and a credential for this run only (``fta watch``).
    """

    def __init__(self, data_path: Path | None, port: int, ui: bool = True) -> None:
        self.data_path = data_path.resolve() if data_path is not None else None
        self.home = self.data_path / "prefect" if self.data_path is not None else None
        self.port = port
        self.ui = ui
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.credential = ""
        self.process: subprocess.Popen[bytes] | None = None
        self._lock: int | None = None

    def prepare(self) -> None:
        """data_path 0700 (its files not readable by others), the one ``fta up`` on it, the credential."""
        if self.data_path is None or self.home is None:
            self.credential = f"{USER}:{secrets.token_urlsafe(32)}"
            return
        try:
            private_folder(self.data_path)
            private_folder(self.home)
            tighten_tree(self.data_path)
            self._take_lock(self.data_path / LOCK_FILE)
            self.credential = ensure_credential(self.data_path)
        except CredentialError as exc:
            raise StartError(str(exc)) from None
        except OSError as exc:
            raise StartError(f"data_path {self.data_path} is not usable: {exc.strerror or exc}") from None

    def _take_lock(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise StartError(f"data_path {self.data_path} is in use by another fta up") from None
            raise
        self._lock = fd  # held until this process ends (closed with it)

    def environment(self) -> dict[str, str]:
        """Settings for this process and the flow runs it starts: the server's home and how to reach it."""
        env = {
            **{name: os.environ.get(name, value) for name, value in SERVER_DEFAULTS.items()},
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_LOGGING_LEVEL": os.environ.get("PREFECT_SERVER_LOGGING_LEVEL", "WARNING"),
        }
        if self.home is None:  # Prefect's own database: its own clean-up rules, as with Prefect's temporary server
            env.pop("PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED")
        else:
            env["PREFECT_HOME"] = str(self.home)
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = f"sqlite+aiosqlite:///{self.home / 'prefect.db'}"
        if not self.ui:
            env["PREFECT_SERVER_UI_ENABLED"] = "false"
        return env

    def client_environment(self) -> dict[str, str]:
        return {"PREFECT_API_URL": self.api_url, "PREFECT_API_AUTH_STRING": self.credential}

    def _log_path(self) -> Path | None:
        return self.home / "server.log" if self.home is not None else None

    def start(self, timeout: float = 90.0) -> None:
        if not self.credential:
            self.prepare()
        if not port_is_free(self.port):
            raise port_taken(self.port)
        env = {**os.environ, **self.environment(), "PREFECT_SERVER_API_AUTH_STRING": self.credential}
        env |= {name: os.environ.get(name, value) for name, value in SERVER_PROCESS_DEFAULTS.items()}
        env.pop("PREFECT_API_URL", None)
        log_path = self._log_path()
        log_file = None
        if log_path is not None:  # this user's only, as everything in data_path
            log_file = os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600), "ab")
        self.process = subprocess.Popen(
            [*SERVER_COMMAND, "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file if log_file is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group signal reaches the agent, not its server; the agent stops it last
            umask=0o077,  # its database, WAL and log: this user's only
        )
        if log_file is not None:
            log_file.close()
        try:
            self._wait_until_ready(timeout)
            self._check_it_is_ours()
        except BaseException:  # not ready in time, not ours, or a stop (Ctrl-C, SIGTERM) meanwhile: nothing left
            self.stop()
            raise

    def _exit_reason(self) -> str:
        log_path = self._log_path()
        where = f"; see {log_path}" if log_path is not None else ""
        lines: list[str] = []
        if log_path is not None:
            with contextlib.suppress(OSError):
                lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
        errors = [line for line in lines if EXCEPTION_LINE.match(line)]  # "sqlalchemy.exc.OperationalError: ..."
        reason = (errors or lines)[-1:]
        last = f": {reason[0][:200]}" if reason else ""
        assert self.process is not None
        return f"the Prefect server exited with {self.process.returncode}{last}{where}"

    def _wait_until_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                if not port_is_free(self.port):  # taken between our check and its start
                    raise port_taken(self.port)
                raise StartError(self._exit_reason())
            if self.ready():
                return
            time.sleep(0.25)
        where = f"; see {self._log_path()}" if self._log_path() is not None else ""
        raise StartError(f"the Prefect server did not answer within {timeout:g} s{where}")

    def _check_it_is_ours(self) -> None:
        """What answers is our child: it is still running, takes our credential, refuses a request without it."""
        assert self.process is not None
        probe = f"{self.api_url}/admin/version"
        if self.process.poll() is not None or status_with(probe, self.credential) != 200:
            raise port_taken(self.port)
        if status_with(probe, None) != 401:
            raise port_taken(self.port)

    def ready(self) -> bool:
        return status_with(f"{self.api_url}/ready", None) == 200

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def check_remote_api(api_url: str) -> None:
    """With ``PREFECT_API_URL`` set: the server answers, and takes this machine's credential (if any)."""
    if status_with(f"{api_url.rstrip('/')}/health", None) is None:
        raise StartError(f"cannot reach the Prefect API at {api_url} (PREFECT_API_URL)")
    if os.environ.get("PREFECT_API_KEY"):  # a key-based server: its client checks the key at the first call
        return
    credential = os.environ.get("PREFECT_API_AUTH_STRING")
    if status_with(f"{api_url.rstrip('/')}/admin/version", credential) == 401:
        raise StartError(f"the Prefect API at {api_url} refused the credential (PREFECT_API_AUTH_STRING)")


@contextlib.contextmanager
def temporary_server() -> Iterator[None]:
    """For ``fta watch``/``fta once`` without ``PREFECT_API_URL``: their own server, in a session of its own.

    Prefect would start a temporary server as a child in the command's process group: Ctrl-C killed it first and
    the run, unable to record its end, retried for minutes. This one lives until the run has ended, requires a
    credential made for this run only, and keeps Prefect's usual home and database.
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, get_current_settings, temporary_settings

    if os.environ.get("PREFECT_API_URL") or get_current_settings().api.url:  # a server is given (or a profile's)
        yield
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = LocalServer(None, port, ui=False)
    saved = {name: os.environ.get(name) for name in ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")}
    server.start()
    os.environ.update(server.client_environment())
    try:
        with temporary_settings(updates={PREFECT_API_URL: server.api_url, PREFECT_API_AUTH_STRING: server.credential}):
            yield
    finally:
        _send_what_is_queued()
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _send_what_is_queued() -> None:
    """Prefect sends logs and events from background workers: they reach the server before it stops (5 s at most)."""
    from flows.prefect_internals import send_queued_records

    with contextlib.suppress(Exception):  # a server already gone: nothing more to deliver
        send_queued_records(timeout=5)
