"""Wake the transfer loop on file-system events (inotify, ``fta.inotify``) instead of at the next scan.

Events are a hint, never the truth: the loop still rescans the source every ``polling_interval_seconds`` and a scan
decides what exists and whether it changed. An event that does not come costs latency, never a file. What wakes the
loop: a file written, closed after writing, made, renamed into the source, or its times or rights changed, a folder
made or renamed in (it is watched from then on), and a lost-events notice from the kernel (its queue overflowed).
A deletion or a rename away wakes nothing (most are the agent's own, after each copy). Names are taken as bytes:
any name, also one that is not valid UTF-8, wakes the loop like any other.

Events do not come, or not all of them, when:

- the source is a network share written by another machine (NFS, SMB: inotify only sees this machine's writes);
- the inotify watch limit (``fs.inotify.max_user_watches``, or ``MAX_WATCHES`` folders for one source) is reached:
  at start ``start()`` says so and returns False; for a folder made later the watch ends with one WARNING;
- a file is written into a new folder before that folder's watch is added (the folder's own creation wakes the
  loop);
- the kernel's event queue overflowed: that wakes the loop, but a folder made meanwhile stays unwatched until the
  watch is started again;
- a filesystem is mounted on a folder below the source after the start (the watch stays on the folder beneath);
- a folder below the source is a symlink: it is never followed, so nothing behind it is watched (nor scanned);
- the source folder is removed, moved or replaced (say, by a mount), a subfolder cannot be opened (permissions),
  or reading the events fails: the watch thread ends with one WARNING and ``active`` turns False.

The tree is walked only through folder handles, never by path: each subfolder is opened from its parent's handle
without following a symlink and the watch is added on the very folder opened (``fta.inotify``), so a folder
swapped for a symlink at any moment can never extend the watch outside the source. Nothing is kept open between
events: one entry per watched folder, at most ``MAX_WATCHES``.

Arming: the watch thread adds every watch (each before its folder is listed, so a subfolder made meanwhile is
either listed or reported) and ``start()`` returns after that, so a change made after ``start()`` returns is seen;
a change made *during* ``start()`` in a folder not walked yet may not be, so the caller scans after ``start()``,
not before. Each heartbeat (``HEARTBEAT_MS``) also checks that the source folder is still the one being watched.
An unreadable subfolder makes ``start()`` report events as unavailable rather than watch part of the tree.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path

from fta.inotify import (
    IN_CREATE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    IN_UNMOUNT,
    MAX_WATCHES,
    WAKES,
    Event,
    FolderTree,
    Inotify,
)

log = logging.getLogger("fta.events")

HEARTBEAT_MS = 200  # how often the watch thread checks without a change that the source folder is still the same
ARM_TIMEOUT = 60.0  # seconds start() waits for the watch thread to walk the tree and add its watches
MAX_BATCH = 10_000  # distinct changes gathered at most: a batch that big is handed over at once

# Filesystems where inotify only reports this machine's own changes (writers elsewhere raise no event).
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "davfs", "fuse.sshfs"}
)

GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_UNMOUNT | IN_IGNORED  # a watched folder itself went away

Identity = tuple[int, int]


class _Ended(Exception):
    """The source folder is no longer the one watched."""


class SourceEvents:
    """Watches the source tree for changes (inotify) in a daemon thread.

    ``on_change`` is called from the watch thread once per batch of changes; it should only set an event. A batch
    ends when a step (``step_ms``) brings no new *distinct* change, or ``debounce_ms`` after its first one: a file
    written all the time (a recording) gives a batch about every ``2 x step_ms``, so a wake means "look soon", and
    the caller decides how often it really rescans.
    """

    def __init__(self, root: Path, on_change: Callable[[], None], *, step_ms: int = 50, debounce_ms: int = 400) -> None:
        self.root = Path(root)
        self.changes = 0  # batches seen, for metrics and debugging
        self._on_change = on_change
        self._step_ms = step_ms
        self._debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._armed = False
        self._warned: set[str] = set()
        self._tree: FolderTree | None = None

    @property
    def active(self) -> bool:
        """True while the watch thread is armed and running; False before start, after stop or an error."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._armed and not self._stop.is_set()

    @property
    def watched(self) -> int:
        """How many folders are watched now (0 when not active)."""
        tree = self._tree
        return len(tree.folders) if tree is not None and self.active else 0

    def start(self) -> bool:
        """Watch the tree; False (reason logged) when events are unavailable and the caller can only poll."""
        if self.active:
            return True
        try:
            identity = _identity(self.root)
        except OSError as exc:
            self._unavailable(f"cannot watch {self.root}: {exc.strerror or exc}")
            return False
        self._stop = threading.Event()
        self._armed = False
        settled = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(identity, self._stop, settled), name="fta-events", daemon=True
        )
        self._thread.start()
        if not settled.wait(ARM_TIMEOUT):
            self._unavailable(f"adding the watches below {self.root} took over {ARM_TIMEOUT:g} s")
            self.stop(timeout=0)
            return False
        if not self._armed:
            return False  # the thread logged why
        kind = filesystem_type(self.root)
        if kind in NETWORK_FILESYSTEMS:
            log.info(
                "file events on %s (%s) only see this machine's writes; the rescan finds the rest", self.root, kind
            )
        else:
            log.debug("file events on %s (%s, %d folders)", self.root, kind or "filesystem unknown", self.watched)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """End the watch thread (within about ``step_ms``); safe to call at any time and more than once."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the watch thread -------------------------------------------------------------------------------------------

    def _run(self, identity: Identity, stop: threading.Event, settled: threading.Event) -> None:
        try:
            inotify = Inotify()
        except OSError as exc:
            self._ended(_reason(exc))
            settled.set()
            return
        tree = FolderTree(inotify, self.root, identity, MAX_WATCHES)
        try:
            tree.arm(stop.is_set)
            if stop.is_set():
                return
            self._tree = tree
            self._armed = True
            settled.set()
            self._watch(inotify, tree, identity, stop)
        except _Ended as gone:
            self._ended(str(gone))
        except Exception as exc:
            self._ended(_reason(exc))
        finally:
            if self._tree is tree:  # not a later start's
                self._tree = None
            inotify.close()  # releases every watch at once
            settled.set()

    def _watch(self, inotify: Inotify, tree: FolderTree, identity: Identity, stop: threading.Event) -> None:
        step = self._step_ms / 1000
        batch = Batch(step, self._debounce_ms / 1000)
        beat = time.monotonic() + HEARTBEAT_MS / 1000
        while not stop.is_set():
            events = inotify.read(step)
            now = time.monotonic()
            for event in events:
                key = self._handle(event, tree, stop)
                if key is not None:
                    batch.add(key, now)
            if batch.due(now) and not stop.is_set():
                self.changes += 1
                self._on_change()
            if now >= beat:
                gone = _replaced(self.root, identity)
                if gone is not None:
                    raise _Ended(gone)
                beat = now + HEARTBEAT_MS / 1000

    def _handle(self, event: Event, tree: FolderTree, stop: threading.Event) -> Hashable | None:
        """Keep the watches in step with the tree; the change's key when it is worth a scan, else None."""
        if event.mask & IN_Q_OVERFLOW:
            log.debug("the kernel's event queue overflowed on %s: the rescan finds what was lost", self.root)
            return "overflow"
        if event.wd not in tree.folders:
            return None  # queued before its folder was dropped
        if event.mask & GONE:
            if event.wd == tree.root_wd:
                raise _Ended(_replaced(self.root, tree.identity) or f"{self.root} was moved or unmounted")
            tree.drop(event.wd)  # gone, moved (perhaps out of the source) or unmounted: a move in is seen anew
            return None
        if event.mask & IN_ISDIR and event.name:
            if event.mask & IN_MOVED_FROM:
                tree.drop_child(event.wd, event.name)
            elif event.mask & (IN_CREATE | IN_MOVED_TO):
                tree.added(event.wd, event.name, stop.is_set)
        return (event.wd, event.mask & WAKES, event.name) if not_a_deletion(event.mask) else None

    def _ended(self, reason: str) -> None:
        if self._armed:
            self._warn(f"file events stopped ({reason}); finding files by rescanning only")
        else:
            self._unavailable(reason)

    def _unavailable(self, reason: str) -> None:
        self._warn(f"file events unavailable ({reason}); finding files by rescanning only")

    def _warn(self, message: str) -> None:
        """Each reason once at WARNING (a caller that retries start() does not flood the log)."""
        if message in self._warned:
            log.debug("%s", message)
            return
        self._warned.add(message)
        log.warning("%s", message)


