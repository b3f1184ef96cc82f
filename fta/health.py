"""Health of the agent as a Nagios plugin sees it: one line, perfdata, exit code 0/1/2/3.

Pure: it judges what was read from the Prefect API (the latest storage report, whether the watch run is running,
the file counts) and how a write the check made itself ended; ``flows/api_state.py`` does the reading and writing.

CRITICAL when the destination is unreachable, the watch run is not running, the last storage report is older
than ``max_report_age`` seconds (the report runs every minute), or the server refuses a write; WARNING when a write
took longer than ``SLOW_WRITE_SECONDS``; WARNING/CRITICAL when the destination's free space is below ``-w``/``-c``;
UNKNOWN when the Prefect API cannot be read.

``fta agents`` (``judge_site``): every agent of a shared server, each judged by ``judge``, the worst verdict for the
whole (CRITICAL, then UNKNOWN, WARNING, OK); no agent known at all is UNKNOWN.

Why a write of its own: a server whose database (or its disk) is full still answers every read, ``/api/ready``
included, and still takes the agent's task-run events over its websocket, then drops them in its background
services; only a write that must reach the database tells. Without it the check would say OK until the storage
report, which cannot start either, grew too old (tests/test_server_full.py runs a server on a full tmpfs).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fta.storage import BYTES_PER_GB

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
MAX_REPORT_AGE_SECONDS = 180.0
SLOW_WRITE_SECONDS = 5.0  # a write and its read back take milliseconds on a healthy server
# The operator's words first (what a check is grepped for), then what was looked at.
WATCH_STOPPED = "watch not running: the agent's watch run is not running"
REFUSED = "the Prefect server refuses writes (database or disk is full?): the run history is not being recorded"


@dataclass
class WriteProbe:
    """A new record the check wrote and read back: how it ended and how long it took."""

    refused: str | None  # why the server did not record it (``HTTP 500 Internal Server Error``); None: recorded
    seconds: float


@dataclass
class Observed:
    """What was read from the Prefect API."""

    storage: dict[str, Any] | None  # the seed's storage object (+ reason) of the latest report
    report_age_seconds: float | None
    watch_running: bool
    pending: int = 0
    failed: int = 0
    write_probe: WriteProbe | None = None  # None: no write was tried (the storage report's own verdict)


@dataclass
class Health:
    code: int
    problems: list[str] = field(default_factory=list)
    line: str = ""

    @property
    def status(self) -> str:
        return NAMES[self.code]


def _gb(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value >= 0 else None


def judge(seen: Observed, warn_gb: float, crit_gb: float, max_report_age: float = MAX_REPORT_AGE_SECONDS) -> Health:
    """The verdict and the plugin's output line (``FTA OK - ... | perfdata``)."""
    code = OK
    problems: list[str] = []
    storage = seen.storage or {}
    free = _gb(storage.get("destinationFreeGB"))
    if seen.storage is None:
        code, problems = CRITICAL, [*problems, "no storage report yet"]
    elif seen.report_age_seconds is not None and seen.report_age_seconds > max_report_age:
        code = CRITICAL
        problems.append(f"storage report is {seen.report_age_seconds:.0f} s old")
    if seen.storage is not None and storage.get("status") == "ERROR":
        code = CRITICAL
        problems.append(f"destination not reachable ({storage.get('reason') or storage.get('message')})")
    if not seen.watch_running:
        code = CRITICAL
        problems.append(WATCH_STOPPED)
    if free is not None and free < crit_gb:
        code = CRITICAL
        problems.append(f"destination free {free:g} GB < {crit_gb:g} GB")
    elif free is not None and free < warn_gb:
        code = max(code, WARNING)
        problems.append(f"destination free {free:g} GB < {warn_gb:g} GB")
    code = _judge_writes(seen.write_probe, code, problems)
    if not problems:
        problems.append(f"destination reachable, {free:g} GB free, watch running" if free is not None else "running")
        if seen.write_probe is not None:
            problems[0] += ", writes recorded"
    perf = (
        f"dest_free_gb={'' if free is None else f'{free:g}'};{warn_gb:g};{crit_gb:g};0; "
        f"pending={seen.pending} failed={seen.failed}"
    )
    if seen.write_probe is not None:
        recorded = int(seen.write_probe.refused is None)
        perf += f" api_write={recorded};;;0;1 api_write_s={seen.write_probe.seconds:.3f}s;{SLOW_WRITE_SECONDS:g};;0;"
    return Health(code, problems, f"FTA {NAMES[code]} - {_plain('; '.join(problems))} | {perf}")


def _judge_writes(probe: WriteProbe | None, code: int, problems: list[str]) -> int:
    """CRITICAL when the server did not record the check's write: every minute of it is history lost for good,
    and the storage report (and with it the destination's checks and alerts) cannot start either. The files
    themselves still move: the filesystem alone decides what is safe to delete."""
    if probe is None:
        return code
    if probe.refused is not None:
        problems.insert(0, f"{REFUSED} ({probe.refused})")
        return CRITICAL
    if probe.seconds > SLOW_WRITE_SECONDS:
        problems.append(f"the Prefect server took {probe.seconds:.0f} s to record a write")
        return max(code, WARNING)
    return code


def unknown(reason: str) -> Health:
    return Health(UNKNOWN, [reason], f"FTA UNKNOWN - {reason}")


