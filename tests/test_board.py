"""The transfer board: file lifecycle, the seed's JSON shapes and thread safety, on real scans and the fake clock."""

from __future__ import annotations

import os
import sys
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fta.board import FileStatus, TransferBoard
from fta.scanner import scan_source
from fta.stability import FileSig, StabilityTracker
from tests.conftest import FakeClock, write

STABLE = 60.0
RETRY = 60.0  # global_retry_delay_seconds: the pace of an unexplained wait for room
NOW = datetime(2025, 10, 8, 10, 30, tzinfo=UTC)
NOW_Z = "2025-10-08T10:30:00Z"


class WallClock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Harness:
    """A board on a real tracker, the fake monotonic clock and a controllable wall clock, fed real scans."""

    def __init__(self, source: Path, clock: FakeClock) -> None:
        self.source, self.clock, self.wall = source, clock, WallClock()
        self.board = TransferBoard(StabilityTracker(STABLE, clock=clock), now=self.wall, recent=3, clock=clock)

    def scan(self, advance: float = 0.0) -> list[str]:
        self.clock.advance(advance)
        return self.board.observe(scan_source(self.source))

    def make_ready(self, *names: str) -> None:
        for name in names:
            write(self.source / name, b"payload-" + name.encode())
        assert self.scan() == []
        assert self.scan(STABLE) == sorted(names)

    def append(self, rel: str, data: bytes = b"more") -> None:
        with (self.source / rel).open("ab") as handle:
            handle.write(data)

    def row(self, rel: str) -> dict[str, Any]:
        rows = [r for r in self.board.files_json()["files"] if r["file_path"] == rel]
        assert len(rows) == 1, rows
        found: dict[str, Any] = rows[0]
        return found

    def status(self, rel: str) -> str:
        return str(self.row(rel)["status"])

    def failed_files(self) -> list[str]:
        return [f["file"] for f in self.board.status_json()["failedFiles"]]


@pytest.fixture
def h(source: Path, clock: FakeClock) -> Harness:
    return Harness(source, clock)


def test_new_file_is_discovered_with_its_size_and_write_time(h: Harness) -> None:
    path = write(h.source / "a.mxf", b"12345")
    os.utime(path, ns=(0, int(NOW.timestamp() - 3600) * 10**9))
    assert h.scan() == []
    assert h.board.files_json() == {
        "files": [
            {
                "file_path": "a.mxf",
                "status": "Discovered",
                "file_size": 5,
                "last_write_time": "2025-10-08T09:30:00Z",
                "copy_progress": 0.0,
                "retry_count": 0,
                "error_message": None,
            }
        ]
    }
    assert h.board.ready_files() == []
    assert h.board.sig("a.mxf") == FileSig.from_stat(path.stat())


def test_file_is_returned_once_after_the_stable_time(h: Harness) -> None:
    for name, data in [("b.mxf", b"b"), ("a.mxf", b"a"), ("sub/c.mxf", b"c"), ("empty.mxf", b"")]:
        write(h.source / name, data)
    assert h.scan() == []
    assert h.scan(STABLE - 1) == []
    assert h.scan(1) == ["a.mxf", "b.mxf", "sub/c.mxf"]
    assert h.status("a.mxf") == "Ready"
    assert h.status("empty.mxf") == "Discovered"  # an empty file is never finished
    assert h.scan(STABLE) == []
    assert h.board.ready_files() == ["a.mxf", "b.mxf", "sub/c.mxf"]


def test_a_change_before_it_is_stable_restarts_the_timer(h: Harness) -> None:
    write(h.source / "a.mxf", b"a")
    h.scan()
    h.clock.advance(STABLE / 2)
    h.append("a.mxf")
    assert h.scan() == []
    assert h.row("a.mxf")["file_size"] == 5
    assert h.scan(STABLE / 2) == []
    assert h.scan(STABLE / 2) == ["a.mxf"]


