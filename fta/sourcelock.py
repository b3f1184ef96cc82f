"""One transfer loop per source folder on a machine.

Two loops moving the same source at once (the watch run and a manual ``transfer-once`` that ``fta up`` also serves,
or two ``fta watch`` started by mistake) share one agent id and so one temp name per file: one could replace the
other's temp file while it is being written and give the half-written one a final name, and both could place the
same file (a ``_1`` duplicate). An exclusive ``flock`` on a lock file named after the agent id keeps the second one
out. The kernel lets go of it when its holder ends, however it ends (``kill -9`` included), so a crash never leaves
a stale lock behind.

The lock file lies in the system's temp folder (``TMPDIR``): it belongs to this machine, as the agent id does. Where
it cannot be opened at all (another user's file in a sticky folder), the loop goes on without it, as it did before
there was a lock, and says so once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

from fta.paths import agent_id

log = logging.getLogger("fta.sourcelock")


class SourceBusy(Exception):
    """Another transfer loop on this machine is moving the same source."""


class SourceLock:
    """The exclusive right to move the files of one source folder on this machine."""

    def __init__(self, source_root: Path, folder: Path | None = None) -> None:
        self.source_root = source_root
        self.path = (folder or Path(tempfile.gettempdir())) / f"fta-{agent_id(source_root)}.lock"
        self._fd: int | None = None
        self.unlocked = False  # True when no lock could be had at all and the loop goes on without one

    def acquire(self) -> bool:
        """Take the lock: True when held (or when none can be had here), False while another loop holds it."""
        if self._fd is not None or self.unlocked:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            return self._without_lock(exc)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            return self._without_lock(exc)
        holder = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S %z')}"
        with contextlib.suppress(OSError):  # who holds it is a courtesy for the message of the one kept out
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{holder}: {self.source_root}\n".encode(errors="surrogateescape"), 0)
        self._fd = fd
        return True

    def _without_lock(self, exc: OSError) -> bool:
        log.warning(
            "no lock for %s (%s: %s): another run on this machine could move the same files at once",
            self.source_root,
            self.path,
            exc.strerror,
        )
        self.unlocked = True
        return True

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it ("unknown" when it cannot be read)."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return "unknown"
        return text.split(": ", 1)[0] if text else "unknown"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor lets go of the flock
            self._fd = None
        self.unlocked = False

    @property
    def held(self) -> bool:
        return self._fd is not None
