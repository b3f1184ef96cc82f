"""Nothing repeats without bound: failed files are tried once while unchanged, whatever their number, and a file the
destination has no room for waits on its own (the files that fit go on) for as long as it is there unchanged.

End to end under Prefect, on a real filesystem and real tmpfs destinations (as root), seconds-scale settings.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows import source_watcher
from flows.api_state import read_table, status_key
from flows.config import run_in_process
from flows.transfer_once import transfer_once
from flows.watch_folder import watch_folder
from fta.copier import Copier, hash_file
from fta.copy_io import CopyIO
from fta.scanner import scan_source
from fta.stability import FileSig
from fta.stop_switch import StopSwitch
from tests.conftest import Mount, write
from tests.prefect_helpers import (
    AGENT,
    Background,
    fast_config,
    kind,
    message,
    runs_by_name,
    state_name,
    temp_files,
    wait_until,
)

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def attempts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Copy attempts per file, counted where the copier is called (every attempt, retries included)."""
    counted: Counter[str] = Counter()
    lock = threading.Lock()
    real = Copier.copy

    def copy(self: Copier, rel: str, *args: Any, **kwargs: Any) -> Any:
        with lock:
            counted[rel] += 1
        return real(self, rel, *args, **kwargs)

    monkeypatch.setattr(Copier, "copy", copy)
    return counted


