"""Ready files to task runs and back: how many are queued, when the pool is replaced, what each end counts as, and a
stop that waits for the copies. A recording pool stands in for Prefect's thread pool; states are Prefect's own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from prefect import State
from prefect.states import Cancelled, Completed, Crashed, Failed

from flows import copy_dispatcher
from flows.copy_dispatcher import FAILED_NAMES_KEPT, CopyDispatcher, LoopSummary
from fta.board import FileStatus, TransferBoard
from fta.copier import Copier
from fta.settings import Settings
from fta.stability import FileSig, StabilityTracker
from tasks.runtime import TransferRuntime
from tests.conftest import FakeClock, MakeSettings


class FakeFuture:
    """A task run that ends when the test says so (``end``), calling its done-callbacks as Prefect does."""

    def __init__(self) -> None:
        self.state: State[Any] | None = None
        self._callbacks: list[Callable[[FakeFuture], None]] = []
        self.waited = False

    def add_done_callback(self, callback: Callable[[FakeFuture], None]) -> None:
        self._callbacks.append(callback)

    def wait(self, timeout: float | None = None) -> None:
        self.waited = True

    def end(self, state: State[Any]) -> None:
        self.state = state
        for callback in self._callbacks:
            callback(self)


class FakePool:
    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.submitted: dict[str, FakeFuture] = {}
        self.closed = False
        self.refuse: str | None = None  # a file whose submission the API refuses

    def submit(self, task: Any, parameters: dict[str, Any]) -> FakeFuture:
        if parameters["rel"] == self.refuse:
            raise RuntimeError("503 Service Unavailable")
        future = self.submitted[parameters["rel"]] = FakeFuture()
        return future


class Setup:
    def __init__(self, settings: Settings, clock: FakeClock, files: int) -> None:
        self.clock = clock
        self.board = TransferBoard(StabilityTracker(settings.file_stable_time_seconds, clock), clock=clock)
        self.runtime = TransferRuntime(settings, self.board, Copier(settings, clock=clock), threading.Event())
        self.summary = LoopSummary()
        self.pools: list[FakePool] = []
        self.dispatcher = CopyDispatcher(
            self.runtime, self.summary, unsent=lambda: 0, start_pool=self.start, close_pool=self.close
        )
        snapshot = {f"f{n}.mxf": FileSig(100, 1, n + 1) for n in range(files)}
        self.board.observe(snapshot)
        clock.advance(settings.file_stable_time_seconds)
        self.board.observe(snapshot)

    def start(self, workers: int) -> FakePool:
        self.pools.append(FakePool(workers))
        return self.pools[-1]

    def close(self, pool: FakePool) -> None:
        pool.closed = True

    def end(self, rel: str, state: State[Any], pool: int = -1) -> None:
        """The task run of ``rel`` ends; the task left the board as a real copy would have."""
        if state.is_completed():
            self.board.completed(rel, None)
        elif state.is_failed():
            self.board.failed(rel, state.message or "failed")
        self.pools[pool].submitted[rel].end(state)


@pytest.fixture
def setup(make_settings: MakeSettings, clock: FakeClock) -> Setup:
    return Setup(make_settings(file_stable_time_seconds=5, max_concurrent_copies=2), clock, files=6)


def test_twice_the_copy_limit_is_queued_and_an_ended_copy_wakes_the_loop(setup: Setup) -> None:
    assert setup.dispatcher.dispatch() == 4
    assert list(setup.pools[0].submitted) == ["f0.mxf", "f1.mxf", "f2.mxf", "f3.mxf"]
    assert setup.board.status_of("f0.mxf") == FileStatus.IN_QUEUE
    assert setup.dispatcher.dispatch() == 0  # full
    setup.runtime.wake.clear()
    setup.end("f0.mxf", Completed())
    assert setup.runtime.wake.is_set()
    setup.dispatcher.collect()
    assert setup.summary.completed == 1 and setup.dispatcher.under_way() == 3
    assert setup.dispatcher.dispatch() == 1
    assert "f4.mxf" in setup.pools[0].submitted and len(setup.pools) == 1


def test_new_paths_due_hold_every_submission(setup: Setup) -> None:
    assert setup.dispatcher.dispatch(hold=True) == 0
    assert setup.pools[0].submitted == {}


def test_the_pool_is_replaced_after_its_rotation_count_once_its_copies_have_ended(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(copy_dispatcher, "RUNNER_ROTATION", 3)
    assert setup.dispatcher.dispatch() == 4  # a batch is never cut short: the count is reached within it
    for rel in ["f0.mxf", "f1.mxf", "f2.mxf"]:
        setup.end(rel, Completed())
    setup.dispatcher.collect()
    assert setup.dispatcher.dispatch() == 0 and len(setup.pools) == 1  # one copy still runs in the old pool
    setup.end("f3.mxf", Completed())
    setup.dispatcher.collect()
    assert setup.dispatcher.dispatch() == 2
    assert len(setup.pools) == 2 and setup.pools[0].closed and not setup.pools[1].closed
    assert list(setup.pools[1].submitted) == ["f4.mxf", "f5.mxf"]


def test_another_copy_limit_gets_a_new_pool_of_that_size(setup: Setup, make_settings: MakeSettings) -> None:
    setup.dispatcher.dispatch()
    setup.runtime.settings = make_settings(file_stable_time_seconds=5, max_concurrent_copies=3)
    setup.dispatcher.rotate_soon()
    assert setup.dispatcher.dispatch() == 0  # the copies under way end first
    for rel in list(setup.pools[0].submitted):
        setup.end(rel, Completed())
    setup.dispatcher.collect()
    assert setup.dispatcher.dispatch() == 2  # the last two files
    assert [pool.workers for pool in setup.pools] == [2, 3] and setup.pools[0].closed


def test_each_end_is_counted_for_what_it_was(make_settings: MakeSettings, clock: FakeClock) -> None:
    setup = Setup(make_settings(file_stable_time_seconds=5, max_concurrent_copies=3), clock, files=5)
    setup.dispatcher.dispatch()
    setup.end("f0.mxf", Completed())
    setup.end("f1.mxf", Failed(message="not a folder"))
    setup.board.back_to_waiting("f2.mxf", restart_timer=False)  # what copy_file does before it ends Deferred
    setup.end("f2.mxf", Cancelled(name="Deferred"))
    setup.end("f3.mxf", Crashed(message="the thread died"))  # it never said what became of its file
    setup.dispatcher.collect()
    summary = setup.summary
    assert (summary.completed, summary.failed, summary.deferred) == (1, 1, 1)
    assert summary.failed_files == ["f1.mxf"]
    assert setup.board.status_of("f3.mxf") == FileStatus.READY  # still in the source: it is tried again
    assert setup.dispatcher.under_way() == 1


def test_the_summary_names_only_the_first_failures(setup: Setup) -> None:
    for n in range(FAILED_NAMES_KEPT + 5):
        setup.dispatcher.settle(f"x{n}.mxf", Failed())
    assert setup.summary.failed == FAILED_NAMES_KEPT + 5 and len(setup.summary.failed_files) == FAILED_NAMES_KEPT


def test_a_refused_submission_puts_its_file_back_for_the_next_cycle(setup: Setup) -> None:
    setup.dispatcher.dispatch(hold=True)  # the first pool
    setup.pools[0].refuse = "f1.mxf"
    assert setup.dispatcher.dispatch() == 1  # f0 queued, f1 refused: the rest wait for the next cycle
    assert setup.board.status_of("f1.mxf") == FileStatus.READY
    assert list(setup.pools[0].submitted) == ["f0.mxf"]


def test_a_stop_signals_the_copies_waits_for_them_and_closes_the_pool(setup: Setup) -> None:
    setup.dispatcher.dispatch()
    futures = list(setup.pools[0].submitted.values())
    setup.end("f0.mxf", Completed())
    setup.dispatcher.drain()
    assert setup.runtime.stop.is_set()
    assert all(future.waited for future in futures[1:])
    assert setup.pools[0].closed and setup.summary.completed == 1
