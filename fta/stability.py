"""When is a file finished? Size > 0 and (size, mtime, inode) unchanged for ``stable_seconds``.

Time is measured on the agent's own monotonic clock, injected, so a source on a NAS or SMB share with another clock
cannot fool it and tests drive it without sleeping. The file's mtime is only ever compared for equality.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fta.handles import open_beneath
from fta.openfiles import lease_says_open_for_writing, leases_trusted, open_for_writing

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class FileSig:
    """What identifies one version of a file: a change in any field means it is still being written."""

    size: int
    mtime_ns: int
    inode: int
    device: int = 0

    @classmethod
    def from_stat(cls, st: os.stat_result) -> FileSig:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)


@dataclass(slots=True)
class Observation:
    """The tracker's memory of one file."""

    sig: FileSig
    first_seen: float
    unchanged_since: float


@dataclass(frozen=True)
class ScanDelta:
    """What one ``update`` learned."""

    discovered: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)


def can_lock_exclusively(path: Path, root: Path | None = None) -> bool:
    """True when a non-blocking exclusive ``flock`` can be taken (and is released at once).

    With ``root``, ``path`` is relative to it and opened through folder handles (no symlink followed below the root).
    """
    try:
        if root is None:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        else:
            fd = open_beneath(root, path.as_posix())
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return True
    finally:
        os.close(fd)


class StabilityTracker:
    """Keeps observations between scans and says which files are ready."""

    def __init__(
        self,
        stable_seconds: float,
        clock: Clock = time.monotonic,
        lock_check: Callable[[str], bool] | None = None,
    ) -> None:
        self.stable_seconds = stable_seconds
        self._clock = clock
        self._lock_check = lock_check
        self._files: dict[str, Observation] = {}

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, rel: object) -> bool:
        return rel in self._files

    def get(self, rel: str) -> Observation | None:
        return self._files.get(rel)

    def update(self, snapshot: Mapping[str, FileSig]) -> ScanDelta:
        """Record a full scan: new files start their timer, changed ones restart it, missing ones are forgotten."""
        now = self._clock()
        delta = ScanDelta(vanished=[rel for rel in self._files if rel not in snapshot])
        for rel in delta.vanished:
            del self._files[rel]
        for rel, sig in snapshot.items():
            seen = self._files.get(rel)
            if seen is None:
                self._files[rel] = Observation(sig, now, now)
                delta.discovered.append(rel)
            elif seen.sig != sig:
                seen.sig = sig
                seen.unchanged_since = now
                delta.changed.append(rel)
        return delta

    def is_stable(self, rel: str) -> bool:
        seen = self._files.get(rel)
        if seen is None or seen.sig.size <= 0:
            return False
        if self._clock() - seen.unchanged_since < self.stable_seconds:
            return False
        return self._lock_check is None or self._lock_check(rel)

    def ready(self, candidates: Iterable[str] | None = None) -> list[str]:
        """Files (of ``candidates``, default all) that are stable now, in path order."""
        names = self._files if candidates is None else [rel for rel in candidates if rel in self._files]
        return sorted(rel for rel in names if self.is_stable(rel))

    def next_deadline(self, candidates: Iterable[str]) -> float | None:
        """The earliest moment still ahead at which one of ``candidates`` (not empty) will have been unchanged long
        enough; deadlines already past were settled by the scan that passed them."""
        now = self._clock()
        ahead = [
            due
            for rel in candidates
            if (seen := self._files.get(rel)) is not None
            and seen.sig.size > 0
            and (due := seen.unchanged_since + self.stable_seconds) > now
        ]
        return min(ahead, default=None)

    def seconds_until_stable(self, rel: str) -> float | None:
        """How long until the file can be stable if it does not change (None when unknown or empty)."""
        seen = self._files.get(rel)
        if seen is None or seen.sig.size <= 0:
            return None
        return max(0.0, self.stable_seconds - (self._clock() - seen.unchanged_since))

    def restart(self, rel: str) -> None:
        """Start the file's timer again (it changed during its copy)."""
        seen = self._files.get(rel)
        if seen is not None:
            seen.unchanged_since = self._clock()

    def forget(self, rel: str) -> None:
        self._files.pop(rel, None)


class ReadinessCheck:
    """The extra conditions a stable file must meet: no other process writing it, and (optionally) a free lock.

    The writer check asks the file itself (a read lease, one system call); where no lease can be taken it looks the
    file up in one ``/proc`` snapshot per scan, taken only when first needed after ``refresh()``.
    """

    def __init__(
        self,
        source_root: Path,
        sig_of: Callable[[str], FileSig | None],
        check_writers: bool = True,
        use_lock: bool = False,
    ) -> None:
        self._root = source_root
        self._sig_of = sig_of
        self._check_writers = check_writers
        self._use_lock = use_lock
        self._writers: set[tuple[int, int]] | None = None

    def refresh(self) -> None:
        """A new scan: the next fallback lookup takes a fresh snapshot."""
        self._writers = None

    def __call__(self, rel: str) -> bool:
        sig = self._sig_of(rel)
        if self._check_writers and sig is not None and self._written(rel, sig):
            return False
        return not self._use_lock or can_lock_exclusively(Path(rel), self._root)

    def _written(self, rel: str, sig: FileSig) -> bool:
        answer = self._lease_answer(rel, sig)
        if answer is not None:
            return answer
        if self._writers is None:
            self._writers = open_for_writing()
        return (sig.device, sig.inode) in self._writers

    def _lease_answer(self, rel: str, sig: FileSig) -> bool | None:
        if not leases_trusted(sig.device):
            return None
        try:
            fd = open_beneath(self._root, rel)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if (st.st_dev, st.st_ino) != (sig.device, sig.inode):
                return None  # replaced since the scan: the snapshot answers for the file the scan saw
            return lease_says_open_for_writing(fd)
        finally:
            os.close(fd)
