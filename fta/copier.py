"""The verified copy, in the order that loses nothing (rclone's: partial file, verify, rename, then delete).

    1. open the source (no symlinks); if it no longer matches the signature judged stable -> "changed"
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
    8. check the final file and the root once more, check the source once more, delete the source

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

from fta import paths
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
    map_os_error,
)
from fta.openfiles import is_open_for_writing
from fta.probe import ProbeResult, probe_destination, root_trouble
from fta.renamer import NoReplaceMover
from fta.settings import Settings
from fta.stability import Clock, FileSig

log = logging.getLogger("fta.copier")

CHUNK_SIZE = 8 * 1024 * 1024
PROGRESS_INTERVAL = 0.25
CHECKSUM_ALGORITHM = "xxh3_128"

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


def buffer_size(expected: int, chunk_size: int = CHUNK_SIZE) -> int:
    """A read buffer no bigger than the file needs: a zeroed 8 MiB buffer costs more than copying 64 KiB."""
    return max(4096, min(chunk_size, expected + 1))


def hash_file(path: Path, chunk_size: int = CHUNK_SIZE, expected: int | None = None) -> str:
    """Checksum of a whole file, read in chunks (``expected``: its size, when known, to size the buffer)."""
    hasher = xxhash.xxh3_128()
    buffer = bytearray(chunk_size if expected is None else buffer_size(expected, chunk_size))
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as reader:
        while n := reader.readinto(buffer):
            hasher.update(view[:n])
    return f"{CHECKSUM_ALGORITHM}:{hasher.hexdigest()}"


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


class _ReadBack:
    """Reads the copy back while it is being written and hashes it, in a second thread.

    The read-back overlaps with the copy instead of following it (on two cores it costs next to nothing); it reads
    through its own file descriptor, never past what has been written, and ends after the file's ``fsync``.
    """

    def __init__(self, path: Path, chunk_size: int) -> None:
        with on_side("destination"):
            self._fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        self._chunk_size = chunk_size
        self._hasher = xxhash.xxh3_128()
        self._cond = threading.Condition()
        self._available = 0
        self._read = 0
        self._closing = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="fta-readback", daemon=True)
        self._thread.start()

    def advance(self, nbytes: int) -> None:
        with self._cond:
            self._available += nbytes
            self._cond.notify()

    def _run(self) -> None:
        view = memoryview(bytearray(self._chunk_size))
        try:
            while True:
                with self._cond:
                    while self._read >= self._available and not self._closing:
                        self._cond.wait()
                    limit, closing = self._available, self._closing
                if self._read >= limit:
                    if closing:
                        return
                    continue
                n = os.preadv(self._fd, [view[: min(self._chunk_size, limit - self._read)]], self._read)
                if n == 0:
                    return  # shorter than written: the checksum comparison will say so
                self._hasher.update(view[:n])
                self._read += n
        except OSError as exc:
            self._error = exc

    def finish(self) -> str:
        """Wait until everything written has been read back; the checksum of what was read."""
        self.close()
        if self._error is not None:
            raise map_os_error(self._error, "destination") from self._error
        return f"{CHECKSUM_ALGORITHM}:{self._hasher.hexdigest()}"

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


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
        self.owner = paths.agent_id(self.source_root)
        self._clock = clock
        self._mover = mover or NoReplaceMover()
        self._probe = probe or (
            lambda: probe_destination(self.destination_root, settings.require_mount, settings.destination_marker)
        )
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
        source = self.source_root / rel
        final = paths.destination_for(self.destination_root, rel)
        with on_side("source"):
            # O_NONBLOCK: a FIFO put in the file's place must not hang the copy; regular files ignore it
            src_fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        try:
            with on_side("source"):
                st = os.fstat(src_fd)
            if not stat.S_ISREG(st.st_mode):
                raise SourceUnreadable(f"source: {rel} is not a regular file")
            before = FileSig.from_stat(st)
            if expected is not None and before != expected:
                return self._changed(rel, source, started, "it changed since it was found stable")
            self._ensure_folder(final.parent)
            limit = paths.name_max(final.parent)  # asked once per file: a network share answers slowly
            present = self._already_present(source, final, before, limit)
            if present is not None:
                place, checksum = present
                log.info("%s is already at %s (same size and checksum)", rel, place)
                return self._finish(rel, source, src_fd, place, before, checksum, started, "already_present")
            return self._write_and_place(rel, source, src_fd, final, before, limit, progress, stop, started)
        finally:
            os.close(src_fd)

    def _write_and_place(
        self,
        rel: str,
        source: Path,
        src_fd: int,
        final: Path,
        before: FileSig,
        limit: int,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
        started: float,
    ) -> CopyResult:
        temp = final.parent / paths.temp_name(final.name, self.owner, limit)
        self._check_room(rel, final.parent, before.size)
        if not self.settings.use_temporary_file:
            return self._write_in_place(rel, source, src_fd, final, before, progress, stop, started, limit)
        try:
            fd = self._create(temp)
            try:
                copied, checksum, copy_checksum = self._pump(src_fd, fd, temp, before.size, progress, stop)
            finally:
                os.close(fd)
            if not self._source_unchanged(source, src_fd, before, copied):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                return self._changed(rel, source, started, "it changed during the copy")
            self._verify(temp, copied, checksum, copy_checksum)
            placed = self._place(temp, final, limit)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return self._finish(rel, source, src_fd, placed, before, checksum, started, "copied", placed != final)

    def _write_in_place(
        self,
        rel: str,
        source: Path,
        src_fd: int,
        final: Path,
        before: FileSig,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
        started: float,
        limit: int,
    ) -> CopyResult:
        """``use_temporary_file=False``: write straight to the first free final name (created exclusively)."""
        for name in paths.candidate_names(final.name, limit):
            target = final.parent / name
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                continue
            except OSError as exc:
                raise map_os_error(exc, "destination") from exc
            break
        try:
            try:
                copied, checksum, copy_checksum = self._pump(src_fd, fd, target, before.size, progress, stop)
            finally:
                os.close(fd)
            if not self._source_unchanged(source, src_fd, before, copied):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target)
                return self._changed(rel, source, started, "it changed during the copy")
            self._verify(target, copied, checksum, copy_checksum)
            with on_side("destination"):
                self._mover.fsync_folder(target.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(target)
            raise
        return self._finish(rel, source, src_fd, target, before, checksum, started, "copied", target != final)

    # -- steps ------------------------------------------------------------------------------------------------

    def _check_root(self) -> None:
        """The root is a folder, a mount point (``require_mount``) and holds the marker (``destination_marker``).

        Asked of every copy (``fta.probe.root_trouble``): the guard's probe is not asked again within a polling
        interval, and copies already queued when the share went away must not write into the bare mount point.
        """
        settings = self.settings
        trouble = root_trouble(self.destination_root, settings.require_mount, settings.destination_marker)
        if trouble is not None:
            raise DestinationUnavailable(trouble)

    def _ensure_folder(self, folder: Path) -> None:
        """Create the folders below the destination root; a root that is not usable is the destination's trouble."""
        root = self.destination_root
        self._check_root()
        missing: list[Path] = []
        walk = folder
        while walk != root and not walk.is_dir():
            missing.append(walk)
            walk = walk.parent
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                if not path.is_dir():
                    blocked = OSError(errno.ENOTDIR, "a file is in the way of a folder", str(path))
                    raise map_os_error(blocked, "destination") from None
            except OSError as exc:
                raise map_os_error(exc, "destination") from exc

    def _already_present(self, source: Path, final: Path, before: FileSig, limit: int) -> tuple[Path, str] | None:
        """An existing destination file (this name or a conflict name) with equal size and checksum.

        Always compared by checksum, whatever ``verify`` says: deleting a source because a different file of
        the same size sits at the destination would lose it.
        """
        source_checksum: str | None = None
        for name in paths.candidate_names(final.name, limit):
            candidate = final.parent / name
            with on_side("destination"):
                try:
                    st = os.stat(candidate, follow_symlinks=False)
                except FileNotFoundError:
                    return None
            if not stat.S_ISREG(st.st_mode) or st.st_size != before.size:
                continue
            if source_checksum is None:
                with on_side("source"):
                    source_checksum = hash_file(source, self._chunk_size, before.size)
            with on_side("destination"):
                if hash_file(candidate, self._chunk_size, before.size) == source_checksum:
                    return candidate, source_checksum
        return None  # pragma: no cover - candidate_names never ends

    def _check_room(self, rel: str, folder: Path, size: int) -> None:
        """A destination without room for this file is full for us: say so before writing a byte.

        A file larger than the whole destination filesystem can never fit: that is this file's trouble (Failed,
        the others go on), not a wait for room that would hold every other file back forever.
        """
        with on_side("destination"):
            vfs = os.statvfs(folder)
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

    def _create(self, temp: Path) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with on_side("destination"):
            try:
                return os.open(temp, flags, 0o644)
            except FileExistsError:
                os.unlink(temp)  # our own stale temp for this very file, from an interrupted run
                return os.open(temp, flags, 0o644)

    def _pump(
        self,
        src_fd: int,
        dst_fd: int,
        dst_path: Path,
        total: int,
        progress: ProgressCallback | None,
        stop: threading.Event | None,
    ) -> tuple[int, str, str | None]:
        """Copy all bytes, hashing them; returns (bytes, checksum of the source, checksum of the re-read copy)."""
        hasher = xxhash.xxh3_128()
        buffer = bytearray(buffer_size(total, self._chunk_size))
        view = memoryview(buffer)
        report = _Throttle(progress, self._clock, self._progress_interval)
        reader = open(src_fd, "rb", buffering=0, closefd=False)  # noqa: SIM115 - closed below
        by_checksum = self.settings.verify == "checksum"
        # Large files are read back while they are written; a small one is simply re-read after its fsync.
        readback = _ReadBack(dst_path, self._chunk_size) if by_checksum and total > self._chunk_size else None
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
                    copy_checksum = hash_file(dst_path, self._chunk_size, total)
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

    def _source_unchanged(self, source: Path, src_fd: int, before: FileSig, copied: int) -> bool:
        try:
            by_fd = FileSig.from_stat(os.fstat(src_fd))
            by_path = FileSig.from_stat(os.stat(source, follow_symlinks=False))
        except OSError:
            return False
        if copied != before.size or by_fd != before or by_path != before:
            return False
        return not self._held_by_writer(before, src_fd)

    def _held_by_writer(self, sig: FileSig, src_fd: int) -> bool:
        """``src_fd`` is open read-only on the very file ``sig`` describes (the callers compared the inode)."""
        if self.settings.check_open_writers and is_open_for_writing(sig.device, sig.inode, src_fd):
            log.warning("the source is open for writing by another process: not finished yet")
            return True
        return False

    def _verify(self, path: Path, size: int, checksum: str, copy_checksum: str | None) -> None:
        with on_side("destination"):
            written = os.stat(path).st_size
        if written != size:
            raise CorruptCopy(f"corrupt copy: {written} bytes written, {size} read")
        if copy_checksum is not None and copy_checksum != checksum:
            raise CorruptCopy(f"corrupt copy: checksum {copy_checksum} of the copy differs from {checksum}")

    def _place(self, temp: Path, final: Path, limit: int) -> Path:
        with on_side("destination"):
            for name in paths.candidate_names(final.name, limit):
                target = final.parent / name
                try:
                    self._mover.move(temp, target)
                except FileExistsError:
                    continue
                if target != final:
                    log.warning("name conflict: %s exists, stored as %s", final.name, target.name)
                self._mover.fsync_folder(target.parent)
                return target
        raise AssertionError("unreachable")  # pragma: no cover - candidate_names never ends

    def _finish(
        self,
        rel: str,
        source: Path,
        src_fd: int,
        placed: Path,
        before: FileSig,
        checksum: str | None,
        started: float,
        outcome: Outcome,
        renamed: bool = False,
    ) -> CopyResult:
        """The copy is in place and verified: check it once more, then delete the source."""
        with on_side("destination"):
            size = os.stat(placed, follow_symlinks=False).st_size
        if size != before.size:
            raise CorruptCopy(f"corrupt copy: {placed} has {size} bytes, the source {before.size}")
        self._check_root()  # the share went away since the folders were made: the copy may sit in a bare mount point
        try:
            with on_side("source"):
                now = FileSig.from_stat(os.stat(source, follow_symlinks=False))
        except SourceVanished:
            now = None
        if now is not None and (now != before or self._held_by_writer(now, src_fd)):
            log.warning("%s changed after it was copied to %s; the source is kept", rel, placed)
            return CopyResult(rel, source, placed, size, checksum, self._clock() - started, "changed", renamed)
        if now is not None:
            try:
                os.unlink(source)
            except OSError as exc:
                raise SourceUnreadable(
                    f"copied to {placed} but the source could not be deleted: {exc.strerror}"
                ) from exc
        return CopyResult(rel, source, placed, size, checksum, self._clock() - started, outcome, renamed)

    def _changed(self, rel: str, source: Path, started: float, why: str) -> CopyResult:
        log.info("%s is not copied now: %s", rel, why)
        return CopyResult(rel, source, None, 0, None, self._clock() - started, "changed")

    # -- start-up ---------------------------------------------------------------------------------------------

    def remove_stale_temp_files(self, folders: list[str]) -> list[Path]:
        """Remove this agent's temp files in the destination folders that mirror ``folders`` of the source."""
        removed: list[Path] = []
        for rel in folders:
            folder = self.destination_root / rel if rel else self.destination_root
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if paths.temp_owner(entry.name) == self.owner and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                        removed.append(Path(entry.path))
        for path in removed:
            log.info("removed stale temp file %s", path)
        return removed


__all__ = ["Copier", "CopyResult", "TransferError", "hash_file"]
