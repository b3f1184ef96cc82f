"""The verified copier on a real filesystem: the data-safety invariants, one by one."""

from __future__ import annotations

import errno
import os
import threading
from itertools import islice
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fta import paths
from fta.copier import Copier, CopyResult, hash_file
from fta.copy_io import CopyIO
from fta.errors import (
    CopyInterrupted,
    CorruptCopy,
    DestinationBlocked,
    DestinationUnavailable,
    FileIOError,
    SourceUnreadable,
)
from fta.probe import ProbeResult
from fta.stability import FileSig
from tests.conftest import FakeClock, MakeSettings, Mount, unmount, write

CHUNK = 64 * 1024


def leftovers(root: Path) -> list[Path]:
    """Temp files of ours anywhere below root."""
    return [p for p in root.rglob("*") if paths.temp_owner(p.name) is not None]


def sig(path: Path) -> FileSig:
    return FileSig.from_stat(path.stat())


def test_copies_verifies_renames_and_deletes_the_source(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    data = os.urandom(3 * CHUNK + 17)
    src = write(source / "day1" / "cam a" / "clip.mxf", data)
    result = Copier(make_settings(), chunk_size=CHUNK).copy("day1/cam a/clip.mxf", expected=sig(src))
    final = destination / "day1" / "cam a" / "clip.mxf"
    assert result.outcome == "copied"
    assert result.destination == final
    assert final.read_bytes() == data
    assert not src.exists()
    assert result.size == len(data)
    assert result.checksum == hash_file(final)
    assert result.checksum is not None and result.checksum.startswith("xxh3_128:")
    assert not result.conflict_renamed
    assert leftovers(destination) == []


def test_name_conflicts_get_numbered_and_never_overwrite(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    write(destination / "video.mxf", b"older recording")
    write(destination / "video_1.mxf", b"another older one")
    write(source / "video.mxf", b"the new recording")
    result = Copier(make_settings()).copy("video.mxf")
    assert result.destination == destination / "video_2.mxf"
    assert result.conflict_renamed
    assert (destination / "video.mxf").read_bytes() == b"older recording"
    assert (destination / "video_1.mxf").read_bytes() == b"another older one"
    assert (destination / "video_2.mxf").read_bytes() == b"the new recording"


@pytest.mark.parametrize("verify", ["checksum", "size"])
def test_same_size_different_content_is_not_taken_for_a_delivered_copy(
    make_settings: MakeSettings, source: Path, destination: Path, verify: str
) -> None:
    write(destination / "a.mxf", b"AAAA")
    src = write(source / "a.mxf", b"BBBB")
    result = Copier(make_settings(verify=verify)).copy("a.mxf")
    assert result.outcome == "copied"
    assert result.destination == destination / "a_1.mxf"
    assert (destination / "a.mxf").read_bytes() == b"AAAA"
    assert (destination / "a_1.mxf").read_bytes() == b"BBBB"
    assert not src.exists()


def test_already_delivered_copy_deletes_the_source_without_a_duplicate(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    data = os.urandom(CHUNK)
    write(destination / "clips" / "a.mxf", b"a different file that was there first")
    write(destination / "clips" / "a_1.mxf", data)  # a crash right after the rename
    src = write(source / "clips" / "a.mxf", data)
    result = Copier(make_settings()).copy("clips/a.mxf")
    assert result.outcome == "already_present"
    assert result.destination == destination / "clips" / "a_1.mxf"
    assert result.checksum == hash_file(destination / "clips" / "a_1.mxf")
    assert not src.exists()
    assert sorted(p.name for p in (destination / "clips").iterdir()) == ["a.mxf", "a_1.mxf"]


def test_source_that_changed_since_it_was_stable_is_left_alone(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    src = write(source / "a.mxf", b"first part")
    seen = sig(src)
    with src.open("ab") as f:
        f.write(b" and more")
    result = Copier(make_settings()).copy("a.mxf", expected=seen)
    assert result.outcome == "changed"
    assert result.destination is None
    assert src.read_bytes() == b"first part and more"
    assert list(destination.iterdir()) == []


def test_source_growing_during_the_copy_is_kept_and_the_temp_removed(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    src = write(source / "a.mxf", os.urandom(4 * CHUNK))
    calls = []

    def append_once(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            with src.open("ab") as f:
                f.write(b"the recorder woke up again")

    result = Copier(make_settings(), chunk_size=CHUNK, progress_interval=0).copy("a.mxf", progress=append_once)
    assert result.outcome == "changed"
    assert src.stat().st_size == 4 * CHUNK + len(b"the recorder woke up again")
    assert list(destination.iterdir()) == []


def test_source_replaced_during_the_copy_is_kept(make_settings: MakeSettings, source: Path, destination: Path) -> None:
    src = write(source / "a.mxf", os.urandom(3 * CHUNK))

    def replace(done: int, total: int) -> None:
        if 0 < done < total:
            replacement = write(source / "new.bin", b"x" * (3 * CHUNK))
            replacement.replace(src)

    result = Copier(make_settings(), chunk_size=CHUNK, progress_interval=0).copy("a.mxf", progress=replace)
    assert result.outcome == "changed"
    assert src.read_bytes() == b"x" * (3 * CHUNK)
    assert leftovers(destination) == []


class FlipOneByte(CopyIO):
    """Corrupts the second chunk it writes."""

    writes = 0

    def write_chunk(self, fd: int, data: memoryview) -> None:
        self.writes += 1
        if self.writes == 2:
            spoiled = bytearray(data)
            spoiled[0] ^= 0xFF
            data = memoryview(spoiled)
        super().write_chunk(fd, data)


class DropLastByte(CopyIO):
    def write_chunk(self, fd: int, data: memoryview) -> None:
        super().write_chunk(fd, data[:-1] if len(data) < CHUNK else data)


@pytest.mark.parametrize(
    ("io_class", "verify", "words"),
    [(FlipOneByte, "checksum", "checksum"), (DropLastByte, "size", "bytes written")],
)
def test_corrupt_copy_is_detected_and_the_source_kept(
    make_settings: MakeSettings,
    source: Path,
    destination: Path,
    io_class: type[CopyIO],
    verify: str,
    words: str,
) -> None:
    data = os.urandom(3 * CHUNK + 5)
    src = write(source / "a.mxf", data)
    with pytest.raises(CorruptCopy, match=words):
        Copier(make_settings(verify=verify), chunk_size=CHUNK, io=io_class()).copy("a.mxf")
    assert src.read_bytes() == data
    assert list(destination.iterdir()) == []


@pytest.mark.parametrize("use_temporary_file", [True, False])
def test_stop_request_leaves_no_partial_file_and_keeps_the_source(
    make_settings: MakeSettings, source: Path, destination: Path, use_temporary_file: bool
) -> None:
    """Half written when the stop comes: neither the temp file nor (written in place) the final name stays."""
    data = os.urandom(4 * CHUNK)
    src = write(source / "a.mxf", data)
    stop = threading.Event()

    def stop_midway(done: int, total: int) -> None:
        if done >= 2 * CHUNK:
            stop.set()

    settings = make_settings(use_temporary_file=use_temporary_file)
    copier = Copier(settings, chunk_size=CHUNK, progress_interval=0)
    with pytest.raises(CopyInterrupted):
        copier.copy("a.mxf", progress=stop_midway, stop=stop)
    assert src.read_bytes() == data
    assert list(destination.iterdir()) == []


def test_missing_destination_root_is_global_and_never_created(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    src = write(source / "sub" / "a.mxf", b"data")
    settings = make_settings()
    destination.rmdir()
    with pytest.raises(DestinationUnavailable, match="does not exist"):
        Copier(settings).copy("sub/a.mxf")
    assert not destination.exists()
    assert src.read_bytes() == b"data"


def test_file_where_a_folder_is_needed_is_a_per_file_error(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    write(destination / "clips", b"I am a file, not a folder")
    src = write(source / "clips" / "a.mxf", b"data")
    with pytest.raises(DestinationBlocked) as caught:
        Copier(make_settings()).copy("clips/a.mxf")
    assert caught.value.side == "destination"
    assert src.read_bytes() == b"data"
    assert (destination / "clips").read_bytes() == b"I am a file, not a folder"


def test_per_file_destination_error_becomes_global_when_the_probe_fails(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    write(destination / "clips", b"in the way")
    write(source / "clips" / "a.mxf", b"data")
    copier = Copier(make_settings(), probe=lambda: ProbeResult(False, "share went away"))
    with pytest.raises(DestinationUnavailable, match="share went away") as caught:
        copier.copy("clips/a.mxf")
    assert isinstance(caught.value.__cause__, DestinationBlocked)


def test_full_destination_is_global_and_cleans_up(make_settings: MakeSettings, source: Path, tmpfs: Mount) -> None:
    small = tmpfs("2m")
    write(small / "other.bin", os.urandom(1536 * 1024))  # somebody else's file: 512 KiB left
    data = os.urandom(1024 * 1024)
    src = write(source / "big.mxf", data)
    with pytest.raises(DestinationUnavailable, match="ENOSPC") as caught:
        Copier(make_settings(destination_path=small), chunk_size=CHUNK).copy("big.mxf")
    assert caught.value.needed_bytes == len(data)  # the wait lasts until this much room is free
    assert src.read_bytes() == data
    assert [p.name for p in small.iterdir()] == ["other.bin"]


def test_a_file_larger_than_the_whole_destination_is_its_own_failure(
    make_settings: MakeSettings, source: Path, tmpfs: Mount
) -> None:
    """No wait for room that can never come (it would hold every other file back): a per-file error."""
    small = tmpfs("1m")
    data = os.urandom(2 * 1024 * 1024)
    src = write(source / "huge.mxf", data)
    with pytest.raises(DestinationBlocked, match="larger than the whole destination filesystem"):
        Copier(make_settings(destination_path=small), chunk_size=CHUNK).copy("huge.mxf")
    assert src.read_bytes() == data
    assert list(small.iterdir()) == []


def test_destination_filling_up_during_the_copy(
    make_settings: MakeSettings, source: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The free-space check passed (another writer filled the disk meanwhile): ENOSPC while writing."""
    small = tmpfs("512k")
    real_fstatvfs = os.fstatvfs
    asked: list[int] = []

    def roomy(fd: int) -> os.statvfs_result:
        asked.append(fd)
        fields = list(real_fstatvfs(fd))
        fields[4] = 10**9  # f_bavail
        return os.statvfs_result(fields)

    monkeypatch.setattr(os, "fstatvfs", roomy)
    write(small / "other.bin", os.urandom(128 * 1024))  # another writer's file
    data = os.urandom(512 * 1024)  # as big as the filesystem, more than is left of it
    src = write(source / "big.mxf", data)
    with pytest.raises(DestinationUnavailable, match="ENOSPC") as caught:
        Copier(make_settings(destination_path=small), chunk_size=CHUNK).copy("big.mxf")
    assert caught.value.needed_bytes == len(data)
    assert asked  # the free-space check passed: the write itself ran out of room
    assert src.read_bytes() == data
    assert [p.name for p in small.iterdir()] == ["other.bin"]


def test_unmounted_destination_with_require_mount_is_global(
    make_settings: MakeSettings, source: Path, tmpfs: Mount
) -> None:
    mount = tmpfs("16m")
    data = os.urandom(4 * CHUNK)
    src = write(source / "a.mxf", data)
    copier = Copier(make_settings(destination_path=mount, require_mount=True), chunk_size=CHUNK, progress_interval=0)

    def unmount_midway(done: int, total: int) -> None:
        if done == 2 * CHUNK:
            unmount(mount)

    with pytest.raises(DestinationUnavailable, match="not a mount point"):
        copier.copy("a.mxf", progress=unmount_midway)
    assert src.read_bytes() == data
    assert list(mount.iterdir()) == []  # nothing written into the bare mount point


@pytest.mark.parametrize("guard", ["require_mount", "destination_marker"])
def test_a_copy_that_starts_after_the_share_went_away_writes_nothing_into_the_mount_point(
    make_settings: MakeSettings, source: Path, tmpfs: Mount, guard: str
) -> None:
    """A copy queued before the share went away starts after it: with no error to trigger the probe on its way."""
    mount = tmpfs("16m")
    (mount / "NAS_MARKER").write_bytes(b"")
    src = write(source / "day1" / "clip.mxf", b"recording")
    options = {"require_mount": True} if guard == "require_mount" else {"destination_marker": "NAS_MARKER"}
    copier = Copier(make_settings(destination_path=mount, **options), chunk_size=CHUNK)
    unmount(mount)
    with pytest.raises(DestinationUnavailable, match="mount point" if guard == "require_mount" else "marker"):
        copier.copy("day1/clip.mxf")
    assert src.read_bytes() == b"recording"
    assert list(mount.iterdir()) == []  # no folder, no file in the bare mount point


def test_a_root_answering_with_an_error_is_the_destination_s_trouble(
    make_settings: MakeSettings, source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stale NFS handle makes the root's ``stat`` raise instead of answering: still a global wait, not a failure."""
    src = write(source / "clip.mxf", b"recording")
    real_stat = os.stat

    def stale(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if Path(path) == destination:
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE), str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stale)
    copier = Copier(make_settings(), probe=lambda: ProbeResult(False, "destination root cannot be reached: ESTALE"))
    with pytest.raises(DestinationUnavailable, match="ESTALE"):
        copier.copy("clip.mxf")
    assert src.read_bytes() == b"recording"


def test_a_share_gone_right_after_its_check_keeps_the_source(
    make_settings: MakeSettings, source: Path, tmpfs: Mount, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The share goes right after the copy checked it: the copy lands in the bare mount point, the source stays."""
    mount = tmpfs("16m")
    src = write(source / "clip.mxf", os.urandom(3 * CHUNK))
    copier = Copier(make_settings(destination_path=mount, require_mount=True), chunk_size=CHUNK)
    real_open_root, real_check = Copier._open_root, Copier._check_root
    checks: list[str] = []

    def open_then_lose_the_share(self: Copier) -> int:
        checks.append("before the folders")
        fd = real_open_root(self)
        unmount(mount)
        return fd

    def check(self: Copier, root_fd: int) -> None:
        checks.append("before the delete")
        real_check(self, root_fd)

    monkeypatch.setattr(Copier, "_open_root", open_then_lose_the_share)
    monkeypatch.setattr(Copier, "_check_root", check)
    with pytest.raises(DestinationUnavailable, match="mount point"):
        copier.copy("clip.mxf")
    assert src.exists() and src.stat().st_size == 3 * CHUNK
    assert checks == ["before the folders", "before the delete"]


def test_without_temporary_file_writes_the_final_name_exclusively(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    write(destination / "a.mxf", b"old")
    src = write(source / "a.mxf", b"new data")
    result = Copier(make_settings(use_temporary_file=False)).copy("a.mxf")
    assert result.destination == destination / "a_1.mxf"
    assert (destination / "a.mxf").read_bytes() == b"old"
    assert (destination / "a_1.mxf").read_bytes() == b"new data"
    assert not src.exists()


def test_without_temporary_file_a_corrupt_copy_is_removed(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    src = write(source / "a.mxf", os.urandom(3 * CHUNK))
    with pytest.raises(CorruptCopy):
        Copier(make_settings(use_temporary_file=False), chunk_size=CHUNK, io=FlipOneByte()).copy("a.mxf")
    assert src.exists()
    assert list(destination.iterdir()) == []


def test_without_temporary_file_a_changed_source_is_removed(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    src = write(source / "a.mxf", os.urandom(3 * CHUNK))

    def grow(done: int, total: int) -> None:
        if 0 < done < total:
            with src.open("ab") as f:
                f.write(b"more")

    copier = Copier(make_settings(use_temporary_file=False), chunk_size=CHUNK, progress_interval=0)
    assert copier.copy("a.mxf", progress=grow).outcome == "changed"
    assert list(destination.iterdir()) == []


def test_a_stale_temp_of_the_same_file_is_replaced(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    settings = make_settings()
    copier = Copier(settings)
    stale = write(destination / paths.temp_name("a.mxf", copier.owner), b"half a copy from a crash")
    write(source / "a.mxf", b"the whole recording")
    result = copier.copy("a.mxf")
    assert result.destination is not None and result.destination.read_bytes() == b"the whole recording"
    assert not stale.exists()
    assert leftovers(destination) == []


def test_startup_cleanup_removes_only_our_temp_files(
    make_settings: MakeSettings, source: Path, destination: Path
) -> None:
    copier = Copier(make_settings())
    ours = [
        write(destination / paths.temp_name("a.mxf", copier.owner), b"x"),
        write(destination / "day1" / paths.temp_name("b.mxf", copier.owner), b"x"),
    ]
    theirs = write(destination / "day1" / paths.temp_name("b.mxf", "0123abcd"), b"another agent's")
    plain = write(destination / "day1" / "b.mxf", b"a real file")
    unrelated = write(destination / "other" / paths.temp_name("c.mxf", copier.owner), b"not a source folder")
    removed = copier.remove_stale_temp_files(["", "day1", "missing"])
    assert sorted(removed) == sorted(ours)
    assert theirs.exists() and plain.exists() and unrelated.exists()


def test_startup_cleanup_never_enters_a_symlinked_folder(
    make_settings: MakeSettings, source: Path, destination: Path, tmp_path: Path
) -> None:
    """``dst/day1`` is a symlink to a folder holding a file named exactly like one of our temp files: it stays."""
    copier = Copier(make_settings())
    elsewhere = tmp_path / "elsewhere"
    bait = write(elsewhere / paths.temp_name("b.mxf", copier.owner), b"not ours to remove")
    (destination / "day1").symlink_to(elsewhere, target_is_directory=True)
    assert copier.remove_stale_temp_files(["", "day1"]) == []
    assert bait.read_bytes() == b"not ours to remove"


def test_without_temporary_file_a_symlinked_destination_folder_is_refused(
    make_settings: MakeSettings, source: Path, destination: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (destination / "day1").symlink_to(elsewhere, target_is_directory=True)
    src = write(source / "day1" / "a.mxf", b"data")
    with pytest.raises(DestinationBlocked, match="day1 is a symlink: not followed"):
        Copier(make_settings(use_temporary_file=False)).copy("day1/a.mxf")
    assert list(elsewhere.iterdir()) == []
    assert src.read_bytes() == b"data"


def test_progress_is_throttled_and_ends_at_the_total(
    make_settings: MakeSettings, source: Path, clock: FakeClock
) -> None:
    write(source / "a.mxf", os.urandom(8 * CHUNK))
    seen: list[tuple[int, int]] = []
    copier = Copier(make_settings(), clock=clock, chunk_size=CHUNK, progress_interval=0.25)
    copier.copy("a.mxf", progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 8 * CHUNK)
    assert seen[-1] == (8 * CHUNK, 8 * CHUNK)
    assert len(seen) == 2  # the clock never moved: only the first and the final report


def test_progress_reports_each_chunk_when_time_passes(make_settings: MakeSettings, source: Path) -> None:
    write(source / "a.mxf", os.urandom(4 * CHUNK))
    ticks = iter(range(0, 10_000))
    seen: list[int] = []
    copier = Copier(make_settings(), clock=lambda: float(next(ticks)), chunk_size=CHUNK, progress_interval=0.5)
    result: CopyResult = copier.copy("a.mxf", progress=lambda done, total: seen.append(done))
    assert seen[:5] == [0, CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK]
    assert result.seconds > 0 and result.mb_per_s > 0


def test_source_that_cannot_be_deleted_is_reported(
    make_settings: MakeSettings, source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write(source / "a.mxf", b"data")
    real_unlink = os.unlink

    def refuse_source(path: str | os.PathLike[str], *, dir_fd: int | None = None) -> None:
        if dir_fd is not None and Path(path) == Path(src.name) and os.path.samestat(os.fstat(dir_fd), os.stat(source)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        real_unlink(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", refuse_source)
    with pytest.raises(SourceUnreadable, match="source could not be deleted"):
        Copier(make_settings()).copy("a.mxf")
    assert (destination / "a.mxf").read_bytes() == b"data"
    assert src.exists()


def test_symlinked_source_is_refused(make_settings: MakeSettings, source: Path, tmp_path: Path) -> None:
    outside = write(tmp_path / "outside.mxf", b"secret")
    (source / "link.mxf").symlink_to(outside)
    with pytest.raises(Exception) as caught:
        Copier(make_settings()).copy("link.mxf")
    assert "ELOOP" in str(caught.value)
    assert outside.exists()


def test_a_path_escaping_the_root_is_refused(make_settings: MakeSettings) -> None:
    with pytest.raises(DestinationBlocked):
        Copier(make_settings()).copy("../escape.mxf")


def test_an_unmapped_os_error_is_still_a_per_file_error(
    make_settings: MakeSettings, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = write(source / "a.mxf", b"data")

    def broken(self: Copier, root_fd: int, parts: tuple[str, ...]) -> int:
        raise OSError(errno.EMLINK, "Too many links")

    monkeypatch.setattr(Copier, "_ensure_folder", broken)
    with pytest.raises(FileIOError, match="Too many links"):
        Copier(make_settings()).copy("a.mxf")
    assert src.exists()


NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\0"), min_size=1, max_size=60
).filter(lambda n: n not in (".", "..") and len(n.encode()) <= 200)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, taken=st.integers(min_value=0, max_value=4), same=st.booleans())
def test_property_a_copy_never_overwrites_and_always_lands(tmp_path: Path, name: str, taken: int, same: bool) -> None:
    """Whatever the name and however many conflict names are taken, existing files stay as they were, the new
    file lands exactly once (or is recognised as already delivered), and the copy ends."""
    import tempfile

    from fta.settings import load_settings

    with tempfile.TemporaryDirectory(dir=tmp_path) as work:
        source, destination = Path(work, "s"), Path(work, "d")
        source.mkdir()
        destination.mkdir()
        data = b"the new recording " + name.encode()
        existing: dict[str, bytes] = {}
        for candidate in list(islice(paths.candidate_names(name), taken)):
            content = data if same and not existing else f"older {candidate}".encode()
            existing[candidate] = write(destination / candidate, content).read_bytes()
        write(source / name, data)
        settings = load_settings({"source_path": source, "destination_path": destination, "log_file_path": ""}, None)
        result = Copier(settings).copy(name)
        assert {n: (destination / n).read_bytes() for n in existing} == existing  # nothing overwritten
        holding = [p for p in destination.iterdir() if p.read_bytes() == data]
        assert len(holding) == 1 and result.destination == holding[0]  # exactly one copy, where it says
        assert not (source / name).exists()
        assert [p for p in destination.iterdir() if paths.temp_owner(p.name)] == []
