"""Nothing outside the two roots is read, written or deleted, whatever others do to the folders meanwhile.

Each race is made deterministic by doing the swap from inside the copy (a wrapped system call or a disk under the
copier's I/O seam, ``Copier(io=...)``), at the very moment a path-based implementation would be redirected; the
stress test at the end races real swaps against a running watch and watches the outside folders with inotify.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fta import paths
from fta.copier import Copier
from fta.errors import DestinationBlocked
from fta.scanner import scan_source
from fta.stability import FileSig, ReadinessCheck, can_lock_exclusively
from tests.conftest import DEEP, MakeSettings, make_deep_folders, write
from tests.copy_ios import AfterEachChunk

# -- helpers ------------------------------------------------------------------------------------------------------

IN_ACCESS, IN_MODIFY, IN_ATTRIB = 0x001, 0x002, 0x004
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE, IN_OPEN = 0x040, 0x080, 0x100, 0x200, 0x020
WATCHED = IN_OPEN | IN_ACCESS | IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ATTRIB
_RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)


class Inotify:
    """Every open, read, change, creation, deletion or move in the watched folders (not recursive: add each)."""

    def __init__(self) -> None:
        self.fd = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            pytest.skip(f"inotify is not available: {os.strerror(ctypes.get_errno())}")
        self.folders: dict[int, Path] = {}

    def watch_tree(self, top: Path) -> None:
        for folder in [folder for folder, _, _ in os.walk(top)]:  # walked first: the walk itself opens them
            wd = _libc.inotify_add_watch(self.fd, os.fsencode(folder), WATCHED)
            assert wd >= 0, os.strerror(ctypes.get_errno())
            self.folders[wd] = Path(folder)

    def events(self) -> list[str]:
        found: list[str] = []
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return found
            offset = 0
            while offset < len(data):
                wd, mask, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode(errors="replace")
                found.append(f"{self.folders.get(wd, '?')}/{name} mask={mask:#x}")
                offset += 16 + length

    def close(self) -> None:
        os.close(self.fd)


def snapshot(top: Path) -> dict[str, bytes]:
    """Every name below ``top`` (symlinks as their target text) with its bytes."""
    found: dict[str, bytes] = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(folder, name)
            rel = path.relative_to(top).as_posix()
            if path.is_symlink():
                found[rel] = b"-> " + os.fsencode(os.readlink(path))
            elif path.is_file():
                found[rel] = path.read_bytes()
            else:
                found[rel] = b"<folder>"
    return found


def exchange(folder: Path, a: str, b: str) -> None:
    """Swap two names of one folder atomically (``renameat2(RENAME_EXCHANGE)``): both always exist."""
    encoded_a, encoded_b = os.fsencode(folder / a), os.fsencode(folder / b)
    if _libc.renameat2(-100, encoded_a, -100, encoded_b, _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(folder / a))


def swap_for_symlink(folder: Path, target: Path) -> Path:
    """Rename ``folder`` aside and put a symlink to ``target`` in its place; returns where the real folder went."""
    aside = folder.with_name(folder.name + "-aside")
    folder.rename(aside)
    folder.symlink_to(target, target_is_directory=True)
    return aside


def files_by_content(top: Path) -> dict[str, list[str]]:
    """sha256 -> relative paths of the regular files below ``top`` (symlinks never followed)."""
    found: dict[str, list[str]] = {}
    for folder, _, files in os.walk(top):
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                found.setdefault(digest, []).append(path.relative_to(top).as_posix())
    return found


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """Another folder of the machine, holding files with the very names the agent works on."""
    top = tmp_path / "outside"
    write(top / "cam1" / "clip.mxf", b"someone else's file, same name")
    write(top / "cam1" / "other.mxf", b"another file of theirs")
    return top


# -- the source: the delete can never be redirected ----------------------------------------------------------------


@pytest.mark.parametrize("swap_in", ["symlink", "another real folder"])
def test_a_source_folder_swapped_right_before_the_delete_deletes_only_the_file_read(
    make_settings: MakeSettings,
    source: Path,
    destination: Path,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
    swap_in: str,
) -> None:
    """The window between the last check of the source and its unlink: ``src/cam1`` is swapped for a symlink to a
    folder holding a file of the same name (or for another real folder of the source holding one). The delete goes
    to the file that was read, nowhere else."""
    src = write(source / "cam1" / "clip.mxf", b"the recording")
    write(source / "decoy" / "clip.mxf", b"never copied, must stay")
    before = snapshot(outside)
    real_unlink = os.unlink
    swapped: list[Path] = []

    def swap_then_unlink(path: Any, *, dir_fd: int | None = None) -> None:
        if not swapped:
            if swap_in == "symlink":
                swapped.append(swap_for_symlink(source / "cam1", outside / "cam1"))
            else:
                (source / "cam1").rename(source / "cam1-aside")
                (source / "decoy").rename(source / "cam1")
                swapped.append(source / "cam1-aside")
        real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", swap_then_unlink)
    result = Copier(make_settings()).copy("cam1/clip.mxf", FileSig.from_stat(src.stat()))
    monkeypatch.undo()
    assert swapped, "the copy never reached its delete"
    assert snapshot(outside) == before  # nothing outside deleted
    assert result.outcome == "copied"
    assert (destination / "cam1" / "clip.mxf").read_bytes() == b"the recording"
    assert not (swapped[0] / "clip.mxf").exists()  # the file read is the file deleted
    if swap_in == "another real folder":  # the decoy now sits at the path the copy was started with
        assert (source / "cam1" / "clip.mxf").read_bytes() == b"never copied, must stay"


def test_a_source_folder_swapped_for_a_symlink_during_the_copy_touches_nothing_outside(
    make_settings: MakeSettings, source: Path, destination: Path, outside: Path
) -> None:
    data = os.urandom(3 * 64 * 1024)
    src = write(source / "cam1" / "clip.mxf", data)
    before = snapshot(outside)
    swapped: list[Path] = []

    def swap_after_the_first_chunk(chunk: memoryview) -> None:
        if not swapped:
            swapped.append(swap_for_symlink(source / "cam1", outside / "cam1"))

    copier = Copier(make_settings(), chunk_size=64 * 1024, io=AfterEachChunk(swap_after_the_first_chunk))
    result = copier.copy("cam1/clip.mxf", FileSig.from_stat(src.stat()))
    assert swapped
    assert snapshot(outside) == before
    assert result.outcome == "copied"  # the file read, in the folder it was read from, is the one deleted
    assert not (swapped[0] / "clip.mxf").exists()
    assert (destination / "cam1" / "clip.mxf").read_bytes() == data


def test_a_source_folder_already_a_symlink_is_not_read(
    make_settings: MakeSettings, source: Path, outside: Path
) -> None:
    """The scan saw a real folder; by the copy it is a symlink: the copy does not open anything through it."""
    sig = FileSig.from_stat(write(source / "cam1" / "clip.mxf", b"data").stat())
    swap_for_symlink(source / "cam1", outside / "cam1")
    watcher = Inotify()
    watcher.watch_tree(outside)
    try:
        result = Copier(make_settings()).copy("cam1/clip.mxf", sig)
        events = watcher.events()
    finally:
        watcher.close()
    assert result.outcome == "changed"
    assert events == []


# -- the destination: a symlink below the root is refused, never followed -------------------------------------------


def test_a_symlinked_destination_folder_is_refused_with_the_reason(
    make_settings: MakeSettings, source: Path, destination: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (destination / "cam1").symlink_to(elsewhere, target_is_directory=True)
    src = write(source / "cam1" / "day1" / "clip.mxf", b"data")
    with pytest.raises(DestinationBlocked) as caught:
        Copier(make_settings()).copy("cam1/day1/clip.mxf")
    assert str(caught.value) == f"destination: {destination / 'cam1'} is a symlink: not followed"
    assert list(elsewhere.iterdir()) == []
    assert src.read_bytes() == b"data"


def test_a_symlink_deeper_below_the_destination_root_is_named(
    make_settings: MakeSettings, source: Path, destination: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (destination / "a" / "b").mkdir(parents=True)
    (destination / "a" / "b" / "c").symlink_to(elsewhere, target_is_directory=True)
    write(source / "a" / "b" / "c" / "clip.mxf", b"data")
    with pytest.raises(DestinationBlocked, match=r"/a/b/c is a symlink: not followed"):
        Copier(make_settings()).copy("a/b/c/clip.mxf")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("moment", ["after the folders were made", "during the copy"])
def test_a_destination_folder_swapped_for_a_symlink_before_the_rename_writes_nothing_outside(
    make_settings: MakeSettings,
    source: Path,
    destination: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    moment: str,
) -> None:
    """``dst/cam1`` becomes a symlink to a folder that holds files named like our temp file and the final name:
    the temp file, the read-back, the rename and any clean-up stay in the folder the copy opened."""
    settings = make_settings()
    elsewhere = tmp_path / "elsewhere"
    swapped: list[Path] = []

    def swap(*chunk: memoryview) -> None:
        if not swapped:
            swapped.append(swap_for_symlink(destination / "cam1", elsewhere))

    during = moment == "during the copy"
    copier = Copier(settings, chunk_size=64 * 1024, io=AfterEachChunk(swap) if during else None)
    data = os.urandom(3 * 64 * 1024)
    src = write(source / "cam1" / "clip.mxf", data)
    write(elsewhere / paths.temp_name("clip.mxf", copier.owner), b"named like the temp file")
    write(elsewhere / "clip.mxf", b"named like the final file")
    (destination / "cam1").mkdir()
    before = snapshot(elsewhere)
    if not during:
        real_name_max = paths.name_max

        def swap_then_ask(folder: Path | int) -> int:  # asked right after the folders are made
            swap()
            return real_name_max(folder)

        monkeypatch.setattr(paths, "name_max", swap_then_ask)
    result = copier.copy("cam1/clip.mxf", FileSig.from_stat(src.stat()))
    monkeypatch.undo()
    assert swapped
    assert snapshot(elsewhere) == before
    assert result.outcome == "copied"
    assert (swapped[0] / "clip.mxf").read_bytes() == data  # in the folder the copy opened, wherever it is now
    assert files_by_content(destination)[hashlib.sha256(data).hexdigest()] == ["cam1-aside/clip.mxf"]
    assert not src.exists()


# -- the scan and the readiness checks -------------------------------------------------------------------------------


class _SwapWhenListed:
    """Wraps one ``scandir`` iterator: when its listing is exhausted, ``swap`` runs (before the walk goes deeper)."""

    def __init__(self, inner: Any, swap: Callable[[], object]) -> None:
        self._inner, self._swap = inner, swap

    def __enter__(self) -> _SwapWhenListed:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __iter__(self) -> Iterator[Any]:
        yield from self._inner
        self._swap()

    def close(self) -> None:
        self._inner.close()


def test_a_folder_swapped_for_a_symlink_while_the_scan_runs_is_not_listed(
    source: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(source / "cam1" / "clip.mxf", b"ours")
    write(source / "top.mxf", b"ours too")
    real_scandir = os.scandir
    calls: list[int] = []

    def scandir(where: Any) -> Any:
        calls.append(1)
        inner = real_scandir(where)
        if len(calls) == 1:  # the root: cam1 is listed as a folder, then swapped before it is entered
            return _SwapWhenListed(inner, lambda: swap_for_symlink(source / "cam1", outside / "cam1"))
        return inner

    monkeypatch.setattr(os, "scandir", scandir)
    found = scan_source(source)
    assert set(found) == {"top.mxf"}  # nothing of the outside folder


def test_the_readiness_checks_open_nothing_through_a_symlinked_folder(source: Path, outside: Path) -> None:
    sig = FileSig.from_stat(write(source / "cam1" / "clip.mxf", b"data").stat())
    swap_for_symlink(source / "cam1", outside / "cam1")
    check = ReadinessCheck(source, lambda rel: sig, check_writers=True, use_lock=True)
    watcher = Inotify()
    watcher.watch_tree(outside)
    try:
        assert check("cam1/clip.mxf") is False  # the lock could not be taken: not opened, so not ready
        assert can_lock_exclusively(Path("cam1/clip.mxf"), source) is False
        events = watcher.events()
    finally:
        watcher.close()
    assert events == []


def test_file_events_list_nothing_through_a_symlinked_folder(source: Path, outside: Path) -> None:
    from fta.events import SourceEvents

    (source / "cam1").symlink_to(outside / "cam1", target_is_directory=True)
    watcher = Inotify()
    watcher.watch_tree(outside)
    events = SourceEvents(source, lambda: None)
    try:
        assert events.start()
    finally:
        events.stop()
    try:
        found = watcher.events()
    finally:
        watcher.close()
    assert found == []


def watched_inodes(events: Any) -> set[tuple[int, int]]:
    """(device, inode) of each folder the kernel watches for ``events`` (read from its inotify instance's fdinfo:
    the kernel's own list, not the watcher's bookkeeping)."""
    tree = events._tree
    assert tree is not None
    found = set()
    for line in Path(f"/proc/self/fdinfo/{tree.inotify.fd}").read_text().splitlines():
        if line.startswith("inotify wd:"):
            fields = dict(field.split(":", 1) for field in line.split()[1:])
            device = int(fields["sdev"], 16)
            found.add((os.makedev(device >> 20, device & 0xFFFFF), int(fields["ino"], 16)))
    return found


def real_folders(top: Path) -> set[tuple[int, int]]:
    """(device, inode) of ``top`` and every folder below it, symlinks never followed (the walk opens them: take
    this of an outside folder before watching it)."""
    found = set()
    for folder, _, _ in os.walk(top):
        st = os.stat(folder, follow_symlinks=False)
        found.add((st.st_dev, st.st_ino))
    return found


@contextlib.contextmanager
def events_beside_a_watched_outside(
    source: Path, outside: Path, on_change: Callable[[], None]
) -> Iterator[tuple[Any, Inotify, set[tuple[int, int]]]]:
    """File events on ``source`` while inotify records what happens in ``outside``: (the events, the outside's
    inotify, the outside's folders as they were before the watch); both stopped at the end."""
    from fta.events import SourceEvents

    outside_folders = real_folders(outside)
    watcher = Inotify()
    watcher.watch_tree(outside)
    events = SourceEvents(source, on_change)
    try:
        yield events, watcher, outside_folders
    finally:
        events.stop()
        watcher.close()


def test_file_events_watch_nothing_behind_a_symlink_to_the_whole_filesystem(source: Path) -> None:
    """``src/cam1 -> /``: only the source's own folders are watched (the walk does not even start out there)."""
    from fta.events import SourceEvents

    (source / "cam2" / "day1").mkdir(parents=True)
    (source / "cam1").symlink_to("/", target_is_directory=True)
    woke = threading.Event()
    events = SourceEvents(source, woke.set)
    try:
        assert events.start()
        assert watched_inodes(events) == real_folders(source)
        assert events.watched == 3
        (source / "cam2" / "root").symlink_to("/", target_is_directory=True)  # one made while watching
        (source / "cam3").mkdir()
        assert woke.wait(5)
        deadline = time.monotonic() + 5
        while events.watched != 4 and time.monotonic() < deadline:
            woke.wait(0.01)
        assert watched_inodes(events) == real_folders(source)
        assert events.watched == 4
    finally:
        events.stop()


def test_file_events_do_not_follow_a_folder_swapped_between_listing_and_opening(
    source: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The walk listed ``cam1`` as a folder; before it opens it, ``cam1`` is a symlink to an outside folder."""
    import fta.inotify

    (source / "cam1" / "day1").mkdir(parents=True)
    real_list = fta.inotify._subfolders
    swapped: list[Path] = []

    def list_then_swap(fd: int, most: int) -> list[str]:
        names = real_list(fd, most)
        if "cam1" in names and not swapped:
            swapped.append(swap_for_symlink(source / "cam1", outside / "cam1"))
        return names

    monkeypatch.setattr(fta.inotify, "_subfolders", list_then_swap)
    with events_beside_a_watched_outside(source, outside, lambda: None) as (events, watcher, outside_folders):
        assert events.start()
        assert swapped
        assert not watched_inodes(events) & outside_folders
        # The real folder, renamed to cam1-aside in the source, is watched once its rename is read.
        deadline = time.monotonic() + 5
        while watched_inodes(events) != real_folders(source) and time.monotonic() < deadline:
            threading.Event().wait(0.01)
        assert watched_inodes(events) == real_folders(source)
        found = watcher.events()
    assert found == []


def test_file_events_watch_the_folder_opened_even_if_its_name_is_swapped_before_the_watch(
    source: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the open and the watch, ``cam1`` becomes a symlink: the watch goes on the folder opened (through
    its handle), never on what the name leads to now."""
    import fta.inotify

    (source / "cam1").mkdir()
    real_add = fta.inotify._libc_add_watch
    swapped: list[Path] = []
    watched_then: list[int] = []

    def swap_then_watch(fd: int, path: bytes, mask: int) -> int:
        swap = not swapped and (source / "cam1").exists() and os.path.samefile(path, source / "cam1")
        if swap:
            swapped.append(swap_for_symlink(source / "cam1", outside / "cam1"))
        wd = real_add(fd, path, mask)
        if swap:  # what the kernel watches under that wd, right now (the rename is handled later)
            lines = Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines()
            watched_then.extend(int(line.split(" ino:")[1].split()[0], 16) for line in lines if f"wd:{wd} " in line)
        return wd

    monkeypatch.setattr(fta.inotify, "_libc_add_watch", swap_then_watch)
    with events_beside_a_watched_outside(source, outside, lambda: None) as (events, watcher, outside_folders):
        assert events.start()
        assert swapped
        assert watched_then == [swapped[0].stat().st_ino]  # the folder opened, now named cam1-aside
        assert not watched_inodes(events) & outside_folders
        found = watcher.events()
    assert found == []


def test_file_events_do_not_follow_a_new_folder_swapped_before_it_is_watched(
    source: Path, outside: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder made while watching is a symlink by the time its event is handled: not followed, the watch goes on."""
    import fta.inotify

    real_open = fta.inotify._open_child
    swapped: list[Path] = []

    def swap_then_open(fd: int, name: bytes) -> int | None:
        if name == b"cam1" and not swapped:
            swapped.append(swap_for_symlink(source / "cam1", outside / "cam1"))
        return real_open(fd, name)

    monkeypatch.setattr(fta.inotify, "_open_child", swap_then_open)
    woke = threading.Event()
    with events_beside_a_watched_outside(source, outside, woke.set) as (events, watcher, outside_folders):
        assert events.start()
        (source / "cam1").mkdir()
        assert woke.wait(5)
        deadline = time.monotonic() + 5
        while not swapped and time.monotonic() < deadline:
            woke.wait(0.01)
        assert swapped
        write(source / "next.mxf", b"x")  # events still come
        woke.clear()
        assert woke.wait(5)
        assert events.active
        assert watched_inodes(events) <= real_folders(source)
        assert not watched_inodes(events) & outside_folders
        found = watcher.events()
    assert found == []


def test_file_events_raced_against_folder_swaps_reach_nothing_outside(source: Path, outside: Path) -> None:
    """``src/cam1`` exchanged with a symlink to an outside folder hundreds of times while folders are made in it
    and the watch follows them: the kernel never watches an outside folder and inotify there records nothing."""
    from fta.events import SourceEvents

    (source / "cam1").mkdir()
    (source / ".swap").symlink_to(outside / "cam1", target_is_directory=True)
    for index in range(5):
        (outside / "cam1" / f"new{index}").mkdir()
    outside_folders = real_folders(outside)
    watcher = Inotify()
    watcher.watch_tree(outside)
    events = SourceEvents(source, lambda: None, step_ms=5)
    stop = threading.Event()
    seen_outside: list[set[tuple[int, int]]] = []
    real_cam1 = os.open(source / "cam1", os.O_RDONLY | os.O_DIRECTORY)
    swaps = [0]

    def swapper() -> None:
        while not stop.is_set():
            exchange(source, "cam1", ".swap")
            swaps[0] += 1
            exchange(source, "cam1", ".swap")
            time.sleep(0.001)

    def maker() -> None:
        index = 0
        while not stop.is_set():
            name = f"new{index % 5}"
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, dir_fd=real_cam1)
            os.rmdir(name, dir_fd=real_cam1)
            index += 1

    try:
        assert events.start()
        threads = [threading.Thread(target=swapper, daemon=True), threading.Thread(target=maker, daemon=True)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            overlap = watched_inodes(events) & outside_folders
            if overlap:
                seen_outside.append(overlap)
            stop.wait(0.005)
        stop.set()
        for thread in threads:
            thread.join(10)
        found = watcher.events()
    finally:
        stop.set()
        events.stop()
        watcher.close()
        os.close(real_cam1)
    assert swaps[0] > 100
    assert seen_outside == []
    assert found == []


# -- paths deeper than PATH_MAX ------------------------------------------------------------------------------------


def make_deep(root: Path, folders: list[str], name: str, data: bytes) -> str:
    """Create ``root/folders.../name`` one name at a time (5,020 bytes with ``DEEP``: past PATH_MAX)."""
    fd, _ = make_deep_folders(root, folders)
    try:
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=fd)
        os.write(out, data)
        os.close(out)
    finally:
        os.close(fd)
    return "/".join([*folders, name])


def read_deep(root: Path, rel: str) -> bytes | None:
    """The bytes of ``root/rel`` read one name at a time; None when it is not there."""
    *folders, name = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for folder in folders:
            child = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = child
        data = os.open(name, os.O_RDONLY, dir_fd=fd)
        try:
            return os.read(data, 1 << 20)
        finally:
            os.close(data)
    except FileNotFoundError:
        return None
    finally:
        os.close(fd)


def test_a_path_longer_than_path_max_is_scanned_and_moved(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    rel = make_deep(source, DEEP, "clip.mxf", b"deep recording")
    assert len(os.fsencode(source / rel)) > 4096
    found = scan_source(source)
    assert set(found) == {rel}
    result = Copier(make_settings()).copy(rel, found[rel])
    assert result.outcome == "copied"
    assert read_deep(destination, rel) == b"deep recording"
    assert read_deep(source, rel) is None


def test_a_name_the_destination_refuses_is_a_per_file_error_with_the_reason(
    make_settings: MakeSettings, source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A share that refuses a character in a folder name (EINVAL, as CIFS does for ``:``) fails that file alone,
    with the reason; the source stays."""
    src = write(source / "cam:1" / "clip.mxf", b"data")
    real_mkdir = os.mkdir

    def refuse_colons(path: Any, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if ":" in os.fspath(path):
            raise OSError(errno.EINVAL, "Invalid argument", os.fspath(path))
        real_mkdir(path, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", refuse_colons)
    with pytest.raises(DestinationBlocked) as caught:
        Copier(make_settings()).copy("cam:1/clip.mxf")
    assert str(caught.value) == f"destination: EINVAL Invalid argument: {destination / 'cam:1'}"
    assert src.read_bytes() == b"data"


# -- end to end -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):  # a busy machine starts it slowly
        yield


@pytest.mark.e2e
def test_transfer_once_moves_a_path_deeper_than_path_max(prefect_server: None, source: Path, destination: Path) -> None:
    from flows.config import run_in_process
    from flows.transfer_once import transfer_once
    from tests.prefect_helpers import fast_config, runs_by_name

    rel = make_deep(source, DEEP, "clip.mxf", b"deep recording")
    write(source / "shallow.mxf", b"shallow")
    state = run_in_process(transfer_once, fast_config(source, destination), return_state=True)
    assert state.is_completed(), state.message
    assert read_deep(destination, rel) == b"deep recording"
    assert read_deep(source, rel) is None
    assert (destination / "shallow.mxf").read_bytes() == b"shallow"
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    runs = runs_by_name(flow_run_id, expect=2)
    assert f"copy {rel}" in runs


RACE_SECONDS = float(os.environ.get("FTA_RACE_SECONDS", "60"))


def race_folder_swaps(
    source: Path,
    destination: Path,
    outside: Path,
    seconds: float,
    file_events: bool = False,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> tuple[int, int]:
    """Run a watch while ``src/cam1`` and ``dst/cam1`` are swapped for symlinks to outside folders (and back) in a
    tight loop and files are written into the real source folder; then check that nothing outside was touched and
    every file arrived exactly once, whole."""
    from flows.config import run_in_process
    from flows.watch_folder import watch_folder
    from fta.stop_switch import StopSwitch
    from tests.prefect_helpers import Background, fast_config, wait_until

    for side in ("src", "dst"):
        write(outside / side / "cam1" / "clip0000.mxf", b"outside " + side.encode())
        write(outside / side / "cam1" / "clip0001.mxf", b"outside too " + side.encode())
    (source / "cam1").mkdir()
    (destination / "cam1").mkdir()
    for root, side in ((source, "src"), (destination, "dst")):
        (root / ".swap").symlink_to(outside / side / "cam1", target_is_directory=True)
    before = snapshot(outside)
    watcher = Inotify()
    watcher.watch_tree(outside)
    stop = threading.Event()
    written: dict[str, bytes] = {}
    real_source = os.open(source / "cam1", os.O_RDONLY | os.O_DIRECTORY)
    swaps = [0]

    def swapper() -> None:
        # Both names always exist (RENAME_EXCHANGE): "cam1" is a real folder most of the time, a symlink at moments.
        while not stop.is_set():
            for root in (source, destination):
                exchange(root, "cam1", ".swap")
            swaps[0] += 1
            time.sleep(0.001)
            for root in (source, destination):
                exchange(root, "cam1", ".swap")
            time.sleep(0.004)

    def writer() -> None:
        index = 0
        while not stop.is_set():
            name = f"clip{index:04d}.mxf"
            data = f"{name} {os.urandom(8).hex()} ".encode() * (1 + index % 50)
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=real_source)
            os.write(fd, data)
            os.close(fd)
            written[name] = data
            index += 1
            stop.wait(0.05)

    started: list[Any] = []
    if file_events and monkeypatch is not None:
        from fta.events import SourceEvents

        real_start = SourceEvents.start

        def recording_start(events: SourceEvents) -> bool:
            started.append(events)
            return real_start(events)

        monkeypatch.setattr(SourceEvents, "start", recording_start)
    config = fast_config(source, destination, max_retry_attempts=20, max_concurrent_copies=4, file_events=file_events)
    stop_run = StopSwitch()
    run = Background(lambda: run_in_process(watch_folder, config, stop=stop_run, return_state=True))
    threads = [threading.Thread(target=swapper, daemon=True), threading.Thread(target=writer, daemon=True)]
    for thread in threads:
        thread.start()
    try:
        stop.wait(seconds)
        if file_events:  # watched all along: started once, never stopped by the swaps
            assert [events.active for events in started] == [True]
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        os.close(real_source)
    try:
        assert (source / "cam1").is_dir() and not (source / "cam1").is_symlink()
        wait_until(lambda: not any((source / "cam1").iterdir()), timeout=240, what="the source to be emptied")
    finally:
        stop_run.request()
        state = run.result(timeout=60)
    events = watcher.events()
    watcher.close()
    assert events == [], events[:20]
    assert snapshot(outside) == before
    assert state.is_completed()
    arrived = files_by_content(destination)
    expected = {hashlib.sha256(data).hexdigest(): [f"cam1/{name}"] for name, data in written.items()}
    assert arrived == expected  # each file exactly once, whole, at its own name: nothing lost, no duplicate
    assert swaps[0] > 100 and len(written) > 20, (swaps[0], len(written))
    return swaps[0], len(written)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(RACE_SECONDS + 480)
def test_folder_swaps_raced_against_a_running_watch_reach_nothing_outside(
    prefect_server: None, source: Path, destination: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With file events on, as by default: their watcher follows the swaps too, and must not reach outside either.
    outside = tmp_path / "outside"
    swaps, files = race_folder_swaps(source, destination, outside, RACE_SECONDS, True, monkeypatch)
    print(f"{swaps} swaps of both folders, {files} files written and moved in {RACE_SECONDS:g} s")