def add_threshold_options(parser: argparse.ArgumentParser) -> None:
    """``-w``/``-c`` in GB of free destination space, as Nagios plugins take them."""
    parser.add_argument("-w", "--warning", type=float, default=100.0, help="WARNING below this many GB free (100)")
    parser.add_argument("-c", "--critical", type=float, default=50.0, help="CRITICAL below this many GB free (50)")


# ``fta agents``: every agent of a server, each judged by ``judge`` as ``fta health --agent NAME`` judges it.
# Worst first: CRITICAL, then UNKNOWN (an agent that could not be read may be down), WARNING, OK.
SEVERITY = (OK, WARNING, UNKNOWN, CRITICAL)
NAMED_IN_LINE = 10  # agents named in the first line; the lines below list every one


@dataclass
class AgentHealth:
    """One agent's verdict and what it was made from (None: its state could not be read)."""

    agent: str
    health: Health
    seen: Observed | None = None

    def as_json(self) -> dict[str, Any]:
        seen, storage = self.seen, (self.seen.storage if self.seen is not None else None)
        free = _gb(storage.get("destinationFreeGB")) if storage is not None else None
        return {
            "agent": self.agent,
            "status": self.health.status,
            "summary": "; ".join(self.health.problems),
            "watchRunning": seen is not None and seen.watch_running,
            "destinationReachable": None if storage is None else storage.get("status") != "ERROR",
            # the report keeps GB to two decimals: bytes to the nearest 10 MB
            "freeBytes": None if free is None else round(free * BYTES_PER_GB),
            "pendingFilesCount": seen.pending if seen is not None else None,
            "failedFilesCount": seen.failed if seen is not None else None,
            "lastReportAgeSeconds": seen.report_age_seconds if seen is not None else None,
        }

    def line(self) -> str:
        """The agent's line below the first: its facts, then the verdict's words."""
        body = self.as_json()
        reachable = {True: "reachable", False: "not reachable", None: "unknown"}[body["destinationReachable"]]
        free = "-" if body["freeBytes"] is None else f"{body['freeBytes'] / BYTES_PER_GB:g} GB"
        age = body["lastReportAgeSeconds"]
        return (
            f"{self.agent} {self.health.status}: watch {'running' if body['watchRunning'] else 'NOT running'}, "
            f"destination {reachable}, {free} free, pending {_count(body['pendingFilesCount'])}, "
            f"failed {_count(body['failedFilesCount'])}, last report {'never' if age is None else f'{age:.0f} s ago'}"
            f" - {_plain(body['summary'])}"
        )


def _plain(text: str) -> str:
    """Text from the API on one plugin line: a line break would end the line Nagios reads, a ``|`` start its
    perfdata (a destination path may hold either, and whoever can write the API writes these reports)."""
    return " ".join(text.replace("|", "/").split())


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


@dataclass
class SiteHealth:
    code: int
    agents: list[AgentHealth]
    line: str

    @property
    def status(self) -> str:
        return NAMES[self.code]

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "summary": self.line.split(" - ", 1)[1].split(" | ", 1)[0],
            "agents": [agent.as_json() for agent in self.agents],
        }

    def text(self) -> str:
        return "\n".join([self.line, *(agent.line() for agent in self.agents)])


def judge_site(agents: Sequence[AgentHealth], more: int | None = None) -> SiteHealth:
    """The worst of the agents' verdicts, and the plugin's first line naming the agents that are not OK.

    No agent at all is UNKNOWN: the check cannot tell a site that lost every agent from a wrong server.
    ``more``: the list was cut at that many agents (the rest were not judged), which is a WARNING at least.
    """
    ordered = sorted(agents, key=lambda agent: agent.agent)
    if not ordered:
        reason = "no agents known to this Prefect server (no watch-folder deployment, status or storage artifact"
        return SiteHealth(UNKNOWN, [], f"FTA AGENTS UNKNOWN - {reason} or TransferConfig block of any agent)")
    worst = max((agent.health.code for agent in ordered), key=SEVERITY.index)
    parts: list[str] = []
    for code in reversed(SEVERITY[1:]):
        named = [agent for agent in ordered if agent.health.code == code]
        if named:
            parts.append(_named(named, len(ordered), NAMES[code].lower()))
    if more is not None:
        worst = max(worst, WARNING, key=SEVERITY.index)
        parts.append(f"more than {more} agents known: only the first {more} by name were judged (--max-agents)")
    if not parts:
        parts.append(f"{len(ordered)} agent{'s' * (len(ordered) != 1)}, all OK")
    counts = " ".join(
        f"{NAMES[code].lower()}={sum(agent.health.code == code for agent in ordered)}" for code in SEVERITY
    )
    line = f"FTA AGENTS {NAMES[worst]} - {'; '.join(parts)} | agents={len(ordered)} {counts}"
    return SiteHealth(worst, ordered, line)


def _named(agents: list[AgentHealth], total: int, level: str) -> str:
    """``1 of 2 agents critical: ingest-01 (watch not running: ...)``, the first few named with their problems."""
    shown = ", ".join(f"{agent.agent} ({_plain('; '.join(agent.health.problems))})" for agent in agents[:NAMED_IN_LINE])
    rest = f" and {len(agents) - NAMED_IN_LINE} more" if len(agents) > NAMED_IN_LINE else ""
    return f"{len(agents)} of {total} agents {level}: {shown}{rest}"
