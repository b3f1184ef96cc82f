"""One transfer loop per source folder on a machine.

Two loops moving the same source at once (the watch run and a manual ``transfer-once`` that ``fta up`` also serves,
or two ``fta watch`` started by mistake) share one agent id and so one temp name per file: one could replace the
other's temp file while it is being written and give the half-written one a final name, and both could place the
same file (a ``_1`` duplicate). An exclusive ``flock`` on a lock file named after the agent id keeps the second one
out. The kernel lets go of it when its holder ends, however it ends (``kill -9`` included), so a crash never leaves
a stale lock behind.

The lock file lies in ``/run/lock`` (the system's temp folder where that is not writable): it belongs to this
machine, as the agent id does, and the runs of every user find it there (``/run/lock`` is also outside a systemd
service's private ``/tmp``). It is made writable for all, and opened read-only where it cannot be opened for writing
(``flock`` needs no more), so the service's run and an operator's ``sudo fta once`` keep each other out. The holder
removes it as it lets go; a run that locked the file just removed takes the new one instead. Where no lock file can
be opened at all, the loop goes on without it, as it did before there was a lock, and says so.
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


def lock_folder() -> Path:
    """``/run/lock`` where this user may make files in it, else the system's temp folder."""
    run_lock = Path("/run/lock")
    if run_lock.is_dir() and os.access(run_lock, os.W_OK | os.X_OK):
        return run_lock
    return Path(tempfile.gettempdir())


class SourceLock:
    """The exclusive right to move the files of one source folder on this machine."""

    def __init__(self, source_root: Path, folder: Path | None = None) -> None:
        self.source_root = source_root
        self.path = (folder or lock_folder()) / f"fta-{agent_id(source_root)}.lock"
        self._fd: int | None = None
        self.unlocked = False  # True when no lock could be had at all and the loop goes on without one

    def acquire(self) -> bool:
        """Take the lock: True when held (or when none can be had here), False while another loop holds it."""
        while self._fd is None and not self.unlocked:
            try:
                fd = self._open()
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
            if not self._still_there(fd):
                os.close(fd)  # its holder removed it as it let go: lock the file that is there now
                continue
            holder = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S %z')}"
            with contextlib.suppress(OSError):  # a courtesy for the message of the one kept out (read-only: none)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{holder}: {self.source_root}\n".encode(errors="surrogateescape"), 0)
            self._fd = fd
        return True

    def _open(self) -> int:
        """The lock file, for writing where this user may, else read-only; made (writable for all) when missing."""
        flags = os.O_NOFOLLOW | os.O_CLOEXEC
        while True:
            try:
                return os.open(self.path, os.O_RDWR | flags)
            except FileNotFoundError:
                pass
            except PermissionError:
                return os.open(self.path, os.O_RDONLY | flags)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | flags, 0o666)
            except FileExistsError:
                continue  # made by another run in between
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o666)  # the umask must not keep another user's runs out
            return fd

    def _still_there(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.lstat(self.path))
        except OSError:
            return False

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
            with contextlib.suppress(OSError):  # removed while still held; another user's file stays
                os.unlink(self.path)
            os.close(self._fd)  # closing the only descriptor lets go of the flock
            self._fd = None
        self.unlocked = False

    @property
    def held(self) -> bool:
        return self._fd is not None
