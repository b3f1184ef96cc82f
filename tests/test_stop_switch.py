"""The run's stop switch: made by whoever owns the run's stop, honoured by the loop however early it is pulled.

No Prefect server: the loop runs without a flow run (nothing to publish, no task submitted), on a real source.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from flows.config import stop_in_process
from flows.transfer_loop import TransferLoop
from flows.watch_folder import stop_on_sigterm
from fta.sourcelock import entries_in, lock_folder
from fta.stop_switch import StopSwitch
from tests.conftest import FakeClock, MakeSettings, write
from tests.prefect_helpers import wait_until


def test_a_request_wakes_every_registered_callback_once_and_stays_pulled() -> None:
    switch = StopSwitch()
    woken: list[str] = []
    forget_a = switch.on_request(lambda: woken.append("a"))
    switch.on_request(lambda: woken.append("b"))
    forget_a()  # a loop that has ended is no longer woken
    assert not switch.is_requested() and not switch.wait(0)
    switch.request()
    assert woken == ["b"]
    assert switch.is_requested() and switch.wait(0)


def test_a_callback_registered_after_the_request_is_called_at_once() -> None:
    """A stop that came before the loop started (SIGTERM while the flow run starts) is not lost."""
    switch = StopSwitch()
    switch.request()
    woken: list[int] = []
    switch.on_request(lambda: woken.append(1))
    assert woken == [1]


def test_a_loop_whose_stop_came_before_it_started_ends_at_once_and_moves_nothing(
    make_settings: MakeSettings, source: Path, destination: Path, clock: FakeClock
) -> None:
    write(source / "a.mxf", b"stays in the source")
    settings = make_settings(file_stable_time_seconds=0.1, polling_interval_seconds=600, file_events=False)
    switch = StopSwitch()
    switch.request()
    summary = TransferLoop(settings, clock=clock, stop=switch).run()
    assert summary.cycles == 0 and summary.completed == 0
    assert (source / "a.mxf").exists() and list(destination.iterdir()) == []
    assert source not in [entry.source for entry in entries_in(lock_folder())]  # its source let go


def test_a_request_from_another_thread_wakes_a_loop_waiting_for_its_next_scan(
    make_settings: MakeSettings, clock: FakeClock
) -> None:
    """The next scan is ten minutes away (on a clock that never moves): only the switch can end this loop."""
    settings = make_settings(polling_interval_seconds=600, file_events=False)
    switch = StopSwitch()
    loop = TransferLoop(settings, clock=clock, stop=switch)
    ended: list[int] = []
    runner = threading.Thread(target=lambda: ended.append(loop.run().cycles), daemon=True)
    runner.start()
    wait_until(lambda: loop.summary.cycles == 1, what="the first scan")
    assert runner.is_alive()  # waiting for the next one, not ended on its own
    switch.request()
    runner.join(30)
    assert not runner.is_alive() and ended == [1]
    assert loop.halt.is_set()  # the copies' stop signal too


def test_the_watch_takes_the_switch_handed_over_and_sigterm_pulls_it() -> None:
    """``fta watch`` hands its switch over (its SIGTERM handler pulls it while the flow run starts); inside the
    run SIGTERM pulls the same switch. The test runs in the main thread, where signal handlers belong."""
    handed = StopSwitch()
    before = signal.getsignal(signal.SIGTERM)
    with stop_in_process(handed), stop_on_sigterm() as stop:
        assert stop is handed
        os.kill(os.getpid(), signal.SIGTERM)
        assert handed.wait(10)
    signal.signal(signal.SIGTERM, before)  # after a stop, SIGTERM stays the same stop until the run has ended


def test_without_a_handover_each_run_gets_its_own_switch() -> None:
    with stop_on_sigterm() as first, stop_on_sigterm() as second:
        assert first is not second
        assert not first.is_requested()
