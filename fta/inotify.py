"""inotify through ctypes on libc: one instance, watches added on open folder handles, events read with a timeout.

A watch is never added by a folder's path: the folder is opened first (without following a symlink, from its
parent's handle) and the watch goes on the very folder opened, named ``/proc/self/fd/<fd>`` with ``IN_ONLYDIR``.
A name swapped for a symlink between the open and the watch cannot redirect it. ``FolderTree`` walks and keeps
the watched folders below a source that way: a symlinked folder is simply not watched.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from fta import handles
from fta.errors import UnsafePath

log = logging.getLogger("fta.events")

IN_ACCESS, IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x1, 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF = 0x400, 0x800
IN_UNMOUNT, IN_Q_OVERFLOW, IN_IGNORED = 0x2000, 0x4000, 0x8000  # sent whatever the mask
IN_ONLYDIR, IN_EXCL_UNLINK, IN_ISDIR = 0x01000000, 0x04000000, 0x40000000

# What a scan may find new: a file written, closed, made, renamed in, or its times or rights changed.
WAKES = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_MOVED_TO
# Bookkeeping only: a folder renamed away (it may now be outside the source), a watched folder gone or moved.
# IN_DELETE is left out: a deleted folder's own watch says IN_IGNORED, and the agent's deletions cost no event.
MASK = WAKES | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF | IN_EXCL_UNLINK

MAX_WATCHES = 100_000  # folders watched at most by one source (the kernel's limit may come first): 35-55 MB here
READ_SIZE = 64 * 1024  # bytes read at once: at least 240 events

_EVENT = struct.Struct("iIII")  # wd, mask, cookie, length of the name that follows
_libc = ctypes.CDLL(None, use_errno=True)
_libc_init1: Callable[[int], int] = _libc.inotify_init1
_libc_add_watch: Callable[[int, bytes, int], int] = _libc.inotify_add_watch
_libc_rm_watch: Callable[[int, int], int] = _libc.inotify_rm_watch
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]

Identity = tuple[int, int]
Level = tuple[int, int, list[str]]  # a folder's handle and wd, and the names of its subfolders left to walk


class Event(NamedTuple):
    wd: int
    mask: int
    cookie: int
    name: bytes  # a name in the watched folder as the filesystem has it (any bytes), b"" for the folder itself


def parse(buffer: bytes) -> list[Event]:
    """The events of one read; a truncated record at the end (never sent by the kernel) is dropped."""
    events: list[Event] = []
    offset = 0
    while offset + _EVENT.size <= len(buffer):
        wd, mask, cookie, length = _EVENT.unpack_from(buffer, offset)
        start = offset + _EVENT.size
        if start + length > len(buffer):
            break
        events.append(Event(wd, mask, cookie, buffer[start : start + length].rstrip(b"\0")))
        offset = start + length
    return events


def _failed(what: str) -> OSError:
    code = ctypes.get_errno()
    if code == errno.ENOSPC:
        return OSError(code, "the inotify watch limit (fs.inotify.max_user_watches) is reached")
    if code == errno.EMFILE and what == "inotify_init1":
        return OSError(code, "the inotify instance limit (fs.inotify.max_user_instances) is reached")
    return OSError(code, f"{what}: {os.strerror(code)}")


class Inotify:
    """One inotify instance (closed by ``close``): watches on folder handles, events read with a timeout."""

    def __init__(self) -> None:
        fd = _libc_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _failed("inotify_init1")
        self.fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def watch(self, folder_fd: int, mask: int = MASK) -> int:
        """Watch the folder open as ``folder_fd`` (the same wd again when it is watched already)."""
        wd = _libc_add_watch(self.fd, f"/proc/self/fd/{folder_fd}".encode(), mask | IN_ONLYDIR)
        if wd < 0:
            raise _failed("inotify_add_watch")
        return wd

    def unwatch(self, wd: int) -> None:
        _libc_rm_watch(self.fd, wd)  # EINVAL when the kernel dropped it already: nothing left to do

    def read(self, timeout: float) -> list[Event]:
        """The events waiting, after at most ``timeout`` seconds; [] when none came."""
        if not self._poll.poll(max(0, int(timeout * 1000))):
            return []
        try:
            return parse(os.read(self.fd, READ_SIZE))
        except BlockingIOError:
            return []

    def close(self) -> None:
        os.close(self.fd)


@dataclass(slots=True)
class Folder:
    """One watched folder: where it is (its parent's wd and its name there) and what it is."""

    parent: int
    name: bytes
    identity: Identity
    children: dict[bytes, int] | None = None  # watched subfolders by name (most folders have none)


class FolderTree:
    """The watched folders below ``root``: one entry per folder, ``MAX_WATCHES`` at most.

    Folders are opened only through handles (``O_NOFOLLOW`` from the parent's handle), so a symlink is never
    followed, and no handle is kept: a folder made later is reached again from the root's handle by the names
    recorded here, and must still be the folder watched (same device and inode) to be entered.
    """

    def __init__(self, inotify: Inotify, root: Path, identity: Identity, limit: int = MAX_WATCHES) -> None:
        self.inotify = inotify
        self.root = root
        self.identity = identity
        self.limit = limit
        self.folders: dict[int, Folder] = {}
        self.root_wd = -1

    def arm(self, stop: Callable[[], bool]) -> None:
        """Watch the root and every folder below it (``stop`` ends the walk early)."""
        stack: list[Level] = []
        try:
            self._enter(stack, self._open_root(), -1, b"")
            self._walk(stack, stop)
        except OSError as exc:
            if exc.filename is None and exc.errno != errno.ENOSPC:
                exc.filename = str(self.root)
            raise

    def added(self, parent: int, name: bytes, stop: Callable[[], bool]) -> None:
        """Folder ``name`` appeared in watched folder ``parent``: watch it and everything below it."""
        if parent not in self.folders:
            return
        self.drop_child(parent, name)  # a folder renamed over another one: the old one is gone
        root_fd = self._open_root()
        try:
            names = [os.fsdecode(part) for part in self._parts(parent)]
            try:
                parent_fd = handles.open_folder(root_fd, names)
            except (FileNotFoundError, UnsafePath):
                return  # moved or replaced since: its own events, or the rescan, tell the rest
        finally:
            os.close(root_fd)
        try:
            st = os.fstat(parent_fd)
            if (st.st_dev, st.st_ino) != self.folders[parent].identity:
                os.close(parent_fd)
                return  # another folder has that path now: not the one watched
        except BaseException:
            os.close(parent_fd)
            raise
        self._walk([(parent_fd, parent, [os.fsdecode(name)])], stop)

    def drop(self, wd: int) -> None:
        """Stop watching folder ``wd`` and every folder below it (a wd the kernel dropped already is fine)."""
        removed: list[int] = []
        stack = [wd]
        while stack:
            current = stack.pop()
            folder = self.folders.pop(current, None)
            if folder is None:
                continue
            removed.append(current)
            stack.extend(folder.children.values() if folder.children else ())
            up = self.folders.get(folder.parent)
            if up is not None and up.children and up.children.get(folder.name) == current:
                del up.children[folder.name]
        for gone in removed:
            self.inotify.unwatch(gone)

    def drop_child(self, parent: int, name: bytes) -> None:
        folder = self.folders.get(parent)
        if folder is not None and folder.children and name in folder.children:
            self.drop(folder.children[name])

    def shown(self, wd: int, name: bytes = b"") -> str:
        """Folder ``wd`` (and ``name`` in it) as a path below the root, for messages."""
        parts = [*self._parts(wd), name] if name else self._parts(wd)
        return os.fsdecode(os.path.join(os.fsencode(self.root), *parts))

    # -- walking ----------------------------------------------------------------------------------------------------

    def _open_root(self) -> int:
        fd = handles.open_root(self.root)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self.identity:
            os.close(fd)
            raise FileNotFoundError(errno.ENOENT, "replaced by another folder or a mount", str(self.root))
        return fd

    def _walk(self, stack: list[Level], stop: Callable[[], bool]) -> None:
        """Depth first below the folders on ``stack``: each subfolder left is opened from its parent's handle and
        watched; one handle per level is open at a time, and all are closed here."""
        try:
            while stack and not stop():
                folder_fd, wd, names = stack[-1]
                if not names:
                    os.close(stack.pop()[0])
                    continue
                child = os.fsencode(names.pop())
                try:
                    child_fd = _open_child(folder_fd, child)
                    if child_fd is not None:
                        self._enter(stack, child_fd, wd, child)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        exc.filename = self.shown(wd, child)
                    raise
        finally:
            for folder_fd, _, _ in stack:
                os.close(folder_fd)

    def _enter(self, stack: list[Level], fd: int, parent: int, name: bytes) -> int:
        """Watch folder ``fd`` and push it with its subfolders on ``stack``, or close it (-1) when it is watched
        already (the same folder mounted twice below the root)."""
        try:
            wd = self._watch(fd, parent, name)
            room = self.limit - len(self.folders)
            names = _subfolders(fd, room + 1) if wd >= 0 else []
            if len(names) > room:
                raise OSError(errno.ENOSPC, f"more than {self.limit:,} folders to watch")
        except BaseException:
            os.close(fd)
            raise
        if wd < 0:
            os.close(fd)
        else:
            stack.append((fd, wd, names))
        return wd

    def _watch(self, fd: int, parent: int, name: bytes) -> int:
        if len(self.folders) >= self.limit:
            raise OSError(errno.ENOSPC, f"more than {self.limit:,} folders to watch")
        wd = self.inotify.watch(fd)
        if wd in self.folders:
            return -1
        st = os.fstat(fd)
        self.folders[wd] = Folder(parent, name, (st.st_dev, st.st_ino))
        if parent == -1:
            self.root_wd = wd
        elif parent in self.folders:
            up = self.folders[parent]
            if up.children is None:
                up.children = {}
            up.children[name] = wd
        return wd

    def _parts(self, wd: int) -> list[bytes]:
        """The names from the root down to folder ``wd``."""
        parts: list[bytes] = []
        while wd != self.root_wd and wd in self.folders and len(parts) <= len(self.folders):
            folder = self.folders[wd]
            parts.append(folder.name)
            wd = folder.parent
        return parts[::-1]


def _subfolders(fd: int, most: int) -> list[str]:
    """The names of the real folders in folder ``fd`` (symlinks are not folders here), ``most`` at most: more could
    not all be watched, so they are not all listed either."""
    names: list[str] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                names.append(entry.name)
                if len(names) >= most:
                    break
    return names


def _open_child(fd: int, name: bytes) -> int | None:
    """Folder ``name`` of ``fd`` opened without following a symlink; None when it is gone or is no folder now."""
    shown = os.fsdecode(name)
    try:
        return handles.open_child(fd, shown)
    except FileNotFoundError:
        return None
    except UnsafePath as exc:
        log.debug("not watched: %s", exc.strerror)
        return None