def test_copy_lifecycle_through_completion(h: Harness) -> None:
    h.make_ready("a.mxf", "b.mxf")
    h.board.queued("a.mxf")
    assert h.status("a.mxf") == "InQueue"
    assert h.board.ready_files() == ["b.mxf"]
    h.board.copying("a.mxf", attempt=2)
    assert (h.status("a.mxf"), h.row("a.mxf")["retry_count"]) == ("Copying", 1)
    h.board.progress("a.mxf", 50, 200)
    assert h.row("a.mxf")["copy_progress"] == 25.0
    status = h.board.status_json()
    assert status["inProgress"] == {"file": "a.mxf", "progressPercentage": 25, "status": "Copying", "startTime": NOW_Z}
    assert status["pendingFiles"] == ["b.mxf"]

    h.wall.advance(90)
    h.board.completed("a.mxf", "/dest/a.mxf")
    (h.source / "a.mxf").unlink()  # the copier moved it
    assert h.board.outstanding() == 1
    assert h.board.status_json()["recentlyCompleted"] == [{"file": "a.mxf", "completedAt": "2025-10-08T10:31:30Z"}]
    assert h.board.status_json()["inProgress"] is None
    assert (h.status("a.mxf"), h.row("a.mxf")["copy_progress"]) == ("Completed", 100.0)
    version = h.board.version
    assert h.scan() == []
    assert h.board.version == version
    assert h.board.sig("a.mxf") is None
    h.board.copying("b.mxf")
    h.board.progress("b.mxf", 0, 0)  # an empty copy is done
    assert h.row("b.mxf")["copy_progress"] == 100.0


def test_recently_completed_is_newest_first_and_bounded(h: Harness) -> None:
    names = [f"f{i}.mxf" for i in range(5)]
    h.make_ready(*names)
    for name in names:
        h.board.queued(name)
        h.board.copying(name)
        h.wall.advance(1)
        h.board.completed(name, None)
    completed = h.board.status_json()["recentlyCompleted"]
    assert [c["file"] for c in completed] == ["f4.mxf", "f3.mxf", "f2.mxf"]
    assert completed[0]["completedAt"] == "2025-10-08T10:30:05Z"
    assert h.board.outstanding() == 0


def test_failed_file_waits_until_it_changes(h: Harness) -> None:
    h.make_ready("a.mxf")
    h.board.queued("a.mxf")
    h.board.copying("a.mxf")
    h.wall.advance(5)
    h.board.failed("a.mxf", "checksum mismatch")
    failed = {"file": "a.mxf", "error": "checksum mismatch", "failedAt": "2025-10-08T10:30:05Z"}
    assert h.board.status_json()["failedFiles"] == [failed]
    assert (h.board.outstanding(), h.board.counts()["Failed"]) == (0, 1)
    assert h.row("a.mxf")["error_message"] == "checksum mismatch"

    version = h.board.version
    assert h.scan(10 * STABLE) == []
    assert h.board.version == version
    assert h.board.status_json()["failedFiles"] == [failed]

    h.append("a.mxf")
    assert h.scan() == []
    assert h.failed_files() == []
    assert h.status("a.mxf") == "Discovered"
    assert h.scan(STABLE - 1) == []
    assert h.scan(1) == ["a.mxf"]


def test_failed_file_that_vanishes_is_dropped(h: Harness) -> None:
    h.make_ready("a.mxf", "b.mxf")
    h.board.failed("a.mxf", "boom")
    h.board.failed("b.mxf", "bang")
    assert h.failed_files() == ["b.mxf", "a.mxf"]
    (h.source / "a.mxf").unlink()
    h.scan()
    assert h.failed_files() == ["b.mxf"]
    assert h.board.counts()["Failed"] == 1


def test_dropping_a_vanished_failed_file_bumps_the_version(h: Harness) -> None:
    h.make_ready("a.mxf")
    h.board.failed("a.mxf", "boom")
    (h.source / "a.mxf").unlink()
    version = h.board.version
    h.scan()
    assert h.failed_files() == []
    assert h.board.version > version


def test_back_to_waiting_without_restart_is_ready_at_once(h: Harness) -> None:
    h.make_ready("a.mxf")
    h.board.queued("a.mxf")
    h.board.copying("a.mxf")
    h.board.back_to_waiting("a.mxf", restart_timer=False, reason="destination unavailable")
    assert h.board.ready_files() == ["a.mxf"]
    assert (h.status("a.mxf"), h.row("a.mxf")["error_message"]) == ("Ready", "destination unavailable")
    assert h.scan() == []  # already Ready: not announced a second time


