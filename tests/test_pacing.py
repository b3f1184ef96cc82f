"""Copies are paced to the run history: no submission while Prefect's send queues hold too many records."""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from flows import backlog, prefect_internals
from flows.backlog import (
    EVENT_WINDOW_SECONDS,
    MAX_EVENT_LAG_SECONDS,
    MAX_UNRECORDED,
    MAX_UNSENT,
    RECORD_ANSWER_SECONDS,
    RECORD_STALL_SECONDS,
    RecordingLag,
    unsent_records,
)
from flows.copy_dispatcher import PACE_SECONDS
from flows.transfer_loop import TransferLoop
from tests.conftest import FakeClock, MakeSettings, write
from tests.prefect_helpers import wait_until


class FakeFuture:
    def add_done_callback(self, callback: Any) -> None:
        pass


class FakeRunner:
    """The task runner's one method the loop uses; it records what would have run."""

    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, task: Any, parameters: dict[str, Any]) -> FakeFuture:
        self.submitted.append(parameters["rel"])
        return FakeFuture()


def three_ready_clips(make_settings: MakeSettings, source: Path, clock: FakeClock, unsent: Any) -> TransferLoop:
    """A loop (one copy at a time) whose board holds three files past their stable time."""
    for n in range(3):
        write(source / f"clip{n}.mxf", os.urandom(100))
    loop = TransferLoop(make_settings(file_stable_time_seconds=5, max_concurrent_copies=1), clock=clock, unsent=unsent)
    loop.watcher.scan()
    clock.advance(5)
    loop.watcher.scan()
    return loop


def test_no_copy_is_submitted_while_the_history_is_behind(
    make_settings: MakeSettings, source: Path, clock: FakeClock
) -> None:
    backlog = [MAX_UNSENT + 1]
    loop = three_ready_clips(make_settings, source, clock, lambda: backlog[0])
    runner = FakeRunner()
    assert loop.dispatcher.submit(runner) == 0  # type: ignore[arg-type]
    assert loop.dispatcher.paced and runner.submitted == []
    assert loop.dispatcher.pause(600.0) == PACE_SECONDS  # a paced loop looks again soon
    backlog[0] = MAX_UNSENT
    assert loop.dispatcher.submit(runner) == 2  # type: ignore[arg-type]  # two per copy slot: one running, one queued
    assert not loop.dispatcher.paced
    assert loop.dispatcher.pause(600.0) == 600.0
    assert runner.submitted == ["clip0.mxf", "clip1.mxf"]


def test_send_queues_that_cannot_be_read_pace_nothing_and_are_said_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Prefect release that keeps its queues elsewhere (the contract tests say which) holds no copy back."""

    def moved() -> int:
        raise AttributeError("type object '_QueueServiceBase' has no attribute '_instances'")

    monkeypatch.setattr(prefect_internals, "unsent_records", moved)
    monkeypatch.setattr(unsent_records, "warned", False, raising=False)  # said once per process: not yet
    with caplog.at_level(logging.WARNING, logger="fta.loop"):
        assert unsent_records() == 0
        assert unsent_records() == 0
    warnings = [record.getMessage() for record in caplog.records if record.name == "fta.loop"]
    assert len(warnings) == 1 and "_instances" in warnings[0], warnings


def test_no_copy_is_submitted_while_the_server_has_not_recorded_the_copies_that_ended(
    make_settings: MakeSettings, source: Path, clock: FakeClock
) -> None:
    """Sent is not recorded: a server behind drops what overflows its queues, so the loop waits for it too."""
    recorded = [0]
    lag = RecordingLag(lambda: recorded[0], clock=clock)
    loop = three_ready_clips(make_settings, source, clock, lambda: 0)
    loop.dispatcher.unrecorded = lag
    lag._ended = MAX_UNRECORDED + 1  # ended here (the dispatcher counts them as it settles them)
    lag.measure()
    runner = FakeRunner()
    assert loop.dispatcher.submit(runner) == 0  # type: ignore[arg-type]
    assert loop.dispatcher.paced and runner.submitted == []
    recorded[0] = 1
    lag.measure()
    assert lag() == MAX_UNRECORDED
    assert loop.dispatcher.submit(runner) == 2  # type: ignore[arg-type]
    assert runner.submitted == ["clip0.mxf", "clip1.mxf"]


def test_records_the_server_never_makes_are_given_up_after_a_while_and_said(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Events the server dropped never come: the copies must not wait for them for good."""
    recorded = [0]
    lag = RecordingLag(lambda: recorded[0], clock=clock)
    lag._ended = 700
    lag.measure()
    assert lag() == 700
    recorded[0] = 650  # it catches up, then stops short: 50 were dropped
    clock.advance(RECORD_STALL_SECONDS)
    lag.measure()
    assert lag() == 50  # progress: still waited for
    clock.advance(RECORD_STALL_SECONDS)
    lag.measure()
    assert lag() == 50  # exactly the stall time: still waited for
    clock.advance(1)
    with caplog.at_level(logging.WARNING, logger="fta.loop"):
        lag.measure()
    assert lag() == 0
    assert any("50 copy task run(s)" in record.getMessage() for record in caplog.records)
    lag._ended += 10  # later copies are measured against what is left
    lag.measure()
    assert lag() == 10
    recorded[0] = 660
    lag.measure()
    assert lag() == 0
    recorded[0] = 700  # a slow server, not a lost record: 40 of the 50 given up arrive after all
    with caplog.at_level(logging.INFO, logger="fta.loop"):
        lag.measure()
    assert any("recorded 40 copy task run(s) given up for lost after all" in r.getMessage() for r in caplog.records)
    assert lag() == 0
    lag._ended += 20  # the 10 still missing stay given up: only the new copies are waited for
    lag.measure()
    assert lag() == 20


