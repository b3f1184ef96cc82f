"""One transfer loop per source on a machine: the lock, its holder, and its release however the holder ends."""

from __future__ import annotations

import logging
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
