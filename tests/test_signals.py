"""A signal to the whole process group stops everything cleanly: Ctrl-C in a terminal, a group-wide stop.

The agent is started in a process group of its own, as a terminal or a service manager starts it, and the test
signals the group (``os.killpg``), never a single process. Then: exit 0 within a deadline, no process left, no
traceback, and the watch run Completed in the API, read from a server started afterwards on the kept database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.local_server import LocalServer
from fta.procstat import alive
from tests.prefect_helpers import wait_until
from tests.up_helpers import clean_env, flow_runs, free_port, processes_below, start_up, up_options

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

GROUP_SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]
STOP_DEADLINE = 90.0  # the hang this guards against lasted 3.5 minutes


def _stop_group(process: subprocess.Popen[bytes], signum: signal.Signals, output: Path) -> tuple[list[int], float]:
    """Signal the process group; its processes (taken just before) and how long the stop took."""
    below = processes_below(process.pid)
    started = time.monotonic()
    os.killpg(process.pid, signum)  # start_new_session: the group's id is the leader's pid
    try:
        process.wait(STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        for pid in processes_below(process.pid):
            os.kill(pid, signal.SIGKILL)
        said = output.read_text(errors="replace")[-3000:]
        raise AssertionError(f"not stopped within {STOP_DEADLINE} s:\n{said}") from None
    return below, time.monotonic() - started


def _abandon(process: subprocess.Popen[bytes]) -> None:
    """A test that failed before its signal: stop the agent (it stops its own server), kill what is left."""
    below = processes_below(process.pid)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(120)
    except subprocess.TimeoutExpired:
        process.kill()
    for pid in below:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def _ended_cleanly(process: subprocess.Popen[bytes], below: list[int], output: Path) -> str:
    said = output.read_text(errors="replace")
    assert process.returncode == 0, said[-3000:]
    assert "Traceback" not in said, said[-3000:]
    wait_until(lambda: not [pid for pid in below if alive(pid)], timeout=10, what="every process to end")
    return said


def _blocks_sigint(pid: int) -> bool:
    """Is SIGINT in the process's blocked mask (``SigBlk`` in /proc/PID/status)?"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))
    return False


@pytest.fixture
def reader() -> Iterator[list[LocalServer]]:
    """Servers a test starts afterwards to read a kept database; stopped at the end."""
    servers: list[LocalServer] = []
    yield servers
    for server in servers:
        server.stop()


def _watch_states(server: LocalServer, readers: list[LocalServer]) -> list[str]:
    readers.append(server)
    server.start(timeout=180)
    return [run["state"]["type"] for run in flow_runs(server.api_url, server.credential, "watch-folder")]


@pytest.mark.parametrize("signum", GROUP_SIGNALS)
def test_fta_up_stops_cleanly_on_a_group_signal(
    signum: signal.Signals, source: Path, destination: Path, tmp_path: Path, reader: list[LocalServer]
) -> None:
    data = tmp_path / "data"
    output = tmp_path / "up.out"
    agent = start_up(up_options(source, destination, data, free_port()), output)
    try:
        wait_until(lambda: "agent started" in output.read_text(errors="replace"), timeout=240, what="the watch run")
        server = [pid for pid in processes_below(agent.pid) if os.getpgid(pid) != agent.pid]
        assert server  # the server runs in a session of its own: the group signal does not reach it
        runs = [pid for pid in processes_below(agent.pid) if os.getpgid(pid) == agent.pid]
        assert runs and all(_blocks_sigint(pid) for pid in runs)  # fta up stops them itself, in order
    except BaseException:
        _abandon(agent)
        raise
    below, _ = _stop_group(agent, signum, output)
    said = _ended_cleanly(agent, below, output)
    assert set(server) <= set(below)
    assert "Finished in state Completed()" in said, said[-3000:]
    # The state the API kept (the run, not only its log line): read from the kept data_path, on another port.
    assert _watch_states(LocalServer(data, free_port()), reader) == ["COMPLETED"]


@pytest.mark.parametrize("signum", GROUP_SIGNALS)
def test_fta_watch_without_an_api_url_stops_cleanly_on_a_group_signal(
    signum: signal.Signals,
    source: Path,
    destination: Path,
    tmp_path: Path,
    reader: list[LocalServer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its temporary server is not in the group either, so the run records its end instead of retrying for minutes."""
    home = tmp_path / "home"  # Prefect's home, where the temporary server keeps its database
    output = tmp_path / "watch.out"
    options = ["--source", str(source), "--destination", str(destination), "--file-stable-time-seconds", "0.5"]
    options += ["--polling-interval-seconds", "0.2", "--log-file-path", "", "--metrics-port", "0"]
    agent = start_up(options, output, clean_env(PREFECT_HOME=str(home)), command="watch")
    try:
        wait_until(lambda: "agent started" in output.read_text(errors="replace"), timeout=240, what="the watch")
        outside = [pid for pid in processes_below(agent.pid) if os.getpgid(pid) != agent.pid]
        assert outside  # its server: a group signal does not reach it
    except BaseException:
        _abandon(agent)
        raise
    below, _ = _stop_group(agent, signum, output)
    said = _ended_cleanly(agent, below, output)
    assert "Error logging to API" not in said, said[-3000:]  # the server outlived the run: its last lines arrived
    monkeypatch.setenv("PREFECT_HOME", str(home))  # the reader opens the same database
    assert _watch_states(LocalServer(None, free_port()), reader) == ["COMPLETED"]
