"""One transfer loop per source on a machine, and no two whose folders overlap.

Two loops moving the same source at once (the watch run and a manual ``transfer-once`` that ``fta up`` also serves,
or two ``fta watch`` started by mistake) share one agent id and so one temp name per file: one could replace the
other's temp file while it is being written and give the half-written one a final name, and both could place the
same file (a ``_1`` duplicate). Folders that only overlap are as bad: a source inside (or around) another run's
source moves the same files under two agent ids, and a source that contains another run's destination, or lies
inside it, pulls the files that run delivers back out of the NAS folder (or the other way round).

So every loop registers: a lock file of its own, ``fta-run-<random>.lock``, naming its source and destination and
held with an exclusive ``flock`` for as long as the loop runs. A loop about to start looks at every entry while it
holds a short exclusive ``flock`` on ``fta-sources.lock`` (so two starting at once never both see the other absent):
an entry whose ``flock`` it can take has no holder any more (its run ended without removing it, ``kill -9``
included: the kernel lets go of a dead process's locks) and is ignored and removed; a held entry whose folders
overlap this loop's (equal, nested either way, a source containing or inside the other's destination, and the
reverse) keeps it out. Two loops delivering to one destination from separate sources are fine.

The files lie in ``/run/lock`` (the system's temp folder where that is not writable): it belongs to this machine, and
the runs of every user find it there (``/run/lock`` is also outside a systemd service's private ``/tmp``).
``fta-sources.lock`` is made writable for all and opened read-only where it cannot be opened for writing (``flock``
needs no more); entries are readable by all; so the service's run and an operator's ``sudo fta once`` or a run as
another user keep each other out. Where no lock can be had at all, the loop goes on without it, as it did before
there was a lock, and says so.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("fta.sourcelock")

REGISTRY = "fta-sources.lock"
ENTRY_PREFIX, ENTRY_SUFFIX = "fta-run-", ".lock"
REGISTRY_WAIT_SECONDS = 10.0  # the registry is held for milliseconds; longer means someone keeps it on purpose
ENTRY_MAX_BYTES = 64 * 1024


class SourceBusy(Exception):
    """Another transfer loop on this machine is moving an overlapping folder."""


def lock_folder() -> Path:
    """``/run/lock`` where this user may make files in it, else the system's temp folder."""
    run_lock = Path("/run/lock")
    if run_lock.is_dir() and os.access(run_lock, os.W_OK | os.X_OK):
        return run_lock
    return Path(tempfile.gettempdir())


@dataclass(frozen=True)
class Entry:
    """A running loop as its lock file names it."""

    path: Path
    holder: str  # "pid N on HOST, since TIME"
    source: Path
    destination: Path | None


def _relation(a: Path, b: Path) -> str | None:
    """How folder ``b`` overlaps folder ``a``: None when they are apart."""
    if a == b:
        return "is"
    if b.is_relative_to(a):
        return "lies inside"
    if a.is_relative_to(b):
        return "contains"
    return None


def overlap(source: Path, destination: Path | None, other: Entry) -> str | None:
    """Why a loop on ``source`` -> ``destination`` may not run beside ``other``; None when it may."""
    checks = [("its source", other.source, "this source", source)]
    if other.destination is not None:
        checks.append(("its destination", other.destination, "this source", source))
    if destination is not None:
        checks.append(("its source", other.source, "this run's destination", destination))
    for theirs, their_path, ours, our_path in checks:
        relation = _relation(our_path, their_path)
        if relation is not None:
            return f"{theirs} {their_path} {relation} {ours}"
    return None


def _open_in(folder_fd: int, name: str, flags: int) -> int:
    """``name`` in the lock folder's handle, never through a symlink (the folder is writable for every user)."""
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=folder_fd)


@contextlib.contextmanager
def _folder_handle(folder: Path) -> Iterator[int]:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _read_entry(folder_fd: int, folder: Path, name: str) -> Entry | None:
    """The entry ``name`` (a regular file of at most 64 KiB), None when it cannot be read or understood."""
    try:
        fd = _open_in(folder_fd, name, os.O_RDONLY)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = json.loads(os.pread(fd, ENTRY_MAX_BYTES, 0).decode(errors="surrogateescape"))
        destination = data.get("destination")
        source = Path(data["source"])
        return Entry(folder / name, str(data["holder"]), source, Path(destination) if destination else None)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    finally:
        os.close(fd)


def _is_held(folder_fd: int, name: str) -> bool | None:
    """True while a run holds ``name``; False when nobody does; None when it cannot be told (gone, not ours)."""
    try:
        fd = _open_in(folder_fd, name, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)
    return False


def _entry_names(folder_fd: int) -> list[str]:
    try:
        names = os.listdir(folder_fd)
    except OSError:
        return []
    return sorted(name for name in names if name.startswith(ENTRY_PREFIX) and name.endswith(ENTRY_SUFFIX))


def entries_in(folder: Path) -> list[Entry]:
    """Every readable entry in ``folder``, held or not."""
    with _folder_handle(folder) as folder_fd:
        return [entry for name in _entry_names(folder_fd) if (entry := _read_entry(folder_fd, folder, name))]


