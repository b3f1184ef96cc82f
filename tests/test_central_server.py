"""``fta server``: the central Prefect server on a real PostgreSQL cluster, with basic auth, as a real process."""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from uuid import UUID

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from deployments.central_server import CentralServer, check, from_args, hide_password, is_loopback, run
from deployments.local_server import LEASES_ON_DISK, SERVER_DEFAULTS, StartError, port_is_free
from fta.procstat import alive, child_pids
from tests import postgres as cluster_module
from tests.postgres import DATABASE, ROLE, PostgresCluster, why_not_usable
from tests.prefect_helpers import wait_until
from tests.up_helpers import call, clean_env, free_port, run_fta

AUTH = "site:" + "s3cret-of-the-site"


@flow(name="fta-central-probe")
def probe() -> None:
    """Only its flow object is used: a run of it is created through the API, never executed."""


def server_args(**given: str | None) -> argparse.Namespace:
    return argparse.Namespace(**({"database_url": None, "host": None, "port": None} | given))


def test_the_server_environment_carries_the_project_settings_and_operator_values_win() -> None:
    server = CentralServer("postgresql+asyncpg://u:p@127.0.0.1:5432/db", "127.0.0.1", 4300, AUTH)
    base = {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "50", "PREFECT_API_URL": "http://elsewhere/api"}
    env = server.environment(base)
    for name, value in {**SERVER_DEFAULTS, **LEASES_ON_DISK}.items():
        assert env[name] == base.get(name, value)
    assert env["PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE"].endswith(".filesystem")  # a crash keeps no slot taken
    assert env["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "50"
    assert env["PREFECT_API_DATABASE_CONNECTION_URL"] == server.database_url
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == AUTH
    assert (env["PREFECT_SERVER_API_HOST"], env["PREFECT_SERVER_API_PORT"]) == ("127.0.0.1", "4300")
    assert "PREFECT_API_URL" not in env  # the server is no client of another server
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"


def test_options_win_over_prefect_variables_and_a_wildcard_is_probed_on_loopback() -> None:
    env = {"PREFECT_API_DATABASE_CONNECTION_URL": "postgresql+asyncpg://a@h/d", "PREFECT_SERVER_API_PORT": "4444"}
    assert from_args(server_args(), env).port == 4444
    server = from_args(server_args(host="0.0.0.0", port="4555", database_url="postgresql+asyncpg://b@h/d"), env)
    assert (server.host, server.port, server.database_url) == ("0.0.0.0", 4555, "postgresql+asyncpg://b@h/d")
    assert server.auth_string is None
    assert server.probe_url == "http://127.0.0.1:4555/api"
    with pytest.raises(StartError, match="not a number"):
        from_args(server_args(port="http"), env)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "prefect.example.org", "::"])
def test_beyond_loopback_without_auth_is_refused(host: str) -> None:
    with pytest.raises(StartError, match="without authentication") as refused:
        check(CentralServer("postgresql+asyncpg://u:p@db/prefect", host, free_port(), None))
    assert refused.value.code == 2


def test_loopback_without_auth_is_allowed_and_a_taken_port_is_refused() -> None:
    check(CentralServer("postgresql+asyncpg://u:p@db/prefect", "127.0.0.1", free_port(), None))
    check(CentralServer("postgresql+asyncpg://u:p@db/prefect", "127.5.0.1", free_port(), None))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        assert not port_is_free(port)
        with pytest.raises(StartError, match="already in use"):
            check(CentralServer("postgresql+asyncpg://u:p@db/prefect", "127.0.0.1", port, AUTH))


@pytest.mark.parametrize("url", ["", "sqlite+aiosqlite:///prefect.db", "postgresql://u:hidden@db/prefect"])
def test_only_a_postgresql_asyncpg_url_is_taken_and_its_password_never_shown(url: str) -> None:
    with pytest.raises(StartError, match="postgresql\\+asyncpg") as refused:
        check(CentralServer(url, "127.0.0.1", free_port(), AUTH))
    assert "hidden" not in str(refused.value)
    assert "hidden" not in hide_password("postgresql+asyncpg://u:hidden@db:5432/prefect")


