"""The bytes of a copy: read one chunk of the source, write one chunk of the destination, fsync it.

The copier does every other step itself (names, handles, checks, verify, rename, delete); only these three calls
move data, so they are the one place to put a different disk under it. ``CopyIO`` is the operating system's and the
copier's default. A test passes a subclass instead (``Copier(settings, io=...)``), the way httpx's MockTransport
stands in for the network: one that flips a byte (the verify must catch it), drops the last byte, sleeps (a slow
NAS), holds after the first chunk (a stop request or an unmount lands mid-copy), or swaps a folder for a symlink
between two chunks. Whatever a subclass does, the copier's checks stay the product's: they see only what reached
the file.
"""

from __future__ import annotations

import os


class CopyIO:
    """Reads and writes through the operating system; override a method to slow, hold or spoil a copy."""

    def read_chunk(self, fd: int, buffer: memoryview) -> int:
        """Read the next bytes of the source at ``fd`` into ``buffer``; 0 at its end."""
        return os.readv(fd, [buffer])

    def write_chunk(self, fd: int, data: memoryview) -> None:
        """Write all of ``data`` to the destination file at ``fd`` (a short write is continued, never dropped)."""
        while data:
            written = os.write(fd, data)
            data = data[written:]

    def fsync(self, fd: int) -> None:
        """Flush the destination file at ``fd`` to its disk: the copy is verified and renamed only after this."""
        os.fsync(fd)


__all__ = ["CopyIO"]