def live_entries(folder_fd: int, folder: Path, skip: str | None = None) -> Iterator[Entry]:
    """The entries of running loops; those nobody holds any more are removed (where this user may) on the way."""
    for name in _entry_names(folder_fd):
        if name == skip:
            continue
        held = _is_held(folder_fd, name)
        if held is False:
            with contextlib.suppress(OSError):  # another user's file in a sticky folder stays; it is ignored
                os.unlink(name, dir_fd=folder_fd)
            continue
        entry = _read_entry(folder_fd, folder, name) if held else None
        if entry is not None:
            yield entry


class SourceLock:
    """The exclusive right to move the files of one source folder to one destination on this machine."""

    def __init__(
        self,
        source_root: Path,
        destination: Path | None = None,
        folder: Path | None = None,
        replacing: SourceLock | None = None,
    ) -> None:
        self.source_root = source_root
        self.destination = destination
        self.folder = folder or lock_folder()
        self.path: Path | None = None  # this run's entry, once held
        self._name: str | None = None  # its name in the lock folder
        self._folder_fd: int | None = None  # the lock folder's handle, kept while the entry is held
        self._replacing = replacing  # this run's current lock, which the new one takes over from: no conflict
        self._fd: int | None = None
        self._conflict: Entry | None = None
        self._why: str | None = None
        self.unlocked = False  # True when no lock could be had at all and the loop goes on without one

    def acquire(self) -> bool:
        """Take the lock: True when held (or when none can be had here), False while an overlapping run holds one."""
        if self._fd is not None or self.unlocked:
            return True
        try:
            folder_fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            return self._without_lock(self.folder, exc)
        try:
            registry = self._open_registry(folder_fd)
        except OSError as exc:
            os.close(folder_fd)
            return self._without_lock(self.folder / REGISTRY, exc)
        try:
            if not self._wait_for_registry(registry):
                return False
            skip = self._replacing._name if self._replacing is not None else None
            for entry in live_entries(folder_fd, self.folder, skip):
                why = overlap(self.source_root, self.destination, entry)
                if why is not None:
                    self._conflict, self._why = entry, why
                    return False
            self._conflict = self._why = None
            try:
                self._register(folder_fd)
            except OSError as exc:
                return self._without_lock(self.path or self.folder, exc)
            self._folder_fd, folder_fd = folder_fd, -1  # kept: the entry is removed through it
            return True
        finally:
            os.close(registry)  # lets go of the registry's flock
            if folder_fd >= 0:
                os.close(folder_fd)

    def _open_registry(self, folder_fd: int) -> int:
        """``fta-sources.lock``, for writing where this user may, else read-only; made (writable for all) if missing."""
        while True:
            try:
                return _open_in(folder_fd, REGISTRY, os.O_RDWR)
            except FileNotFoundError:
                pass
            except PermissionError:
                return _open_in(folder_fd, REGISTRY, os.O_RDONLY)
            try:
                fd = _open_in(folder_fd, REGISTRY, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                continue  # made by another run in between
            with contextlib.suppress(OSError):
                os.fchmod(fd, 0o666)  # the umask must not keep another user's runs out
            return fd

    def _wait_for_registry(self, fd: int) -> bool:
        deadline = time.monotonic() + REGISTRY_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self._why = (
                        f"the lock registry {self.folder / REGISTRY} has been held for {REGISTRY_WAIT_SECONDS:g} s"
                    )
                    return False
                time.sleep(0.01)

    def _register(self, folder_fd: int) -> None:
        """This run's entry: made, locked and written while the registry is held, so nobody sees it half-made."""
        name = f"{ENTRY_PREFIX}{secrets.token_hex(8)}{ENTRY_SUFFIX}"
        fd = _open_in(folder_fd, name, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        try:
            os.fchmod(fd, 0o644)  # readable for every user's runs, whatever the umask
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            record = {
                "holder": f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S %z')}",
                "source": os.fsdecode(self.source_root),
                "destination": os.fsdecode(self.destination) if self.destination is not None else None,
            }
            os.write(fd, json.dumps(record).encode(errors="surrogateescape"))
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder_fd)
            os.close(fd)
            raise
        self._fd, self._name, self.path = fd, name, self.folder / name

    def _without_lock(self, where: Path, exc: OSError) -> bool:
        log.warning(
            "no lock for %s (%s: %s): another run on this machine could move the same files at once",
            self.source_root,
            where,
            exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc)),
        )
        self.unlocked = True
        return True

    def holder(self) -> str:
        """Who keeps this run out and why ("pid N on HOST, since TIME: its source /x contains this source")."""
        if self._conflict is not None:
            return f"{self._conflict.holder}: {self._why}"
        return self._why or "unknown"

    def release(self) -> None:
        if self._fd is not None:
            if self._name is not None and self._folder_fd is not None:
                with contextlib.suppress(OSError):  # before letting go: a run that sees it gone never finds it unheld
                    os.unlink(self._name, dir_fd=self._folder_fd)
            os.close(self._fd)  # closing the only descriptor lets go of the flock
            self._fd = None
        if self._folder_fd is not None:
            os.close(self._folder_fd)
            self._folder_fd = None
        self.unlocked = False

    @property
    def held(self) -> bool:
        return self._fd is not None
