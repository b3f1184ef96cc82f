"""The source lock a transfer run holds from its start to its end, and hands over when its paths change.

Two runs on one machine moving one source would copy the same files twice (``fta.sourcelock``). A run takes its
source before it touches anything: a sweep kept out ends at once (the run that holds the source moves the files), a
watch waits for the other run to end (typically its predecessor, still stopping). An edited configuration takes the
new paths' lock before it lets go of the old one, so the run never holds nothing.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fta.sourcelock import SourceBusy, SourceLock

log = logging.getLogger("fta.loop")

SOURCE_LOCK_RETRY_SECONDS = 1.0  # how often a watch kept out of its source by another run asks again


class SourceHold:
    def __init__(self, retry_seconds: float = SOURCE_LOCK_RETRY_SECONDS) -> None:
        self.lock: SourceLock | None = None
        self._retry_seconds = retry_seconds

    def take(self, source: Path, destination: Path, once: bool, stop: threading.Event) -> bool:
        """Hold ``source``'s lock; False when ``stop`` was set while waiting for it (nothing is held then).

        ``once`` (a sweep) kept out raises ``SourceBusy`` at once; a watch asks again every ``retry_seconds``.
        """
        lock = SourceLock(source, destination)
        waiting = False
        while not lock.acquire():
            why = f"{source} is being moved by another run on this machine ({lock.holder()})"
            if once:
                raise SourceBusy(f"{why}; nothing was done: that run moves these files")
            if not waiting:
                log.warning("%s; waiting for it to end", why)
                waiting = True
            if stop.wait(self._retry_seconds):
                return False
        if waiting:
            log.info("the other run has ended; this one moves %s now", source)
        self.lock = lock
        return True

    def move(self, source: Path, destination: Path) -> str | None:
        """Hold the lock for new paths instead: None once held (the old lock let go), else who holds them."""
        lock = SourceLock(source, destination, replacing=self.lock)
        if not lock.acquire():
            return lock.holder()
        self.release()
        self.lock = lock
        return None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
