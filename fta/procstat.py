"""One process's line of ``/proc/<pid>/stat`` (Linux), read and parsed in one place.

The second field is the command name in parentheses, and a process chooses its own name: up to 15 bytes that may
hold spaces, parentheses and newlines (a program copied to ``x) Z 1 (y`` is named so). Splitting the line at spaces,
or at the first ``)``, would then read the name's pieces as the state and the parent. The fields after the name never
hold a ``)``, so the line is split at the last one (proc(5)).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_PROC = "/proc"


@dataclass(frozen=True)
class ProcStat:
    """The fields the agent and its tests read; the times are in clock ticks (``os.sysconf("SC_CLK_TCK")``)."""

    pid: int
    name: str  # the command name (undecodable bytes kept as surrogates)
    state: str  # R, S, D, Z, T, ...
    ppid: int
    utime: int  # user time of the process itself
    stime: int  # system time of the process itself
    cutime: int  # user time of its reaped children
    cstime: int  # system time of its reaped children

    @property
    def cpu_ticks(self) -> int:
        """All CPU time: its own and its reaped children's."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(line: bytes) -> ProcStat:
    """The fields of one ``/proc/<pid>/stat`` line; ValueError when it is not one."""
    head, paren, tail = line.rpartition(b")")
    pid_text, open_paren, name = head.partition(b" (")
    fields = tail.split()
    if not paren or not open_paren or len(fields) < 15:
        raise ValueError(f"not a /proc stat line: {line[:200]!r}")
    # After the name: state(0) ppid(1) pgrp(2) session(3) tty_nr(4) tpgid(5) flags(6) minflt(7) cminflt(8)
    # majflt(9) cmajflt(10) utime(11) stime(12) cutime(13) cstime(14) ...
    return ProcStat(
        pid=int(pid_text),
        name=name.decode(errors="surrogateescape"),
        state=fields[0].decode("ascii"),
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def read_stat(pid: int) -> ProcStat | None:
    """Process ``pid``'s fields; None when it is gone (or its line cannot be read)."""
    try:
        with open(f"{_PROC}/{pid}/stat", "rb") as stat_file:
            return parse_stat(stat_file.read())
    except (OSError, ValueError):  # gone before or while being read: its line is empty or the read fails
        return None


def all_processes() -> dict[int, ProcStat]:
    """Every process alive now (zombies included), by pid."""
    found = {}
    for entry in os.listdir(_PROC):
        if entry.isdigit() and (stat := read_stat(int(entry))) is not None:
            found[stat.pid] = stat
    return found


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (zombies included)."""
    return [pid for pid, stat in all_processes().items() if stat.ppid == parent]


def alive(pid: int) -> bool:
    """Still running: it exists and is not a zombie. Never reaps (its parent must still see its exit code)."""
    stat = read_stat(pid)
    return stat is not None and stat.state != "Z"
