"""Stable-file detection on real files, driven by the fake clock (never sleeping)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fta.scanner import scan_source
from fta.stability import FileSig, StabilityTracker, can_lock_exclusively
from tests.conftest import FakeClock, write

STABLE = 60.0


def sigs(source: Path, *names: str) -> dict[str, FileSig]:
    """Signatures of the named files from a real ``os.stat``."""
    return {name: FileSig.from_stat(os.stat(source / name)) for name in names}


def append(path: Path, data: bytes = b"x") -> None:
    with path.open("ab") as handle:
        handle.write(data)


@pytest.fixture
def tracker(clock: FakeClock) -> StabilityTracker:
    return StabilityTracker(STABLE, clock=clock)


def test_file_sig_from_stat_takes_size_mtime_inode_and_device(source: Path) -> None:
    path = write(source / "a.mxf", b"12345")
    st = os.stat(path)
    sig = FileSig.from_stat(st)
    assert (sig.size, sig.mtime_ns, sig.inode, sig.device) == (5, st.st_mtime_ns, st.st_ino, st.st_dev)


def test_growing_file_stays_unstable(source: Path, clock: FakeClock, tracker: StabilityTracker) -> None:
    path = write(source / "rec.mxf", b"x")
    assert tracker.update(scan_source(source)).discovered == ["rec.mxf"]
    for _ in range(10):  # ten full stable periods, but the file grew before every scan
        clock.advance(STABLE)
        append(path)
        delta = tracker.update(scan_source(source))
        assert delta.changed == ["rec.mxf"]
        assert tracker.ready() == []
        assert not tracker.is_stable("rec.mxf")
    clock.advance(STABLE)  # the writer stopped
    assert tracker.update(scan_source(source)).changed == []
    assert tracker.ready() == ["rec.mxf"]


def test_writer_that_pauses_and_resumes_restarts_the_timer(
    source: Path, clock: FakeClock, tracker: StabilityTracker
) -> None:
    path = write(source / "rec.mxf", b"first half")
    tracker.update(scan_source(source))
    clock.advance(59.5)
    tracker.update(scan_source(source))
    assert tracker.seconds_until_stable("rec.mxf") == 0.5
    assert tracker.ready() == []
    append(path, b" second half")  # the writer resumes just before the file would have been ready
    clock.advance(0.5)
    assert tracker.update(scan_source(source)).changed == ["rec.mxf"]
    assert tracker.ready() == []
    assert tracker.seconds_until_stable("rec.mxf") == STABLE
    clock.advance(59.5)
    tracker.update(scan_source(source))
    assert tracker.ready() == []
    clock.advance(0.5)  # exactly stable_seconds after the last change
    assert tracker.ready() == ["rec.mxf"]


def test_deleted_file_is_forgotten_and_reported_vanished(
    source: Path, clock: FakeClock, tracker: StabilityTracker
) -> None:
    path = write(source / "gone.mxf", b"data")
    write(source / "stays.mxf", b"data")
    tracker.update(scan_source(source))
    clock.advance(STABLE)
    path.unlink()
    delta = tracker.update(scan_source(source))
    assert delta.vanished == ["gone.mxf"]
    assert "gone.mxf" not in tracker
    assert tracker.get("gone.mxf") is None
    assert len(tracker) == 1
    assert tracker.ready() == ["stays.mxf"]
    write(path, b"data")  # a new file with the old name starts from zero
    assert tracker.update(scan_source(source)).discovered == ["gone.mxf"]
    assert tracker.ready() == ["stays.mxf"]


def test_replacement_with_same_name_size_and_mtime_restarts_the_timer(
    source: Path, clock: FakeClock, tracker: StabilityTracker
) -> None:
    path = write(source / "clip.mxf", b"a" * 100)
    tracker.update(sigs(source, "clip.mxf"))
    clock.advance(59.5)
    old = os.stat(path)
    new = write(source / "incoming", b"b" * 100)
    os.utime(new, ns=(old.st_atime_ns, old.st_mtime_ns))
    os.replace(new, path)
    after = FileSig.from_stat(os.stat(path))
    assert (after.size, after.mtime_ns) == (old.st_size, old.st_mtime_ns)
    assert after.inode != old.st_ino
    assert tracker.update(sigs(source, "clip.mxf")).changed == ["clip.mxf"]
    clock.advance(0.5)
    assert tracker.ready() == []
    clock.advance(59.5)
    assert tracker.ready() == ["clip.mxf"]


def test_zero_byte_file_is_never_ready(source: Path, clock: FakeClock) -> None:
    consulted: list[str] = []

    def lock_check(rel: str) -> bool:
        consulted.append(rel)
        return True

    tracker = StabilityTracker(STABLE, clock=clock, lock_check=lock_check)
    write(source / "empty.mxf", b"")
    tracker.update(scan_source(source))
    for _ in range(5):
        clock.advance(10**6)
        tracker.update(scan_source(source))
        assert tracker.ready() == []
        assert not tracker.is_stable("empty.mxf")
    assert tracker.seconds_until_stable("empty.mxf") is None
    assert consulted == []
    append(source / "empty.mxf")  # once it has content, the timer starts from that change
    tracker.update(scan_source(source))
    assert tracker.ready() == []
    clock.advance(STABLE)
    assert tracker.ready() == ["empty.mxf"]


def test_mtime_only_change_restarts_the_timer(source: Path, clock: FakeClock, tracker: StabilityTracker) -> None:
    path = write(source / "clip.mxf", b"content")
    tracker.update(sigs(source, "clip.mxf"))
    clock.advance(59.5)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert tracker.update(sigs(source, "clip.mxf")).changed == ["clip.mxf"]
    clock.advance(0.5)
    assert tracker.ready() == []
    assert tracker.seconds_until_stable("clip.mxf") == 59.5


def test_ready_exactly_at_the_threshold(source: Path, clock: FakeClock, tracker: StabilityTracker) -> None:
    write(source / "clip.mxf", b"content")
    tracker.update(sigs(source, "clip.mxf"))
    clock.advance(STABLE - 0.001)
    assert not tracker.is_stable("clip.mxf")
    clock.now = 1000.0 + STABLE
    assert tracker.is_stable("clip.mxf")
    assert tracker.seconds_until_stable("clip.mxf") == 0.0


def test_lock_check_is_consulted_only_and_exactly_when_otherwise_stable(source: Path, clock: FakeClock) -> None:
    consulted: list[str] = []
    answer = [False]

    def lock_check(rel: str) -> bool:
        consulted.append(rel)
        return answer[0]

    tracker = StabilityTracker(STABLE, clock=clock, lock_check=lock_check)
    write(source / "a.mxf", b"a")
    write(source / "empty.mxf", b"")
    tracker.update(scan_source(source))
    clock.advance(STABLE - 0.5)
    assert tracker.ready() == []
    assert consulted == []  # not yet stable: the lock is not looked at
    clock.advance(0.5)
    assert tracker.ready() == []  # stable by time, but the lock says no
    assert consulted == ["a.mxf"]
    answer[0] = True
    assert tracker.ready() == ["a.mxf"]
    assert consulted == ["a.mxf", "a.mxf"]
    append(source / "a.mxf")
    tracker.update(scan_source(source))
    assert tracker.ready() == []
    assert consulted == ["a.mxf", "a.mxf"]  # changed again: not consulted


def test_can_lock_exclusively(source: Path) -> None:
    path = write(source / "clip.mxf", b"data")
    assert can_lock_exclusively(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert not can_lock_exclusively(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        assert can_lock_exclusively(path)
        fcntl.flock(fd, fcntl.LOCK_SH)  # a reader's shared lock also blocks an exclusive one
        assert not can_lock_exclusively(path)
    finally:
        os.close(fd)
    assert can_lock_exclusively(path)
    assert not can_lock_exclusively(source / "missing.mxf")


def test_can_lock_exclusively_does_not_follow_symlinks(source: Path) -> None:
    target = write(source / "clip.mxf", b"data")
    (source / "link.mxf").symlink_to(target)
    assert not can_lock_exclusively(source / "link.mxf")


def test_can_lock_exclusively_below_a_root_goes_through_folder_handles(source: Path, tmp_path: Path) -> None:
    path = write(source / "cam1" / "day1" / "clip.mxf", b"data")
    rel = Path("cam1/day1/clip.mxf")
    assert can_lock_exclusively(rel, source)
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert not can_lock_exclusively(rel, source)  # the very file: its lock is seen
    finally:
        os.close(fd)
    outside = write(tmp_path / "outside" / "day1" / "clip.mxf", b"not ours")
    (source / "cam1").rename(source / "cam1-aside")
    (source / "cam1").symlink_to(outside.parent.parent, target_is_directory=True)
    assert not can_lock_exclusively(rel, source)  # the same path through a symlinked folder is never opened


@pytest.fixture
def locked(source: Path) -> Iterator[tuple[Path, int]]:
    path = write(source / "clip.mxf", b"data")
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield path, fd
    os.close(fd)


def test_tracker_with_real_lock_check(source: Path, clock: FakeClock, locked: tuple[Path, int]) -> None:
    path, fd = locked
    tracker = StabilityTracker(STABLE, clock=clock, lock_check=lambda rel: can_lock_exclusively(source / rel))
    tracker.update(scan_source(source))
    clock.advance(STABLE)
    assert tracker.ready() == []
    fcntl.flock(fd, fcntl.LOCK_UN)
    assert tracker.ready() == [path.name]


def test_seconds_until_stable(source: Path, clock: FakeClock, tracker: StabilityTracker) -> None:
    assert tracker.seconds_until_stable("clip.mxf") is None
    write(source / "clip.mxf", b"data")
    tracker.update(scan_source(source))
    assert tracker.seconds_until_stable("clip.mxf") == STABLE
    clock.advance(20)
    assert tracker.seconds_until_stable("clip.mxf") == 40
    clock.advance(100)
    assert tracker.seconds_until_stable("clip.mxf") == 0.0


def test_restart_starts_the_timer_again(source: Path, clock: FakeClock, tracker: StabilityTracker) -> None:
    write(source / "clip.mxf", b"data")
    tracker.update(scan_source(source))
    clock.advance(STABLE + 5)
    assert tracker.ready() == ["clip.mxf"]
    tracker.restart("clip.mxf")
    assert tracker.ready() == []
    assert tracker.seconds_until_stable("clip.mxf") == STABLE
    tracker.update(scan_source(source))  # an unchanged scan does not undo the restart
    clock.advance(STABLE - 0.5)
    assert tracker.ready() == []
    clock.advance(0.5)
    assert tracker.ready() == ["clip.mxf"]
    tracker.restart("unknown.mxf")
    assert "unknown.mxf" not in tracker


def test_forget_drops_the_observation(source: Path, clock: FakeClock, tracker: StabilityTracker) -> None:
    write(source / "clip.mxf", b"data")
    tracker.update(scan_source(source))
    clock.advance(STABLE)
    tracker.forget("clip.mxf")
    tracker.forget("unknown.mxf")
    assert "clip.mxf" not in tracker
    assert len(tracker) == 0
    assert tracker.ready() == []
    assert tracker.update(scan_source(source)).discovered == ["clip.mxf"]  # seen again: a fresh timer
    assert tracker.ready() == []
    first_seen = tracker.get("clip.mxf")
    assert first_seen is not None and first_seen.first_seen == clock.now


def test_ready_limits_to_candidates_in_path_order(source: Path, clock: FakeClock, tracker: StabilityTracker) -> None:
    for name in ("c.mxf", "a.mxf", "sub/b.mxf", "late.mxf"):
        write(source / name, b"data")
    tracker.update(sigs(source, "c.mxf", "a.mxf", "sub/b.mxf"))
    clock.advance(30)
    tracker.update(sigs(source, "c.mxf", "a.mxf", "sub/b.mxf", "late.mxf"))
    clock.advance(30)
    assert tracker.ready() == ["a.mxf", "c.mxf", "sub/b.mxf"]
    assert tracker.ready(["sub/b.mxf", "late.mxf", "never-seen.mxf", "c.mxf"]) == ["c.mxf", "sub/b.mxf"]
    assert tracker.ready([]) == []


def test_next_deadline_is_the_earliest_stable_time_still_ahead(clock: FakeClock, tracker: StabilityTracker) -> None:
    tracker.update({"a": FileSig(1, 1, 1), "empty": FileSig(0, 1, 2)})
    clock.advance(10)
    tracker.update({"a": FileSig(1, 1, 1), "empty": FileSig(0, 1, 2), "b": FileSig(5, 1, 3)})
    assert tracker.next_deadline(["a", "b", "empty", "unknown"]) == clock() - 10 + STABLE
    assert tracker.next_deadline(["b"]) == clock() + STABLE
    clock.advance(STABLE - 10)
    assert tracker.next_deadline(["a", "b"]) == clock() + 10  # a's deadline has passed: settled by a scan
    assert tracker.next_deadline(["empty"]) is None  # an empty file never becomes ready
