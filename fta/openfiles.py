"""Which files do other processes hold open for writing? (A Linux read lease, else ``/proc``.)

A recorder that keeps its file open through a long pause looks stable by size and mtime alone; deleting that source
would send the rest of the recording into an unlinked inode. So a file open for writing by another process is never
ready, and the copier checks once more right before it deletes a source.

Two ways to ask, the first one preferred:
    read lease   ``fcntl(F_SETLEASE, F_RDLCK)`` on a read-only descriptor fails with EAGAIN exactly when any
                 descriptor or writable mapping of the file is open for writing, in any process of any user. One
                 system call, released at once. It needs the file's owner or CAP_LEASE (root), and it is asked only
                 on local filesystems whose leases are the kernel's own (``LEASE_FILESYSTEMS``): SMB answers EAGAIN
                 whenever the server granted no oplock (every file would look written), NFS refuses, and overlay or
                 FUSE may not see a writer underneath. Anywhere else the scan below answers instead. While the
                 lease is held (microseconds) a writer's open waits for it and the kernel signals us: the signal is
                 set to SIGURG, whose default action is to ignore it (SIGIO's would end the process).
    /proc scan   every descriptor of every visible process: slower (a walk of /proc). Processes whose
                 ``/proc/<pid>/fd`` cannot be read (another user, without root) are not seen: run the agent as the
                 recorders' user or as root to cover them.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import stat
from collections.abc import Callable
from pathlib import Path

_PROC = "/proc"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR
LEASE_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "jfs", "bcachefs", "zfs"})
_lease_trusted: dict[int, bool] = {}  # by st_dev; a device keeps its filesystem while mounted

FileId = tuple[int, int]  # (st_dev, st_ino)


def _fd_writes(pid: str, fd: str) -> bool:
    try:
        with open(f"{_PROC}/{pid}/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                if line.startswith("flags:"):
                    return bool(int(line.split()[1], 8) & _WRITE_FLAGS)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _open_files(wanted: FileId | None) -> set[FileId]:
    """(device, inode) of files other processes hold open for writing; only ``wanted`` when given.

    Each descriptor costs one ``stat``; the flags in ``fdinfo`` are read only for the descriptors that matter, which
    keeps a whole-machine scan cheap enough to run right before every source is deleted.
    """
    own = str(os.getpid())
    found: set[FileId] = set()
    try:
        pids = [name for name in os.listdir(_PROC) if name.isdigit() and name != own]
    except OSError:
        return found
    for pid in pids:
        try:
            fds = os.listdir(f"{_PROC}/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{_PROC}/{pid}/fd/{fd}")
            except OSError:
                continue
            file_id = (st.st_dev, st.st_ino)
            if not stat.S_ISREG(st.st_mode):
                continue
            if (wanted is None or file_id == wanted) and file_id not in found and _fd_writes(pid, fd):
                if wanted is not None:
                    return {file_id}
                found.add(file_id)
    return found


def filesystems_by_device(mountinfo: str | None = None) -> dict[int, str]:
    """st_dev -> filesystem type of every mount (``/proc/self/mountinfo``: ``major:minor`` is the 3rd field, the
    type the first after the ``-`` separator)."""
    if mountinfo is None:
        try:
            mountinfo = Path(f"{_PROC}/self/mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return {}
    found: dict[int, str] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        try:
            major, minor = (int(part) for part in fields[2].split(":"))
            kind = fields[fields.index("-", 6) + 1]
        except (IndexError, ValueError):
            continue
        found[os.makedev(major, minor)] = kind
    return found


def leases_trusted(device: int) -> bool:
    """Whether a read lease tells the truth about writers of files on ``device`` (see the module docstring)."""
    trusted = _lease_trusted.get(device)
    if trusted is None:
        trusted = filesystems_by_device().get(device) in LEASE_FILESYSTEMS
        _lease_trusted[device] = trusted
    return trusted


def lease_says_open_for_writing(fd: int, while_held: Callable[[], None] | None = None) -> bool | None:
    """True or False from a read-lease probe of ``fd`` (opened read-only); None when no lease can be taken here.

    ``while_held`` runs while the lease is held (tests use it to open the file for writing meanwhile).
    """
    try:
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return True if exc.errno == errno.EAGAIN else None
    try:
        if while_held is not None:
            while_held()
    finally:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    return False


def open_for_writing() -> set[FileId]:
    """(device, inode) of every file another visible process has open for writing."""
    return _open_files(None)


def is_open_for_writing(device: int, inode: int, fd: int | None = None) -> bool:
    """True when another process has this very file open for writing; ``fd``, open read-only on it, allows a lease."""
    if fd is not None and leases_trusted(device):
        answer = lease_says_open_for_writing(fd)
        if answer is not None:
            return answer
    return bool(_open_files((device, inode)))
