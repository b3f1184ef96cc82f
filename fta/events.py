"""Wake the transfer loop on file-system events (inotify, through watchfiles) instead of at the next scan.

Events are a hint, never the truth: the loop still rescans the source every ``polling_interval_seconds`` and a scan
decides what exists and whether it changed. An event that does not come costs latency, never a file. They do not
come, or not all of them, when:

- the source is a network share written by another machine (NFS, SMB: inotify only sees this machine's writes);
- the inotify watch limit (``fs.inotify.max_user_watches``) is reached: at start ``start()`` says so and returns
  False; for a folder created later watchfiles ignores it silently;
- a file is written into a new folder before that folder's watch is added (the folder's own creation still wakes
  the loop);
- watchfiles stops with an error, e.g. on a name that is not valid UTF-8, or the source folder is removed, moved
  or replaced (say, by a mount): the watch thread ends with one WARNING and ``active`` turns False.

Arming: watchfiles adds every inotify watch (walking the tree) before it waits for the first time, and keeps what
happens between that and the wait. ``start()`` returns once the first heartbeat (or batch) came back, so a change
made after ``start()`` returns is seen; a change made *during* ``start()`` in a folder not walked yet may not be,
so the caller scans after ``start()``, not before. Each heartbeat (``HEARTBEAT_MS``) also checks that the source
folder is still the one being watched. watchfiles empties its change set when a heartbeat finds it empty: a change
landing in that instant is lost (the rescan finds it).

Unreadable subfolders make watchfiles refuse the whole tree (``ignore_permission_denied=True`` would hide that
*and* a missing root or the watch limit, leaving part of the tree unwatched without a word), so ``start()`` reports
them as events unavailable. inotify follows symlinked folders (the scanner does not): a change there wakes the loop
for nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("fta.events")

HEARTBEAT_MS = 200  # how often the watch thread looks up without a change: stop requested, source folder replaced
ARM_TIMEOUT = 60.0  # seconds start() waits for watchfiles to walk the tree and add its watches

# Filesystems where inotify only reports this machine's own changes (writers elsewhere raise no event).
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "glusterfs", "lustre", "davfs", "fuse.sshfs"}
)

Identity = tuple[int, int]


class SourceEvents:
    """Watches the source tree for changes (inotify through watchfiles) in a daemon thread.

    ``on_change`` is called from the watch thread once per batch of changes; it should only set an event. watchfiles
    ends a batch when a step (``step_ms``) brings no new *distinct* change, or ``debounce_ms`` after its first one:
    a file written all the time (a recording) gives a batch about every ``2 x step_ms``, so a wake means "look
    soon", and the caller decides how often it really rescans.
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

    @property
    def active(self) -> bool:
        """True while the watch thread is armed and running; False before start, after stop or an error."""
        thread = self._thread
        return thread is not None and thread.is_alive() and self._armed and not self._stop.is_set()

    def start(self) -> bool:
        """Watch the tree; False (reason logged) when events are unavailable and the caller can only poll."""
        if self.active:
            return True
        try:
            identity = _identity(self.root)
        except OSError as exc:
            self._unavailable(f"cannot watch {self.root}: {exc.strerror or exc}")
            return False
        try:
            from watchfiles import watch
        except ImportError as exc:
            self._unavailable(f"watchfiles cannot be imported ({exc})")
            return False
        self._stop = threading.Event()
        self._armed = False
        settled = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(watch, identity, self._stop, settled), name="fta-events", daemon=True
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
            log.debug("file events on %s (%s)", self.root, kind or "filesystem unknown")
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """End the watch thread (within about ``step_ms``); safe to call at any time and more than once."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # -- the watch thread -------------------------------------------------------------------------------------------

    def _run(
        self, watch: Callable[..., Any], identity: Identity, stop: threading.Event, settled: threading.Event
    ) -> None:
        try:
            batches = watch(
                self.root,
                watch_filter=not_a_deletion,  # the scan decides what matters; a deletion brings no work
                debounce=self._debounce_ms,
                step=self._step_ms,
                stop_event=stop,
                rust_timeout=HEARTBEAT_MS,
                yield_on_timeout=True,  # the heartbeat: proves arming, lets us check the root
                debug=False,
                raise_interrupt=False,
                force_polling=False,  # the loop polls already; never a second, costlier poller
                recursive=True,
                ignore_permission_denied=False,  # True would hide a missing root and the watch limit too
            )
            with contextlib.closing(batches):  # closing releases the inotify instance at once
                for batch in batches:
                    self._armed = True
                    settled.set()
                    if stop.is_set():
                        break
                    if batch:
                        self.changes += 1
                        self._on_change()
                    gone = _replaced(self.root, identity)
                    if gone is not None:
                        self._ended(gone)
                        break
        except Exception as exc:
            self._ended(f"{type(exc).__name__}: {exc}")
        finally:
            settled.set()

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


def not_a_deletion(change: Any, path: str) -> bool:
    """Whether a change is worth a scan: a deletion brings no new work (most are the agent's own, after each copy,
    and would otherwise rescan the source after every file of a burst); the next poll forgets what vanished."""
    return getattr(change, "name", None) != "deleted"


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
