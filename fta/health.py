"""Health of the agent as a Nagios plugin sees it: one line, perfdata, exit code 0/1/2/3.

Pure: it judges what was read from the Prefect API (the latest storage report, whether the watch run is running,
the file counts); ``deployments/health_check.py`` does the reading.

CRITICAL when the destination is unreachable, the watch run is not running, or the last storage report is older
than ``max_report_age`` seconds (the report runs every minute); WARNING/CRITICAL when the destination's free space
is below ``-w``/``-c``; UNKNOWN when the Prefect API cannot be read.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
MAX_REPORT_AGE_SECONDS = 180.0


@dataclass
class Observed:
    """What was read from the Prefect API."""

    storage: dict[str, Any] | None  # the seed's storage object (+ reason) of the latest report
    report_age_seconds: float | None
    watch_running: bool
    pending: int = 0
    failed: int = 0


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
    if not problems:
        problems.append(f"destination reachable, {free:g} GB free, watch running" if free is not None else "running")
    perf = (
        f"dest_free_gb={'' if free is None else f'{free:g}'};{warn_gb:g};{crit_gb:g};0; "
        f"pending={seen.pending} failed={seen.failed}"
    )
    return Health(code, problems, f"FTA {NAMES[code]} - {'; '.join(problems)} | {perf}")


def unknown(reason: str) -> Health:
    return Health(UNKNOWN, [reason], f"FTA UNKNOWN - {reason}")


def add_threshold_options(parser: argparse.ArgumentParser) -> None:
    """``-w``/``-c`` in GB of free destination space, as Nagios plugins take them."""
    parser.add_argument("-w", "--warning", type=float, default=100.0, help="WARNING below this many GB free (100)")
    parser.add_argument("-c", "--critical", type=float, default=50.0, help="CRITICAL below this many GB free (50)")