class Batch:
    """Distinct changes gathered until a step brings no new one, or ``debounce`` seconds after the first.

    Times are the caller's monotonic seconds. At most ``limit`` changes are kept: a batch that big is due at once.
    """

    def __init__(self, step: float, debounce: float, limit: int = MAX_BATCH) -> None:
        self.step, self.debounce, self.limit = step, debounce, limit
        self.keys: set[Hashable] = set()
        self._started = 0.0
        self._tick = 0.0
        self._size_at_tick = 0

    def add(self, key: Hashable, now: float) -> None:
        if not self.keys:
            self._started, self._tick, self._size_at_tick = now, now + self.step, 0
        if len(self.keys) < self.limit:
            self.keys.add(key)

    def due(self, now: float) -> bool:
        """Whether the batch is complete (it is then emptied); checked whenever time passes."""
        if not self.keys:
            return False
        full = len(self.keys) >= self.limit
        if now < self._tick and not full:
            return False
        if full or len(self.keys) == self._size_at_tick or now - self._started >= self.debounce:
            self.keys.clear()
            return True
        self._size_at_tick, self._tick = len(self.keys), now + self.step
        return False


def not_a_deletion(mask: int) -> bool:
    """Whether an event (its inotify mask) is worth a scan: a deletion or a rename away brings no new work (most
    are the agent's own, after each copy, and would otherwise rescan the source after every file of a burst); the
    next poll forgets what vanished."""
    return bool(mask & (WAKES | IN_Q_OVERFLOW))


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"


def _identity(path: Path) -> Identity:
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(20, "not a folder", str(path))
    return (st.st_dev, st.st_ino)


def _replaced(root: Path, identity: Identity) -> str | None:
    """Why the watched folder is no longer the source (None while it is)."""
    try:
        now = _identity(root)
    except OSError as exc:
        return f"{root}: {exc.strerror or exc}"
    if now != identity:
        return f"{root} was replaced by another folder or a mount"
    return None


def _unescape_mount(field: str) -> str:
    """/proc/self/mounts writes space, tab, newline and backslash in a path as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """Type of the filesystem holding ``path`` (the longest mount point above it), None when unknown."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    target = os.path.realpath(path)
    best, kind = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = _unescape_mount(fields[1])
        inside = point == "/" or target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # >=: the last of several mounts on one point is the visible one
            best, kind = len(point), fields[2]
    return kind
