"""The loop's side of waiting for room: one ``statvfs`` per poll lets waiting files back in line (the source
watcher); another destination ends every wait (the configuration follower). No Prefect server: the loop's parts are
called one by one on the fake clock."""

from __future__ import annotations

import os
from pathlib import Path

from flows.transfer_loop import TransferLoop
from fta.settings import Settings
from tests.conftest import FakeClock, MakeSettings, write


def waiting_loop(
    settings: Settings, source: Path, clock: FakeClock, needed: int, edited: list[Settings] | None = None
) -> TransferLoop:
    """A loop whose one file was refused for want of ``needed`` bytes when nothing was free; its configuration
    reads as ``edited[0]`` (as first: ``settings``)."""
    write(source / "big.mxf", os.urandom(100))
    config = edited if edited is not None else [settings]
    loop = TransferLoop(settings, clock=clock, reload=lambda: config[0])
    loop.watcher.scan()
    clock.advance(settings.file_stable_time_seconds)
    loop.watcher.scan()
    loop.board.queued("big.mxf")
    loop.board.copying("big.mxf")
    loop.board.waiting_for_room("big.mxf", needed, 0)
    return loop


def test_room_is_rechecked_at_each_poll(make_settings: MakeSettings, source: Path, clock: FakeClock) -> None:
    settings = make_settings(file_stable_time_seconds=5, file_events=False)
    too_much = 2**62  # more than any filesystem here has free
    loop = waiting_loop(settings, source, clock, too_much)
    loop.watcher.recheck_room()
    assert loop.board.ready_files() == [] and loop.board.room_waits() == 1
    fits = waiting_loop(settings, source, clock, 1)  # one byte: the test's filesystem has room for it
    fits.watcher.recheck_room()
    assert fits.board.ready_files() == ["big.mxf"] and fits.board.room_waits() == 0


def test_another_destination_ends_the_wait_for_room(
    make_settings: MakeSettings, source: Path, tmp_path: Path, clock: FakeClock
) -> None:
    settings = make_settings(file_stable_time_seconds=5, file_events=False)
    edited = [settings]
    loop = waiting_loop(settings, source, clock, 2**62, edited)
    other = tmp_path / "other-nas"
    other.mkdir()
    edited[0] = settings.model_copy(update={"destination_path": other})
    assert loop.follower.follow()
    assert loop.settings.destination_path == other
    assert loop.board.ready_files() == ["big.mxf"] and loop.board.room_waits() == 0