@pytest.fixture
def scans(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many scans of the source the loop has made so far (with file events off, one per cycle)."""
    made = [0]
    real = scan_source

    def scan(*args: Any, **kwargs: Any) -> dict[str, FileSig]:
        found = real(*args, **kwargs)
        made[0] += 1
        return found

    monkeypatch.setattr(source_watcher, "scan_source", scan)
    return lambda: made[0]


def let_cycles_pass(scans: Callable[[], int], cycles: int) -> None:
    start = scans()
    wait_until(lambda: scans() >= start + cycles, what=f"{cycles} more cycles of the loop")


def config(source: Path, destination: Path, **overrides: Any) -> dict[str, Any]:
    return fast_config(source, destination, file_events=False, **overrides)


def touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def status_rows() -> dict[str, dict[str, Any]]:
    rows, _ = read_table(status_key(AGENT))
    return {row["file"]: row for row in rows}


def moved(source: Path, destination: Path, names: list[str]) -> bool:
    return all(not (source / n).exists() and (destination / n).is_file() for n in names)


# -- item: failed files ----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_hundreds_of_failed_files_are_each_tried_once_however_many_cycles_pass(
    source: Path,
    destination: Path,
    attempts: Counter[str],
    scans: Callable[[], int],
    fta_log: list[str],
    stop: StopSwitch,
) -> None:
    """600 files that each fail (a file in the way of their folder): each is tried once and the failures stop
    there, however long the watch runs; a touched file is tried once more. (Past 500 the oldest failures were
    forgotten, found again and retried: a failed task run and an alert per file and cycle, without end.)"""
    write(destination / "cam1", b"a file where the agent needs a folder")
    names = [f"cam1/clip{i:04d}.mxf" for i in range(600)]
    for name in names:
        write(source / name, b"x")
    watcher = Background(
        lambda: run_in_process(
            watch_folder, config(source, destination, max_retry_attempts=0), stop=stop, return_state=True
        )
    )
    wait_until(lambda: sum(attempts.values()) >= len(names), timeout=180, what="every file to be tried")
    let_cycles_pass(scans, 30)  # 3 s: the stable time (0.5 s) passes six times over
    assert attempts == Counter(dict.fromkeys(names, 1))
    touch(source / names[0])
    wait_until(lambda: attempts[names[0]] == 2, what="the touched file to be tried again")
    let_cycles_pass(scans, 30)
    stop.request()
    state = watcher.result(timeout=120)
    assert state.is_completed()
    assert sum(attempts.values()) == len(names) + 1
    assert sum("failed after 1 attempts" in line for line in fta_log) == len(names) + 1  # one ERROR per failure
    assert all((source / name).read_bytes() == b"x" for name in names)
    runs = runs_by_name(state.state_details.flow_run_id, expect=len(names) + 1, timeout=120)
    failed = Counter(name for name, named in runs.items() for run in named if kind(run) == "FAILED")
    assert failed == Counter({f"copy {n}": 2 if n == names[0] else 1 for n in names})  # what alerts are raised on


# -- item: a file the destination has no room for ------------------------------------------------------------------


def fill(nas: Path, leave: int) -> Path:
    """Another writer's file that leaves ``leave`` bytes free on the tmpfs ``nas``."""
    filler = nas / "other-writer.bin"
    with filler.open("wb") as handle:
        vfs = os.statvfs(nas)
        handle.write(bytes(vfs.f_bavail * vfs.f_frsize - leave))
    return filler


@pytest.mark.timeout(180)
def test_a_file_without_room_waits_alone_while_the_files_that_fit_move(
    source: Path, tmpfs: Mount, attempts: Counter[str], scans: Callable[[], int], stop: StopSwitch
) -> None:
    nas = tmpfs("16m")
    filler = fill(nas, 3 * MiB)
    big = write(source / "big-a.mxf", os.urandom(6 * MiB))  # more than is free, less than the filesystem
    write(source / "big-b.mxf", os.urandom(6 * MiB))
    small = [f"small/clip{i:02d}.mxf" for i in range(40)]
    for name in small:
        write(source / name, os.urandom(4096))
    watcher = Background(
        lambda: run_in_process(watch_folder, config(source, nas, max_retry_attempts=0), stop=stop, return_state=True)
    )
    wait_until(lambda: moved(source, nas, small), timeout=30, what="the small files to move past the big ones")

    waiting = "waiting for room: 6291456 bytes needed"
    wait_until(
        lambda: all(waiting in (status_rows().get(n, {}).get("error") or "") for n in ("big-a.mxf", "big-b.mxf")),
        what="the big files' rows to say why they wait",
    )
    assert status_rows()["big-a.mxf"]["status"] == "Ready"
    let_cycles_pass(scans, 20)
    assert (attempts["big-a.mxf"], attempts["big-b.mxf"]) == (1, 1)  # no room came: not tried again
    assert temp_files(nas) == [] and sorted(p.name for p in nas.iterdir()) == ["other-writer.bin", "small"]

    (source / "big-b.mxf").unlink()  # it leaves: nothing waits for it any more
    wait_until(lambda: "big-b.mxf" not in status_rows(), what="the row of the file that left to go")
    write(source / "late.mxf", b"still moving")
    wait_until(lambda: moved(source, nas, ["late.mxf"]), what="a file found later to move")

    expected = hash_file(big)
    filler.unlink()  # room is freed: the file that waited moves
    wait_until(lambda: not big.exists(), what="the big file to move once there is room")
    stop.request()
    state = watcher.result(timeout=60)
    assert state.is_completed()
    assert hash_file(nas / "big-a.mxf") == expected and temp_files(nas) == []
    runs = runs_by_name(state.state_details.flow_run_id, expect=len(small) + 4)
    assert sorted(state_name(r) for r in runs["copy big-a.mxf"]) == ["AwaitingRoom", "Completed"]
    assert all(kind(run) != "FAILED" for named in runs.values() for run in named)
    assert "wait for destination" not in runs  # the run as a whole was never held


@pytest.mark.timeout(180)
def test_a_sweep_ends_once_the_file_waiting_for_room_leaves_the_source(source: Path, tmpfs: Mount) -> None:
    nas = tmpfs("16m")
    fill(nas, 3 * MiB)
    write(source / "big.mxf", os.urandom(6 * MiB))
    small = [f"clip{i:02d}.mxf" for i in range(20)]
    for name in small:
        write(source / name, os.urandom(4096))
    once = Background(lambda: run_in_process(transfer_once, config(source, nas), return_state=True))
    wait_until(lambda: moved(source, nas, small), timeout=30, what="the small files to move past the big one")
    (source / "big.mxf").unlink()
    state = once.result(timeout=60)  # it waited for room for a file that is gone: the wait ended with it
    assert state.is_completed() and state.message == "20 file(s) moved"
    runs = runs_by_name(state.state_details.flow_run_id, expect=len(small) + 1)
    [refused] = runs["copy big.mxf"]
    assert state_name(refused) == "AwaitingRoom" and "bytes needed" in message(refused)


@pytest.mark.timeout(180)
def test_a_copy_that_runs_out_of_room_mid_write_waits_alone_and_moves_whole_later(
    source: Path, tmpfs: Mount, attempts: Counter[str], stop: StopSwitch
) -> None:
    """The room was there when the copy began; another writer took it meanwhile (ENOSPC in the middle of the
    write): the temp file goes, the file waits for room on its own, and arrives whole once room is freed."""
    nas = tmpfs("16m")
    big = write(source / "big.mxf", os.urandom(5 * MiB))
    small = [f"clip{i:02d}.mxf" for i in range(30)]
    for name in small:
        write(source / name, os.urandom(4096))
    others: list[Path] = []
    refused: list[int | None] = []

    class AnotherWriterTakesTheRoom(CopyIO):
        def write_chunk(self, fd: int, data: memoryview) -> None:
            if len(data) <= MiB or others:
                super().write_chunk(fd, data)
                return
            others.append(fill(nas, 2 * MiB))  # the big file's first chunk: another writer fills the share first
            try:
                super().write_chunk(fd, data)
            except OSError as exc:
                refused.append(exc.errno)
                raise

    watcher = Background(
        lambda: run_in_process(watch_folder, config(source, nas, max_retry_attempts=0), stop=stop, return_state=True),
        io=AnotherWriterTakesTheRoom(),
    )
    wait_until(lambda: attempts["big.mxf"] == 1 and moved(source, nas, small), timeout=30, what="the small files")
    wait_until(lambda: "waiting for room" in (status_rows().get("big.mxf", {}).get("error") or ""), what="the row")
    assert refused == [errno.ENOSPC]  # in the middle of the write, after the check for room had passed
    assert big.exists() and temp_files(nas) == [] and not (nas / "big.mxf").exists()
    expected = hash_file(big)
    others[0].unlink()
    wait_until(lambda: not big.exists(), what="the big file to move once there is room")
    stop.request()
    state = watcher.result(timeout=60)
    assert state.is_completed()
    assert hash_file(nas / "big.mxf") == expected and temp_files(nas) == []
    assert attempts["big.mxf"] == 2
    runs = runs_by_name(state.state_details.flow_run_id, expect=len(small) + 2)
    assert all(kind(run) != "FAILED" for named in runs.values() for run in named)
    # The other files moved while the big one waited (above). The guard's probe may have met the disk at its
    # one full moment (the big temp file before its removal): a short wait for the destination that ended.
    assert all(kind(run) == "COMPLETED" for run in runs.get("wait for destination", []))


@pytest.mark.timeout(180)
def test_when_not_even_the_smallest_file_fits_each_waits_alone_and_is_tried_once(
    source: Path, tmpfs: Mount, attempts: Counter[str], scans: Callable[[], int], stop: StopSwitch
) -> None:
    nas = tmpfs("8m")
    filler = fill(nas, 64 * 1024)  # room for the probe's small write, for none of the files
    names = [f"clip{i}.mxf" for i in range(5)]
    for name in names:
        write(source / name, os.urandom(256 * 1024))
    watcher = Background(
        lambda: run_in_process(watch_folder, config(source, nas, max_retry_attempts=0), stop=stop, return_state=True)
    )
    wait_until(lambda: all(attempts[n] == 1 for n in names), what="each file to be tried")
    let_cycles_pass(scans, 20)
    assert attempts == Counter(dict.fromkeys(names, 1))  # each waits: no attempt per cycle
    assert all(n in status_rows() for n in names)
    filler.unlink()
    wait_until(lambda: moved(source, nas, names), what="every file to move once there is room")
    stop.request()
    state = watcher.result(timeout=60)
    assert state.is_completed()
    runs = runs_by_name(state.state_details.flow_run_id, expect=2 * len(names))
    assert all(kind(run) != "FAILED" for named in runs.values() for run in named)
