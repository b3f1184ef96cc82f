"""The Nagios verdict (pure): exit codes, the one output line and its perfdata."""

from __future__ import annotations

import argparse
import re

import pytest

from fta.health import CRITICAL, OK, UNKNOWN, WARNING, Observed, add_threshold_options, judge, unknown

PLUGIN_LINE = re.compile(r"^FTA (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+( \| [^\n]+)?$")


def storage(free: float, status: str = "OK", **extra: object) -> dict[str, object]:
    return {"sourceFreeGB": 500.0, "destinationFreeGB": free, "status": status, **extra}


def seen(**changes: object) -> Observed:
    base = Observed(storage=storage(512.0), report_age_seconds=30.0, watch_running=True, pending=2, failed=1)
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def test_all_well() -> None:
    health = judge(seen(), warn_gb=100, crit_gb=50)
    assert health.code == OK
    assert health.line == (
        "FTA OK - destination reachable, 512 GB free, watch running | dest_free_gb=512;100;50;0; pending=2 failed=1"
    )
    assert PLUGIN_LINE.match(health.line)


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"storage": storage(80.0, "WARNING")}, WARNING, "80 GB < 100 GB"),
        ({"storage": storage(20.0, "WARNING")}, CRITICAL, "20 GB < 50 GB"),
        ({"storage": storage(-1, "ERROR", reason="destination root /nas does not exist")}, CRITICAL, "/nas"),
        ({"watch_running": False}, CRITICAL, "watch run is not running"),
        ({"report_age_seconds": 240.0}, CRITICAL, "240 s old"),
        ({"storage": None, "report_age_seconds": None}, CRITICAL, "no storage report yet"),
    ],
)
def test_problems(changes: dict[str, object], code: int, words: str) -> None:
    health = judge(seen(**changes), warn_gb=100, crit_gb=50)
    assert health.code == code
    assert words in health.line
    assert PLUGIN_LINE.match(health.line)
    assert health.line.startswith(f"FTA {health.status} - ")


def test_worst_problem_wins_and_all_are_listed() -> None:
    health = judge(seen(watch_running=False, storage=storage(80.0, "WARNING")), warn_gb=100, crit_gb=50)
    assert health.code == CRITICAL
    assert "watch run is not running" in health.line and "80 GB < 100 GB" in health.line


def test_unknown_line() -> None:
    health = unknown("cannot read the Prefect API: ConnectError")
    assert health.code == UNKNOWN
    assert health.line == "FTA UNKNOWN - cannot read the Prefect API: ConnectError"


def test_unreachable_destination_has_empty_free_space_in_perfdata() -> None:
    health = judge(seen(storage=storage(-1, "ERROR")), warn_gb=100, crit_gb=50)
    assert "dest_free_gb=;100;50;0;" in health.line


def test_threshold_options() -> None:
    parser = argparse.ArgumentParser()
    add_threshold_options(parser)
    args = parser.parse_args(["-w", "200", "-c", "20"])
    assert (args.warning, args.critical) == (200.0, 20.0)
    assert parser.parse_args([]).warning == 100.0
