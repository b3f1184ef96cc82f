"""``fta server``: the site's one Prefect server, on PostgreSQL, that the agents of every ingest host report to.

It is ``prefect server start`` with what ``fta up``'s own server runs with (task-run and event batching, the
flow-run vacuum: ``SERVER_DEFAULTS``), PostgreSQL as its database (``PREFECT_API_DATABASE_CONNECTION_URL``, a
``postgresql+asyncpg://`` URL) and HTTP basic auth (``PREFECT_SERVER_API_AUTH_STRING``). Anything that reaches
the API can start runs that move and delete files, so a server that listens beyond loopback without the auth
string does not start. Prefect answers ``/api/health`` and ``/api/ready`` without credentials (probes of a load
balancer or a service manager); everything else needs them.

The server runs as a child in a session of its own and this process in the foreground: Ctrl-C or SIGTERM (systemd's
stop) reach it once, and it stops the server and waits for it. The child's output is this command's output (the
journal, under systemd). Bad configuration exits 2 with one line, before anything starts.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import TextIO

from deployments.local_server import LEASES_ON_DISK, SERVER_DEFAULTS, StartError, port_is_free, status_with
from fta.credential import LOCAL_HOSTS

DEFAULT_PORT = 4200  # Prefect's own: what PREFECT_API_URL examples and the UI assume
DRIVER = "postgresql+asyncpg"
WILDCARDS = {"0.0.0.0", "::", ""}
READY_TIMEOUT = 180.0  # the first start on an empty database runs every migration


@dataclass(frozen=True)
class CentralServer:
    """Where and how the central server runs; ``environment`` gives the child its settings."""

    database_url: str
    host: str
    port: int
    auth_string: str | None

    @property
    def probe_url(self) -> str:
        """The API as this machine reaches it (a wildcard bind answers on loopback)."""
        host = "127.0.0.1" if self.host in WILDCARDS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/api"

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """The child's environment: ``base`` with the project's server settings (an operator's own values win)."""
        defaults = {**SERVER_DEFAULTS, **LEASES_ON_DISK}  # the site's shared limits outlive a server crash
        env = {**base, **{name: base.get(name, value) for name, value in defaults.items()}}
        env |= {
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database_url,
            "PREFECT_SERVER_API_HOST": self.host,
            "PREFECT_SERVER_API_PORT": str(self.port),
        }
        env.pop("PREFECT_API_URL", None)  # the server is not a client of another one
        env.pop("PREFECT_SERVER_API_AUTH_STRING", None)
        if self.auth_string:
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth_string
        return env

    def command(self) -> list[str]:
        return [sys.executable, "-m", "prefect", "server", "start", "--host", self.host, "--port", str(self.port)]


def is_loopback(host: str) -> bool:
    if host in LOCAL_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def hide_password(url: str) -> str:
    """The URL for a message: the password never reaches a log or a terminal."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL at all: show its scheme only
        return url.split("://", 1)[0] + "://…"


def check(server: CentralServer) -> None:
    """Refuse what would not work or would be open to anyone: one line each (exit 2)."""
    if not server.database_url:
        raise StartError(f"no database: give --database-url or PREFECT_API_DATABASE_CONNECTION_URL ({DRIVER}://…)")
    if server.database_url.split("://", 1)[0] != DRIVER:
        shown = hide_password(server.database_url)
        raise StartError(f"the database URL must be {DRIVER}://user:password@host:port/database, not {shown}")
    if not 0 < server.port < 65536:
        raise StartError(f"port {server.port} is not a TCP port")
    if not is_loopback(server.host) and not server.auth_string:
        raise StartError(
            f"refusing to listen on {server.host or '*'} without authentication: set PREFECT_SERVER_API_AUTH_STRING"
            " (user:password; agents send it as PREFECT_API_AUTH_STRING)"
        )
    bind = "127.0.0.1" if server.host in WILDCARDS else server.host
    if is_loopback(bind) and ":" not in bind and not port_is_free(server.port, bind):
        raise StartError(f"port {server.port} is already in use on {bind}")


def from_args(args: argparse.Namespace, env: Mapping[str, str]) -> CentralServer:
    """Options first, then Prefect's own variables, then the defaults (loopback, 4200)."""
    port = args.port if args.port is not None else env.get("PREFECT_SERVER_API_PORT", str(DEFAULT_PORT))
    try:
        number = int(port)
    except ValueError:
        raise StartError(f"port: not a number: {port!r}") from None
    return CentralServer(
        database_url=args.database_url or env.get("PREFECT_API_DATABASE_CONNECTION_URL", ""),
        host=args.host if args.host is not None else env.get("PREFECT_SERVER_API_HOST", "127.0.0.1"),
        port=number,
        auth_string=env.get("PREFECT_SERVER_API_AUTH_STRING") or None,
    )


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql+asyncpg://user:password@host:port/database (default: PREFECT_API_DATABASE_CONNECTION_URL;"
        " prefer it: every user sees a command line, password included)",
    )
    parser.add_argument("--host", default=None, help="address to listen on (PREFECT_SERVER_API_HOST, 127.0.0.1)")
    parser.add_argument("--port", default=None, help=f"port (default: PREFECT_SERVER_API_PORT, {DEFAULT_PORT})")


class _Stop(Exception):
    """SIGTERM arrived: stop the server as Ctrl-C would."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def wait_until_ready(server: CentralServer, process: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until ``/api/ready`` (which reaches the database) answers; StartError if the child ends first."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise StartError(
                f"the Prefect server exited with {process.returncode} before it was ready (its output is above;"
                f" database {hide_password(server.database_url)})",
                code=1,
            )
        if status_with(f"{server.probe_url}/ready", None) == 200:
            return time.monotonic() - started
        time.sleep(0.25)
    raise StartError(f"the Prefect server did not answer within {timeout:g} s", code=1)


def stop_server(process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run(server: CentralServer, out: TextIO, ready_timeout: float = READY_TIMEOUT) -> int:
    """Start the server, say when it is ready, run until it ends, SIGTERM or Ctrl-C. The exit code."""
    check(server)
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    process = subprocess.Popen(
        server.command(),
        env=server.environment(os.environ),
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # a terminal's Ctrl-C reaches this process only, which stops the server once
    )
    try:
        seconds = wait_until_ready(server, process, ready_timeout)
        auth = "basic auth" if server.auth_string else "no authentication (loopback only)"
        print(
            f"fta: Prefect server ready in {seconds:.1f} s at {server.probe_url}, {auth},"
            f" database {hide_password(server.database_url)}",
            file=out,
            flush=True,
        )
        return process.wait() or 1  # it ended without being asked to: a failure for the service manager
    except (_Stop, KeyboardInterrupt):
        return 0
    finally:
        stop_server(process)
        signal.signal(signal.SIGTERM, previous)
