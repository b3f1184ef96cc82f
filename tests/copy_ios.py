"""Disks for the copier's I/O seam (``Copier(io=...)``, ``flows.config.copy_io_in_process``), shared by the tests."""

from __future__ import annotations

import threading
from collections.abc import Callable

from fta.copy_io import CopyIO


class AfterEachChunk(CopyIO):
    """Writes each chunk, then calls ``then(chunk)``: a swap, a delete or an append lands between two chunks."""

    def __init__(self, then: Callable[[memoryview], object]) -> None:
        self._then = then

    def write_chunk(self, fd: int, data: memoryview) -> None:
        super().write_chunk(fd, data)
        self._then(data)


class HoldAfterEachChunk(CopyIO):
    """Each copy writes a chunk, sets ``in_copy`` and waits (30 s at most) for ``release`` before the next one."""

    def __init__(self) -> None:
        self.in_copy, self.release = threading.Event(), threading.Event()

    def write_chunk(self, fd: int, data: memoryview) -> None:
        super().write_chunk(fd, data)
        self.in_copy.set()
        self.release.wait(30)


class SlowDisk(AfterEachChunk):
    """A slow NAS: every chunk takes ``seconds`` longer."""

    def __init__(self, seconds: float) -> None:
        super().__init__(lambda chunk: threading.Event().wait(seconds))