def test_back_to_waiting_with_restart_needs_the_full_stable_time(h: Harness) -> None:
    h.make_ready("a.mxf")
    h.board.queued("a.mxf")
    h.clock.advance(10 * STABLE)
    h.board.back_to_waiting("a.mxf", restart_timer=True)
    assert h.status("a.mxf") == "Discovered"
    assert h.board.ready_files() == []
    assert h.scan(STABLE - 1) == []
    assert h.scan(1) == ["a.mxf"]


def test_file_in_flight_that_changes_keeps_its_status(h: Harness) -> None:
    h.make_ready("a.mxf")
    size = (h.source / "a.mxf").stat().st_size
    h.board.queued("a.mxf")
    h.append("a.mxf", b"1234")
    assert h.scan() == []
    assert h.status("a.mxf") == "InQueue"
    h.board.copying("a.mxf")
    h.board.progress("a.mxf", 1, 2)
    h.append("a.mxf", b"5678")
    assert h.scan(STABLE) == []
    assert (h.status("a.mxf"), h.row("a.mxf")["copy_progress"]) == ("Copying", 50.0)
    h.board.back_to_waiting("a.mxf", restart_timer=True, reason="source changed")
    assert h.row("a.mxf")["file_size"] == size + 8
    assert h.board.sig("a.mxf") == FileSig.from_stat((h.source / "a.mxf").stat())
    assert h.scan() == []
    assert h.scan(STABLE) == ["a.mxf"]


def test_vanished_file_is_dropped_unless_in_flight(h: Harness) -> None:
    h.make_ready("ready.mxf", "queued.mxf", "copying.mxf")
    write(h.source / "new.mxf", b"n")
    h.scan()
    h.board.queued("queued.mxf")
    h.board.copying("copying.mxf")
    for name in ("ready.mxf", "queued.mxf", "copying.mxf", "new.mxf"):
        (h.source / name).unlink()
    h.scan()
    assert [r["file_path"] for r in h.board.files_json()["files"]] == ["copying.mxf", "queued.mxf"]
    assert h.board.ready_files() == []
    h.board.failed("queued.mxf", "source vanished")
    h.board.completed("copying.mxf", None)
    assert h.board.outstanding() == 0


@pytest.mark.parametrize("restart_timer", [True, False])
def test_vanished_in_flight_file_put_back_to_waiting_is_dropped(h: Harness, restart_timer: bool) -> None:
    h.make_ready("a.mxf")
    h.board.queued("a.mxf")
    h.board.copying("a.mxf")
    (h.source / "a.mxf").unlink()
    h.scan()
    h.board.back_to_waiting("a.mxf", restart_timer=restart_timer, reason="source changed")
    h.scan(STABLE)
    assert h.board.outstanding() == 0
    assert h.board.status_json()["pendingFiles"] == []


def test_version_moves_on_every_change_only(h: Harness) -> None:
    def change_and_scan() -> None:
        h.append("a.mxf")
        h.scan()

    def unknown_file() -> None:
        h.board.progress("x.mxf", 1, 1)
        h.board.queued("x.mxf")

    write(h.source / "a.mxf", b"a")
    steps: list[tuple[str, Callable[[], object], bool]] = [
        ("discovered", h.scan, True),
        ("nothing new", h.scan, False),
        ("became ready", lambda: h.scan(STABLE), True),
        ("still ready", lambda: h.scan(STABLE), False),
        ("queued", lambda: h.board.queued("a.mxf"), True),
        ("copying", lambda: h.board.copying("a.mxf"), True),
        ("progress", lambda: h.board.progress("a.mxf", 1, 4), True),
        ("back to waiting", lambda: h.board.back_to_waiting("a.mxf", restart_timer=False), True),
        ("failed", lambda: h.board.failed("a.mxf", "boom"), True),
        ("failed, unchanged", lambda: h.scan(STABLE), False),
        ("failed file changed", change_and_scan, True),
        ("unknown file", unknown_file, False),
    ]
    moved = []
    for name, action, _ in steps:
        before = h.board.version
        action()
        assert h.board.version >= before
        moved.append((name, h.board.version > before))
    assert moved == [(name, bump) for name, _, bump in steps]


