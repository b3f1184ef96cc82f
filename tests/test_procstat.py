"""fta.procstat: a process's /proc stat line, read from real processes (one named to look like more fields)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fta.procstat import ProcStat, alive, all_processes, child_pids, parse_stat, read_stat
from tests.prefect_helpers import wait_until

TICKS = os.sysconf("SC_CLK_TCK")
BURN = 0.3  # CPU seconds the child, and its own child before it, spend

# Spends BURN CPU seconds in a child it then reaps (its cutime/cstime), BURN more itself (its utime/stime), says so and
# waits for its stdin to close.
BURNER = f"""
import subprocess, sys, time
burn = "import time\\nstart = time.process_time()\\nwhile time.process_time() - start < {BURN}: pass"
subprocess.run([sys.executable, "-c", burn], check=True)
exec(burn)
print("ready", flush=True)
sys.stdin.read()
"""


def proc5_line(name: bytes, pid: int = 4242) -> bytes:
    """A stat line whose numeric fields hold their own field numbers from proc(5): ppid is 4, utime 14, cstime 17."""
    return b"%d (%s) S " % (pid, name) + b" ".join(b"%d" % number for number in range(4, 53)) + b"\n"


@pytest.fixture
def sleeper(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``sleep`` run from a copy of the binary named ``request.param`` (bytes), and that name as /proc should say it."""
    name = os.fsdecode(request.param)
    shutil.copy2(shutil.which("sleep") or "/bin/sleep", tmp_path / name)
    process = subprocess.Popen([tmp_path / name, "600"])
    yield process, name
    process.kill()
    process.wait()


def test_the_fields_of_a_real_child_and_its_reaped_child() -> None:
    started = time.monotonic()
    with subprocess.Popen([sys.executable, "-c", BURNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as child:
        try:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
            stat = read_stat(child.pid)
            elapsed_ticks = (time.monotonic() - started) * TICKS + 1  # one process's CPU time never exceeds the wall's
            assert stat is not None
            assert (stat.pid, stat.ppid, stat.name) == (child.pid, os.getpid(), Path(sys.executable).name[:15])
            assert stat.state in ("S", "R")
            assert BURN * TICKS * 0.5 <= stat.utime + stat.stime <= elapsed_ticks  # its own time
            assert BURN * TICKS * 0.5 <= stat.cutime + stat.cstime <= elapsed_ticks  # the reaped child's
            assert stat.cpu_ticks == stat.utime + stat.stime + stat.cutime + stat.cstime
            assert child.pid in child_pids(os.getpid())
            assert all_processes()[child.pid].ppid == os.getpid()
            assert alive(child.pid)
        finally:
            child.kill()


def test_a_zombie_is_not_alive_and_a_reaped_process_is_gone() -> None:
    child = subprocess.Popen(["sleep", "600"])
    os.kill(child.pid, signal.SIGKILL)  # not reaped: a zombie until wait()
    wait_until(lambda: getattr(read_stat(child.pid), "state", None) == "Z", timeout=30, what="the zombie")
    assert not alive(child.pid)
    assert child.pid in child_pids(os.getpid())  # still our child until reaped
    child.wait()
    assert read_stat(child.pid) is None
    assert not alive(child.pid)
    assert child.pid not in child_pids(os.getpid())


@pytest.mark.parametrize(
    "sleeper",
    [b"x) Z 1 (y", b") R 1 1 1 (", b"two words", b"new\nline) Z 1", b"\xff) Z 1 (\xfe"],
    indirect=True,
    ids=["fake-state-and-parent", "leading-paren", "spaces", "newline", "not-utf-8"],
)
def test_a_process_named_like_more_fields_is_read_right(sleeper: tuple[subprocess.Popen[bytes], str]) -> None:
    """Split at the first ``)`` or at spaces, these names read as state Z and parent 1, or a shifted line."""
    process, name = sleeper
    wait_until(lambda: getattr(read_stat(process.pid), "name", None) == name, timeout=30, what="the exec")
    stat = read_stat(process.pid)
    assert stat is not None
    assert (stat.pid, stat.ppid) == (process.pid, os.getpid())
    assert stat.state in ("S", "R")
    assert stat.utime + stat.stime <= stat.cpu_ticks < 10 * TICKS  # a sleep: not the numbers of other fields
    assert alive(process.pid)
    assert process.pid in child_pids(os.getpid())


@pytest.mark.parametrize("name", [b"plain", b"a) (b", b") S 999 999 (", b"(((", b")))", b"tab\there", b"\n"])
def test_the_fields_by_their_place_in_proc5(name: bytes) -> None:
    assert parse_stat(proc5_line(name)) == ProcStat(
        pid=4242,
        name=name.decode(),
        state="S",
        ppid=4,
        utime=14,
        stime=15,
        cutime=16,
        cstime=17,
    )


@pytest.mark.parametrize(
    "line",
    [b"", b"\n", b"4242 (name S 4 5", b"4242 name) S 4 5 6", b"4242 (name) S 4 5 6 7", b"pid (name) S" + b" 1" * 50],
    ids=["empty", "newline", "no-close", "no-open", "short", "pid-not-a-number"],
)
def test_a_line_that_is_not_a_stat_line_is_refused(line: bytes) -> None:
    with pytest.raises(ValueError):
        parse_stat(line)


def test_a_pid_that_does_not_exist_reads_as_gone() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert read_stat(child.pid) is None
    assert not alive(child.pid)
