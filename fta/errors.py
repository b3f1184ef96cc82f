"""The error tree, and the one place where ``OSError`` is mapped into it.

    TransferError                 base of everything the engine raises on purpose
    ├── DestinationUnavailable    global: the destination as a whole is gone, full or sick; the run waits,
    │                             no file's retry budget is used and no file is marked Failed
    └── FileError                 per file: retried ``max_retry_attempts`` times, then Failed; the agent goes on
        ├── SourceVanished        the source file disappeared before or during the copy
        ├── SourceUnreadable      permission or lock trouble reading the source
        ├── DestinationBlocked    the destination path is unusable for this file (a file where a folder is
        │                         needed, a permission problem in one folder, a name the filesystem refuses)
        ├── CorruptCopy           size or checksum of the written copy differs from what was read
        └── FileIOError           any other per-file I/O error
    CopyInterrupted               a stop was requested; the temp file is gone and the source untouched
    ConfigError                   invalid settings; the CLI exits with code 2 and one line
    UnsafePath (an OSError)       a name below a root is a symlink, or not a folder where one is needed: it is
                                  refused, never followed (mapped to DestinationBlocked / SourceUnreadable)

``map_os_error(exc, side)`` is the only translation from ``OSError``: errors on the destination side whose errno
says the filesystem as a whole is in trouble become ``DestinationUnavailable``; everything else is per file.
"""

from __future__ import annotations

import errno
from typing import Literal

Side = Literal["source", "destination"]


class TransferError(Exception):
    """Base class of the engine's errors."""


class DestinationUnavailable(TransferError):
    """The destination cannot take files now (missing, unmounted, full, read-only, disconnected).

    ``needed_bytes`` is set when the destination is too full for this one file (ENOSPC, EDQUOT, or too little free
    space to begin): that file waits alone until that much space is free, the files that fit go on; only without
    ``needed_bytes`` (or where the free space cannot be read) is the whole destination waited for.
    """

    def __init__(self, message: str, needed_bytes: int | None = None) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes


class FileError(TransferError):
    """A problem with one file; retried, then reported as Failed.

    ``side`` says where an I/O error happened ("source" or "destination"), None when no I/O error was involved.
    """

    def __init__(self, message: str, side: Side | None = None) -> None:
        super().__init__(message)
        self.side = side


class SourceVanished(FileError):
    """The source file no longer exists."""


class SourceUnreadable(FileError):
    """The source file exists but cannot be read (permissions, a lock)."""


class DestinationBlocked(FileError):
    """This file's destination path cannot be used (a file where a folder is needed, permissions)."""


class CorruptCopy(FileError):
    """The written copy does not match what was read from the source."""


class FileIOError(FileError):
    """Another per-file I/O error."""


class CopyInterrupted(TransferError):
    """A stop was requested while copying; nothing was left behind."""


class UnsafePath(OSError):
    """A name below a root that is a symlink (or not a folder) where a folder is needed; ``strerror`` says which."""


class ConfigError(Exception):
    """Invalid configuration; the message is one readable line."""


# errno values that mean "the destination filesystem as a whole is not usable right now".
DESTINATION_GLOBAL_ERRNOS: frozenset[int] = frozenset(
    getattr(errno, name)
    for name in (
        "ENOSPC",
        "EDQUOT",
        "EROFS",
        "EIO",
        "ENOTCONN",
        "ESTALE",
        "EHOSTDOWN",
        "EHOSTUNREACH",
        "ENETDOWN",
        "ENETUNREACH",
        "ENETRESET",
        "ECONNABORTED",
        "ECONNRESET",
        "ECONNREFUSED",
        "ETIMEDOUT",
        "ENODEV",
        "ENXIO",
        "ENOLINK",
        "ECOMM",
        "EREMOTEIO",
        "ESHUTDOWN",
    )
    if hasattr(errno, name)
)

_SOURCE_MAP: dict[int, type[FileError]] = {
    errno.ENOENT: SourceVanished,
    errno.EACCES: SourceUnreadable,
    errno.EPERM: SourceUnreadable,
    errno.EAGAIN: SourceUnreadable,  # a mandatory/SMB lock held by the writer
    errno.EBUSY: SourceUnreadable,
    errno.ETXTBSY: SourceUnreadable,
}

_DESTINATION_MAP: dict[int, type[FileError]] = {
    errno.ENOTDIR: DestinationBlocked,
    errno.EISDIR: DestinationBlocked,
    errno.EEXIST: DestinationBlocked,
    errno.EACCES: DestinationBlocked,
    errno.EPERM: DestinationBlocked,
    errno.ENAMETOOLONG: DestinationBlocked,
    errno.EINVAL: DestinationBlocked,  # e.g. a character the filesystem refuses
    errno.EILSEQ: DestinationBlocked,
    errno.ENOENT: DestinationBlocked,
}


def _describe(exc: OSError) -> str:
    text = exc.strerror or str(exc)
    name = errno.errorcode.get(exc.errno or 0, "")
    where = f": {exc.filename}" if exc.filename else ""
    return f"{name} {text}{where}".strip()


def map_os_error(exc: OSError, side: Side) -> TransferError:
    """Translate an ``OSError`` raised on one side of a copy into the error tree."""
    code = exc.errno or 0
    if isinstance(exc, UnsafePath):  # the reason is the whole message: "cam1 is a symlink: not followed"
        refused = DestinationBlocked if side == "destination" else SourceUnreadable
        return refused(f"{side}: {exc.strerror}", side)
    message = _describe(exc)
    if side == "destination":
        if code in DESTINATION_GLOBAL_ERRNOS:
            return DestinationUnavailable(f"destination unavailable ({message})")
        return _DESTINATION_MAP.get(code, FileIOError)(f"destination: {message}", side)
    return _SOURCE_MAP.get(code, FileIOError)(f"source: {message}", side)