def test_counts_outstanding_and_status_json(h: Harness) -> None:
    h.make_ready("a.mxf", "b.mxf", "c.mxf", "d.mxf", "e.mxf", "f.mxf")
    write(h.source / "new.mxf", b"n")
    h.scan()
    h.board.queued("a.mxf")
    h.board.copying("c.mxf")
    h.wall.advance(1)
    h.board.copying("b.mxf")
    h.board.progress("b.mxf", 2, 3)
    h.board.failed("d.mxf", "boom")
    h.board.completed("e.mxf", None)
    counts = h.board.counts()
    assert set(counts) == {str(s) for s in FileStatus}
    assert [counts[s] for s in ("Discovered", "Ready", "InQueue", "Copying", "Completed", "Failed")] == [
        1,
        1,
        1,
        2,
        1,
        1,
    ]
    assert h.board.outstanding() == 5
    later = "2025-10-08T10:30:01Z"
    assert h.board.status_json() == {
        "pendingFilesCount": 3,
        "pendingFiles": ["a.mxf", "f.mxf", "new.mxf"],
        "inProgress": {"file": "c.mxf", "progressPercentage": 0, "status": "Copying", "startTime": NOW_Z},
        "allInProgress": [
            {"file": "c.mxf", "progressPercentage": 0, "status": "Copying", "startTime": NOW_Z},
            {"file": "b.mxf", "progressPercentage": 67, "status": "Copying", "startTime": later},
        ],
        "recentlyCompleted": [{"file": "e.mxf", "completedAt": later}],
        "failedFiles": [{"file": "d.mxf", "error": "boom", "failedAt": later}],
    }


def test_files_json_lists_tracked_then_completed_then_failed(h: Harness) -> None:
    h.make_ready(*[f"{c}.mxf" for c in "edcba"])
    h.board.failed("e.mxf", "boom")
    h.board.completed("d.mxf", None)
    h.board.progress("c.mxf", 1, 3)
    rows = h.board.files_json()["files"]
    keys = {"file_path", "status", "file_size", "last_write_time", "copy_progress", "retry_count", "error_message"}
    assert all(set(r) == keys for r in rows)
    statuses = [f"{r['file_path']}:{r['status']}" for r in rows]
    assert statuses == ["a.mxf:Ready", "b.mxf:Ready", "c.mxf:Ready", "d.mxf:Completed", "e.mxf:Failed"]
    assert rows[2]["copy_progress"] == 33.3


@pytest.mark.parametrize("attempt", range(3))  # races show up only sometimes: try more than once
def test_concurrent_updates_and_reads_stay_consistent(clock: FakeClock, attempt: int) -> None:
    files, workers, steps = 80, 8, 50
    names = [f"clip{i:03d}.mxf" for i in range(files)]
    board = TransferBoard(StabilityTracker(STABLE, clock=clock), now=WallClock(), recent=files)
    snapshot = {name: FileSig(100 + i, 10**18 + i, 1000 + i) for i, name in enumerate(names)}
    board.observe(snapshot)
    clock.advance(STABLE)
    assert board.observe(snapshot) == names
    for name in names:
        board.queued(name)
    start_version = board.version
    errors: list[BaseException] = []
    done = threading.Event()
    barrier = threading.Barrier(workers + 1)

    def work(mine: list[str]) -> None:
        try:
            barrier.wait()
            for name in mine:
                board.copying(name)
                for step in range(1, steps + 1):
                    board.progress(name, step, steps)
                if names.index(name) % 2:
                    board.failed(name, "boom")
                else:
                    board.completed(name, None)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def read() -> None:
        try:
            barrier.wait()
            while not done.is_set():
                status = board.status_json()
                assert status["pendingFilesCount"] == len(status["pendingFiles"])
                assert status["inProgress"] == (status["allInProgress"][0] if status["allInProgress"] else None)
                buckets = ("pendingFiles", "allInProgress", "recentlyCompleted", "failedFiles")
                assert sum(len(status[key]) for key in buckets) == files  # every file in exactly one place
                board.files_json()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(names[i::workers],)) for i in range(workers)]
    reader = threading.Thread(target=read)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        for thread in [*threads, reader]:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        done.set()
        reader.join(timeout=60)
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert board.outstanding() == 0
    assert board.counts()["Failed"] == files // 2
    assert len(board.status_json()["recentlyCompleted"]) == files // 2
    assert board.version - start_version == files * (steps + 2)


