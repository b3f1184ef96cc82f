"""Health of the agent as a Nagios plugin sees it: one line, perfdata, exit code 0/1/2/3.

Pure: it judges what was read from the Prefect API (the latest storage report, whether the watch run is running,
the file counts) and how a write the check made itself ended; ``flows/api_state.py`` does the reading and writing.

CRITICAL when the destination is unreachable, the watch run is not running, the last storage report is older
than ``max_report_age`` seconds (the report runs every minute), or the server refuses a write; WARNING when a write
took longer than ``SLOW_WRITE_SECONDS``; WARNING/CRITICAL when the destination's free space is below ``-w``/``-c``;
UNKNOWN when the Prefect API cannot be read.

Why a write of its own: a server whose database (or its disk) is full still answers every read, ``/api/ready``
included, and still takes the agent's task-run events over its websocket, then drops them in its background
services; only a write that must reach the database tells. Without it the check would say OK until the storage
report, which cannot start either, grew too old (tests/test_server_full.py runs a server on a full tmpfs).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
MAX_REPORT_AGE_SECONDS = 180.0
SLOW_WRITE_SECONDS = 5.0  # a write and its read back take milliseconds on a healthy server
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
        problems.append("watch run is not running")
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
    return Health(code, problems, f"FTA {NAMES[code]} - {'; '.join(problems)} | {perf}")


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
