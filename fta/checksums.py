"""Checksums of whole files, and the read-back that hashes a copy while it is being written.

xxh3-128, read in chunks no bigger than the file needs; a file is hashed through a descriptor (``pread``: its offset
is not moved) or by name in a folder handle, never through a symlink.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import xxhash

from fta import handles
from fta.errors import map_os_error

CHUNK_SIZE = 8 * 1024 * 1024
CHECKSUM_ALGORITHM = "xxh3_128"


def buffer_size(expected: int, chunk_size: int = CHUNK_SIZE) -> int:
    """A read buffer no bigger than the file needs: a zeroed 8 MiB buffer costs more than copying 64 KiB."""
    return max(4096, min(chunk_size, expected + 1))


def hash_file(path: Path, chunk_size: int = CHUNK_SIZE, expected: int | None = None) -> str:
    """Checksum of a whole file, read in chunks (``expected``: its size, when known, to size the buffer)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return hash_fd(fd, chunk_size, expected)
    finally:
        os.close(fd)


def hash_fd(fd: int, chunk_size: int = CHUNK_SIZE, expected: int | None = None) -> str:
    """Checksum of the whole file open as ``fd``, read from its start (``pread``: the file offset is not moved)."""
    hasher = xxhash.xxh3_128()
    view = memoryview(bytearray(chunk_size if expected is None else buffer_size(expected, chunk_size)))
    offset = 0
    while n := os.preadv(fd, [view], offset):
        hasher.update(view[:n])
        offset += n
    return f"{CHECKSUM_ALGORITHM}:{hasher.hexdigest()}"


def hash_at(folder: int, name: str, chunk_size: int = CHUNK_SIZE, expected: int | None = None) -> str:
    """Checksum of the file ``name`` in the folder handle ``folder`` (never through a symlink)."""
    fd = os.open(name, handles.READ_FLAGS, dir_fd=folder)
    try:
        return hash_fd(fd, chunk_size, expected)
    finally:
        os.close(fd)


class ReadBack:
    """Reads the copy back while it is being written and hashes it, in a second thread.

    The read-back overlaps with the copy instead of following it (on two cores it costs next to nothing); it reads
    through its own file descriptor, never past what has been written, and ends after the file's ``fsync``.
    """

    def __init__(self, folder: int, name: str, chunk_size: int) -> None:
        try:
            self._fd = os.open(name, handles.READ_FLAGS, dir_fd=folder)
        except OSError as exc:
            raise map_os_error(exc, "destination") from exc
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
