"""The verified copy, in the order that loses nothing (rclone's: partial file, verify, rename, then delete).

    1. open the source through folder handles (``fta.handles``: no symlink followed below the root); if a folder on
       its way is a symlink now, or the file no longer matches the signature judged stable -> "changed"
    2. already delivered? a destination file with this name (or a conflict name) and the same size and checksum
       means a crash after the rename or a re-delivery: delete the source, make no duplicate (``fta.delivered``)
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

With ``use_temporary_file=False`` step 4 writes the first free final name instead (created exclusively, never an
existing file) and step 7 only fsyncs the folder; steps 5 and 6 and the removal of the partial file on any failure
are the same code for both modes (``_write_verified``), so the two cannot drift apart.

Every step below the roots works on names in folder handles, never on paths: a folder swapped for a symlink (or for
another folder) during the copy cannot redirect a read, a write or the delete outside the roots, and a symlink below
the destination root is refused (``DestinationBlocked``: "... is a symlink: not followed"). Paths longer than
``PATH_MAX`` work too: they are only ever walked one name at a time.

The bytes move through a ``fta.copy_io.CopyIO`` (the operating system's by default): the one seam where tests put a
slow, corrupting or pausing disk under a real copy.

Errors are mapped once, by side, through ``fta.errors.map_os_error``. A per-file error on the destination side is
checked against the destination probe: when the destination as a whole is sick it becomes
``DestinationUnavailable`` instead, so a vanished share never costs a file its retry budget.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fta import handles, paths
from fta.checksums import CHUNK_SIZE, hash_at, hash_fd, hash_file
from fta.copy_io import CopyIO
from fta.copy_job import CopyJob, CopyResult, Outcome, ProgressCallback, Written, on_side
from fta.delivered import already_present
from fta.errors import (
    CorruptCopy,
    DestinationBlocked,
    DestinationUnavailable,
    FileError,
    FileIOError,
    SourceUnreadable,
    SourceVanished,
    TransferError,
    UnsafePath,
    map_os_error,
)
from fta.openfiles import is_open_for_writing
from fta.probe import Destination, ProbeResult, open_checked_root, probe_destination, root_trouble
from fta.pump import PROGRESS_INTERVAL, Pump
from fta.renamer import NoReplaceMover
from fta.settings import Settings
from fta.stability import Clock, FileSig
from fta.stale_temps import remove_stale_temp_files

log = logging.getLogger("fta.copier")

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


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
        io: CopyIO | None = None,
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
        self._pump = Pump(io or CopyIO(), settings.verify == "checksum", clock, chunk_size, progress_interval)

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
            parts = paths.safe_relative(rel).parts
            final = paths.destination_for(self.destination_root, rel)
            job = CopyJob(rel, self.source_root / rel, final, parts[-1], started, progress, stop)
            with contextlib.ExitStack() as handles_of_this_copy:
                return self._copy(job, parts[:-1], expected, handles_of_this_copy.callback)
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
        self, job: CopyJob, folders: tuple[str, ...], expected: FileSig | None, close: Callable[..., object]
    ) -> CopyResult:
        """Open both sides (each handle closed by ``close`` when the copy ends), then deliver or write."""
        try:
            job.src_dir = self._open_source_folder(folders)
        except UnsafePath as exc:
            return self._changed(job, exc.strerror or "a folder on its way is a symlink: not followed")
        close(os.close, job.src_dir)
        with on_side("source"):
            job.src_fd = os.open(job.name, handles.READ_FLAGS, dir_fd=job.src_dir)
        close(os.close, job.src_fd)
        with on_side("source"):
            st = os.fstat(job.src_fd)
        if not stat.S_ISREG(st.st_mode):
            raise SourceUnreadable(f"source: {job.rel} is not a regular file")
        job.before = FileSig.from_stat(st)
        if expected is not None and job.before != expected:
            return self._changed(job, "it changed since it was found stable")
        job.dst_root = self._open_root()
        close(os.close, job.dst_root)
        job.dst_dir = self._ensure_folder(job.dst_root, folders)
        close(os.close, job.dst_dir)
        job.limit = paths.name_max(job.dst_dir)  # asked once per file: a network share answers slowly
        present = already_present(job, self._chunk_size)
        if present is not None:
            place, job.checksum = present
            log.info("%s is already at %s (same size and checksum)", job.rel, job.shown(place))
            return self._finish(job, place, "already_present")
        return self._write_verified(job)

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

    def _write_verified(self, job: CopyJob) -> CopyResult:
        """Steps 4 to 7 for both modes: write, fsync, check the source, verify, place; the partial file goes on
        any failure (a stop request, an error, a changed source), so nothing half-written is ever left."""
        self._check_room(job)
        name, fd = self._open_target(job)
        try:
            try:
                written = self._pump.pump(job, fd, name)
            finally:
                os.close(fd)
            if not self._source_unchanged(job, written.size):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=job.dst_dir)
                return self._changed(job, "it changed during the copy")
            self._verify(job, written)
            placed = self._place(job, name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=job.dst_dir)
            raise
        job.checksum = written.checksum
        return self._finish(job, placed, "copied")

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

    def _check_room(self, job: CopyJob) -> None:
        """A destination without room for this file is full for us: say so before writing a byte.

        A file larger than the whole destination filesystem can never fit: that is this file's trouble (Failed,
        the others go on), not a wait for room that would hold every other file back forever.
        """
        with on_side("destination"):
            vfs = os.fstatvfs(job.dst_dir)
        free = vfs.f_bavail * vfs.f_frsize
        capacity = vfs.f_blocks * vfs.f_frsize
        if vfs.f_blocks and job.size > capacity:
            raise DestinationBlocked(
                f"destination: {job.rel} ({job.size} bytes) is larger than the whole destination filesystem"
                f" ({capacity} bytes): it can never fit there"
            )
        if vfs.f_blocks and free < job.size:
            raise DestinationUnavailable(
                f"destination unavailable (ENOSPC: {free} bytes free, {job.size} needed)", needed_bytes=job.size
            )

    def _open_target(self, job: CopyJob) -> tuple[str, int]:
        """The name the bytes are written to, created exclusively, and its handle.

        With a temp file: the hidden temp name, replacing our own stale temp of this very file (an interrupted run's).
        Without: the first free final name; an existing file is never opened, let alone truncated.
        """
        with on_side("destination"):
            if self.settings.use_temporary_file:
                temp = paths.temp_name(job.final.name, self.owner, job.limit)
                try:
                    return temp, os.open(temp, _CREATE_FLAGS, 0o644, dir_fd=job.dst_dir)
                except FileExistsError:
                    os.unlink(temp, dir_fd=job.dst_dir)
                    return temp, os.open(temp, _CREATE_FLAGS, 0o644, dir_fd=job.dst_dir)
            for name in paths.candidate_names(job.final.name, job.limit):
                with contextlib.suppress(FileExistsError):
                    return name, os.open(name, _CREATE_FLAGS, 0o644, dir_fd=job.dst_dir)
        raise AssertionError("unreachable")  # pragma: no cover - candidate_names never ends

    def _source_sig(self, job: CopyJob) -> FileSig:
        """The signature of what the source folder handle holds under the file's name now."""
        return FileSig.from_stat(os.stat(job.name, dir_fd=job.src_dir, follow_symlinks=False))

    def _source_unchanged(self, job: CopyJob, copied: int) -> bool:
        try:
            by_fd = FileSig.from_stat(os.fstat(job.src_fd))
            by_name = self._source_sig(job)
        except OSError:
            return False
        if copied != job.size or by_fd != job.before or by_name != job.before:
            return False
        return not self._held_by_writer(job.before, job.src_fd)

    def _held_by_writer(self, sig: FileSig, src_fd: int) -> bool:
        """``src_fd`` is open read-only on the very file ``sig`` describes (the callers compared the inode)."""
        if self.settings.check_open_writers and is_open_for_writing(sig.device, sig.inode, src_fd):
            log.warning("the source is open for writing by another process: not finished yet")
            return True
        return False

    def _verify(self, job: CopyJob, written: Written) -> None:
        with on_side("destination"):
            size = os.stat(written.name, dir_fd=job.dst_dir, follow_symlinks=False).st_size
        if size != written.size:
            raise CorruptCopy(f"corrupt copy: {size} bytes written, {written.size} read")
        if written.copy_checksum is not None and written.copy_checksum != written.checksum:
            raise CorruptCopy(
                f"corrupt copy: checksum {written.copy_checksum} of the copy differs from {written.checksum}"
            )

    def _place(self, job: CopyJob, written: str) -> str:
        """Step 7: the final name the verified file ends under, its folder fsynced.

        A temp file moves to the first free name, never over an existing file; a file written in place already
        has its name.
        """
        with on_side("destination"):
            if not self.settings.use_temporary_file:
                self._mover.fsync_folder(job.dst_dir)
                return written
            for name in paths.candidate_names(job.final.name, job.limit):
                try:
                    self._mover.move_at(job.dst_dir, written, name)
                except FileExistsError:
                    continue
                if name != job.final.name:
                    log.warning("name conflict: %s exists, stored as %s", job.final.name, name)
                self._mover.fsync_folder(job.dst_dir)
                return name
        raise AssertionError("unreachable")  # pragma: no cover - candidate_names never ends

    def _finish(self, job: CopyJob, placed: str, outcome: Outcome) -> CopyResult:
        """The copy is in place and verified: check it once more, then delete the source.

        The source is deleted through the folder handle the copy read it from, and only while the name there still
        is the very inode that was read and judged stable: a folder swapped meanwhile cannot redirect the delete.
        """
        with on_side("destination"):
            size = os.stat(placed, dir_fd=job.dst_dir, follow_symlinks=False).st_size
        if size != job.size:
            raise CorruptCopy(f"corrupt copy: {job.shown(placed)} has {size} bytes, the source {job.size}")
        self._check_root(job.dst_root)  # the share went away: the copy may sit in a detached filesystem
        try:
            with on_side("source"):
                now: FileSig | None = self._source_sig(job)
        except SourceVanished:
            now = None
        renamed = outcome == "copied" and placed != job.final.name  # a delivery found is not a new conflict
        if now is not None and (now != job.before or self._held_by_writer(now, job.src_fd)):
            log.warning("%s changed after it was copied to %s; the source is kept", job.rel, job.shown(placed))
            return self._result(job, placed, "changed", renamed)
        if now is not None:
            try:
                os.unlink(job.name, dir_fd=job.src_dir)
            except OSError as exc:
                raise SourceUnreadable(
                    f"copied to {job.shown(placed)} but the source could not be deleted: {exc.strerror}"
                ) from exc
        return self._result(job, placed, outcome, renamed)

    def _result(self, job: CopyJob, placed: str, outcome: Outcome, renamed: bool) -> CopyResult:
        """The result of a copy that reached its final name (``_finish`` checked its size is the source's)."""
        seconds = self._clock() - job.started
        return CopyResult(job.rel, job.source, job.shown(placed), job.size, job.checksum, seconds, outcome, renamed)

    def _changed(self, job: CopyJob, why: str) -> CopyResult:
        log.info("%s is not copied now: %s", job.rel, why)
        return CopyResult(job.rel, job.source, None, 0, None, self._clock() - job.started, "changed")

    # -- start-up ---------------------------------------------------------------------------------------------

    def remove_stale_temp_files(self, folders: list[str]) -> list[Path]:
        """Remove this agent's temp files in the destination folders that mirror ``folders`` of the source."""
        return remove_stale_temp_files(self.destination_root, self.owner, folders)


__all__ = ["CHUNK_SIZE", "Copier", "CopyIO", "CopyResult", "TransferError", "hash_at", "hash_fd", "hash_file"]
