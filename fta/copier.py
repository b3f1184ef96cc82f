"""The verified copy, in the order that loses nothing (rclone's: partial file, verify, rename, then delete).

    1. open the source through folder handles (``fta.handles``: no symlink followed below the root); if a folder on
       its way is a symlink now, or the file no longer matches the signature judged stable -> "changed"
    2. already delivered? a destination file with this name (or a conflict name) and the same size and checksum
       means a crash after the rename or a re-delivery: delete the source, make no duplicate
    3. check the root is what the settings ask (a folder; a mount point with ``require_mount``; holding the marker
       with ``destination_marker``): a copy that starts after the share went away never writes into the bare mount
       point; then create the folders below the root (never the root itself)
    4. write a hidden temp file in the final folder, hashing what is read; progress at most a few times a second;
       a stop request is honoured between chunks
    5. fsync; if the source changed meanwhile (size, mtime, inode, bytes read): drop the temp -> "changed"
    6. verify: size, and with verify=checksum the destination re-read and hashed again
    7. move to the first free name (``name``, ``name_1``, ...) without overwriting; fsync the folder
    8. check the final file and the root once more (still the folder written to), check that the name in the source
       folder handle still is the very inode read and judged stable, and delete it through that handle

Every step below the roots works on names in folder handles, never on paths: a folder swapped for a symlink (or for
another folder) during the copy cannot redirect a read, a write or the delete outside the roots, and a symlink below
the destination root is refused (``DestinationBlocked``: "... is a symlink: not followed"). Paths longer than
``PATH_MAX`` work too: they are only ever walked one name at a time.

Errors are mapped once, by side, through ``fta.errors.map_os_error``. A per-file error on the destination side is
checked against the destination probe: when the destination as a whole is sick it becomes
``DestinationUnavailable`` instead, so a vanished share never costs a file its retry budget.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import xxhash

from fta import handles, paths
from fta.checksums import CHECKSUM_ALGORITHM, CHUNK_SIZE, ReadBack, buffer_size, hash_at, hash_fd, hash_file
from fta.errors import (
    CopyInterrupted,
    CorruptCopy,
    DestinationBlocked,
    DestinationUnavailable,
    FileError,
    FileIOError,
    Side,
    SourceUnreadable,
    SourceVanished,
    TransferError,
    UnsafePath,
    map_os_error,
)
from fta.openfiles import is_open_for_writing
from fta.probe import Destination, ProbeResult, open_checked_root, probe_destination, root_trouble
from fta.renamer import NoReplaceMover
from fta.settings import Settings
from fta.stability import Clock, FileSig

log = logging.getLogger("fta.copier")

PROGRESS_INTERVAL = 0.25

Outcome = Literal["copied", "already_present", "changed"]
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class CopyResult:
    relative_path: str
    source: Path
    destination: Path | None
    size: int
    checksum: str | None
    seconds: float
    outcome: Outcome
    conflict_renamed: bool = False

    @property
    def mb_per_s(self) -> float:
        return self.size / 1e6 / self.seconds if self.seconds > 0 else 0.0


@contextlib.contextmanager
def on_side(side: Side) -> Iterator[None]:
    """Map any ``OSError`` raised inside into the error tree, tagged with the side it happened on."""
    try:
        yield
    except OSError as exc:
        raise map_os_error(exc, side) from exc


class _Throttle:
    def __init__(self, callback: ProgressCallback | None, clock: Clock, interval: float) -> None:
        self._callback, self._clock, self._interval = callback, clock, interval
        self._last = float("-inf")

    def __call__(self, done: int, total: int, final: bool = False) -> None:
        if self._callback is None:
            return
        now = self._clock()
        if final or now - self._last >= self._interval:
            self._last = now
            self._callback(done, total)


_NO_SIG = FileSig(0, 0, 0)


@dataclass
class _Job:
    """One copy's names and handles: every step after the opening works on these, never on a path."""

    rel: str
    source: Path  # for messages and the result only
    final: Path  # likewise
    name: str  # the file's name in its source folder and (before a conflict) in its destination folder
    started: float
    src_dir: int = -1
    src_fd: int = -1
    dst_root: int = -1
    dst_dir: int = -1
    before: FileSig = _NO_SIG
    limit: int = paths.DEFAULT_NAME_MAX

    def shown(self, name: str) -> Path:
        return self.final.parent / name


