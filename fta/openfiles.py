"""Which files do other processes hold open for writing? (Linux ``/proc``.)

A recorder that keeps its file open through a long pause looks stable by size and mtime alone; deleting that source
would send the rest of the recording into an unlinked inode. So a file open for writing by another process is never
ready, and the copier checks once more right before it deletes a source. Processes whose ``/proc/<pid>/fd`` cannot be
read (another user, without root) are not seen: run the agent as the recorders' user or as root to cover them.
"""

from __future__ import annotations

import os
import stat

_PROC = "/proc"
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR

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


def open_for_writing() -> set[FileId]:
    """(device, inode) of every file another visible process has open for writing."""
    return _open_files(None)


def is_open_for_writing(device: int, inode: int) -> bool:
    """True when another visible process has this very file open for writing."""
    return bool(_open_files((device, inode)))