# -- failed files are remembered for as long as they are there, whatever their number -----------------------------


def attempt_every_ready_file(h: Harness, attempts: Counter[str]) -> None:
    """A copier that fails every file it is given, on its only attempt (``max_retry_attempts=0``)."""
    for rel in h.board.ready_files():
        attempts[rel] += 1
        h.board.queued(rel)
        h.board.copying(rel)
        h.board.failed(rel, "destination: ENOTDIR a file is in the way of a folder")


def test_any_number_of_failed_files_is_tried_once_while_unchanged(h: Harness) -> None:
    names = [f"cam1/clip{i:04d}.mxf" for i in range(1_500)]  # 50 times what the view keeps (10 x recent)
    for name in names:
        write(h.source / name, b"x")
    attempts: Counter[str] = Counter()
    for _ in range(20):  # each cycle the stable time passes again: a forgotten failure would be ready again
        h.scan(STABLE)
        attempt_every_ready_file(h, attempts)
    assert attempts == Counter(dict.fromkeys(names, 1))
    assert h.board.counts()["Failed"] == 1_500
    assert h.board.outstanding() == 0
    assert len(h.failed_files()) == 30  # the view shows the newest failures only, not the memory that decides
    assert h.failed_files()[0] == names[-1]

    h.append(names[0])  # touched: a fresh start, tried once more
    for _ in range(5):
        h.scan(STABLE)
        attempt_every_ready_file(h, attempts)
    assert attempts[names[0]] == 2 and sum(attempts.values()) == 1_501


def test_the_memory_of_failures_is_bounded_by_what_is_in_the_source(h: Harness) -> None:
    names = [f"clip{i:03d}.mxf" for i in range(100)]
    for name in names:
        write(h.source / name, b"x")
    attempts: Counter[str] = Counter()
    h.scan()
    h.scan(STABLE)
    attempt_every_ready_file(h, attempts)
    assert h.board.counts()["Failed"] == 100
    for name in names[:60]:
        (h.source / name).unlink()
    h.append(names[60])
    h.scan()
    assert h.board.counts()["Failed"] == 39  # left or changed: forgotten
    assert names[59] not in h.failed_files() and names[60] not in h.failed_files()
    assert h.status(names[60]) == "Discovered"


# -- a file the destination has no room for waits on its own -------------------------------------------------------


def in_flight(h: Harness, *names: str) -> None:
    for name in names:
        h.board.queued(name)
        h.board.copying(name)


def test_a_file_without_room_waits_alone_and_says_why(h: Harness) -> None:
    h.make_ready("big.mxf", "small.mxf")
    in_flight(h, "big.mxf")
    version = h.board.version
    h.board.waiting_for_room("big.mxf", 5_000, 1_000)
    assert h.board.version > version
    assert h.status("big.mxf") == "Ready"
    assert h.row("big.mxf")["error_message"] == "waiting for room: 5000 bytes needed, 1000 free"
    assert h.board.ready_files() == ["small.mxf"]  # the files that fit go on
    assert h.board.status_json()["pendingFiles"] == ["big.mxf", "small.mxf"]
    assert h.board.room_waits() == 1 and h.board.counts()["Failed"] == 0
    for _ in range(5):
        assert h.scan(STABLE) == []  # unchanged: scans alone never let it back in line
    assert h.board.release_room(4_999, RETRY) == []
    assert h.board.ready_files() == ["small.mxf"]
    assert h.board.release_room(5_000, RETRY) == ["big.mxf"]
    assert h.board.ready_files() == ["big.mxf", "small.mxf"]
    assert h.row("big.mxf")["error_message"] is None and h.board.room_waits() == 0


def test_room_that_comes_is_shared_out_in_path_order(h: Harness) -> None:
    h.make_ready("a.mxf", "b.mxf", "c.mxf", "d.mxf")
    in_flight(h, "a.mxf", "b.mxf", "c.mxf")
    h.board.waiting_for_room("a.mxf", 3_000, 100)
    h.board.waiting_for_room("b.mxf", 3_000, 100)
    h.board.waiting_for_room("c.mxf", 1_000, 100)
    assert h.board.release_room(4_500, RETRY) == ["a.mxf", "c.mxf"]  # b would not fit beside a: it waits
    assert h.board.ready_files() == ["a.mxf", "c.mxf", "d.mxf"] and h.board.room_waits() == 1


