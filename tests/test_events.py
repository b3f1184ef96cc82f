"""File events on a real filesystem: what wakes the loop, how the watch ends, and why it is unavailable.

No test sleeps for the clock: a wake is awaited on the callback's own ``threading.Event`` and a state change is
polled with a deadline. watchfiles itself is replaced by a hand-written fake only where a failure cannot be made
real here (an unreadable tree as root, an error after arming, a slow start).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import watchfiles

import fta.events
from fta.events import SourceEvents, filesystem_type, not_a_deletion
from tests.conftest import write

WAKE_TIMEOUT = 1.5


class Wakes:
    """The ``on_change`` callback: counts calls and sets an event, as the loop's would."""

    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    def wait(self, timeout: float = WAKE_TIMEOUT) -> bool:
        woke = self.event.wait(timeout)
        self.event.clear()
        return woke


def eventually(condition: Callable[[], bool], timeout: float = WAKE_TIMEOUT) -> bool:
    """Poll ``condition`` until it holds or the deadline passes (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        threading.Event().wait(0.01)
    return condition()


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def events(source: Path, wakes: Wakes) -> Iterator[SourceEvents]:
    watcher = SourceEvents(source, wakes)
    yield watcher
    watcher.stop()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "fta.events" and r.levelno == logging.WARNING]


# -- what wakes the loop --------------------------------------------------------------------------------------------


def test_a_new_file_wakes_the_caller(events: SourceEvents, source: Path, wakes: Wakes) -> None:
    assert events.start()
    assert events.active
    assert not wakes.event.is_set()  # nothing happened yet: no spurious wake
    write(source / "clip.mxf", b"x" * 1000)  # right after start() returned: the watcher is armed
    assert wakes.wait()
    assert events.changes >= 1
    assert wakes.count == events.changes


def test_every_write_to_a_growing_file_keeps_waking(events: SourceEvents, source: Path, wakes: Wakes) -> None:
    clip = write(source / "clip.mxf", b"x")
    assert events.start()
    for _ in range(3):
        with clip.open("ab") as handle:
            handle.write(b"y" * 100)
        assert wakes.wait()


def test_a_file_in_a_folder_made_after_start_wakes(events: SourceEvents, source: Path, wakes: Wakes) -> None:
    assert events.start()
    (source / "day1" / "cam2").mkdir(parents=True)
    assert wakes.wait()  # the folders themselves
    write(source / "day1" / "cam2" / "clip.mxf", b"x" * 1000)
    assert wakes.wait()  # so the new folder is watched too


def test_a_file_renamed_into_the_source_wakes(events: SourceEvents, source: Path, tmp_path: Path, wakes: Wakes) -> None:
    outside = write(tmp_path / "outside" / "clip.mxf", b"x" * 1000)
    assert events.start()
    os.rename(outside, source / "clip.mxf")
    assert wakes.wait()


# -- stopping -------------------------------------------------------------------------------------------------------


def test_stop_ends_the_thread_quickly(events: SourceEvents) -> None:
    assert events.start()
    [thread] = [t for t in threading.enumerate() if t.name == "fta-events"]
    assert thread.is_alive()
    started = time.monotonic()
    events.stop()
    assert time.monotonic() - started < 0.5
    assert not thread.is_alive()
    assert not events.active


def test_stop_twice_and_before_start_is_fine(source: Path, wakes: Wakes) -> None:
    watcher = SourceEvents(source, wakes)
    watcher.stop()
    assert watcher.start()
    watcher.stop()
    watcher.stop()
    assert not watcher.active
    assert watcher.start()  # and it can watch again
    assert watcher.active
    watcher.stop()
    assert not watcher.active


def test_a_second_start_while_watching_keeps_the_one_thread(events: SourceEvents) -> None:
    assert events.start()
    before = [t for t in threading.enumerate() if t.name == "fta-events"]
    assert events.start()
    assert [t for t in threading.enumerate() if t.name == "fta-events"] == before


# -- the source folder goes away while watching ---------------------------------------------------------------------


def test_removing_the_root_ends_the_watch_without_raising(
    events: SourceEvents, source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert events.start()
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        source.rmdir()
        assert eventually(lambda: not events.active)
    assert len(warnings_of(caplog)) == 1
    assert "file events stopped" in warnings_of(caplog)[0]
    assert "rescanning only" in warnings_of(caplog)[0]


def test_a_root_replaced_by_another_folder_ends_the_watch(
    events: SourceEvents, source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # inotify follows the old folder, so the new one would raise no event at all.
    assert events.start()
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        source.rename(tmp_path / "old-source")
        source.mkdir()
        assert eventually(lambda: not events.active)
    assert any("file events stopped" in line for line in warnings_of(caplog))


def test_a_name_that_is_not_utf8_ends_the_watch(
    events: SourceEvents, source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # watchfiles cannot hand such a path to Python and stops with an error; the rescan still finds the file.
    assert events.start()
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        os.close(os.open(os.fsencode(source) + b"/\xff.mxf", os.O_CREAT | os.O_WRONLY, 0o644))
        assert eventually(lambda: not events.active)
    assert any("file events stopped" in line and "decode" in line for line in warnings_of(caplog))


# -- events unavailable: start() says False and why -----------------------------------------------------------------


def test_a_missing_root_is_reported_once(tmp_path: Path, wakes: Wakes, caplog: pytest.LogCaptureFixture) -> None:
    watcher = SourceEvents(tmp_path / "missing", wakes)
    with caplog.at_level(logging.DEBUG, logger="fta.events"):
        assert not watcher.start()
        assert not watcher.start()  # a caller that retries does not flood the log
    assert not watcher.active
    lines = warnings_of(caplog)
    assert len(lines) == 1
    assert "file events unavailable" in lines[0] and "missing" in lines[0] and "No such file" in lines[0]
    assert not [t for t in threading.enumerate() if t.name == "fta-events"]


def test_a_root_that_is_a_file_is_refused(tmp_path: Path, wakes: Wakes, caplog: pytest.LogCaptureFixture) -> None:
    watcher = SourceEvents(write(tmp_path / "plain", b"x"), wakes)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert not watcher.start()
    assert any("not a folder" in line for line in warnings_of(caplog))


def test_without_watchfiles_start_says_false(
    source: Path, wakes: Wakes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "watchfiles", None)  # import fails as if it were not installed
    watcher = SourceEvents(source, wakes)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert not watcher.start()
    assert any("watchfiles cannot be imported" in line for line in warnings_of(caplog))


Watch = Callable[..., Iterator[set[tuple[int, str]]]]


@pytest.fixture
def fake_watch(monkeypatch: pytest.MonkeyPatch) -> Callable[[Watch], dict[str, Any]]:
    """Replace ``watchfiles.watch``; returns the options the agent passed to it."""

    def install(fake: Watch) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def recording(*paths: Path, **options: Any) -> Iterator[set[tuple[int, str]]]:
            seen.update(options, paths=paths)
            return fake(*paths, **options)

        monkeypatch.setattr(watchfiles, "watch", recording)
        return seen

    return install


def test_a_watch_that_fails_to_arm_is_unavailable(
    source: Path, wakes: Wakes, fake_watch: Callable[[Watch], dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    # What watchfiles raises for an unreadable subfolder, or OSError for the inotify watch limit.
    def refuses(*paths: Path, **options: Any) -> Iterator[set[tuple[int, str]]]:
        raise PermissionError(13, "Permission denied (os error 13)")
        yield set()

    options = fake_watch(refuses)
    watcher = SourceEvents(source, wakes, step_ms=20, debounce_ms=300)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert not watcher.start()
    assert not watcher.active
    assert any("file events unavailable" in line and "Permission denied" in line for line in warnings_of(caplog))
    assert options["paths"] == (source,)
    assert options["watch_filter"] is not_a_deletion
    assert (options["step"], options["debounce"]) == (20, 300)
    assert options["force_polling"] is False
    assert options["ignore_permission_denied"] is False
    assert options["recursive"] is True
    assert options["yield_on_timeout"] is True
    assert isinstance(options["stop_event"], threading.Event)


def test_an_error_after_arming_ends_the_watch_with_one_warning(
    source: Path, wakes: Wakes, fake_watch: Callable[[Watch], dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    go_on = threading.Event()

    def breaks(*paths: Path, **options: Any) -> Iterator[set[tuple[int, str]]]:
        yield set()  # armed
        go_on.wait(WAKE_TIMEOUT)
        yield {(1, str(source / "a.mxf"))}
        raise RuntimeError("error in underlying watcher")

    fake_watch(breaks)
    watcher = SourceEvents(source, wakes)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert watcher.start()
        assert watcher.active
        go_on.set()
        assert wakes.wait()
        assert eventually(lambda: not watcher.active)
    assert watcher.changes == 1
    assert warnings_of(caplog) == [
        "file events stopped (RuntimeError: error in underlying watcher); finding files by rescanning only"
    ]


def test_a_failing_callback_ends_the_watch_without_raising(source: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise ValueError("callback broke")

    watcher = SourceEvents(source, broken)
    try:
        with caplog.at_level(logging.WARNING, logger="fta.events"):
            assert watcher.start()
            write(source / "clip.mxf", b"x")
            assert eventually(lambda: not watcher.active)
        assert any("callback broke" in line for line in warnings_of(caplog))
    finally:
        watcher.stop()


def test_a_watch_that_takes_too_long_to_arm_gives_up(
    source: Path,
    wakes: Wakes,
    fake_watch: Callable[[Watch], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def slow(*paths: Path, stop_event: threading.Event, **options: Any) -> Iterator[set[tuple[int, str]]]:
        stop_event.wait(WAKE_TIMEOUT)  # still walking a huge tree
        yield set()

    fake_watch(slow)
    monkeypatch.setattr(fta.events, "ARM_TIMEOUT", 0.05)
    watcher = SourceEvents(source, wakes)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert not watcher.start()
        assert eventually(lambda: not [t for t in threading.enumerate() if t.name == "fta-events"])
    assert not watcher.active
    assert any("took over 0.05 s" in line for line in warnings_of(caplog))


def test_a_network_share_is_noted_at_start(
    events: SourceEvents, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(fta.events, "filesystem_type", lambda path: "nfs4")
    with caplog.at_level(logging.INFO, logger="fta.events"):
        assert events.start()
    assert any("(nfs4) only see this machine's writes" in r.getMessage() for r in caplog.records)


# -- which filesystem -----------------------------------------------------------------------------------------------

MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
server:/export /mnt/ingest\\040share nfs4 rw 0 0
tmpfs /mnt/ingest\\040share/scratch tmpfs rw 0 0
//nas/media /mnt/media cifs rw 0 0
overlay /mnt/media overlay rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/mnt/ingest share/cam1", "nfs4"),  # an escaped space in the mount point
        ("/mnt/ingest share", "nfs4"),
        ("/mnt/ingest share/scratch/x", "tmpfs"),  # the longest mount point above the path wins
        ("/mnt/ingest shares", "ext4"),  # a prefix of the name is not a parent folder
        ("/mnt/media/x", "overlay"),  # the last mount on one point is the visible one
        ("/srv", "ext4"),
    ],
)
def test_filesystem_type_is_the_longest_mount_above(path: str, kind: str) -> None:
    assert filesystem_type(Path(path), MOUNTS) == kind


def test_filesystem_type_unknown_without_a_matching_mount(source: Path) -> None:
    assert filesystem_type(Path("/srv"), "garbage\ntmpfs /run tmpfs rw 0 0\n") is None
    assert filesystem_type(source)  # this machine's own table names something


def test_deletions_wake_no_scan() -> None:
    """The agent deletes every source it moved: those deletions must not make the loop rescan."""
    from watchfiles import Change

    assert not not_a_deletion(Change.deleted, "/src/a.mxf")
    assert not_a_deletion(Change.added, "/src/a.mxf")
    assert not_a_deletion(Change.modified, "/src/a.mxf")
