"""When the loop probes the destination, and what it does when the destination is gone: the probe and the guard
task are recorders here, the board and the clock are real (the fake clock)."""

from __future__ import annotations

import threading

import pytest

from flows.destination_guard import DestinationGuard
from fta.board import TransferBoard
from fta.copier import Copier
from fta.errors import DestinationUnavailable
from fta.probe import ProbeResult
from fta.settings import Settings
from fta.stability import FileSig, StabilityTracker
from tasks.runtime import TransferRuntime
from tests.conftest import FakeClock, MakeSettings


class Destination:
    """The probe's answers and the guard task's calls."""

    def __init__(self) -> None:
        self.ok = True
        self.probes = 0
        self.holds: list[str] = []
        self.hold_fails = False
        self.shown: list[int] = []

    def probe(self, settings: Settings) -> ProbeResult:
        self.probes += 1
        return ProbeResult(ok=self.ok, reason=None if self.ok else "does not exist")

    def hold(self, settings: Settings, reason: str, stop: threading.Event) -> bool:
        if self.hold_fails:
            raise RuntimeError("the guard's task run could not be recorded")
        self.holds.append(reason)
        return True


def guard_for(settings: Settings, clock: FakeClock, ready: bool) -> tuple[DestinationGuard, Destination]:
    board = TransferBoard(StabilityTracker(settings.file_stable_time_seconds, clock), clock=clock)
    if ready:
        board.observe({"a.mxf": FileSig(1, 1, 1)})
        clock.advance(settings.file_stable_time_seconds)
        board.observe({"a.mxf": FileSig(1, 1, 1)})
    runtime = TransferRuntime(settings, board, Copier(settings, clock=clock), threading.Event())
    nas = Destination()
    guard = DestinationGuard(runtime, clock, lambda: nas.shown.append(1), probe=nas.probe, hold=nas.hold)
    return guard, nas


def test_nothing_ready_no_probe(make_settings: MakeSettings, clock: FakeClock) -> None:
    guard, nas = guard_for(make_settings(), clock, ready=False)
    assert guard.passes() and nas.probes == 0


def test_a_good_probe_counts_for_one_polling_interval(make_settings: MakeSettings, clock: FakeClock) -> None:
    guard, nas = guard_for(make_settings(polling_interval_seconds=10, file_stable_time_seconds=1), clock, ready=True)
    assert guard.passes() and nas.probes == 1
    clock.advance(9.9)
    assert guard.passes() and nas.probes == 1
    clock.advance(0.1)
    assert guard.passes() and nas.probes == 2


def test_a_copy_that_found_the_destination_gone_makes_the_guard_probe_at_once(
    make_settings: MakeSettings, clock: FakeClock
) -> None:
    guard, nas = guard_for(make_settings(file_stable_time_seconds=1), clock, ready=True)
    assert guard.passes() and nas.probes == 1
    guard.runtime.destination_unavailable(DestinationUnavailable("the share went away"))
    nas.ok = False
    assert guard.passes()
    assert nas.probes == 2 and nas.holds == ["does not exist"] and nas.shown == [1]  # the table showed it first


def test_when_the_guard_task_cannot_run_the_loop_waits_itself_and_a_stop_ends_the_wait(
    make_settings: MakeSettings, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    guard, nas = guard_for(make_settings(file_stable_time_seconds=1), clock, ready=True)
    nas.ok, nas.hold_fails = False, True
    guard.runtime.stop.set()
    assert not guard.passes()
    assert "guard task failed" in caplog.text
