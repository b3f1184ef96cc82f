"""The loop's side of waiting for room: one ``statvfs`` per poll lets waiting files back in line; another
destination ends every wait. No Prefect server: the loop's steps are called one by one on the fake clock."""

from __future__ import annotations

import os
from pathlib import Path

from flows.transfer_loop import TransferLoop
from fta.settings import Settings
from tests.conftest import FakeClock, MakeSettings, write


def waiting_loop(settings: Settings, source: Path, clock: FakeClock, needed: int) -> TransferLoop:
    """A loop whose one file was refused for want of ``needed`` bytes when nothing was free."""
    write(source / "big.mxf", os.urandom(100))
    loop = TransferLoop(settings, clock=clock, reload=lambda: settings)
    loop._scan()
    clock.advance(settings.file_stable_time_seconds)
    loop._scan()
    loop.board.queued("big.mxf")
    loop.board.copying("big.mxf")
    loop.board.waiting_for_room("big.mxf", needed, 0)
    return loop


def test_room_is_rechecked_at_each_poll(make_settings: MakeSettings, source: Path, clock: FakeClock) -> None:
    settings = make_settings(file_stable_time_seconds=5, file_events=False)
    too_much = 2**62  # more than any filesystem here has free
    loop = waiting_loop(settings, source, clock, too_much)
    loop._recheck_room()
    assert loop.board.ready_files() == [] and loop.board.room_waits() == 1
    fits = waiting_loop(settings, source, clock, 1)  # one byte: the test's filesystem has room for it
    fits._recheck_room()
    assert fits.board.ready_files() == ["big.mxf"] and fits.board.room_waits() == 0


def test_another_destination_ends_the_wait_for_room(
    make_settings: MakeSettings, source: Path, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(file_stable_time_seconds=5, file_events=False)
    loop = waiting_loop(settings, source, clock, 2**62)
    other = tmp_path / "other-nas"
    other.mkdir()
    moved = settings.model_copy(update={"destination_path": other})
    loop._reload = lambda: moved
    loop._reconfigure()
    assert loop.settings.destination_path == other
    assert loop.board.ready_files() == ["big.mxf"] and loop.board.room_waits() == 0
