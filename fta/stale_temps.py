"""At start-up: remove the temp files an interrupted run of this agent left in the destination.

A temp file's name carries the agent's id (``paths.temp_name`` / ``paths.temp_owner``), so only our own are
removed: another agent writing into the same destination keeps its copies under way. The folders are reached
through folder handles, one name at a time: a symlinked folder is not entered.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from fta import handles, paths

log = logging.getLogger("fta.copier")


def remove_stale_temp_files(destination_root: Path, owner: str, folders: list[str]) -> list[Path]:
    """Remove ``owner``'s temp files in the destination folders that mirror ``folders`` of the source."""
    removed: list[Path] = []
    try:
        root = handles.open_root(destination_root)
    except OSError:
        return removed
    try:
        for rel in folders:
            removed += _remove_temps_in(root, destination_root / rel if rel else destination_root, rel, owner)
    finally:
        os.close(root)
    for path in removed:
        log.info("removed stale temp file %s", path)
    return removed


def _remove_temps_in(root: int, shown: Path, rel: str, owner: str) -> list[Path]:
    try:
        folder = handles.open_folder(root, rel.split("/") if rel else ())
    except OSError:
        return []
    removed: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            ours = [e.name for e in entries if paths.temp_owner(e.name) == owner and e.is_file(follow_symlinks=False)]
        for name in ours:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
                removed.append(shown / name)
    except OSError:
        pass
    finally:
        os.close(folder)
    return removed


__all__ = ["remove_stale_temp_files"]