def test_fta_server_beyond_loopback_without_auth_exits_2_with_one_line() -> None:
    env = clean_env()  # no PREFECT_SERVER_API_AUTH_STRING
    done = run_fta(
        env, "server", "--host", "0.0.0.0", "--port", str(free_port()),
        "--database-url", "postgresql+asyncpg://prefect:hidden@127.0.0.1:5432/prefect",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "PREFECT_SERVER_API_AUTH_STRING" in lines[0], done.stderr
    assert "hidden" not in done.stderr and done.stdout == ""


def test_the_cluster_is_skipped_with_a_reason_only_without_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    if cluster_module.binaries() is not None:  # this machine has it: no reason to skip (run as root, as CI does)
        assert os.geteuid() != 0 or why_not_usable() is None
    monkeypatch.setattr(cluster_module, "BIN_GLOB", "/nonexistent/*/bin")
    reason = why_not_usable()
    assert reason is not None and "not installed" in reason and ".ci/run" in reason


@pytest.mark.slow
def test_the_throwaway_cluster_starts_restarts_and_is_gone_after_its_stop(postgres: PostgresCluster) -> None:
    print(f"\nPostgreSQL cluster (initdb, start, database and role) ready in {postgres.start_seconds:.1f} s")
    assert postgres.running() and not port_is_free(postgres.port)
    # the Prefect server's way in: the password role over TCP on loopback, owner of the database
    env = {**os.environ, "PGPASSWORD": postgres.password}
    query = ["psql", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", ROLE, "-d", DATABASE, "-XAtq", "-c"]
    create = "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)"
    subprocess.run([*query, create], env=env, check=True, capture_output=True, timeout=30)
    wrong = subprocess.run([*query, "SELECT 1"], env={**env, "PGPASSWORD": "wrong"}, capture_output=True, timeout=30)
    assert wrong.returncode != 0 and b"password authentication failed" in wrong.stderr
    postgres.restart()
    assert postgres.psql("SELECT n FROM kept", DATABASE) == "42"  # committed before the restart, there after it
    postgres.stop()
    assert not postgres.folder.exists() and port_is_free(postgres.port)


def start_server(database_url: str, port: int, output: Path) -> subprocess.Popen[bytes]:
    env = clean_env(PREFECT_SERVER_API_AUTH_STRING=AUTH, PREFECT_SERVER_LOGGING_LEVEL="WARNING")
    argv = ["server", "--database-url", database_url, "--host", "127.0.0.1", "--port", str(port)]
    with output.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", *argv], env=env, stdout=sink, stderr=subprocess.STDOUT
        )


def record_a_flow_run(api_url: str) -> tuple[UUID, str]:
    """A flow run created through Prefect's client with the site's credential, and its name as read back."""
    site = {PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: AUTH}
    with temporary_settings(site), get_client(sync_client=True) as client:
        created = client.create_flow_run(probe, name="central-probe-run")
        return created.id, client.read_flow_run(created.id).name


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fta_server_runs_prefect_on_postgresql_with_basic_auth(postgres: PostgresCluster, tmp_path: Path) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    output = tmp_path / "server.out"
    started = time.monotonic()
    server = start_server(postgres.url, port, output)
    try:
        wait_until(lambda: "ready in" in output.read_text(errors="replace"), 240, "fta server to say it is ready")
        print(f"\nfta server on PostgreSQL ready in {time.monotonic() - started:.1f} s (first start: migrations)")
        assert server.poll() is None
        assert postgres.password not in output.read_text(errors="replace")
        children = child_pids(server.pid)
        assert children  # the Prefect server: its command line (readable by every user) holds no password
        assert all(postgres.password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children)
        assert call(f"{api}/health")[0] == 200  # the probe a load balancer uses needs no credential
        assert call(f"{api}/admin/version")[0] == 401
        assert call(f"{api}/admin/version", "site:wrong")[0] == 401
        assert call(f"{api}/admin/version", AUTH)[0] == 200
        run_id, name = record_a_flow_run(api)
        assert name == "central-probe-run"
        # the server's database is the PostgreSQL one: the run's row is there
        row = postgres.psql(f"SELECT name FROM flow_run WHERE id = '{run_id}'", DATABASE)
        assert row == "central-probe-run"
        server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 0
        assert port_is_free(port)  # the Prefect server went with it
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_the_unit_file_runs_fta_server_beyond_loopback_and_does_not_restart_on_bad_configuration() -> None:
    from deployments.cli import EXIT_CONFIG, build_parser

    unit = (Path(__file__).resolve().parent.parent / "deployments" / "systemd" / "fta-server.service").read_text()
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    argv = settings["ExecStart"].split()
    assert argv[0].endswith("/fta")
    args = build_parser().parse_args(argv[1:])
    assert args.command == "server" and not is_loopback(args.host)  # so the auth string is required
    assert settings["RestartPreventExitStatus"] == str(EXIT_CONFIG)
    assert "PREFECT_SERVER_API_AUTH_STRING=" in unit and "postgresql+asyncpg://" in unit


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_database_that_refuses_the_server_ends_fta_server_with_1_and_no_password_shown(
    postgres: PostgresCluster,
) -> None:
    url = postgres.url.replace(postgres.password, "wrong-password")
    done = run_fta(clean_env(), "server", "--database-url", url, "--port", str(free_port()), timeout=240)
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "exited with" in last and "before it was ready" in last and "prefect:***@127.0.0.1" in last, last
    assert "wrong-password" not in done.stdout + done.stderr


# A stand-in for `prefect server start` in the in-process tests of run(): answers /api/ready, then lives until
# stopped (or, with an exit code given, ends by itself once asked for /api/ready once).
STAND_IN = """
import http.server, sys
port, code = int(sys.argv[1]), sys.argv[2]
if code == "silent":  # started, never answering
    import signal
    signal.pause()
class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/api/ready" else 404)
        self.end_headers()
        if code != "run":
            raise SystemExit(int(code))
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Ready).serve_forever()
"""


@dataclasses.dataclass(frozen=True)
class StandIn(CentralServer):
    behaviour: str = "run"

    def command(self) -> list[str]:
        return [sys.executable, "-c", STAND_IN, str(self.port), self.behaviour]


def stand_in(behaviour: str = "run") -> StandIn:
    return StandIn("postgresql+asyncpg://u:hidden@127.0.0.1:1/db", "127.0.0.1", free_port(), AUTH, behaviour)


def test_run_says_ready_and_sigterm_stops_the_server_and_ends_with_0() -> None:
    server, out = stand_in(), io.StringIO()
    pids: list[int] = []
    before = signal.getsignal(signal.SIGTERM)

    def stop_when_ready() -> None:
        wait_until(lambda: "ready in" in out.getvalue(), 30, "the ready line")
        pids.extend(child_pids(os.getpid()))
        os.kill(os.getpid(), signal.SIGTERM)

    stopper = threading.Thread(target=stop_when_ready)
    stopper.start()
    assert run(server, out, ready_timeout=30) == 0
    stopper.join()
    assert "basic auth" in out.getvalue() and "u:***@" in out.getvalue() and "hidden" not in out.getvalue()
    assert port_is_free(server.port)  # the server was stopped and waited for
    assert signal.getsignal(signal.SIGTERM) == before  # the caller's handler is back
    assert pids and all(not alive(pid) for pid in pids)


def test_a_server_that_ends_by_itself_is_a_failure_for_the_service_manager() -> None:
    assert run(stand_in("0"), io.StringIO(), ready_timeout=30) == 1  # ended with 0, unasked: restart it


def test_a_server_that_never_answers_is_stopped_after_the_timeout() -> None:
    server = stand_in("silent")
    with pytest.raises(StartError, match=r"did not answer within 0\.5 s") as failed:
        run(server, io.StringIO(), ready_timeout=0.5)
    assert failed.value.code == 1
    assert not [pid for pid in child_pids(os.getpid()) if alive(pid)]  # stopped, not left behind
