"""What a run started through the Prefect API may narrow its work to: one subfolder of the source, one name pattern.

A run never widens the work: its paths and every other setting come from the agent's own configuration. It may only
ask for less, and less is decided here, by one pure test on each relative path the scan found (the scan itself
never follows a symlink, so a subfolder that is a symlink simply holds nothing). A subfolder is a relative path
inside the source: absolute paths, ``..`` and empty components are refused, ``.`` components and one trailing ``/``
are dropped. A pattern is a shell glob on the file's *name* (``*.mxf``, ``clip_??.mov``; case-sensitive); it never
contains ``/``: the subfolder says where, the pattern says which.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


class ScopeRefused(ValueError):
    """A subfolder or pattern that would reach outside the source, or that cannot be understood."""


@dataclass(frozen=True)
class Scope:
    subfolder: str = ""  # normalised POSIX path relative to the source; "" is the whole source
    pattern: str | None = None  # glob on file names; None matches every name

    def covers(self, rel: str) -> bool:
        """Does the file at ``rel`` (relative POSIX path from the scan) fall within this scope?"""
        if self.subfolder and not rel.startswith(self.subfolder + "/"):
            return False
        return self.pattern is None or fnmatch.fnmatchcase(rel.rpartition("/")[2], self.pattern)

    def describe(self) -> str:
        where = f"{self.subfolder}/" if self.subfolder else ""
        return where + (self.pattern or "*")

    @property
    def whole(self) -> bool:
        return not self.subfolder and self.pattern is None


WHOLE_SOURCE = Scope()


def parse_subfolder(subfolder: str | None) -> str:
    """The normalised subfolder, or ``ScopeRefused`` saying why it is not one."""
    if subfolder is None:
        return ""
    if "\0" in subfolder:
        raise ScopeRefused("subfolder refused: it contains a NUL character")
    if subfolder.startswith("/"):
        raise ScopeRefused(f"subfolder {subfolder!r} refused: it must be relative to the source, not absolute")
    text = subfolder[:-1] if subfolder.endswith("/") else subfolder
    parts = [part for part in text.split("/") if part != "."] if text else []
    if ".." in parts:
        raise ScopeRefused(f"subfolder {subfolder!r} refused: '..' would leave the source")
    if "" in parts:
        raise ScopeRefused(f"subfolder {subfolder!r} refused: it has an empty component ('//')")
    return "/".join(parts)


def parse_pattern(pattern: str | None) -> str | None:
    if pattern is None or pattern == "":
        return None
    if "/" in pattern or "\0" in pattern:
        raise ScopeRefused(f"pattern {pattern!r} refused: it matches file names, without '/' (use subfolder)")
    return pattern


def parse_scope(subfolder: str | None, pattern: str | None) -> Scope:
    """The scope a run asked for, or ``ScopeRefused`` with one line saying why it cannot have it."""
    return Scope(parse_subfolder(subfolder), parse_pattern(pattern))
