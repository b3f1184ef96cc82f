"""Copies are paced to the run history: no submission while Prefect's send queues hold too many records."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytest

from flows import prefect_internals
from flows.backlog import MAX_UNSENT, unsent_records
from flows.copy_dispatcher import PACE_SECONDS
from flows.transfer_loop import TransferLoop
from tests.conftest import FakeClock, MakeSettings, write


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


def test_no_copy_is_submitted_while_the_history_is_behind(
    make_settings: MakeSettings, source: Path, clock: FakeClock
) -> None:
    for n in range(3):
        write(source / f"clip{n}.mxf", os.urandom(100))
    settings = make_settings(file_stable_time_seconds=5, max_concurrent_copies=1)
    backlog = [MAX_UNSENT + 1]
    loop = TransferLoop(settings, clock=clock, unsent=lambda: backlog[0])
    loop.watcher.scan()
    clock.advance(5)
    loop.watcher.scan()
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
