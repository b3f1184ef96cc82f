"""Faults and restarts: nothing lost, nothing duplicated, nothing half-written left behind."""

from __future__ import annotations

import functools
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from fta.copier import hash_file
from fta.paths import temp_owner
from tests.conftest import write
from tests.prefect_helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The agent as a separate process, each write slowed down so that a kill often lands in the middle of a copy.
SLOW_AGENT = """
import sys, time
import fta.copier as copier
real = copier.Copier._write
def slow(self, fd, data):
    real(self, fd, data)
    time.sleep(0.02)
copier.Copier._write = slow
from fta.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL

    with prefect_test_harness(server_startup_timeout=60):
        yield str(PREFECT_API_URL.value())


def agent(command: str, source: Path, destination: Path, api: str) -> subprocess.Popen[bytes]:
    options = ["--source", str(source), "--destination", str(destination), "--file-stable-time-seconds", "0.2"]
    options += ["--polling-interval-seconds", "0.1", "--log-file-path", "", "--metrics-port", "0"]
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_AGENT, command, *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.timeout(900)
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(source: Path, destination: Path, api_url: str) -> None:
    rng = random.Random(20261125)
    originals: dict[str, str] = {}
    for i in range(200):
        path = write(source / f"cam{i % 5}" / f"clip{i:03d}.mxf", rng.randbytes(rng.randint(1, 400_000)))
        originals[path.relative_to(source).as_posix()] = hash_file(path)
    kills_mid_copy = 0

    def moved() -> int:
        return sum(1 for p in destination.rglob("*.mxf") if p.is_file() and not temp_owner(p.name))

    def reached(count: int) -> bool:
        return moved() >= count

    for _ in range(20):
        process = agent("watch", source, destination, api_url)
        # Pull the plug after a random number of further files arrived: often in the middle of the next copy.
        target = min(len(originals), moved() + rng.randint(1, 12))
        wait_until(functools.partial(reached, target), timeout=120, what=f"{target} files moved")
        kills_mid_copy += any(temp_owner(p.name) for p in destination.rglob("*"))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    final = agent("once", source, destination, api_url)
    assert final.wait(300) == 0
    arrived = {p.relative_to(destination).as_posix(): hash_file(p) for p in destination.rglob("*") if p.is_file()}
    left = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    assert left == set()  # everything moved in the end
    assert arrived == originals  # every byte verified at the destination, no _1 duplicate, no temp file
    print(
        f"\n200 files, 20 kills (-9), {kills_mid_copy} of them with a copy under way; "
        f"{sum(p.stat().st_size for p in destination.rglob('*') if p.is_file())} bytes compared"
    )
