"""Step 2 of the copy: is this file already at the destination?

A crash after the rename (before the source's delete), or the same recording delivered again, leaves a destination
file with this name or a conflict name (``name_1``, ...) that holds the very bytes of the source. Finding it lets
the copier delete the source instead of making a duplicate.
"""

from __future__ import annotations

import os
import stat

from fta import paths
from fta.checksums import hash_at, hash_fd
from fta.copy_job import CopyJob, on_side


def already_present(job: CopyJob, chunk_size: int) -> tuple[str, str] | None:
    """The name of an existing destination file with the source's size and checksum, and that checksum.

    Always compared by checksum, whatever ``verify`` says: deleting a source because a different file of the same
    size sits at the destination would lose it. The candidates end at the first free name: a conflict name is only
    ever taken after every name before it.
    """
    source_checksum: str | None = None
    for name in paths.candidate_names(job.final.name, job.limit):
        with on_side("destination"):
            try:
                st = os.stat(name, dir_fd=job.dst_dir, follow_symlinks=False)
            except FileNotFoundError:
                return None
        if not stat.S_ISREG(st.st_mode) or st.st_size != job.size:
            continue
        if source_checksum is None:
            with on_side("source"):
                source_checksum = hash_fd(job.src_fd, chunk_size, job.size)
        with on_side("destination"):
            if hash_at(job.dst_dir, name, chunk_size, job.size) == source_checksum:
                return name, source_checksum
    return None  # pragma: no cover - candidate_names never ends


__all__ = ["already_present"]