def test_a_write_that_ran_out_of_room_it_seemed_to_have_waits_for_more_room_or_the_retry_delay(h: Harness) -> None:
    """ENOSPC/EDQUOT although the free space said it fitted (a quota, the filesystem's overhead, another copy
    that filled the disk for a moment): not tried again at every cycle, but once more room shows or once the
    destination guard's delay has passed."""
    h.make_ready("a.mxf", "b.mxf")
    in_flight(h, "a.mxf", "b.mxf")
    h.board.waiting_for_room("a.mxf", 1_000, 50_000)
    h.board.waiting_for_room("b.mxf", 1_000, 50_000)
    assert h.board.release_room(50_000, RETRY) == []
    h.clock.advance(RETRY - 1)
    assert h.board.release_room(40_000, RETRY) == []
    assert h.board.release_room(50_001, RETRY) == ["a.mxf", "b.mxf"]
    in_flight(h, "a.mxf", "b.mxf")
    h.board.waiting_for_room("a.mxf", 1_000, 50_000)
    h.board.waiting_for_room("b.mxf", 60_000, 50_000)
    h.clock.advance(RETRY)
    assert h.board.release_room(50_000, RETRY) == ["a.mxf"]  # b still needs more than is free


def test_a_wait_for_room_ends_when_the_file_leaves_or_changes(h: Harness) -> None:
    h.make_ready("gone.mxf", "changed.mxf")
    in_flight(h, "gone.mxf", "changed.mxf")
    h.board.waiting_for_room("gone.mxf", 5_000, 1_000)
    h.board.waiting_for_room("changed.mxf", 5_000, 1_000)
    (h.source / "gone.mxf").unlink()
    h.append("changed.mxf")
    h.scan()
    assert h.board.room_waits() == 0
    assert [r["file_path"] for r in h.board.files_json()["files"]] == ["changed.mxf"]  # nothing waits for gone.mxf
    assert h.status("changed.mxf") == "Discovered" and h.row("changed.mxf")["error_message"] is None
    assert h.scan(STABLE) == ["changed.mxf"]  # a fresh start: tried again once stable, whatever the room


def test_a_file_that_left_or_changed_during_its_copy_does_not_wait_for_room(h: Harness) -> None:
    h.make_ready("gone.mxf", "changed.mxf")
    in_flight(h, "gone.mxf", "changed.mxf")
    (h.source / "gone.mxf").unlink()
    h.append("changed.mxf")
    h.scan()
    h.board.waiting_for_room("gone.mxf", 5_000, 1_000)
    h.board.waiting_for_room("changed.mxf", 5_000, 1_000)
    assert h.board.room_waits() == 0
    assert h.board.status_of("gone.mxf") is None
    assert h.status("changed.mxf") == "Discovered"


def test_another_destination_ends_every_wait_for_room(h: Harness) -> None:
    h.make_ready("a.mxf", "b.mxf")
    in_flight(h, "a.mxf", "b.mxf")
    h.board.waiting_for_room("a.mxf", 5_000, 1_000)
    h.board.waiting_for_room("b.mxf", 5_000, 1_000)
    version = h.board.version
    h.board.end_room_waits()
    assert h.board.version > version
    assert h.board.ready_files() == ["a.mxf", "b.mxf"] and h.board.room_waits() == 0
    assert h.row("a.mxf")["error_message"] is None


# -- the line of files to queue: kept as the board changes, never sorted whole again ----------------------------------


def _queueable_by_definition(board: TransferBoard) -> list[str]:
    """What ``ready_files`` must answer: every Ready file waiting for no room, in path order (its first form)."""
    files = board._files
    return sorted(rel for rel, f in files.items() if f.status == FileStatus.READY and f.room is None)


