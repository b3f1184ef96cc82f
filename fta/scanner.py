"""Recursive scan of the source folder.

Only regular files are reported: symlinks are never followed (neither to files nor to folders), FIFOs, sockets and
devices are ignored, names matching an exclude glob are skipped (a folder's name too), and the destination tree is
never entered even if it lies inside the source by mistake.

The walk goes through folder handles (``fta.handles``): each folder is listed by its handle and its subfolders are
opened from it with ``O_NOFOLLOW``, so a folder swapped for a symlink meanwhile can never make the scan list a folder
outside the root, and a path of any length (past ``PATH_MAX``) is scanned like any other.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from fta import handles
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


Lister = Callable[[int, str], list[str]]  # (folder handle, its prefix "a/b/") -> names of the subfolders to enter


def walk_folders(
    source: Path,
    list_folder: Lister,
    skip: tuple[int, int] | None = None,
    problems: dict[str, str] | None = None,
) -> None:
    """Depth first through every folder below ``source``, through handles: ``list_folder`` lists each one by its
    handle and names the subfolders to enter, which are opened from that handle without following a symlink.

    A folder swapped for a symlink between its listing and its opening is not entered. Only one handle per level is
    open at a time. A folder that cannot be entered or listed is logged and, with ``problems``, recorded
    (relative path -> reason); the root's own trouble is raised.
    """
    root = handles.open_root(source)
    try:
        stack: list[tuple[int, str, Iterator[str]]] = [(root, "", iter(list_folder(root, "")))]
    except BaseException:
        os.close(root)
        raise
    try:
        while stack:
            fd, prefix, pending = stack[-1]
            name = next(pending, None)
            if name is None:
                stack.pop()
                os.close(fd)
                continue
            rel = prefix + name
            try:
                child = os.open(name, handles.FOLDER_FLAGS, dir_fd=fd)
            except OSError as exc:
                _cannot_scan(rel, exc, problems)
                continue
            try:
                st = os.fstat(child)
                names = [] if (st.st_dev, st.st_ino) == skip else list_folder(child, rel + "/")
            except OSError as exc:
                os.close(child)
                _cannot_scan(rel, exc, problems)
                continue
            stack.append((child, rel + "/", iter(names)))
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _cannot_scan(rel: str, exc: OSError, problems: dict[str, str] | None) -> None:
    if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
        return  # gone, or swapped for a symlink or a file since it was listed: nothing to scan there
    reason = exc.strerror or str(exc)
    log.warning("cannot scan folder %s: %s", rel, reason)
    if problems is not None:
        problems[rel] = f"cannot scan folder {rel}: {reason}"


def scan_source(
    source: Path,
    exclude: Iterable[str] = (),
    destination: Path | None = None,
    problems: dict[str, str] | None = None,
) -> dict[str, FileSig]:
    """Map of relative POSIX path -> signature for every regular file below ``source``.

    ``problems`` (optional) receives the folders that could not be scanned, with the reason: their files are not
    in the map, and a caller that must not report success while files are left behind can say so.
    """
    excluded = compile_excludes(exclude)
    found: dict[str, FileSig] = {}

    def list_folder(fd: int, prefix: str) -> list[str]:
        subfolders: list[str] = []
        with os.scandir(fd) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if excluded(entry.name, rel):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)  # fstatat on the folder's handle
                except OSError:
                    continue  # vanished between listing and stat
                mode = st.st_mode
                if stat.S_ISREG(mode):
                    found[rel] = FileSig(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
                elif stat.S_ISDIR(mode):
                    subfolders.append(entry.name)
        return subfolders

    skip = _identity(destination) if destination is not None else None
    walk_folders(source, list_folder, skip, problems)
    return found


def source_folders(source: Path, exclude: Iterable[str] = ()) -> list[str]:
    """Relative paths of every folder below ``source`` (symlinks not followed), '' for the root."""
    excluded = compile_excludes(exclude)
    folders = [""]

    def list_folder(fd: int, prefix: str) -> list[str]:
        subfolders: list[str] = []
        with os.scandir(fd) as entries:
            for entry in entries:
                rel = prefix + entry.name
                if entry.is_dir(follow_symlinks=False) and not excluded(entry.name, rel):
                    folders.append(rel)
                    subfolders.append(entry.name)
        return subfolders

    with contextlib.suppress(OSError):  # an unreachable source has no folders to clean up after
        walk_folders(source, list_folder)
    return folders
