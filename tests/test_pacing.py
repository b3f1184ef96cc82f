"""Copies are paced to the run history: no submission while Prefect's send queues hold too many records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flows.backlog import MAX_UNSENT, unsent_records
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
    loop._scan()
    clock.advance(5)
    loop._scan()
    runner = FakeRunner()
    assert loop._submit(runner) == 0  # type: ignore[arg-type]
    assert loop._paced and runner.submitted == []
    backlog[0] = MAX_UNSENT
    assert loop._submit(runner) == 2  # type: ignore[arg-type]  # two per copy slot: one running, one queued
    assert not loop._paced
    assert runner.submitted == ["clip0.mxf", "clip1.mxf"]


def test_unsent_records_counts_prefect_send_queues() -> None:
    """The pinned Prefect keeps its send queues where ``unsent_records`` looks (it says 0 if they move)."""
    from prefect._internal.concurrency.services import _QueueServiceBase
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    registry: Any = _QueueServiceBase
    logs, events = APILogWorker(), EventsWorker.__new__(EventsWorker)
    _QueueServiceBase.__init__(events)  # the queue only: no client, no thread started
    before = unsent_records()
    registry._instances[-1], registry._instances[-2] = logs, events
    try:
        logs._queue.put({"message": "queued, not sent"})
        events._queue.put(None)
        events._queue.put(None)
        assert unsent_records() == before + 3
    finally:
        del registry._instances[-1], registry._instances[-2]
    assert unsent_records() == before