def test_a_server_that_does_not_answer_holds_no_copy_back_for_long(clock: FakeClock) -> None:
    answers: list[int | Exception] = [0, ConnectionError("refused")]

    def count() -> int:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    lag = RecordingLag(count, clock=clock)
    lag._ended = 900
    lag.measure()
    assert lag() == 900
    clock.advance(RECORD_ANSWER_SECONDS)
    lag.measure()  # no answer: the last figure stands for a while
    assert lag() == 900
    clock.advance(1)
    assert lag() == 0
    assert RecordingLag(None)() == 0  # outside a flow run: nothing to ask


def test_the_lag_is_asked_from_a_thread_of_its_own_while_copies_end_and_not_when_idle() -> None:
    asked: list[int] = []
    recorded = [0]
    released: list[str] = []

    def count() -> int:
        asked.append(recorded[0])
        return recorded[0]

    lag = RecordingLag(count, poll=0.01, release=lambda: released.append(threading.current_thread().name))
    assert lag._thread is None  # nothing ended yet: nothing asked
    lag.ended(3)
    try:
        wait_until(lambda: len(asked) >= 2 and lag() == 3, what="the lag asked, then asked again while behind")
        recorded[0] = 3
        wait_until(lambda: lag.idle, what="an idle thread once caught up")
        assert lag() == 0
        before = len(asked)
        lag.ended()
        wait_until(lambda: len(asked) > before, what="the next copy's end asked about")
    finally:
        lag.close()
    assert lag._thread is not None and lag._thread.name == "fta-recorded"
    lag._thread.join(30)
    assert not lag._thread.is_alive()
    assert released == ["fta-recorded"]  # what it asked through is closed by the asking thread, once
    assert backlog.MAX_UNRECORDED < 10_000 // 3  # under the server's queue of 10,000 events, at 3 events a copy


def test_stored_events_far_behind_the_copies_hold_submissions_until_they_catch_up(clock: FakeClock) -> None:
    """The server's event persister is its slowest consumer: followed by the time of the newest event it stored."""
    wall = [datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)]
    stored: list[datetime | None] = [None]
    lag = RecordingLag(lambda: 0, clock=clock, newest_stored=lambda: stored[0], wall=lambda: wall[0])

    def ended_and_measured(after: float) -> None:
        lag._ended = 0  # counted as recorded: only the events are behind here
        wall[0] += timedelta(seconds=after)
        lag.measure()

    lag.measure()
    assert lag.event_lag == 0.0 and not lag.behind()  # nothing ended: nothing to wait for
    lag.ended()  # 09:00:00, after a quiet hour: nothing of this run stored in the window yet
    ended_and_measured(1)
    assert lag.event_lag == 1.0 and not lag.behind()  # its events are one second behind
    for _ in range(int(MAX_EVENT_LAG_SECONDS)):
        lag.ended()
        ended_and_measured(1)
    assert lag.event_lag == MAX_EVENT_LAG_SECONDS + 1 and lag.behind()  # still none stored, six seconds on
    stored[0] = wall[0] - timedelta(seconds=3)  # stored up to 09:00:03: the copies after it are 3 s behind
    lag.measure()
    assert lag.event_lag == 3.0 and not lag.behind()
    stored[0] = wall[0] - timedelta(seconds=1.5)  # the last copy ended at 09:00:05: caught up within the slack
    lag.measure()
    assert lag.event_lag == 0.0
    wall[0] += timedelta(seconds=3600)  # a quiet hour; the next copy is measured from its own end
    lag.ended()
    ended_and_measured(2)
    assert lag.event_lag == 2.0
    ended_and_measured(EVENT_WINDOW_SECONDS * 2)
    assert lag.event_lag == EVENT_WINDOW_SECONDS and lag.behind()  # never stored: at most the window
    clock.advance(RECORD_ANSWER_SECONDS + 1)
    assert not lag.behind()  # no answer for a minute: nothing held back


def test_a_server_that_stores_no_event_holds_copies_back_only_for_a_while_and_it_is_said(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A server with its event persister off never stores one: the copies must not wait for it for good."""
    wall = [datetime(2026, 12, 2, 9, 0, 0, tzinfo=UTC)]
    stored: list[datetime | None] = [None]
    lag = RecordingLag(lambda: 0, clock=clock, newest_stored=lambda: stored[0], wall=lambda: wall[0])
    lag.ended()
    lag._ended = 0  # counted as recorded: only the events are behind

    def later(seconds: float) -> None:
        wall[0] += timedelta(seconds=seconds)
        clock.advance(seconds)
        lag.measure()

    later(MAX_EVENT_LAG_SECONDS + 1)
    assert lag.behind()
    later(RECORD_STALL_SECONDS - MAX_EVENT_LAG_SECONDS)
    assert lag.behind()  # not yet given up
    with caplog.at_level(logging.WARNING, logger="fta.loop"):
        later(MAX_EVENT_LAG_SECONDS + 1)
    assert not lag.behind()
    assert sum("stored no task-run event" in record.getMessage() for record in caplog.records) == 1
    later(60)
    assert not lag.behind()  # still nothing stored: still not waited for, said once
    assert sum("stored no task-run event" in record.getMessage() for record in caplog.records) == 1
    stored[0] = wall[0] - timedelta(seconds=10)  # it stores again (up to before the copy ending now)
    lag.ended()
    lag._ended = 0
    with caplog.at_level(logging.INFO, logger="fta.loop"):
        later(MAX_EVENT_LAG_SECONDS + 1)
    assert sum("task-run events again" in record.getMessage() for record in caplog.records) == 1
    assert lag.behind()  # followed again: this copy's events are six seconds behind