class Copier:
    """Moves one file from the source root to the destination root, verified."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock = time.monotonic,
        mover: NoReplaceMover | None = None,
        probe: Callable[[], ProbeResult] | None = None,
        chunk_size: int = CHUNK_SIZE,
        progress_interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self.settings = settings
        self.source_root = settings.source_path
        self.destination_root = settings.destination_path
        self.destination = Destination.of(settings)
        self.owner = paths.agent_id(self.source_root)
        self._clock = clock
        self._mover = mover or NoReplaceMover()
        self._probe = probe or (lambda: probe_destination(self.destination))
        self._chunk_size = chunk_size
        self._progress_interval = progress_interval

    # -- the copy ---------------------------------------------------------------------------------------------

    def copy(
        self,
        rel: str,
        expected: FileSig | None = None,
        progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
    ) -> CopyResult:
        """Move ``rel`` (relative to the source root); see the module docstring for the steps."""
        started = self._clock()
        try:
            return self._copy(rel, expected, progress, stop, started)
        except FileError as exc:
            if exc.side == "destination":
                self._raise_if_destination_down(exc)
            raise
        except OSError as exc:  # a safety net: every step maps its errors, an unmapped one is still per file
            raise FileIOError(f"{rel}: {exc}") from exc

    def _raise_if_destination_down(self, exc: FileError) -> None:
        probe = self._probe()
        if not probe.ok:
            raise DestinationUnavailable(probe.reason or "destination unavailable") from exc

    def _copy(
        self,
        rel: str,
        expected: FileSig | None,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
        started: float,
    ) -> CopyResult:
        parts = paths.safe_relative(rel).parts
        job = _Job(rel, self.source_root / rel, paths.destination_for(self.destination_root, rel), parts[-1], started)
        with contextlib.ExitStack() as handles_of_this_copy:
            close = handles_of_this_copy.callback
            try:
                job.src_dir = self._open_source_folder(parts[:-1])
            except UnsafePath as exc:
                return self._changed(job, exc.strerror or "a folder on its way is a symlink: not followed")
            close(os.close, job.src_dir)
            with on_side("source"):
                job.src_fd = os.open(job.name, handles.READ_FLAGS, dir_fd=job.src_dir)
            close(os.close, job.src_fd)
            with on_side("source"):
                st = os.fstat(job.src_fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceUnreadable(f"source: {rel} is not a regular file")
            job.before = FileSig.from_stat(st)
            if expected is not None and job.before != expected:
                return self._changed(job, "it changed since it was found stable")
            job.dst_root = self._open_root()
            close(os.close, job.dst_root)
            job.dst_dir = self._ensure_folder(job.dst_root, parts[:-1])
            close(os.close, job.dst_dir)
            job.limit = paths.name_max(job.dst_dir)  # asked once per file: a network share answers slowly
            present = self._already_present(job)
            if present is not None:
                place, checksum = present
                log.info("%s is already at %s (same size and checksum)", rel, job.shown(place))
                return self._finish(job, place, checksum, "already_present")
            return self._write_and_place(job, progress, stop)
        raise AssertionError("unreachable")  # pragma: no cover - the with block always returns or raises

    def _open_source_folder(self, parts: tuple[str, ...]) -> int:
        """The handle of the file's folder in the source; ``UnsafePath`` when a symlink is on the way."""
        with on_side("source"):
            root = handles.open_root(self.source_root)
        try:
            return handles.open_folder(root, parts, label=self.source_root)
        except UnsafePath:
            raise
        except OSError as exc:
            raise map_os_error(exc, "source") from exc
        finally:
            os.close(root)

    def _write_and_place(
        self, job: _Job, progress: ProgressCallback | None, stop: threading.Event | None
    ) -> CopyResult:
        self._check_room(job.rel, job.dst_dir, job.before.size)
        if not self.settings.use_temporary_file:
            return self._write_in_place(job, progress, stop)
        temp = paths.temp_name(job.final.name, self.owner, job.limit)
        try:
            fd = self._create(job.dst_dir, temp)
            try:
                copied, checksum, copy_checksum = self._pump(job, fd, temp, progress, stop)
            finally:
                os.close(fd)
            if not self._source_unchanged(job, copied):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp, dir_fd=job.dst_dir)
                return self._changed(job, "it changed during the copy")
            self._verify(job.dst_dir, temp, copied, checksum, copy_checksum)
            placed = self._place(job, temp)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=job.dst_dir)
            raise
        return self._finish(job, placed, checksum, "copied", placed != job.final.name)

    def _write_in_place(self, job: _Job, progress: ProgressCallback | None, stop: threading.Event | None) -> CopyResult:
        """``use_temporary_file=False``: write straight to the first free final name (created exclusively)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        for name in paths.candidate_names(job.final.name, job.limit):
            try:
                fd = os.open(name, flags, 0o644, dir_fd=job.dst_dir)
            except FileExistsError:
                continue
            except OSError as exc:
                raise map_os_error(exc, "destination") from exc
            break
        try:
            try:
                copied, checksum, copy_checksum = self._pump(job, fd, name, progress, stop)
            finally:
                os.close(fd)
            if not self._source_unchanged(job, copied):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=job.dst_dir)
                return self._changed(job, "it changed during the copy")
            self._verify(job.dst_dir, name, copied, checksum, copy_checksum)
            with on_side("destination"):
                self._mover.fsync_folder(job.dst_dir)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=job.dst_dir)
            raise
        return self._finish(job, name, checksum, "copied", name != job.final.name)

    # -- steps ------------------------------------------------------------------------------------------------

    def _open_root(self) -> int:
        """The destination root's handle, checked: a folder, a mount point (``require_mount``), holding the marker
        (``destination_marker``), the last two asked of the handle itself.

        Asked of every copy: the guard's probe is not asked again within a polling interval, and copies already
        queued when the share went away must not write into the bare mount point.
        """
        fd, trouble = open_checked_root(self.destination)
        if fd is None:
            raise DestinationUnavailable(trouble or "destination unavailable")
        return fd

    def _check_root(self, root_fd: int) -> None:
        """Before the delete: the root at its path is still usable, and still the very folder written to (a share
        unmounted meanwhile leaves our handle on the detached filesystem and the bare mount point at the path)."""
        root = self.destination_root
        trouble = root_trouble(self.destination)
        if trouble is None:
            try:
                if not handles.same_file(os.stat(root), os.fstat(root_fd)):
                    trouble = f"destination root {root} is no longer the folder the copy was written to"
            except OSError as exc:
                trouble = f"destination root {root} cannot be reached: {exc.strerror or exc}"
        if trouble is not None:
            raise DestinationUnavailable(trouble)

    def _ensure_folder(self, root_fd: int, parts: tuple[str, ...]) -> int:
        """The handle of the file's folder below the destination root, made when missing (never the root itself).

        A symlink or a file where a folder is needed is this file's trouble (``DestinationBlocked``), never
        followed; a root that is not usable is the destination's.
        """
        try:
            return handles.open_folder(root_fd, parts, create=True, label=self.destination_root)
        except OSError as exc:  # an UnsafePath becomes "destination: /nas/cam1 is a symlink: not followed"
            raise map_os_error(exc, "destination") from exc

    def _already_present(self, job: _Job) -> tuple[str, str] | None:
        """An existing destination file (this name or a conflict name) with equal size and checksum.

        Always compared by checksum, whatever ``verify`` says: deleting a source because a different file of
        the same size sits at the destination would lose it.
        """
        source_checksum: str | None = None
        size = job.before.size
        for name in paths.candidate_names(job.final.name, job.limit):
            with on_side("destination"):
                try:
                    st = os.stat(name, dir_fd=job.dst_dir, follow_symlinks=False)
                except FileNotFoundError:
                    return None
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                continue
            if source_checksum is None:
                with on_side("source"):
                    source_checksum = hash_fd(job.src_fd, self._chunk_size, size)
            with on_side("destination"):
                if hash_at(job.dst_dir, name, self._chunk_size, size) == source_checksum:
                    return name, source_checksum
        return None  # pragma: no cover - candidate_names never ends

    def _check_room(self, rel: str, folder: int, size: int) -> None:
        """A destination without room for this file is full for us: say so before writing a byte.

        A file larger than the whole destination filesystem can never fit: that is this file's trouble (Failed,
        the others go on), not a wait for room that would hold every other file back forever.
        """
        with on_side("destination"):
            vfs = os.fstatvfs(folder)
        free = vfs.f_bavail * vfs.f_frsize
        capacity = vfs.f_blocks * vfs.f_frsize
        if vfs.f_blocks and size > capacity:
            raise DestinationBlocked(
                f"destination: {rel} ({size} bytes) is larger than the whole destination filesystem"
                f" ({capacity} bytes): it can never fit there"
            )
        if vfs.f_blocks and free < size:
            raise DestinationUnavailable(
                f"destination unavailable (ENOSPC: {free} bytes free, {size} needed)", needed_bytes=size
            )

    def _create(self, folder: int, temp: str) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        with on_side("destination"):
            try:
                return os.open(temp, flags, 0o644, dir_fd=folder)
            except FileExistsError:
                os.unlink(temp, dir_fd=folder)  # our own stale temp for this very file, from an interrupted run
                return os.open(temp, flags, 0o644, dir_fd=folder)

    def _pump(
        self,
        job: _Job,
        dst_fd: int,
        dst_name: str,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
    ) -> tuple[int, str, str | None]:
        """Copy all bytes, hashing them; returns (bytes, checksum of the source, checksum of the re-read copy)."""
        total = job.before.size
        hasher = xxhash.xxh3_128()
        buffer = bytearray(buffer_size(total, self._chunk_size))
        view = memoryview(buffer)
        report = _Throttle(progress, self._clock, self._progress_interval)
        reader = open(job.src_fd, "rb", buffering=0, closefd=False)  # noqa: SIM115 - closed below
        by_checksum = self.settings.verify == "checksum"
        # Large files are read back while they are written; a small one is simply re-read after its fsync.
        big = by_checksum and total > self._chunk_size
        readback = ReadBack(job.dst_dir, dst_name, self._chunk_size) if big else None
        done = 0
        try:
            report(0, total)
            while True:
                if stop is not None and stop.is_set():
                    raise CopyInterrupted("stop requested")
                with on_side("source"):
                    n = reader.readinto(buffer)
                if not n:
                    break
                hasher.update(view[:n])
                with self._destination_write(total):
                    self._write(dst_fd, view[:n])
                done += n
                if readback is not None:
                    readback.advance(n)
                report(done, max(total, done))
            with self._destination_write(total):
                os.fsync(dst_fd)
            if readback is not None:
                copy_checksum: str | None = readback.finish()
            elif by_checksum:
                with on_side("destination"):
                    copy_checksum = hash_at(job.dst_dir, dst_name, self._chunk_size, total)
            else:
                copy_checksum = None
        finally:
            reader.close()
            if readback is not None:
                readback.close()
        report(done, max(total, done), final=True)
        return done, f"{CHECKSUM_ALGORITHM}:{hasher.hexdigest()}", copy_checksum

    @contextlib.contextmanager
    def _destination_write(self, total: int) -> Iterator[None]:
        """Map write errors; a full destination remembers how much room this file needs."""
        try:
            yield
        except OSError as exc:
            mapped = map_os_error(exc, "destination")
            if isinstance(mapped, DestinationUnavailable) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                mapped.needed_bytes = total
            raise mapped from exc

    def _write(self, fd: int, data: memoryview) -> None:
        """Write all of ``data`` (the one seam where tests inject corruption)."""
        while data:
            written = os.write(fd, data)
            data = data[written:]

    def _source_sig(self, job: _Job) -> FileSig:
        """The signature of what the source folder handle holds under the file's name now."""
        return FileSig.from_stat(os.stat(job.name, dir_fd=job.src_dir, follow_symlinks=False))

    def _source_unchanged(self, job: _Job, copied: int) -> bool:
        try:
            by_fd = FileSig.from_stat(os.fstat(job.src_fd))
            by_name = self._source_sig(job)
        except OSError:
            return False
        if copied != job.before.size or by_fd != job.before or by_name != job.before:
            return False
        return not self._held_by_writer(job.before, job.src_fd)

    def _held_by_writer(self, sig: FileSig, src_fd: int) -> bool:
        """``src_fd`` is open read-only on the very file ``sig`` describes (the callers compared the inode)."""
        if self.settings.check_open_writers and is_open_for_writing(sig.device, sig.inode, src_fd):
            log.warning("the source is open for writing by another process: not finished yet")
            return True
        return False

    def _verify(self, folder: int, name: str, size: int, checksum: str, copy_checksum: str | None) -> None:
        with on_side("destination"):
            written = os.stat(name, dir_fd=folder, follow_symlinks=False).st_size
        if written != size:
            raise CorruptCopy(f"corrupt copy: {written} bytes written, {size} read")
        if copy_checksum is not None and copy_checksum != checksum:
            raise CorruptCopy(f"corrupt copy: checksum {copy_checksum} of the copy differs from {checksum}")

    def _place(self, job: _Job, temp: str) -> str:
        with on_side("destination"):
            for name in paths.candidate_names(job.final.name, job.limit):
                try:
                    self._mover.move_at(job.dst_dir, temp, name)
                except FileExistsError:
                    continue
                if name != job.final.name:
                    log.warning("name conflict: %s exists, stored as %s", job.final.name, name)
                self._mover.fsync_folder(job.dst_dir)
                return name
        raise AssertionError("unreachable")  # pragma: no cover - candidate_names never ends

    def _finish(
        self, job: _Job, placed: str, checksum: str | None, outcome: Outcome, renamed: bool = False
    ) -> CopyResult:
        """The copy is in place and verified: check it once more, then delete the source.

        The source is deleted through the folder handle the copy read it from, and only while the name there still
        is the very inode that was read and judged stable: a folder swapped meanwhile cannot redirect the delete.
        """
        shown = job.shown(placed)
        with on_side("destination"):
            size = os.stat(placed, dir_fd=job.dst_dir, follow_symlinks=False).st_size
        if size != job.before.size:
            raise CorruptCopy(f"corrupt copy: {shown} has {size} bytes, the source {job.before.size}")
        self._check_root(job.dst_root)  # the share went away: the copy may sit in a detached filesystem
        try:
            with on_side("source"):
                now: FileSig | None = self._source_sig(job)
        except SourceVanished:
            now = None
        if now is not None and (now != job.before or self._held_by_writer(now, job.src_fd)):
            log.warning("%s changed after it was copied to %s; the source is kept", job.rel, shown)
            return self._result(job, shown, size, checksum, "changed", renamed)
        if now is not None:
            try:
                os.unlink(job.name, dir_fd=job.src_dir)
            except OSError as exc:
                raise SourceUnreadable(
                    f"copied to {shown} but the source could not be deleted: {exc.strerror}"
                ) from exc
        return self._result(job, shown, size, checksum, outcome, renamed)

    def _result(
        self, job: _Job, shown: Path, size: int, checksum: str | None, outcome: Outcome, renamed: bool
    ) -> CopyResult:
        return CopyResult(job.rel, job.source, shown, size, checksum, self._clock() - job.started, outcome, renamed)

    def _changed(self, job: _Job, why: str) -> CopyResult:
        log.info("%s is not copied now: %s", job.rel, why)
        return CopyResult(job.rel, job.source, None, 0, None, self._clock() - job.started, "changed")

    # -- start-up ---------------------------------------------------------------------------------------------

    def remove_stale_temp_files(self, folders: list[str]) -> list[Path]:
        """Remove this agent's temp files in the destination folders that mirror ``folders`` of the source
        (reached through folder handles: a symlinked folder is not entered)."""
        removed: list[Path] = []
        try:
            root = handles.open_root(self.destination_root)
        except OSError:
            return removed
        try:
            for rel in folders:
                removed += self._remove_temps_in(root, rel)
        finally:
            os.close(root)
        for path in removed:
            log.info("removed stale temp file %s", path)
        return removed

    def _remove_temps_in(self, root: int, rel: str) -> list[Path]:
        shown = self.destination_root / rel if rel else self.destination_root
        try:
            folder = handles.open_folder(root, rel.split("/") if rel else ())
        except OSError:
            return []
        removed: list[Path] = []
        try:
            with os.scandir(folder) as entries:
                ours = [
                    e.name
                    for e in entries
                    if paths.temp_owner(e.name) == self.owner and e.is_file(follow_symlinks=False)
                ]
            for name in ours:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=folder)
                    removed.append(shown / name)
        except OSError:
            pass
        finally:
            os.close(folder)
        return removed


__all__ = ["CHUNK_SIZE", "Copier", "CopyResult", "TransferError", "hash_at", "hash_fd", "hash_file"]
