"""One copy's state, carried by every step of the copier (``fta.copier``), and what a step hands to the next."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fta import paths
from fta.errors import Side, map_os_error
from fta.stability import FileSig

ProgressCallback = Callable[[int, int], None]
Outcome = Literal["copied", "already_present", "changed"]

_NO_SIG = FileSig(0, 0, 0)


@dataclass
class CopyJob:
    """One copy's names and handles: every step after the opening works on these, never on a path.

    The handles are filled in as the copy opens them (-1 until then) and closed by the copier when the copy ends.
    """

    rel: str
    source: Path  # for messages and the result only
    final: Path  # likewise
    name: str  # the file's name in its source folder and (before a conflict) in its destination folder
    started: float
    progress: ProgressCallback | None = None
    stop: threading.Event | None = None
    src_dir: int = -1
    src_fd: int = -1
    dst_root: int = -1
    dst_dir: int = -1
    before: FileSig = _NO_SIG  # the source as opened: what every later check compares with
    limit: int = paths.DEFAULT_NAME_MAX  # the longest name the destination folder takes
    checksum: str | None = None  # of the source's bytes, once they were read

    @property
    def size(self) -> int:
        return self.before.size

    def shown(self, name: str) -> Path:
        """The destination path of ``name`` in the file's destination folder, for messages and the result."""
        return self.final.parent / name


@dataclass(frozen=True)
class Written:
    """What the write step left in the destination folder: the name written, how many bytes, the checksum of the
    source's bytes as read, and (with ``verify=checksum``) the checksum of the copy as read back."""

    name: str
    size: int
    checksum: str
    copy_checksum: str | None


@dataclass(frozen=True)
class CopyResult:
    relative_path: str
    source: Path
    destination: Path | None
    size: int
    checksum: str | None
    seconds: float
    outcome: Outcome
    conflict_renamed: bool = False

    @property
    def mb_per_s(self) -> float:
        return self.size / 1e6 / self.seconds if self.seconds > 0 else 0.0


@contextlib.contextmanager
def on_side(side: Side) -> Iterator[None]:
    """Map any ``OSError`` raised inside into the error tree, tagged with the side it happened on."""
    try:
        yield
    except OSError as exc:
        raise map_os_error(exc, side) from exc


__all__ = ["CopyJob", "CopyResult", "Outcome", "ProgressCallback", "Written", "on_side"]
