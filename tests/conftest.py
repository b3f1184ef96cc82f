"""Shared fixtures: isolated settings on a real filesystem, a controllable clock, tmpfs mounts."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fta.settings import Settings, load_settings
from fta.stop_switch import StopSwitch


class FakeClock:
    """A monotonic clock that only moves when a test says so."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No FTA_ variable or .env file of the machine leaks into a test; each test runs in its own folder."""
    for key in list(os.environ):
        if key.upper().startswith("FTA_"):
            monkeypatch.delenv(key)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


@pytest.fixture(autouse=True)
def _senders_on_the_current_server() -> None:
    """Each test's events and logs go to the server of that test.

    Prefect keeps one event sender and one log sender per process, connected to the API URL of their first record.
    Without this, a test on another server than an earlier test of the same worker would send its task runs' states
    to that earlier server, stopped by then: about a minute lost per event, and task runs never recorded.
    """
    from flows.prefect_internals import send_queued_records

    send_queued_records(timeout=5)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def stop() -> Iterator[StopSwitch]:
    """The stop switch of the test's run (``run_in_process(..., stop=stop)``), pulled at the end: a test that fails
    half-way still stops its watch, which would otherwise go on in the background."""
    switch = StopSwitch()
    yield switch
    switch.request()


DEEP = [f"{level:02d}" + "d" * 248 for level in range(20)]  # 20 folders of 250 bytes: past PATH_MAX (4,096)


def make_deep_folders(root: Path, names: list[str]) -> tuple[int, set[int]]:
    """Make ``root/names...`` one name at a time (the path is longer than the kernel takes at once): the deepest
    folder's handle (the caller closes it) and the inodes of ``root`` and of every folder made."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    inodes = {os.fstat(fd).st_ino}
    try:
        for name in names:
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            inodes.add(os.fstat(fd).st_ino)
    except BaseException:
        os.close(fd)
        raise
    return fd, inodes


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A folder (0755) that another user can reach: pytest keeps its own temp tree private (0700), and resets it
    to that whenever a worker process makes its part of the tree."""
    folder = Path(tempfile.mkdtemp(prefix="fta-test-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source"
    path.mkdir()
    return path


@pytest.fixture
def destination(tmp_path: Path) -> Path:
    path = tmp_path / "destination"
    path.mkdir()
    return path


MakeSettings = Callable[..., Settings]
Mount = Callable[[str], Path]


@pytest.fixture
def make_settings(source: Path, destination: Path) -> MakeSettings:
    """Settings for the test's source/destination folders, with overrides; no log file."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "source_path": source,
            "destination_path": destination,
            "log_file_path": "",
        }
        values.update(overrides)
        return load_settings(values, env_file=None)

    return make


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def mount_tmpfs(point: Path, size: str) -> None:
    """Mount a tmpfs at ``point`` (root only); skips the test with the reason where that is not allowed."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Mount small tmpfs filesystems; every mount on those points is lazily unmounted afterwards."""
    points: list[Path] = []

    def mount(size: str) -> Path:
        point = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
        point.mkdir()
        mount_tmpfs(point, size)
        points.append(point)
        return point

    yield mount
    for point in points:
        while subprocess.run(["umount", "-l", str(point)], capture_output=True).returncode == 0:
            pass


def unmount(point: Path) -> None:
    subprocess.run(["umount", "-l", str(point)], check=True, capture_output=True)


# Tests that start a Prefect server keep it offline and quiet.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")


# Code for ``other_process``: another run on this machine holds the source given as its argument.
HOLD_THE_SOURCE = """
import sys
from pathlib import Path
from fta.sourcelock import SourceLock
lock = SourceLock(Path(sys.argv[1]))
assert lock.acquire()
print("ready", flush=True)
sys.stdin.read()
lock.release()
"""


@contextmanager
def other_process(code: str, *args: str) -> Iterator[None]:
    """Runs ``code`` (which prints 'ready' once set up, then reads stdin) in another process until the block ends."""
    with subprocess.Popen(
        [sys.executable, "-c", code, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        try:
            assert proc.stdout.readline().strip() == "ready"
            yield
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def fta_log() -> Iterator[list[str]]:
    """Messages of the agent's own loggers during the test."""
    lines: list[str] = []
    handler = _Lines(lines)
    logger = logging.getLogger("fta")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(previous)


# A branch-coverage floor for each package, checked once the run has measured them (see the module).
pytest_plugins = ["tests.coverage_floors", "tests.conftest_postgres"]
