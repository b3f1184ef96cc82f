"""When the loop scans: every polling interval; with file events also after a change and when a stable time is up."""

from __future__ import annotations

import pytest

from fta.scan_schedule import MIN_GAP_SECONDS, ScanSchedule
from tests.conftest import FakeClock

POLL = 10.0


def scan(schedule: ScanSchedule, clock: FakeClock, seconds: float = 0.0, deadline: float | None = None) -> None:
    polled = schedule.poll_due()
    started = schedule.begin()
    clock.advance(seconds)
    schedule.end(started, polled, deadline)


def test_polling_only_scans_once_per_interval_whatever_happens(clock: FakeClock) -> None:
    schedule = ScanSchedule(POLL, clock)
    assert schedule.poll_due()
    scan(schedule, clock, deadline=clock() + 1)
    schedule.changed()
    assert not schedule.extra_due()  # no events: a change or a deadline does not bring a scan forward
    assert schedule.wait_seconds() == pytest.approx(POLL)
    clock.advance(POLL)
    assert schedule.poll_due() and schedule.wait_seconds() == 0


def test_a_change_brings_the_next_scan_forward(clock: FakeClock) -> None:
    schedule = ScanSchedule(POLL, clock)
    schedule.events = True
    scan(schedule, clock)
    clock.advance(1.0)
    assert not schedule.extra_due()
    schedule.changed()
    assert schedule.extra_due() and schedule.wait_seconds() == 0
    scan(schedule, clock)
    assert not schedule.extra_due()  # the scan saw the change
    assert schedule.wait_seconds() == pytest.approx(POLL - 1.0)  # an extra scan does not move the next poll


def test_a_change_during_a_scan_is_not_lost(clock: FakeClock) -> None:
    schedule = ScanSchedule(POLL, clock)
    schedule.events = True
    started = schedule.begin()
    schedule.changed()  # the scan may already have passed that folder
    clock.advance(0.01)
    schedule.end(started, True, None)
    clock.advance(MIN_GAP_SECONDS)
    assert schedule.extra_due()


def test_a_stable_time_running_out_brings_a_scan_then(clock: FakeClock) -> None:
    schedule = ScanSchedule(POLL, clock)
    schedule.events = True
    scan(schedule, clock, deadline=clock() + 2.5)
    assert schedule.wait_seconds() == pytest.approx(2.5)
    clock.advance(2.5)
    assert schedule.extra_due() and not schedule.poll_due()


def test_extra_scans_keep_a_gap_of_four_times_the_scan_cost(clock: FakeClock) -> None:
    """A recording written all the time into a big source: scanning never takes more than a fifth of the time."""
    schedule = ScanSchedule(POLL, clock)
    schedule.events = True
    scan(schedule, clock, seconds=0.3)  # a big tree
    schedule.changed()
    assert not schedule.extra_due()
    assert schedule.wait_seconds() == pytest.approx(1.2)
    clock.advance(1.2)
    assert schedule.extra_due()
    scan(schedule, clock, seconds=0.001)  # a small tree: the floor applies
    schedule.changed()
    assert schedule.wait_seconds() == pytest.approx(MIN_GAP_SECONDS)


def test_polls_keep_a_gap_of_four_times_the_scan_cost_too(clock: FakeClock) -> None:
    """A short polling interval over a big source: polls leave the copies most of the time as well."""
    schedule = ScanSchedule(0.1, clock)
    scan(schedule, clock, seconds=0.3)  # 20,000 files waiting
    assert schedule.wait_seconds() == pytest.approx(1.2)
    clock.advance(1.1)
    assert not schedule.poll_due()
    clock.advance(0.1)
    assert schedule.poll_due()
    scan(schedule, clock, seconds=0.001)  # the backlog has drained: the polling interval again
    assert schedule.wait_seconds() == pytest.approx(0.1)


def test_a_recording_written_all_the_time_is_rescanned_once_per_twentieth_of_the_stable_time(
    clock: FakeClock,
) -> None:
    """Each such scan only restarts the file's timer: with 120 s stable, one every 6 s (the copy starts <= 5 % late)."""
    schedule = ScanSchedule(POLL * 100, clock, stable_seconds=120.0)
    schedule.events = True
    scan(schedule, clock, seconds=0.001)
    schedule.changed()
    assert schedule.wait_seconds() == pytest.approx(6.0, abs=0.01)
    clock.advance(5.9)
    assert not schedule.extra_due()
    clock.advance(0.2)
    assert schedule.extra_due()


def test_the_polling_interval_can_change(clock: FakeClock) -> None:
    schedule = ScanSchedule(POLL, clock)
    scan(schedule, clock)
    schedule.polling_interval = 1.0
    clock.advance(POLL)
    scan(schedule, clock)
    assert schedule.wait_seconds() == pytest.approx(1.0)
