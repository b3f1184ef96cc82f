"""File events on a real filesystem: what wakes the loop, how the watch ends, and why it is unavailable.

No test sleeps for the clock: a wake is awaited on the callback's own ``threading.Event`` and a state change is
polled with a deadline. The libc calls are replaced only where a failure cannot be made real here without
disturbing the rest of the machine (no inotify instance left, the per-user watch limit, a read error, a slow
walk); what the kernel watches is read back from ``/proc/self/fdinfo``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import fta.events
import fta.inotify
from fta.events import Batch, SourceEvents, filesystem_type, not_a_deletion
from fta.inotify import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    Event,
    parse,
)
from tests.conftest import DEEP, make_deep_folders, unmount, write

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


def watch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "fta-events"]


def inotify_fds() -> set[int]:
    """This process's open inotify instances (to see that a watch that ended released its own)."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:inotify":
                found.add(int(name))
    return found


def watched_inodes(events: SourceEvents) -> set[int]:
    """The inodes the kernel watches for ``events`` (its inotify instance's ``fdinfo``), not what it believes."""
    tree = events._tree
    assert tree is not None
    lines = Path(f"/proc/self/fdinfo/{tree.inotify.fd}").read_text().splitlines()
    return {int(line.split(" ino:")[1].split()[0], 16) for line in lines if line.startswith("inotify wd:")}


def folder_inodes(top: Path) -> set[int]:
    """The inodes of ``top`` and of every real folder below it (symlinks never followed)."""
    return {os.stat(top).st_ino} | {
        os.stat(os.path.join(folder, name), follow_symlinks=False).st_ino
        for folder, dirs, _ in os.walk(top)
        for name in dirs
        if not os.path.islink(os.path.join(folder, name))
    }


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


def test_a_name_that_is_not_utf8_wakes_and_the_watch_goes_on(
    events: SourceEvents, source: Path, wakes: Wakes, caplog: pytest.LogCaptureFixture
) -> None:
    # Names are bytes all the way: such a file wakes the loop like any other (the scan reports it).
    assert events.start()
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        os.mkdir(os.fsencode(source) + b"/cam\xfe")
        assert wakes.wait()
        assert eventually(lambda: events.watched == 2)  # the folder with that name is watched too
        os.close(os.open(os.fsencode(source) + b"/cam\xfe/\xff.mxf", os.O_CREAT | os.O_WRONLY, 0o644))
        assert wakes.wait()
        assert events.active
        write(source / "next.mxf", b"x")
        assert wakes.wait()
    assert warnings_of(caplog) == []


