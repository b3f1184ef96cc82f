"""Relative path -> destination path, name-conflict candidates and our temp-file names.

Every name is cut to the destination filesystem's byte limit (``NAME_MAX``), keeping the extension and whole UTF-8
characters, so ``video.mxf`` -> ``video_1.mxf`` -> ``video_2.mxf`` works for 255-byte names too.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from fta.errors import DestinationBlocked

DEFAULT_NAME_MAX = 255
MAX_SUFFIX_BYTES = 16  # a longer "extension" is treated as part of the name
TEMP_SUFFIX = ".fta.tmp"
_TEMP_RE = re.compile(r"^\..*\.([0-9a-f]{8})[0-9a-f]{4}" + re.escape(TEMP_SUFFIX) + r"$", re.DOTALL)


def name_max(folder: Path | int) -> int:
    """The filesystem's limit for one name, in bytes (255 when it cannot be asked)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))  # a path or a folder handle
    except (OSError, ValueError):
        return DEFAULT_NAME_MAX


def safe_relative(rel: str) -> PurePosixPath:
    """Validate a relative path from the scanner: no absolute paths, no '..', no empty parts."""
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or any(part in ("..", ".", "") for part in rel.split("/")):
        raise DestinationBlocked(f"refusing a path that could leave the destination root: {rel!r}")
    return path


def destination_for(root: Path, rel: str) -> Path:
    """Where ``rel`` goes below ``root``; never outside it."""
    target = root.joinpath(*safe_relative(rel).parts)
    if not target.is_relative_to(root) or target == root:
        raise DestinationBlocked(f"refusing a path that could leave the destination root: {rel!r}")
    return target


def _cut_utf8(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes, never splitting a multi-byte character."""
    if len(data) <= limit:
        return data
    cut = data[:limit]
    start = len(cut)
    while start and (cut[start - 1] & 0xC0) == 0x80:  # find the lead byte of the last character
        start -= 1
    if start and cut[start - 1] >= 0xC0:
        lead = cut[start - 1]
        length = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if len(cut) - (start - 1) < length:  # that character was split: drop what is left of it
            cut = cut[: start - 1]
    return cut


def split_name(name: str) -> tuple[str, str]:
    """``clip.mxf`` -> (``clip``, ``.mxf``); dot-files, long or non-alphanumeric suffixes are no extension."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(os.fsencode(ext)) + 1 > MAX_SUFFIX_BYTES or not ext.isalnum():
        return name, ""
    return stem, "." + ext


def fit_name(stem: str, tail: str, limit: int) -> str:
    """``stem + tail`` cut to ``limit`` bytes by shortening the stem (``tail`` is kept whole)."""
    tail_bytes = os.fsencode(tail)
    room = max(1, limit - len(tail_bytes))
    return os.fsdecode(_cut_utf8(os.fsencode(stem), room)) + tail


def candidate_names(name: str, limit: int = DEFAULT_NAME_MAX) -> Iterator[str]:
    """``name``, ``name_1``, ``name_2``, ... each within ``limit`` bytes; endless."""
    stem, ext = split_name(name)
    first = fit_name(stem, ext, limit)
    yield first
    counter = 1
    while True:
        candidate = fit_name(stem, f"_{counter}{ext}", limit)
        if candidate != first:  # a cut stem ending in "_1" would repeat the first name
            yield candidate
        counter += 1


def agent_id(source_root: Path) -> str:
    """A short id of this agent (host + source folder), so agents sharing a NAS never touch each other's temps."""
    return hashlib.sha256(f"{socket.gethostname()}\0{source_root}".encode()).hexdigest()[:8]


def temp_name(final_name: str, owner: str, limit: int = DEFAULT_NAME_MAX) -> str:
    """Hidden and deterministic per (agent, final name): a restarted copy of the same file replaces its old temp.

    ``.<final name, cut if needed>.<owner 8 hex><name hash 4 hex>.fta.tmp``; the hash keeps two long names that
    were cut to the same prefix apart.
    """
    name_hash = hashlib.sha256(final_name.encode(errors="surrogateescape")).hexdigest()[:4]
    return "." + fit_name(final_name, f".{owner}{name_hash}{TEMP_SUFFIX}", limit - 1)


def temp_owner(name: str) -> str | None:
    """The agent id in one of our temp names, or None when the name is not one."""
    match = _TEMP_RE.match(name)
    return match.group(1) if match else None
