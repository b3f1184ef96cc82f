"""The Nagios verdict (pure): exit codes, the one output line and its perfdata."""

from __future__ import annotations

import argparse
import re

import pytest

from fta.health import (
    CRITICAL,
    OK,
    REFUSED,
    SLOW_WRITE_SECONDS,
    UNKNOWN,
    WARNING,
    Observed,
    WriteProbe,
    add_threshold_options,
    judge,
    unknown,
)

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


def test_a_recorded_write_is_said_and_measured() -> None:
    health = judge(seen(write_probe=WriteProbe(refused=None, seconds=0.0421)), warn_gb=100, crit_gb=50)
    assert health.code == OK
    assert health.line == (
        "FTA OK - destination reachable, 512 GB free, watch running, writes recorded"
        " | dest_free_gb=512;100;50;0; pending=2 failed=1 api_write=1;;;0;1 api_write_s=0.042s;5;;0;"
    )
    assert PLUGIN_LINE.match(health.line)


def test_a_refused_write_is_critical_and_named_first() -> None:
    """The server answers reads but does not record: everything else looks fine, and the line says why not."""
    refused = WriteProbe(refused="HTTP 500 Internal Server Error", seconds=0.3)
    health = judge(seen(write_probe=refused), warn_gb=100, crit_gb=50)
    assert health.code == CRITICAL
    assert health.line.startswith(f"FTA CRITICAL - {REFUSED} (HTTP 500 Internal Server Error) | ")
    assert "database or disk is full?" in health.line and "not being recorded" in health.line
    assert "api_write=0;;;0;1" in health.line
    assert PLUGIN_LINE.match(health.line)


def test_a_refused_write_keeps_the_other_problems() -> None:
    refused = WriteProbe(refused="a write had no answer within 10 s", seconds=10.0)
    health = judge(seen(write_probe=refused, storage=storage(80.0, "WARNING")), warn_gb=100, crit_gb=50)
    assert health.code == CRITICAL
    assert health.problems == [f"{REFUSED} (a write had no answer within 10 s)", "destination free 80 GB < 100 GB"]


@pytest.mark.parametrize(
    ("seconds", "code"), [(SLOW_WRITE_SECONDS, OK), (SLOW_WRITE_SECONDS + 0.5, WARNING), (30.0, WARNING)]
)
def test_a_slow_write_is_a_warning(seconds: float, code: int) -> None:
    health = judge(seen(write_probe=WriteProbe(refused=None, seconds=seconds)), warn_gb=100, crit_gb=50)
    assert health.code == code
    assert ("to record a write" in health.line) == (code == WARNING)


def test_a_slow_write_does_not_soften_a_critical() -> None:
    health = judge(seen(watch_running=False, write_probe=WriteProbe(None, 9.0)), warn_gb=100, crit_gb=50)
    assert health.code == CRITICAL
    assert "watch run is not running" in health.line and "took 9 s to record a write" in health.line
