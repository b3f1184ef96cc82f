"""Is the destination reachable, and if not, why? Never creates the root.

Checks in order: the root exists, is a folder, is a mount point (with ``require_mount``), holds the marker file
(with ``destination_marker``), and takes a small write + fsync (so a read-only, full or disconnected share fails
here instead of in the middle of a copy). A hung network mount cannot hold the caller forever: see ``timeout``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import socket
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fta.settings import Settings

PROBE_PREFIX = ".fta-probe-"


@dataclass(frozen=True)
class Destination:
    """The destination root and what must hold of it before files go in (the probe's and the copier's question)."""

    root: Path
    require_mount: bool = False
    marker: str | None = None

    @classmethod
    def of(cls, settings: Settings) -> Destination:
        """The destination the settings describe: ``destination_path``, ``require_mount``, ``destination_marker``."""
        return cls(settings.destination_path, settings.require_mount, settings.destination_marker)


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str | None = None
    free_bytes: int | None = None

    def __bool__(self) -> bool:
        return self.ok


def _why(exc: OSError) -> str:
    return f"{errno.errorcode.get(exc.errno or 0, 'error')} {exc.strerror or exc}"


def probe_name() -> str:
    """One name per host: a probe file left by a killed agent is reused and removed by the next probe."""
    return PROBE_PREFIX + hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _write_probe(root_fd: int) -> None:
    """A small write + fsync in the root's handle: the folder checked is the folder written to."""
    name = probe_name()
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=root_fd)
    try:
        os.write(fd, b"fta")
        os.fsync(fd)
    finally:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=root_fd)


def is_mount_point(fd: int) -> bool:
    """Whether the folder handle ``fd`` is the top of a mounted filesystem (``os.path.ismount``'s test, on a handle)."""
    here = os.fstat(fd)
    parent = os.stat("..", dir_fd=fd, follow_symlinks=False)
    return here.st_dev != parent.st_dev or here.st_ino == parent.st_ino


def handle_trouble(fd: int, destination: Destination) -> str | None:
    """The mount and marker checks of ``root_trouble``, asked of the root's handle (``destination.root`` names it)."""
    root, marker = destination.root, destination.marker
    try:
        if destination.require_mount and not is_mount_point(fd):
            return f"destination root {root} is not a mount point (is the share mounted?)"
        if marker is not None:
            try:
                found = stat.S_ISREG(os.stat(marker, dir_fd=fd, follow_symlinks=False).st_mode)
            except FileNotFoundError:
                found = False
            if not found:
                return f"marker file {marker} is missing in destination root {root}"
    except OSError as exc:  # ESTALE, EIO, ENOTCONN...: a share going away answers with an error, not False
        return f"destination root {root} cannot be reached: {_why(exc)}"
    return None


def open_checked_root(destination: Destination) -> tuple[int, None] | tuple[None, str]:
    """The root's handle when it can take files, else why not; every check after the ``stat`` is asked of the very
    handle returned, so the folder checked is the folder the caller then writes into."""
    root = destination.root
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return None, f"destination root {root} does not exist"
    except OSError as exc:
        return None, f"destination root {root} cannot be reached: {_why(exc)}"
    if not stat.S_ISDIR(st.st_mode):
        return None, f"destination root {root} is not a folder"
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        return None, f"destination root {root} cannot be reached: {_why(exc)}"
    trouble = handle_trouble(fd, destination)
    if trouble is not None:
        os.close(fd)
        return None, trouble
    return fd, None


def root_trouble(destination: Destination) -> str | None:
    """Why the root cannot take files, short of writing to it (None: it can). A few ``stat`` calls.

    The probe asks it before its test write; the copier asks it of every copy, before it makes a folder and before
    it deletes a source, because a copy queued before a share went away starts after it.
    """
    fd, trouble = open_checked_root(destination)
    if fd is not None:
        os.close(fd)
    return trouble


def probe_destination(destination: Destination) -> ProbeResult:
    """Answer "reachable, or why not" for the destination root."""
    fd, trouble = open_checked_root(destination)
    if fd is None:
        return ProbeResult(False, trouble)
    try:
        _write_probe(fd)
        vfs = os.fstatvfs(fd)
    except OSError as exc:
        return ProbeResult(False, f"destination root {destination.root} is not writable: {_why(exc)}")
    finally:
        os.close(fd)
    return ProbeResult(True, None, vfs.f_bavail * vfs.f_frsize)


def probe_with_timeout(destination: Destination, timeout: float = 30.0) -> ProbeResult:
    """``probe_destination`` in a daemon thread: a mount that hangs counts as unavailable after ``timeout``."""
    answer: list[ProbeResult] = []
    worker = threading.Thread(
        target=lambda: answer.append(probe_destination(destination)),
        name="fta-probe",
        daemon=True,
    )
    worker.start()
    worker.join(timeout)
    if not answer:
        return ProbeResult(False, f"destination root {destination.root} did not answer within {timeout:g} s")
    return answer[0]