@pytest.mark.parametrize("seed", range(12))
def test_ready_files_follow_every_change_of_the_board(clock: FakeClock, seed: int) -> None:
    import random

    rnd = random.Random(seed)
    board = TransferBoard(StabilityTracker(STABLE, clock=clock), clock=clock)
    present: dict[str, FileSig] = {}
    in_flight: list[str] = []
    inode = iter(range(1, 10**6))

    def sig(size: int) -> FileSig:
        return FileSig(size, int(clock() * 1e9), next(inode))

    for _ in range(400):
        move = rnd.randrange(10)
        names = sorted(present)
        if move == 0 or not names:
            for _ in range(rnd.randrange(1, 6)):
                present[f"d{rnd.randrange(4)}/f{rnd.randrange(60):02d}.mxf"] = sig(rnd.randrange(1, 9))
        elif move == 1:
            present[rnd.choice(names)] = sig(rnd.randrange(1, 9))  # still growing
        elif move == 2:
            gone = rnd.choice(names)
            del present[gone]
        elif move == 3:
            clock.advance(STABLE)
        elif move == 4:
            for rel in board.ready_files(limit=rnd.randrange(1, 4)):
                board.queued(rel)
                board.copying(rel)
                in_flight.append(rel)
        elif move in (5, 6) and in_flight:
            rel = in_flight.pop(rnd.randrange(len(in_flight)))
            end = rnd.randrange(5)
            if end == 0 and rel in present:
                board.completed(rel, "/nas/" + rel)
                del present[rel]
            elif end == 1:
                board.failed(rel, "refused")
            elif end == 2:
                board.waiting_for_room(rel, rnd.randrange(1, 100), 10)
            else:
                board.back_to_waiting(rel, restart_timer=end == 3, reason="destination unavailable")
        elif move == 7:
            board.release_room(rnd.randrange(0, 150), RETRY)
        elif move == 8:
            board.end_room_waits()
        board.observe(dict(present))
        expected = _queueable_by_definition(board)
        assert board.ready_files() == expected
        limit = rnd.randrange(1, 5)
        assert board.ready_files(limit=limit) == expected[:limit]
        assert board.has_ready() == bool(expected)


def test_a_backlog_of_ready_files_is_handed_out_from_the_front(clock: FakeClock) -> None:
    board = TransferBoard(StabilityTracker(STABLE, clock=clock), clock=clock)
    backlog = {f"f{i:05d}.mxf": FileSig(4096, i, i + 1) for i in range(20_000)}
    board.observe(backlog)
    clock.advance(STABLE)
    assert len(board.observe(backlog)) == 20_000
    order = sorted(backlog)
    for taken in range(300):
        first = board.ready_files(limit=4)
        assert first == order[taken : taken + 4]
        board.queued(first[0])
        board.completed(first[0], None)
    assert board.ready_files(limit=1) == [order[300]]
    assert len(board._line) == 20_000 - 300  # the queued files left the line as they were met, nothing else did


def test_ready_files_that_vanish_leave_the_line_at_once(clock: FakeClock) -> None:
    board = TransferBoard(StabilityTracker(STABLE, clock=clock), clock=clock)
    backlog = {f"f{i:04d}.mxf": FileSig(4096, i, i + 1) for i in range(1_000)}
    board.observe(backlog)
    clock.advance(STABLE)
    board.observe(backlog)
    kept = {rel: sig for rel, sig in backlog.items() if not rel.endswith("7.mxf")}  # 100 deleted by hand
    board.observe(kept)
    assert len(board._line) == len(kept) == 900  # not only once the line reaches them: nothing to remember
    assert board.ready_files(limit=3) == sorted(kept)[:3]


def test_the_counts_in_the_status_description_read_back_whole() -> None:
    from fta.views import counts_from_text, status_description

    counts = {"Discovered": 2, "Ready": 19_998, "InQueue": 4, "Copying": 2, "Completed": 0, "Failed": 7}
    text = status_description(counts, waiting_listed=100)
    assert "the first 100 of the 20000 files waiting" in text
    assert counts_from_text(text) == counts
    assert counts_from_text(status_description(dict.fromkeys(counts, 0), 100)) == dict.fromkeys(counts, 0)
    assert "files waiting" not in status_description({"Ready": 3}, 100)  # all listed: nothing to say
    assert counts_from_text("a table of another tool: Ready 5") is None  # not ours (or an older agent's)
    assert counts_from_text(None) is None
