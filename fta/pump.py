"""Steps 4 and 5 of the copy (``fta.copier``): a file's bytes from the source handle to the destination handle.

One loop for both write modes of the copier: read a chunk, hash it, write it, report progress (at most a few times a
second), honour a stop request between chunks, fsync at the end. With ``verify=checksum`` the copy is read back and
hashed again: a large file while it is written (``ReadBack``, in a second thread), a small one after its fsync. The
bytes move through a ``CopyIO``: the operating system's, or whatever a test puts under the copy.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

import xxhash

from fta.checksums import CHECKSUM_ALGORITHM, ReadBack, buffer_size, hash_at
from fta.copy_io import CopyIO
from fta.copy_job import CopyJob, ProgressCallback, Written, on_side
from fta.errors import CopyInterrupted, DestinationUnavailable, map_os_error
from fta.stability import Clock

PROGRESS_INTERVAL = 0.25


class Throttle:
    """Calls ``callback(done, total)`` at most once per ``interval`` of ``clock``, and always for the final call."""

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


class Pump:
    """The copier's byte loop, set up once per copier: its I/O, whether to read the copy back, its chunk size."""

    def __init__(
        self, io: CopyIO, read_back: bool, clock: Clock, chunk_size: int, progress_interval: float = PROGRESS_INTERVAL
    ) -> None:
        self.io = io
        self._read_back = read_back
        self._clock = clock
        self._chunk_size = chunk_size
        self._progress_interval = progress_interval

    def pump(self, job: CopyJob, dst_fd: int, dst_name: str) -> Written:
        """Copy all of the source's bytes to ``dst_fd`` (``dst_name`` in the job's destination folder) and fsync."""
        total = job.size
        hasher = xxhash.xxh3_128()
        view = memoryview(bytearray(buffer_size(total, self._chunk_size)))
        report = Throttle(job.progress, self._clock, self._progress_interval)
        # Large files are read back while they are written; a small one is simply re-read after its fsync.
        big = self._read_back and total > self._chunk_size
        readback = ReadBack(job.dst_dir, dst_name, self._chunk_size) if big else None
        done = 0
        try:
            report(0, total)
            while True:
                if job.stop is not None and job.stop.is_set():
                    raise CopyInterrupted("stop requested")
                with on_side("source"):
                    n = self.io.read_chunk(job.src_fd, view)
                if not n:
                    break
                hasher.update(view[:n])
                with _destination_write(total):
                    self.io.write_chunk(dst_fd, view[:n])
                done += n
                if readback is not None:
                    readback.advance(n)
                report(done, max(total, done))
            with _destination_write(total):
                self.io.fsync(dst_fd)
            copy_checksum = self._copy_checksum(job, dst_name, readback)
        finally:
            if readback is not None:
                readback.close()
        report(done, max(total, done), final=True)
        return Written(dst_name, done, f"{CHECKSUM_ALGORITHM}:{hasher.hexdigest()}", copy_checksum)

    def _copy_checksum(self, job: CopyJob, dst_name: str, readback: ReadBack | None) -> str | None:
        """The checksum of the copy as it is on the disk (None with ``verify=size``)."""
        if readback is not None:
            return readback.finish()
        if not self._read_back:
            return None
        with on_side("destination"):
            return hash_at(job.dst_dir, dst_name, self._chunk_size, job.size)


@contextlib.contextmanager
def _destination_write(total: int) -> Iterator[None]:
    """Map write errors; a full destination remembers how much room this file needs."""
    try:
        yield
    except OSError as exc:
        mapped = map_os_error(exc, "destination")
        if isinstance(mapped, DestinationUnavailable) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            mapped.needed_bytes = total
        raise mapped from exc


__all__ = ["PROGRESS_INTERVAL", "Pump", "Throttle"]
