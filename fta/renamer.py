"""Give a finished temp file its final name without ever overwriting, and make the rename durable.

Every strategy works on names in one folder handle (``dir_fd``), never on paths: a folder swapped for a symlink
cannot redirect a rename. Strategies, tried in order; the first that the filesystem supports is remembered and
logged once:
    renameat2   ``renameat2(..., RENAME_NOREPLACE)``: atomic, fails with EEXIST (Linux, most local filesystems)
    link        ``link(temp, final)`` + ``unlink(temp)``: atomic create-if-absent (NFS, filesystems without
                RENAME_NOREPLACE); an EEXIST whose name already is our temp file (an NFS reply lost and the call
                retransmitted) counts as done, not as a conflict
    rename      check that the final name is free, then ``renameat``, both under one lock of this process: atomic
                against every copy of this agent, NOT against another writer choosing the same name in the same
                instant; the last resort for CIFS shares that refuse both others
A strategy "is not supported" when it fails with one of ``UNSUPPORTED_ERRNOS``; any other error is real. The copies
of an agent share one mover: its chain is changed under a lock, so copies that find a strategy unsupported at the
same moment drop it once, never the one after it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("fta.renamer")

UNSUPPORTED_ERRNOS = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EPERM})
_RENAME_NOREPLACE = 1

Strategy = Callable[[int, str, str], None]  # (folder handle, temp name, final name): both names in that folder


def _load_renameat2() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func: Callable[..., int] = libc.renameat2
    except (OSError, AttributeError):
        return None
    return func


_renameat2 = _load_renameat2()


def rename_noreplace(folder: int, temp: str, final: str) -> None:
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if _renameat2(folder, os.fsencode(temp), folder, os.fsencode(final), _RENAME_NOREPLACE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), final)


def link_then_unlink(folder: int, temp: str, final: str) -> None:
    try:
        os.link(temp, final, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
    except FileExistsError:
        if not _same_file(folder, temp, final):
            raise
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp, dir_fd=folder)


def _same_file(folder: int, temp: str, final: str) -> bool:
    """``final`` is another name of ``temp`` (the link was made, only its answer got lost)."""
    try:
        return os.path.samestat(
            os.stat(temp, dir_fd=folder, follow_symlinks=False), os.stat(final, dir_fd=folder, follow_symlinks=False)
        )
    except OSError:
        return False


_check_and_rename = threading.Lock()  # one process-wide lock: every mover of this agent, every copy thread


def name_taken(folder: int, name: str) -> bool:
    """Whether ``name`` exists in ``folder`` (a dangling symlink counts: it is never overwritten either)."""
    try:
        os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def check_then_rename(folder: int, temp: str, final: str) -> None:
    with _check_and_rename:
        if name_taken(folder, final):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), final)
        os.rename(temp, final, src_dir_fd=folder, dst_dir_fd=folder)


STRATEGIES: tuple[tuple[str, Strategy], ...] = (
    ("renameat2", rename_noreplace),
    ("link", link_then_unlink),
    ("rename", check_then_rename),
)


class NoReplaceMover:
    """Moves temp files to final names through the first supported strategy."""

    def __init__(self, strategies: Sequence[tuple[str, Strategy]] = STRATEGIES) -> None:
        self._strategies = list(strategies)
        self._lock = threading.Lock()
        self.in_use: str | None = None
        self._dir_fsync_ok = True

    def move(self, temp: Path, final: Path) -> None:
        """``move_at`` for two paths in the same folder (that folder is opened without following a symlink)."""
        if temp.parent != final.parent:
            raise ValueError("a temp file and its final name share one folder")
        fd = os.open(temp.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            self.move_at(fd, temp.name, final.name)
        finally:
            os.close(fd)

    def move_at(self, folder: int, temp: str, final: str) -> None:
        """Rename ``temp`` to ``final`` in the folder handle ``folder``; ``FileExistsError`` when ``final`` exists
        (nothing is overwritten)."""
        while True:
            with self._lock:
                name, strategy = self._strategies[0]
            try:
                strategy(folder, temp, final)
            except OSError as exc:
                if exc.errno in UNSUPPORTED_ERRNOS and self._fall_back_from(name, exc):
                    continue
                raise
            with self._lock:
                first = self.in_use != name
                self.in_use = name
            if first:
                log.info("final names are given with '%s'", name)
            return

    def _fall_back_from(self, name: str, exc: OSError) -> bool:
        """Drop ``name`` from the chain unless another copy did already; False when it is the last one left."""
        with self._lock:
            if self._strategies[0][0] != name:
                return True  # dropped by a copy that failed with it at the same moment: try the next one
            if len(self._strategies) == 1:
                return False
            self._strategies.pop(0)
        log.warning("no-replace rename '%s' not supported here (%s); falling back", name, exc.strerror)
        return True

    def fsync_folder(self, folder: Path | int) -> None:
        """Make a rename durable (``folder``: a path or a folder handle, which stays open); filesystems that cannot
        fsync a folder are noted once and skipped."""
        if not self._dir_fsync_ok:
            return
        if isinstance(folder, int):
            self._fsync_handle(folder)
            return
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._fsync_handle(fd)
        finally:
            os.close(fd)

    def _fsync_handle(self, fd: int) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
                raise
            self._dir_fsync_ok = False
            log.warning("this destination cannot fsync a folder (%s); renames rely on the server", exc.strerror)
