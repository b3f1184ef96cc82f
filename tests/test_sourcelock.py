"""One transfer loop per source on a machine: the lock, its holder, and its release however the holder ends."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fta.sourcelock import SourceLock
from tests.conftest import HOLD_THE_SOURCE, other_process


def test_a_second_loop_on_the_same_source_is_kept_out_until_the_first_lets_go(source: Path) -> None:
    first, second = SourceLock(source), SourceLock(source)
    assert first.acquire() and first.held
    assert not second.acquire() and not second.held
    assert second.holder().startswith("pid ")
    first.release()
    assert second.acquire()
    second.release()


def test_another_source_has_a_lock_of_its_own(source: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-source"
    other.mkdir()
    first, second = SourceLock(source), SourceLock(other)
    assert first.acquire() and second.acquire()
    first.release()
    second.release()


def test_held_by_another_process_which_is_named(source: Path) -> None:
    lock = SourceLock(source)
    with other_process(HOLD_THE_SOURCE, str(source)):
        assert not lock.acquire()
        assert lock.holder().startswith("pid ") and str(source) not in lock.holder()
    assert lock.acquire()  # the holder ended: the kernel let go of its lock
    lock.release()


def test_a_killed_holder_leaves_no_stale_lock(source: Path) -> None:
    lock = SourceLock(source)
    with subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_SOURCE, str(source)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        assert not lock.acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    assert lock.acquire()
    lock.release()


def test_where_no_lock_can_be_had_the_loop_goes_on_and_says_so(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = SourceLock(source, folder=tmp_path / "no-such-folder")
    with caplog.at_level(logging.WARNING, logger="fta.sourcelock"):
        assert lock.acquire()
    assert lock.unlocked and not lock.held
    assert any("no lock for" in record.getMessage() for record in caplog.records)
    lock.release()
    assert not lock.unlocked


def test_the_holder_of_an_unreadable_lock_is_unknown(source: Path, tmp_path: Path) -> None:
    assert SourceLock(source, folder=tmp_path / "no-such-folder").holder() == "unknown"


def test_a_run_that_locked_a_file_its_holder_just_removed_takes_the_new_one(
    source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder removes the lock file as it lets go; a run that had opened the old file must not hold that one."""
    first = SourceLock(source)
    assert first.acquire()
    stale = os.open(first.path, os.O_RDONLY)  # a racer opened the file before its holder let go
    first.release()
    assert not first.path.exists()  # no lock file left behind
    holder = SourceLock(source)
    assert holder.acquire()  # the file that is there now
    racer = SourceLock(source)
    real_open = SourceLock._open
    opened: list[int] = []

    def stale_first(self: SourceLock) -> int:
        opened.append(1)
        return stale if len(opened) == 1 else real_open(self)

    monkeypatch.setattr(SourceLock, "_open", stale_first)
    assert not racer.acquire()  # its flock on the removed file succeeded, but that file is not the lock any more
    assert len(opened) == 2
    holder.release()


CHECK_AS_ANOTHER_USER = """
import sys
from pathlib import Path
from fta.sourcelock import SourceLock
lock = SourceLock(Path(sys.argv[1]))
print("held" if lock.acquire() and lock.held else ("unlocked" if lock.unlocked else "busy"))
"""


def test_the_runs_of_different_users_keep_each_other_out(source: Path) -> None:
    """The service's run and an operator's run as another user share the lock (it used to be skipped with EACCES)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]

    def nobody_tries() -> str:
        done = subprocess.run(
            [*as_nobody, "-c", CHECK_AS_ANOTHER_USER, str(source)], capture_output=True, text=True, cwd="/", timeout=60
        )
        if done.returncode != 0:
            pytest.skip(f"nobody cannot run this Python or read the project: {done.stderr[-300:]}")
        return done.stdout.strip()

    mine = SourceLock(source)
    assert mine.acquire()
    try:
        assert nobody_tries() == "busy"
        mine.path.chmod(0o644)  # a lock file another user may not write to: locked read-only all the same
        assert nobody_tries() == "busy"
    finally:
        mine.release()
    assert nobody_tries() == "held"  # and it ended without letting go, as a killed run would
    assert mine.acquire()  # the file it left is taken over
    mine.release()
