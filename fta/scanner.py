"""Recursive scan of the source folder.

Only regular files are reported: symlinks are never followed (neither to files nor to folders), FIFOs, sockets and
devices are ignored, names matching an exclude glob are skipped (a folder's name too), and the destination tree is
never entered even if it lies inside the source by mistake.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable
from pathlib import Path

from fta.stability import FileSig

log = logging.getLogger("fta.scanner")


def compile_excludes(patterns: Iterable[str]) -> Callable[[str, str], bool]:
    """One matcher for all globs: a pattern without '/' matches a name, one with '/' the relative path."""
    name_patterns = [p for p in patterns if "/" not in p]
    path_patterns = [p.strip("/") for p in patterns if "/" in p]
    name_re = re.compile("|".join(fnmatch.translate(p) for p in name_patterns)) if name_patterns else None
    path_re = re.compile("|".join(fnmatch.translate(p) for p in path_patterns)) if path_patterns else None

    def excluded(name: str, rel: str) -> bool:
        return bool((name_re and name_re.match(name)) or (path_re and path_re.match(rel)))

    return excluded


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def scan_source(source: Path, exclude: Iterable[str] = (), destination: Path | None = None) -> dict[str, FileSig]:
    """Map of relative POSIX path -> signature for every regular file below ``source``."""
    excluded = compile_excludes(exclude)
    skip_dir = _identity(destination) if destination is not None else None
    found: dict[str, FileSig] = {}
    stack: list[tuple[str, str]] = [(os.fspath(source), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    rel = prefix + entry.name
                    if excluded(entry.name, rel):
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue  # vanished between listing and stat
                    mode = st.st_mode
                    if stat.S_ISREG(mode):
                        found[rel] = FileSig(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
                    elif stat.S_ISDIR(mode) and (st.st_dev, st.st_ino) != skip_dir:
                        stack.append((entry.path, rel + "/"))
        except OSError as exc:
            if prefix:
                log.warning("cannot scan folder %s: %s", prefix.rstrip("/"), exc.strerror or exc)
            else:
                raise
    return found


def source_folders(source: Path, exclude: Iterable[str] = ()) -> list[str]:
    """Relative paths of every folder below ``source`` (symlinks not followed), '' for the root."""
    excluded = compile_excludes(exclude)
    folders = [""]
    stack = [(os.fspath(source), "")]
    while stack:
        folder, prefix = stack.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    rel = prefix + entry.name
                    if entry.is_dir(follow_symlinks=False) and not excluded(entry.name, rel):
                        folders.append(rel)
                        stack.append((entry.path, rel + "/"))
        except OSError:
            continue
    return folders
