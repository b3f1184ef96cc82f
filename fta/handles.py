"""Folder handles: every operation below a root goes through an open folder, never through a path.

A path checked and then used can be changed in between: a writer of the ingest folder that swaps ``cam1`` for a
symlink to another folder would redirect a delete, a read or a write made by path. So below each root (the two
folders the operator configured, opened as given) the agent only ever:

    opens a folder        one name at a time from its parent's handle, ``O_DIRECTORY | O_NOFOLLOW`` (or in one
                          ``openat2`` call with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`` where the kernel has it);
                          a symlink or a non-folder on the way is refused with ``UnsafePath``, never followed
    works on a name       ``dir_fd=`` calls on that handle: open with ``O_NOFOLLOW``, ``stat`` without following,
                          ``unlink``, ``mkdir``, renames and links between names of the same handle

Handles also lift the ``PATH_MAX`` limit (4,096 bytes): a relative path of any depth is reached one name at a time.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from fta.errors import UnsafePath

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO never hangs an open

_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "ppc64le": 437, "s390x": 437}.get(platform.machine())
_OPENAT2_PATH_LIMIT = 4095  # longer paths are walked one name at a time


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_syscall() -> Callable[..., int] | None:
    if _SYS_OPENAT2 is None:
        return None
    try:
        func = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    func.restype = ctypes.c_long
    found: Callable[..., int] = func
    return found


_syscall = _load_syscall()
_openat2_works = _syscall is not None


def _openat2(dir_fd: int, rel: bytes, flags: int) -> int | None:
    """One ``openat2`` that never leaves ``dir_fd`` nor follows a symlink; None when the walk must answer instead."""
    global _openat2_works
    if not _openat2_works or _syscall is None or _SYS_OPENAT2 is None or len(rel) > _OPENAT2_PATH_LIMIT:
        return None
    how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    fd = int(
        _syscall(
            ctypes.c_long(_SYS_OPENAT2),
            ctypes.c_long(dir_fd),
            rel,
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
    )
    if fd >= 0:
        return fd
    if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM, errno.E2BIG):  # an old kernel or a seccomp filter
        _openat2_works = False
    return None  # any other error (a symlink, a missing name): the walk finds out which name and says so


def open_root(root: Path) -> int:
    """The handle of a configured root (followed as configured: it may itself be a symlink or a mount point)."""
    return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _refusal(dir_fd: int, name: str, shown: str) -> UnsafePath | None:
    """Why ``name`` in ``dir_fd`` cannot be entered as a folder, or None when it can (it was swapped back)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return UnsafePath(errno.ELOOP, f"{shown} is a symlink: not followed", shown)
    if not stat.S_ISDIR(st.st_mode):
        return UnsafePath(errno.ENOTDIR, f"{shown} is not a folder", shown)
    return None


def open_child(dir_fd: int, name: str, shown: str = "", create: bool = False) -> int:
    """Open folder ``name`` of ``dir_fd`` without following a symlink; ``create``: make it first when missing.

    ``shown`` names the folder in a refusal (its path below the root).
    """
    shown = shown or name
    for _ in range(3):  # a name swapped while we look is looked at again, never followed
        try:
            return os.open(name, FOLDER_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError as exc:
            if not create:
                exc.filename = shown
                raise
            try:
                os.mkdir(name, 0o777, dir_fd=dir_fd)
            except FileExistsError:
                pass
            except OSError as refused:
                refused.filename = shown  # "EINVAL Invalid argument: /nas/cam:1", not just the last name
                raise
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                exc.filename = shown
                raise
            refusal = _refusal(dir_fd, name, shown)
            if refusal is not None:
                raise refusal from None
    raise UnsafePath(errno.ELOOP, f"{shown} keeps changing: not followed", shown)


def open_folder(root_fd: int, parts: Sequence[str], create: bool = False, label: Path | None = None) -> int:
    """A new handle of the folder ``parts`` below ``root_fd`` (the root itself for no parts); the caller closes it.

    ``create``: make missing folders on the way. A refusal names the folder ``label / parts...`` (``label``: the
    root's path) so the reason reads "/nas/cam1 is a symlink: not followed".
    """
    if not parts:
        return os.dup(root_fd)
    fd = _openat2(root_fd, os.fsencode("/".join(parts)), FOLDER_FLAGS)  # the usual case: one call
    if fd is not None:
        return fd
    fd = os.dup(root_fd)
    try:
        for index, name in enumerate(parts):
            shown = "/".join(parts[: index + 1])
            child = open_child(fd, name, str(label / shown) if label is not None else shown, create)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def folder(root_fd: int, parts: Sequence[str], create: bool = False, label: Path | None = None) -> Iterator[int]:
    """``open_folder`` as a context manager."""
    fd = open_folder(root_fd, parts, create, label)
    try:
        yield fd
    finally:
        os.close(fd)


def open_beneath(root: Path, rel: str, flags: int = READ_FLAGS) -> int:
    """Open the file ``rel`` below ``root`` through handles (no symlink followed anywhere below the root)."""
    parts = rel.split("/")
    root_fd = open_root(root)
    try:
        with folder(root_fd, parts[:-1], label=root) as parent:
            return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    finally:
        os.close(root_fd)


def same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
