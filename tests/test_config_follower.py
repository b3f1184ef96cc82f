"""An edited configuration while a watch runs: taken whole or not at all, new paths only once the copies under way
have ended and only onto a source no other run moves, and each change sets off what it must (and nothing else).

Real lock files (``fta.sourcelock``) on a real filesystem; the rest of the loop is a recorder of reactions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.config_follower import ConfigFollower, Reactions
from fta.errors import ConfigError
from fta.settings import Settings
from fta.source_hold import SourceHold
from fta.sourcelock import SourceLock
from tests.conftest import HOLD_THE_SOURCE, MakeSettings, other_process


class Edits:
    """The configuration as the block would read, the copies under way, and what the loop was asked to do."""

    def __init__(self, settings: Settings) -> None:
        self.current: Settings | Exception = settings
        self.under_way = 0
        self.done: list[str] = []
        self.hold = SourceHold()
        assert self.hold.take(settings.source_path, settings.destination_path, once=True, stop=threading.Event())
        self.follower = ConfigFollower(settings, self.read, self.hold, lambda: self.under_way, self.reactions())

    def read(self) -> Settings:
        if isinstance(self.current, Exception):
            raise self.current
        return self.current

    def edit(self, **changes: object) -> Settings:
        assert isinstance(self.current, Settings)
        self.current = self.current.model_copy(update=changes)
        return self.current

    def reactions(self) -> Reactions:
        return Reactions(
            take=lambda settings: self.done.append(f"take {settings.destination_path.name}"),
            rotate_pool=lambda: self.done.append("rotate"),
            set_shared_limit=lambda settings: self.done.append(f"limit {settings.shared_limit}"),
            remove_stale_temps=lambda: self.done.append("stale temps"),
            end_room_waits=lambda: self.done.append("end room waits"),
        )


def held_by_someone(source: Path) -> bool:
    probe = SourceLock(source)
    taken = probe.acquire()
    if taken:
        probe.release()
    return not taken


@pytest.fixture
def edits(make_settings: MakeSettings) -> Iterator[Edits]:
    follower = Edits(make_settings(file_events=False))
    yield follower
    follower.hold.release()


def test_an_unchanged_or_unreadable_configuration_changes_nothing(
    edits: Edits, caplog: pytest.LogCaptureFixture
) -> None:
    before = edits.follower.settings
    assert not edits.follower.follow()
    edits.current = ConfigError("max_concurrent_copies: Input should be greater than 0")
    with caplog.at_level(logging.WARNING, logger="fta.loop"):
        assert not edits.follower.follow()
    assert "the current one stays in force: max_concurrent_copies" in caplog.text
    assert edits.follower.settings is before and edits.done == []


def test_a_copy_limit_or_shared_limit_edit_sets_off_only_its_own_reaction(edits: Edits) -> None:
    edits.edit(max_concurrent_copies=7)
    assert edits.follower.follow()
    assert edits.done == ["take destination", "rotate"]
    edits.done.clear()
    edits.edit(shared_limit_tag="nas", shared_limit=3)
    assert edits.follower.follow()
    assert edits.done == ["take destination", "limit 3"]
    assert edits.follower.settings.max_concurrent_copies == 7


def test_new_paths_wait_for_the_copies_under_way_then_apply(
    edits: Edits, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = tmp_path / "other-nas"
    other.mkdir()
    edits.under_way = 2
    edits.edit(destination_path=other)
    with caplog.at_level(logging.INFO, logger="fta.loop"):
        assert not edits.follower.follow()
        assert not edits.follower.follow()  # still waiting: said once
    assert edits.follower.switch_due and edits.done == []
    assert caplog.text.count("2 copies under way end before the new paths apply") == 1
    edits.under_way = 0
    assert edits.follower.follow()
    assert not edits.follower.switch_due
    assert edits.done == ["take other-nas", "stale temps", "end room waits"]
    assert edits.follower.settings.destination_path == other


def test_an_edit_back_while_copies_wait_ends_the_switch(edits: Edits, tmp_path: Path) -> None:
    first = edits.follower.settings
    edits.under_way = 1
    edits.edit(destination_path=tmp_path)
    assert not edits.follower.follow() and edits.follower.switch_due
    edits.current = first
    assert not edits.follower.follow()
    assert not edits.follower.switch_due  # submissions go on


def test_a_new_source_is_locked_and_the_old_one_let_go(edits: Edits, tmp_path: Path) -> None:
    old = edits.follower.settings.source_path
    new = tmp_path / "new-source"
    new.mkdir()
    edits.edit(source_path=new)
    assert edits.follower.follow()
    assert held_by_someone(new) and not held_by_someone(old)
    assert edits.done == ["take destination", "stale temps"]  # same destination: its room waits stand


def test_a_new_source_another_run_moves_is_refused_once_and_the_old_lock_kept(
    edits: Edits, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = edits.follower.settings.source_path
    busy = tmp_path / "busy-source"
    busy.mkdir()
    with other_process(HOLD_THE_SOURCE, str(busy)):
        edits.edit(source_path=busy)
        with caplog.at_level(logging.WARNING, logger="fta.loop"):
            assert not edits.follower.follow()
            assert not edits.follower.follow()
        assert caplog.text.count("is being moved by another run on this machine (pid ") == 1
        assert edits.follower.settings.source_path == old and edits.done == []
        assert held_by_someone(old)
    assert edits.follower.follow()  # the other run has ended: the edit is taken at the next poll
    assert edits.follower.settings.source_path == busy