def test_a_deep_tree_is_watched_to_its_last_folder(events: SourceEvents, source: Path, wakes: Wakes) -> None:
    # Past PATH_MAX (4,096 bytes): folders are reached one name at a time, at start and when made later.
    fd, inodes = make_deep_folders(source, DEEP)
    try:
        assert events.start()
        assert events.watched == 21
        assert watched_inodes(events) == inodes
        os.close(os.open("clip.mxf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
        assert wakes.wait()
        os.mkdir("later", dir_fd=fd)  # 5,020 bytes down: reached again from the root's handle
        assert wakes.wait()
        assert eventually(lambda: events.watched == 22)
        later = os.open("later", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        try:
            os.close(os.open("clip.mxf", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=later))
            assert wakes.wait()
            assert os.fstat(later).st_ino in watched_inodes(events)
        finally:
            os.close(later)
    finally:
        os.close(fd)


def test_every_folder_of_the_tree_is_watched_and_only_those(
    events: SourceEvents, source: Path, tmp_path: Path, wakes: Wakes
) -> None:
    for rel in ("a/b/c", "a/d", "e"):
        (source / rel).mkdir(parents=True)
    write(tmp_path / "other" / "x" / "f.mxf", b"x")
    assert events.start()
    assert watched_inodes(events) == folder_inodes(source)
    assert events.watched == 6
    (source / "e" / "f" / "g").mkdir(parents=True)
    assert wakes.wait()
    assert eventually(lambda: watched_inodes(events) == folder_inodes(source))
    os.rename(source / "a", tmp_path / "other" / "a")  # moved out of the source: no longer watched
    assert eventually(lambda: watched_inodes(events) == folder_inodes(source))
    assert events.watched == 4
    os.rename(tmp_path / "other" / "x", source / "e" / "x")  # moved in: watched
    assert wakes.wait()
    assert eventually(lambda: watched_inodes(events) == folder_inodes(source))
    shutil.rmtree(source / "e")
    assert eventually(lambda: events.watched == 1)
    assert watched_inodes(events) == {source.stat().st_ino}


def test_a_folder_renamed_within_the_source_stays_watched(events: SourceEvents, source: Path, wakes: Wakes) -> None:
    (source / "cam1" / "day1").mkdir(parents=True)
    (source / "archive").mkdir()
    assert events.start()
    os.rename(source / "cam1", source / "archive" / "cam1")
    assert wakes.wait()
    assert eventually(lambda: watched_inodes(events) == folder_inodes(source))
    write(source / "archive" / "cam1" / "day1" / "clip.mxf", b"x")
    assert wakes.wait()
    (source / "archive" / "cam1" / "day1" / "more").mkdir()  # found again from the root by its new names
    assert wakes.wait()
    assert eventually(lambda: watched_inodes(events) == folder_inodes(source))


def test_a_folder_mounted_below_itself_is_watched_once(events: SourceEvents, source: Path, wakes: Wakes) -> None:
    """``source/a/loop`` is a bind mount of the source: endless by path, one folder by identity; the walk ends."""
    if os.geteuid() != 0:
        pytest.skip("a bind mount needs root")
    (source / "a" / "loop").mkdir(parents=True)
    done = subprocess.run(["mount", "--bind", str(source), str(source / "a" / "loop")], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {done.stderr.strip()}")
    try:
        assert events.start()
        assert events.watched == 2  # a/loop opens as the source itself: already watched, not entered again
        assert watched_inodes(events) == {source.stat().st_ino, (source / "a").stat().st_ino}
        write(source / "a" / "loop" / "a" / "clip.mxf", b"x")  # the same folder as source/a
        assert wakes.wait()
    finally:
        events.stop()
        unmount(source / "a" / "loop")


def test_deletions_and_renames_away_wake_no_scan(source: Path, tmp_path: Path, wakes: Wakes) -> None:
    """The agent deletes every source it moved: those deletions must not make the loop rescan. Each real event is
    read and judged here one by one (no waiting for a wake that should not come)."""
    watcher = SourceEvents(source, wakes)
    inotify = fta.inotify.Inotify()
    try:
        tree = fta.inotify.FolderTree(inotify, source, (source.stat().st_dev, source.stat().st_ino))
        tree.arm(lambda: False)

        def judged(action: Callable[[], object]) -> list[tuple[int, bool]]:
            """(mask, wakes) of each event ``action`` caused: read up to a marker made right after it."""
            action()
            marker = f".marker-{time.monotonic_ns()}".encode()
            os.mkdir(os.fsencode(source) + b"/" + marker)
            found: list[Event] = []
            deadline = time.monotonic() + WAKE_TIMEOUT
            while not any(event.name == marker for event in found) and time.monotonic() < deadline:
                found += inotify.read(0.05)
            before = found[: [event.name for event in found].index(marker)]
            return [(e.mask, watcher._handle(e, tree, threading.Event()) is not None) for e in before]

        clip = source / "clip.mxf"
        judged(lambda: write(clip, b"x"))
        assert judged(lambda: os.unlink(clip)) == []  # no event at all, not even IN_ATTRIB
        judged(lambda: write(source / "a.mxf", b"x"))
        assert judged(lambda: os.rename(source / "a.mxf", tmp_path / "a.mxf")) == [(IN_MOVED_FROM, False)]
        assert judged(lambda: os.rename(tmp_path / "a.mxf", source / "b.mxf")) == [(IN_MOVED_TO, True)]
        assert judged(lambda: write(source / "c.mxf", b"x")) == [
            (IN_CREATE, True),
            (IN_MODIFY, True),
            (IN_CLOSE_WRITE, True),
        ]
        assert judged(lambda: os.chmod(source / "c.mxf", 0o600)) == [(IN_ATTRIB, True)]
    finally:
        inotify.close()
    assert not not_a_deletion(IN_DELETE)
    assert not not_a_deletion(IN_MOVED_FROM)
    assert not not_a_deletion(IN_MOVED_FROM | IN_ISDIR)
    for mask in (IN_CREATE, IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_TO, IN_ATTRIB, IN_CREATE | IN_ISDIR, IN_Q_OVERFLOW):
        assert not_a_deletion(mask)


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


def failing(code: int) -> Callable[..., int]:
    """A libc call that fails with ``code``, as the kernel would (``-1`` and errno)."""

    def call(*args: object) -> int:
        ctypes.set_errno(code)
        return -1

    return call


def test_without_an_inotify_instance_start_says_false(
    source: Path, wakes: Wakes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # fs.inotify.max_user_instances used up (by this user's other programs): inotify_init1 says EMFILE.
    monkeypatch.setattr(fta.inotify, "_libc_init1", failing(errno.EMFILE))
    watcher = SourceEvents(source, wakes)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert not watcher.start()
    assert not watcher.active
    assert warnings_of(caplog) == [
        "file events unavailable (the inotify instance limit (fs.inotify.max_user_instances) is reached);"
        " finding files by rescanning only"
    ]
    assert eventually(lambda: not watch_threads())


def test_the_watch_limit_at_start_makes_events_unavailable(
    source: Path, wakes: Wakes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The kernel's per-user limit (fs.inotify.max_user_watches) reached on the third folder: ENOSPC.
    for rel in ("a/b", "c"):
        (source / rel).mkdir(parents=True)
    calls: list[bytes] = []
    real = fta.inotify._libc_add_watch

    def add_watch(fd: int, path: bytes, mask: int) -> int:
        calls.append(path)
        return failing(errno.ENOSPC)() if len(calls) == 3 else real(fd, path, mask)

    monkeypatch.setattr(fta.inotify, "_libc_add_watch", add_watch)
    before = inotify_fds()
    watcher = SourceEvents(source, wakes)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert not watcher.start()
    assert warnings_of(caplog) == [
        "file events unavailable (the inotify watch limit (fs.inotify.max_user_watches) is reached);"
        " finding files by rescanning only"
    ]
    assert all(path.startswith(b"/proc/self/fd/") for path in calls)  # never a path of the tree
    assert eventually(lambda: not watch_threads())
    assert inotify_fds() == before  # the instance, and with it the watches added, released


def test_more_folders_than_the_cap_make_events_unavailable(
    source: Path, wakes: Wakes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for rel in ("a/b", "c"):
        (source / rel).mkdir(parents=True)
    monkeypatch.setattr(fta.events, "MAX_WATCHES", 3)
    watcher = SourceEvents(source, wakes)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert not watcher.start()
    assert any("(more than 3 folders to watch)" in line for line in warnings_of(caplog))
    monkeypatch.setattr(fta.events, "MAX_WATCHES", 4)
    assert watcher.start()
    assert watcher.watched == 4
    watcher.stop()


def test_a_folder_with_more_subfolders_than_the_cap_is_not_even_listed_whole(
    source: Path, wakes: Wakes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for index in range(50):
        (source / f"day{index:02d}").mkdir()
    listed: list[int] = []
    real = fta.inotify._subfolders

    def counting(fd: int, most: int) -> list[str]:
        names = real(fd, most)
        listed.append(len(names))
        return names

    monkeypatch.setattr(fta.inotify, "_subfolders", counting)
    monkeypatch.setattr(fta.events, "MAX_WATCHES", 10)
    watcher = SourceEvents(source, wakes)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert not watcher.start()
    assert listed == [10]  # the root's listing stopped at the first name too many (9 could still be watched)
    assert any("(more than 10 folders to watch)" in line for line in warnings_of(caplog))


def test_the_watch_limit_reached_by_a_new_folder_ends_the_watch_with_one_warning(
    events: SourceEvents, source: Path, wakes: Wakes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert events.start()
    monkeypatch.setattr(fta.inotify, "_libc_add_watch", failing(errno.ENOSPC))
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        (source / "cam1").mkdir()
        assert eventually(lambda: not events.active)
    assert warnings_of(caplog) == [
        "file events stopped (the inotify watch limit (fs.inotify.max_user_watches) is reached);"
        " finding files by rescanning only"
    ]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_an_unreadable_subfolder_makes_events_unavailable_for_an_unprivileged_agent() -> None:
    # Watching the rest would leave that folder without events and without a word: say so, and poll.
    top = Path(tempfile.mkdtemp(prefix="fta-events-", dir="/tmp"))
    try:
        (top / "source" / "cam1" / "day1").mkdir(parents=True)
        (top / "source" / "private").mkdir()
        for folder in (top, top / "source", top / "source" / "cam1", top / "source" / "cam1" / "day1"):
            folder.chmod(0o755)
            os.chown(folder, 65534, 65534)
        (top / "source" / "private").chmod(0o700)  # root's
        code = (
            "import logging, sys\nfrom pathlib import Path\nfrom fta.events import SourceEvents\n"
            "logging.basicConfig(level=logging.WARNING, format='%(message)s')\n"
            "events = SourceEvents(Path(sys.argv[1]), lambda: None)\nprint(events.start())\n"
            "import os; os.rmdir(Path(sys.argv[1]) / 'private')\n"
            "print(events.start(), events.watched)\nevents.stop()\n"
        )
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code]
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        done = subprocess.run([*as_nobody, str(top / "source")], capture_output=True, text=True, env=env, timeout=60)
    finally:
        shutil.rmtree(top)
    assert done.stdout.split() == ["False", "True", "3"], done.stderr  # without that folder: the whole tree
    assert f"file events unavailable ({top}/source/private: Permission denied)" in done.stderr


def test_an_error_after_arming_ends_the_watch_with_one_warning(
    source: Path, wakes: Wakes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = threading.Event()
    real = fta.inotify.Inotify.read

    def read(self: fta.inotify.Inotify, timeout: float) -> list[Event]:
        if broken.is_set():
            raise OSError(errno.EIO, "Input/output error")
        return real(self, timeout)

    monkeypatch.setattr(fta.inotify.Inotify, "read", read)
    before = inotify_fds()
    watcher = SourceEvents(source, wakes)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert watcher.start()
        write(source / "a.mxf", b"x")
        assert wakes.wait()
        broken.set()
        assert eventually(lambda: not watcher.active)
        assert eventually(lambda: not watch_threads())
    assert watcher.changes == 1
    assert warnings_of(caplog) == ["file events stopped (Input/output error); finding files by rescanning only"]
    assert inotify_fds() == before


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
    source: Path, wakes: Wakes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    (source / "cam1").mkdir()
    release = threading.Event()
    real = fta.inotify._libc_add_watch

    def slow(fd: int, path: bytes, mask: int) -> int:
        release.wait(WAKE_TIMEOUT * 4)  # still walking a huge tree
        return real(fd, path, mask)

    monkeypatch.setattr(fta.inotify, "_libc_add_watch", slow)
    monkeypatch.setattr(fta.events, "ARM_TIMEOUT", 0.05)
    before = inotify_fds()
    watcher = SourceEvents(source, wakes)
    with caplog.at_level(logging.WARNING, logger="fta.events"):
        assert not watcher.start()
        release.set()
        assert eventually(lambda: not watch_threads())
    assert not watcher.active
    assert any("took over 0.05 s" in line for line in warnings_of(caplog))
    assert inotify_fds() == before


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


# -- batches and the kernel's own notices ---------------------------------------------------------------------------


def test_a_batch_ends_when_a_step_brings_nothing_new() -> None:
    batch = Batch(step=0.05, debounce=0.4)
    assert not batch.due(0.0)
    batch.add(("a.mxf",), 1.0)
    assert not batch.due(1.04)  # before the first step
    assert not batch.due(1.05)  # the first step brought the first change
    batch.add(("a.mxf",), 1.06)  # the same change again (a growing file): nothing new
    assert batch.due(1.10)
    assert not batch.due(1.2)  # emptied
    batch.add(("b.mxf",), 2.0)
    assert not batch.due(2.05)
    batch.add(("c.mxf",), 2.06)  # something new: the batch goes on
    assert not batch.due(2.10)
    assert batch.due(2.15)


def test_a_batch_that_keeps_growing_ends_after_the_debounce_time() -> None:
    batch = Batch(step=0.05, debounce=0.4)
    now, ended = 0.0, 0.0
    for index in range(100):
        now = index * 0.05
        batch.add((f"clip{index}.mxf",), now)
        if batch.due(now):
            ended = now
            break
    assert ended == pytest.approx(0.4)


def test_a_batch_is_bounded() -> None:
    batch = Batch(step=0.05, debounce=0.4, limit=3)
    for index in range(10):
        batch.add((index,), 1.0)
    assert len(batch.keys) == 3
    assert batch.due(1.0)  # handed over at once: the rescan finds the rest


def test_the_event_parser_reads_names_as_bytes_and_the_overflow_notice() -> None:
    def record(wd: int, mask: int, name: bytes = b"") -> bytes:
        padded = name.ljust((len(name) // 16 + 1) * 16, b"\0") if name else b""  # NUL-padded, as the kernel does
        return struct.pack("iIII", wd, mask, 0, len(padded)) + padded

    buffer = record(1, IN_CREATE, b"\xff.mxf") + record(-1, IN_Q_OVERFLOW) + record(2, IN_MODIFY, b"clip.mxf")
    assert parse(buffer) == [
        Event(1, IN_CREATE, 0, b"\xff.mxf"),
        Event(-1, IN_Q_OVERFLOW, 0, b""),
        Event(2, IN_MODIFY, 0, b"clip.mxf"),
    ]
    assert parse(buffer[:-3]) == parse(buffer)[:2]  # a cut record is dropped, never misread


def test_an_overflow_notice_wakes(events: SourceEvents, source: Path, wakes: Wakes) -> None:
    """The kernel's queue overflowed (events were lost): wake, the rescan finds whatever they were about."""
    assert events.start()
    tree = events._tree
    assert tree is not None
    assert events._handle(Event(-1, IN_Q_OVERFLOW, 0, b""), tree, threading.Event()) is not None


def test_a_real_overflow_wakes_and_the_watch_goes_on(
    source: Path, caplog: pytest.LogCaptureFixture, wakes: Wakes
) -> None:
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too many events to make here")
    held, release = threading.Event(), threading.Event()

    def on_change() -> None:  # the loop's callback, held once so that the watch thread reads nothing meanwhile
        if not held.is_set():
            held.set()
            release.wait(30)
        wakes()

    a, b = write(source / "a.mxf", b""), write(source / "b.mxf", b"")
    watcher = SourceEvents(source, on_change)
    try:
        with caplog.at_level(logging.DEBUG, logger="fta.events"):
            assert watcher.start()
            write(source / "first.mxf", b"x")
            assert held.wait(WAKE_TIMEOUT)
            with a.open("ab") as one, b.open("ab") as other:
                for _ in range(limit // 2 + 100):  # alternating: the kernel merges only repeats of one event
                    one.write(b"x")
                    one.flush()
                    other.write(b"y")
                    other.flush()
            release.set()
            assert eventually(lambda: any("queue overflowed" in r.getMessage() for r in caplog.records))
            assert eventually(lambda: wakes.count >= 2)  # the held batch, then the one with the notice
            assert watcher.active
            write(source / "after.mxf", b"x")
            assert wakes.wait()
    finally:
        release.set()
        watcher.stop()
