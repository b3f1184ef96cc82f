"""The Prefect server's database on a full disk: files keep moving, and the health check says so within a minute.

A real ``fta up`` keeps its SQLite database in ``data_path``, here a small tmpfs that the test fills. Such a server
still answers every read (``/api/ready`` included) and still takes the task-run events over its websocket, then drops
them; only a write that has to reach the database tells.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from fta.credential import read_credential
from fta.health import REFUSED
from tests.conftest import Mount, write
from tests.prefect_helpers import wait_until
from tests.test_up import free_port, fta
from tests.up_helpers import stop_agent

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

CHUNK = 64 * 1024


def fill_up(folder: Path) -> Path:
    """A file that takes every free block of ``folder``'s filesystem (unbuffered: nothing waits in a buffer)."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * CHUNK)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0
    return filler


def recorded_copies(api_url: str, credential: str, names: list[str]) -> int:
    """How many of these files' copies the server recorded as task runs (what the history lost, for the report)."""
    settings = {PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: credential}
    with temporary_settings(settings), get_client(sync_client=True) as client:
        runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="%full%")), limit=200)
    return len({run.name for run in runs if any(name in run.name for name in names)})


def _up(source: Path, destination: Path, data: Path, tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    options = ["--source", str(source), "--destination", str(destination), "--data-path", str(data)]
    options += ["--server-port", str(port), "--file-stable-time-seconds", "0.5", "--polling-interval-seconds", "0.2"]
    options += ["--log-file-path", str(tmp_path / "agent.log"), "--metrics-port", "0", "--storage-warning-gb", "0"]
    with (tmp_path / "up.out").open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "up", *options], env=env, stdout=sink, stderr=subprocess.STDOUT
        )


def test_a_full_database_disk_is_critical_within_a_minute_while_files_move(
    source: Path, destination: Path, tmp_path: Path, tmpfs: Mount
) -> None:
    data = tmpfs("64m")
    port = free_port()
    api = {key: value for key, value in os.environ.items() if not key.startswith("PREFECT_")}
    # what an operator's check has: the port and data_path of the agent (its credential is read from there)
    api |= {"FTA_SERVER_PORT": str(port), "FTA_DATA_PATH": str(data), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    agent = _up(source, destination, data, tmp_path, port)
    said: list[str] = []

    def wait_for_health(code: int, words: str, timeout: float) -> None:
        try:
            wait_until(lambda: health_says(code, words), timeout=timeout, what=f"exit {code} with {words!r}")
        except AssertionError as exc:  # with what the checks said meanwhile
            raise AssertionError(f"{exc}; the last checks said: {said[-8:]}") from None

    def health_says(code: int, words: str) -> bool:
        begun = time.monotonic()
        answer = fta(api, "health", "-w", "0", "-c", "0")
        said.append(
            f"{begun - started:.1f} s +{time.monotonic() - begun:.1f} s: {answer.returncode} {answer.stdout.strip()}"
        )
        return answer.returncode == code and words in answer.stdout

    try:
        started = time.monotonic()
        write(source / "before.mxf", b"recorded before")
        wait_until(lambda: not (source / "before.mxf").exists(), timeout=180, what="the first move")
        wait_for_health(0, "writes recorded", timeout=180)
        filler = fill_up(data)
        started = time.monotonic()
        names = [f"cam/full{index:02d}.mxf" for index in range(40)]
        for name in names[:10]:  # these may still find a few free pages in the database file
            write(source / name, name.encode() * 1000)
        wait_for_health(2, REFUSED, timeout=60)
        refused_after = time.monotonic() - started
        for name in names[10:]:  # these move while the server surely refuses every write
            write(source / name, name.encode() * 1000)
        # The filesystem decides what is safe: every file moves, also while nothing reaches the history.
        wait_until(
            lambda: all((destination / name).exists() and not (source / name).exists() for name in names),
            timeout=60,
            what="the files to move while the database is full",
        )
        for name in names:
            assert (destination / name).read_bytes() == name.encode() * 1000
        wait_for_health(2, REFUSED, timeout=60)  # and says so for as long as the disk stays full
        filler.unlink()
        freed = time.monotonic()
        wait_for_health(0, "writes recorded", timeout=90)
        print(f"CRITICAL after {refused_after:.1f} s, OK again {time.monotonic() - freed:.1f} s after freeing:", *said)
        credential = read_credential(data)
        assert credential is not None
        recorded = recorded_copies(f"http://127.0.0.1:{port}/api", credential, names[10:])
        print(f"copies made while the server refused writes recorded in the history: {recorded} of {len(names[10:])}")
    finally:
        stop_agent(agent)
    output = (tmp_path / "up.out").read_text(errors="replace")
    assert agent.returncode == 0, output[-3000:]
