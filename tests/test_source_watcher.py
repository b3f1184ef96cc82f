"""What the loop sees of its source: scans when due, the scope and the sweep, file events on and off, a failed scan.

No Prefect: the watcher runs on a real source folder, a real board and real file events, on the fake clock.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from flows.source_watcher import EVENTS_RETRY_SECONDS, SourceWatcher
from fta.board import TransferBoard
from fta.scope import WHOLE_SOURCE, Scope, parse_scope
from fta.settings import Settings
from fta.stability import StabilityTracker
from tests.conftest import FakeClock, MakeSettings, write
from tests.prefect_helpers import wait_until


def watcher_for(
    settings: Settings, clock: FakeClock, once: bool = False, scope: Scope = WHOLE_SOURCE
) -> tuple[SourceWatcher, threading.Event]:
    """A watcher on a fresh board; the event is set whenever it wakes the loop."""
    woken = threading.Event()
    holder: list[SourceWatcher] = []
    tracker = StabilityTracker(settings.file_stable_time_seconds, clock, lambda rel: holder[0].readiness(rel))
    watcher = SourceWatcher(settings, TransferBoard(tracker, clock=clock), clock, woken.set, once, scope)
    holder.append(watcher)
    return watcher, woken


def test_scans_come_every_poll_and_the_configuration_is_read_first(
    make_settings: MakeSettings, clock: FakeClock
) -> None:
    settings = make_settings(polling_interval_seconds=10, file_events=False)
    watcher, _ = watcher_for(settings, clock)
    polls: list[float] = []
    assert watcher.scan_when_due(on_poll=lambda: polls.append(clock()))  # the first poll is due at once
    assert not watcher.scan_when_due(on_poll=lambda: polls.append(clock()))
    clock.advance(9.9)
    assert not watcher.scan_when_due(on_poll=lambda: polls.append(clock()))
    assert watcher.schedule.wait_seconds() == pytest.approx(0.1)
    clock.advance(0.1)
    assert watcher.scan_when_due(on_poll=lambda: polls.append(clock()))
    assert polls == [1000.0, 1010.0]


def test_a_file_becomes_ready_after_its_stable_time_within_the_scope(
    make_settings: MakeSettings, source: Path, clock: FakeClock
) -> None:
    write(source / "cam1" / "a.mxf", b"a")
    write(source / "cam2" / "b.mxf", b"b")
    settings = make_settings(file_stable_time_seconds=5, file_events=False)
    watcher, _ = watcher_for(settings, clock, scope=parse_scope("cam1", None))
    watcher.scan()
    assert watcher.board.ready_files() == []
    clock.advance(5)
    watcher.scan()
    assert watcher.board.ready_files() == ["cam1/a.mxf"]  # cam2 is out of this run's scope
    assert watcher.board.status_of("cam2/b.mxf") is None


def test_a_sweep_keeps_to_the_files_of_its_first_scan_and_ends_when_they_are_gone(
    make_settings: MakeSettings, source: Path, clock: FakeClock
) -> None:
    write(source / "a.mxf", b"a")
    write(source / "empty.mxf", b"")
    settings = make_settings(file_stable_time_seconds=5, file_events=False)
    watcher, _ = watcher_for(settings, clock, once=True)
    assert not watcher.sweep_done()  # no scan yet: nothing known
    watcher.scan()
    assert watcher.sweep == {"a.mxf", "empty.mxf"}
    write(source / "later.mxf", b"came after the sweep began")
    clock.advance(5)
    watcher.scan()
    assert watcher.board.ready_files() == ["a.mxf"]
    assert watcher.board.status_of("later.mxf") is None
    (source / "a.mxf").unlink()  # moved
    watcher.scan()
    assert watcher.sweep_done()  # the empty file stayed empty for the stable time: left alone


def test_an_empty_file_keeps_a_sweep_going_until_its_stable_time_is_up(
    make_settings: MakeSettings, source: Path, clock: FakeClock
) -> None:
    write(source / "empty.mxf", b"")
    watcher, _ = watcher_for(make_settings(file_stable_time_seconds=5, file_events=False), clock, once=True)
    watcher.scan()
    clock.advance(4.9)
    assert not watcher.sweep_done()
    clock.advance(0.1)
    assert watcher.sweep_done()


def test_a_failed_scan_ends_a_sweep_but_not_a_watch(
    make_settings: MakeSettings, source: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(file_events=False)
    source.rmdir()
    watch, _ = watcher_for(settings, clock)
    watch.scan()
    assert "cannot scan the source" in caplog.text
    sweep, _ = watcher_for(settings, clock, once=True)
    with pytest.raises(OSError):
        sweep.scan()


def test_file_events_wake_the_loop_and_are_started_again_after_a_minute(
    make_settings: MakeSettings, source: Path, clock: FakeClock
) -> None:
    settings = make_settings(polling_interval_seconds=10, file_events=True)
    watcher, woken = watcher_for(settings, clock)
    source.rmdir()  # gone for a while (a share not mounted yet)
    try:
        watcher.ensure_events()  # no events, tried again in a minute
        assert not watcher.schedule.events
        source.mkdir()
        clock.advance(EVENTS_RETRY_SECONDS - 1)
        watcher.ensure_events()
        assert not watcher.schedule.events
        clock.advance(1)
        watcher.ensure_events()
        assert watcher.schedule.events
        write(source / "a.mxf", os.urandom(10))
        wait_until(woken.is_set, what="the file event to wake the loop")
        assert watcher.schedule.extra_due()  # a scan now, not at the next poll
        watcher.configure(settings.model_copy(update={"file_events": False}))
        watcher.ensure_events()  # switched off by an edit
        assert not watcher.schedule.events
    finally:
        watcher.stop_events()
