"""ReadinessCheck wired into the StabilityTracker as a flow does: others' writers and locks hold a file back."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from fta.scanner import scan_source
from fta.stability import FileSig, ReadinessCheck, StabilityTracker
from tests.conftest import FakeClock, other_process, write
from tests.test_openfiles import held_open

STABLE = 60.0


def flocked(path: Path) -> AbstractContextManager[None]:
    """Another process holds an exclusive ``flock`` on ``path`` (opened read-only) until the block ends."""
    code = (
        "import fcntl, sys\n"
        "f = open(sys.argv[1], 'rb')\n"
        "fcntl.flock(f, fcntl.LOCK_EX)\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"
    )
    return other_process(code, str(path))


def wired(
    source: Path, clock: FakeClock, check_writers: bool = True, use_lock: bool = False
) -> tuple[StabilityTracker, ReadinessCheck]:
    """A tracker whose lock_check is a ReadinessCheck reading the tracker's own signatures."""
    tracker = StabilityTracker(STABLE, clock=clock, lock_check=lambda rel: check(rel))
    check = ReadinessCheck(
        source,
        lambda rel: o.sig if (o := tracker.get(rel)) else None,
        check_writers=check_writers,
        use_lock=use_lock,
    )
    return tracker, check


def stable_scan(tracker: StabilityTracker, clock: FakeClock, source: Path) -> None:
    """Scan, let the stable time pass, scan again (nothing changed in between)."""
    tracker.update(scan_source(source))
    clock.advance(STABLE)
    tracker.update(scan_source(source))


def ready_now(tracker: StabilityTracker, check: ReadinessCheck) -> list[str]:
    check.refresh()
    return tracker.ready()


def test_file_held_open_for_writing_is_not_ready_until_closed(clock: FakeClock, source: Path) -> None:
    path = write(source / "rec.mxf", b"recording")
    write(source / "other.mxf", b"done")
    tracker, check = wired(source, clock)
    with held_open(path, "ab"):
        stable_scan(tracker, clock, source)
        assert ready_now(tracker, check) == ["other.mxf"]
        assert not tracker.is_stable("rec.mxf")
        clock.advance(10 * STABLE)
        assert ready_now(tracker, check) == ["other.mxf"]
    assert tracker.ready() == ["other.mxf", "rec.mxf"]  # the lease asks the file itself, at once


def test_without_leases_writers_come_from_one_proc_snapshot_per_scan(
    clock: FakeClock, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where no lease can be taken (another user's file, NFS) the /proc snapshot of the scan answers."""
    monkeypatch.setattr("fta.stability.lease_says_open_for_writing", lambda fd: None)
    path = write(source / "rec.mxf", b"recording")
    write(source / "other.mxf", b"done")
    tracker, check = wired(source, clock)
    with held_open(path, "ab"):
        stable_scan(tracker, clock, source)
        assert ready_now(tracker, check) == ["other.mxf"]
    assert tracker.ready() == ["other.mxf"]  # the writers are looked up once per refresh(), not per file
    assert ready_now(tracker, check) == ["other.mxf", "rec.mxf"]


def test_writer_that_opens_a_ready_file_makes_it_not_ready(clock: FakeClock, source: Path) -> None:
    path = write(source / "rec.mxf", b"recording")
    tracker, check = wired(source, clock)
    stable_scan(tracker, clock, source)
    assert ready_now(tracker, check) == ["rec.mxf"]
    with held_open(path, "r+b"):
        assert ready_now(tracker, check) == []


def test_a_reader_does_not_hold_a_file_back(clock: FakeClock, source: Path) -> None:
    path = write(source / "rec.mxf", b"recording")
    tracker, check = wired(source, clock)
    with held_open(path, "rb"):
        stable_scan(tracker, clock, source)
        assert ready_now(tracker, check) == ["rec.mxf"]


def test_writer_check_switched_off_lets_a_held_file_be_ready(clock: FakeClock, source: Path) -> None:
    path = write(source / "rec.mxf", b"recording")
    tracker, check = wired(source, clock, check_writers=False)
    with held_open(path, "ab"):
        stable_scan(tracker, clock, source)
        assert ready_now(tracker, check) == ["rec.mxf"]


def test_writer_check_still_needs_the_stable_time(clock: FakeClock, source: Path) -> None:
    write(source / "rec.mxf", b"recording")
    tracker, check = wired(source, clock)
    tracker.update(scan_source(source))
    clock.advance(STABLE - 1)
    assert ready_now(tracker, check) == []
    clock.advance(1)
    assert ready_now(tracker, check) == ["rec.mxf"]


def test_writer_of_a_replaced_file_does_not_hold_back_the_new_one(clock: FakeClock, source: Path) -> None:
    """The check follows the tracked inode: a writer still holding the old, renamed-over file does not count."""
    path = write(source / "rec.mxf", b"old version")
    tracker, check = wired(source, clock)
    with held_open(path, "ab"):
        write(source / "new.tmp", b"new version").rename(path)
        stable_scan(tracker, clock, source)
        assert ready_now(tracker, check) == ["rec.mxf"]


def test_file_locked_by_another_process_is_not_ready_until_released(clock: FakeClock, source: Path) -> None:
    path = write(source / "rec.mxf", b"recording")
    write(source / "other.mxf", b"done")
    tracker, check = wired(source, clock, check_writers=False, use_lock=True)
    with flocked(path):
        stable_scan(tracker, clock, source)
        assert ready_now(tracker, check) == ["other.mxf"]
        assert not check("rec.mxf")
    assert ready_now(tracker, check) == ["other.mxf", "rec.mxf"]


def test_lock_is_ignored_unless_asked_for(clock: FakeClock, source: Path) -> None:
    path = write(source / "rec.mxf", b"recording")
    tracker, check = wired(source, clock)
    with flocked(path):
        stable_scan(tracker, clock, source)
        assert ready_now(tracker, check) == ["rec.mxf"]


def test_lock_check_fails_for_a_file_that_is_gone(source: Path) -> None:
    check = ReadinessCheck(source, lambda rel: None, check_writers=False, use_lock=True)
    assert not check("missing.mxf")
    write(source / "present.mxf", b"x")
    assert check("present.mxf")


def test_file_unknown_to_the_tracker_passes_the_writer_check(source: Path) -> None:
    path = write(source / "rec.mxf", b"recording")
    known = FileSig.from_stat(path.stat())
    unknown = ReadinessCheck(source, lambda rel: None)
    tracked = ReadinessCheck(source, lambda rel: known)
    with held_open(path, "ab"):
        unknown.refresh()
        tracked.refresh()
        assert unknown("rec.mxf")
        assert not tracked("rec.mxf")
