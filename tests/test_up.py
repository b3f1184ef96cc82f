"""``fta up`` as an operator runs it: a real local Prefect server, the served deployments, a clean stop."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fta.credential import CREDENTIAL_FILE
from fta.procstat import child_pids
from tests.conftest import write
from tests.prefect_helpers import wait_until
from tests.up_helpers import call

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_settings(port: int, credential: str) -> dict[str, Any]:
    status, settings = call(f"http://127.0.0.1:{port}/api/admin/settings", credential)
    assert status == 200
    return dict(settings)


def fta(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *argv], env=env, capture_output=True, text=True, timeout=120
    )


def test_up_serves_watches_reports_and_stops(source: Path, destination: Path, tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    data = tmp_path / "data"
    options = ["--source", str(source), "--destination", str(destination), "--data-path", str(data)]
    options += ["--server-port", str(port), "--file-stable-time-seconds", "0.5", "--polling-interval-seconds", "0.2"]
    options += ["--log-file-path", str(tmp_path / "agent.log"), "--storage-warning-gb", "0", "--agent-name", "up-test"]
    with subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "up", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    ) as agent:
        try:
            write(source / "cam" / "a.mxf", b"recorded")
            wait_until(  # the rename into place comes before the source's deletion: wait for both
                lambda: (destination / "cam" / "a.mxf").exists() and not (source / "cam" / "a.mxf").exists(),
                timeout=240,
                what="the watch run to move a file",
            )
            assert (data / "prefect" / "prefect.db").exists()  # the server keeps its database in data_path
            credential = (data / CREDENTIAL_FILE).read_text().strip()
            api = {**env, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api", "PREFECT_API_AUTH_STRING": credential}
            services = server_settings(port, credential)["server"]["services"]
            for service in ("task_run_recorder", "event_persister"):  # the run history keeps up with bursts
                assert services[service]["batch_size"] == 500
                assert services[service]["flush_interval"] == 1
            assert set(services["db_vacuum"]["enabled"]) == {"events", "flow_runs"}  # ended runs go after 90 days
            wait_until(
                lambda: fta(api, "storage", "--json", "--agent", "up-test").returncode == 0,
                timeout=90,
                what="a storage report",
            )
            completed: list[list[str]] = []

            def status_lists_the_move() -> bool:  # the status artifact is published from a thread of its own
                status = json.loads(fta(api, "status", "--json", "--agent", "up-test").stdout)
                completed.append([done["file"] for done in status["recentlyCompleted"]])
                return completed[-1] != []

            wait_until(status_lists_the_move, timeout=60, what="the status to list the move")
            assert completed[-1] == ["cam/a.mxf"]
            health = fta(api, "health", "-w", "0", "-c", "0", "--agent", "up-test")
            assert health.returncode == 0, health.stdout
            assert health.stdout.startswith("FTA OK - ")
            write(source / "b.mxf", b"manual")
            run = subprocess.run(
                [sys.executable, "-m", "prefect", "deployment", "run", "transfer-once/up-test"],
                env=api,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert run.returncode == 0, run.stderr
            wait_until(lambda: (destination / "b.mxf").exists(), timeout=120, what="the manual run or the watch")
            runs = [pid for pid in child_pids(agent.pid) if " prefect server start " not in _cmdline(pid)]
        finally:
            agent.send_signal(signal.SIGTERM)
            output, _ = agent.communicate(timeout=120)
    said = output.decode(errors="replace")
    assert runs, said[-5000:]  # the watch run's process
    assert agent.returncode == 0, said[-3000:]
    assert "SIGTERM received, stopping" in said, said[-3000:]  # this process's own log lines reach the console
    assert "first storage report not started" not in said, said[-3000:]
    assert "Traceback" not in said and "never awaited" not in said, said[-3000:]  # a stop is not an error
    assert not [pid for pid in runs if Path(f"/proc/{pid}").exists()]  # flow-run processes stopped too
    watch = re.search(r"fta\.up - watch run (\S+) started", said)
    assert watch is not None, said[-3000:]
    # The watch run ended its loop and said so: not killed (it stayed Running), not Crashed (the alert).
    assert f"Flow run '{watch.group(1)}' - Finished in state Completed()" in said, said[-3000:]
    with socket.socket() as knock, pytest.raises(ConnectionRefusedError):
        knock.connect(("127.0.0.1", port))  # no server left behind


def _start_up(source: Path, destination: Path, tmp_path: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """``fta up`` with its output in a file, which the test reads while it runs."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    options = ["--source", str(source), "--destination", str(destination), "--data-path", str(tmp_path / "data")]
    options += ["--server-port", str(port), "--file-stable-time-seconds", "0.5", "--polling-interval-seconds", "0.2"]
    options += ["--log-file-path", "", "--metrics-port", "0"]
    output = tmp_path / "up.out"
    with output.open("wb") as sink:
        agent = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "up", *options], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    return agent, output


def _server_pids(agent: subprocess.Popen[bytes]) -> list[int]:
    return [pid for pid in child_pids(agent.pid) if "server start" in _cmdline(pid)]


def _ended_cleanly(agent: subprocess.Popen[bytes], output: Path, port: int, server: list[int]) -> None:
    try:
        agent.wait(120)
    finally:
        if agent.poll() is None:
            agent.kill()
    said = output.read_text(errors="replace")
    assert agent.returncode == 0, said[-3000:]
    assert "Traceback" not in said, said[-3000:]
    assert server and not [pid for pid in server if Path(f"/proc/{pid}").exists()], said[-3000:]  # no server left
    with socket.socket() as knock, pytest.raises(ConnectionRefusedError):
        knock.connect(("127.0.0.1", port))


def test_sigterm_while_the_server_starts_leaves_nothing_behind(source: Path, destination: Path, tmp_path: Path) -> None:
    """systemd may stop the agent at any moment, also while its Prefect server is still starting."""
    port = free_port()
    agent, output = _start_up(source, destination, tmp_path, port)
    server: list[int] = []

    def server_started() -> bool:
        server[:] = _server_pids(agent)
        return bool(server)

    try:
        wait_until(server_started, what="the server process")
    finally:
        agent.send_signal(signal.SIGTERM)
    _ended_cleanly(agent, output, port, server)


def test_a_second_sigterm_does_not_cut_the_stop_short(source: Path, destination: Path, tmp_path: Path) -> None:
    """systemd or an impatient operator signals twice: the first stop still ends the runs and the server."""
    port = free_port()
    agent, output = _start_up(source, destination, tmp_path, port)
    server: list[int] = []
    try:
        wait_until(lambda: "agent started" in output.read_text(errors="replace"), timeout=240, what="the watch run")
        server = _server_pids(agent)
    finally:
        agent.send_signal(signal.SIGTERM)
    wait_until(lambda: "SIGTERM received, stopping" in output.read_text(errors="replace"), what="the stop to begin")
    agent.send_signal(signal.SIGTERM)
    _ended_cleanly(agent, output, port, server)
