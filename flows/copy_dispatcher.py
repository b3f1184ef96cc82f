"""Hands ready files to ``copy_file`` task runs in a thread pool, and settles each run's end into the summary.

Submission never waits for a running copy: up to ``2 x max_concurrent_copies`` task runs are queued in the pool
(the rest wait on the board as Ready), and a copy that ends wakes the loop (its done-callback) to queue the next at
once. A file whose last task run is not settled yet is never submitted again: never two runs for one file.

Memory stays flat over days: futures are dropped as soon as they are settled, and the pool is replaced every
``RUNNER_ROTATION`` submissions (Prefect's thread pool keeps a cancel event per task it ever ran), or when the copy
limit changes. Submissions pause until the old pool's copies have ended, so closing it never cancels a queued
copy. When Prefect's send queues hold more than ``MAX_UNSENT`` run-history records, or the server's record of the
copies is behind (``flows.backlog.RecordingLag``: copies ended and not recorded, events not yet stored), submissions
pause too (paced) until the history catches up: the history of a burst of small files must not run away from the copies.

A failed submission is logged and its file goes back to waiting for the next cycle: the Prefect API being slow or
down never ends a run.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from prefect.exceptions import ExternalSignal

from flows.backlog import MAX_UNSENT, RecordingLag
from flows.prefect_internals import close_task_runner, start_task_runner
from fta.board import IN_FLIGHT
from fta.settings import Settings
from tasks.copy_file import copy_file
from tasks.runtime import TransferRuntime

log = logging.getLogger("fta.loop")

RUNNER_ROTATION = 5000
PACE_SECONDS = 0.05  # how often a paced loop looks again whether the run history has caught up
FAILED_NAMES_KEPT = 100  # failed files named in a run's summary (a watch runs for months: the count says the rest)
DEFERRED_STATES = ("Deferred", "AwaitingRoom")


@dataclass
class LoopSummary:
    """What a run did; ``failed_files`` names the first ``FAILED_NAMES_KEPT`` failures, ``failed`` counts all."""

    completed: int = 0
    failed: int = 0
    deferred: int = 0
    failed_files: list[str] = field(default_factory=list)
    cycles: int = 0


class CopyRun(Protocol):
    """What the dispatcher reads of a submitted task run (Prefect's ``PrefectFuture``)."""

    @property
    def state(self) -> Any: ...

    def add_done_callback(self, fn: Callable[[Any], None]) -> None: ...

    def wait(self, timeout: float | None = None) -> None: ...


class TaskPool(Protocol):
    """The one thing the dispatcher asks of a task runner (Prefect's ``ThreadPoolTaskRunner``)."""

    def submit(self, task: Any, parameters: dict[str, Any]) -> CopyRun: ...


class CopyDispatcher:
    def __init__(
        self,
        runtime: TransferRuntime,
        summary: LoopSummary,
        unsent: Callable[[], int],
        start_pool: Callable[[int], TaskPool] = start_task_runner,
        close_pool: Callable[[Any], None] = close_task_runner,
        unrecorded: RecordingLag | None = None,
    ) -> None:
        """``unsent``: records not yet sent; ``unrecorded``: copies ended and not yet recorded by the server."""
        self.runtime = runtime
        self.unrecorded = unrecorded if unrecorded is not None else RecordingLag(None)
        self.summary = summary
        self.paced = False
        self.rotate_due = False  # the copy limit changed: a new pool once the copies under way have ended
        self._unsent = unsent
        self._start_pool = start_pool
        self._close_pool = close_pool
        self._pool: TaskPool | None = None
        self._submitted = 0  # to the current pool
        self._futures: dict[str, CopyRun] = {}
        self._done: list[tuple[str, CopyRun]] = []
        self._done_lock = threading.Lock()
        self.configure(runtime.settings)

    def configure(self, settings: Settings) -> None:
        """Take (new) settings: the task's retries and its shared-limit tag (copies under way keep theirs).

        The shared-limit tag is a copy's only tag: Prefect asks the server for a concurrency slot for every tag of
        a task run, limit or not, and on SQLite each ask is a write transaction (1,000 no-op task runs: 10-14 per
        second with one tag, 48-99 without, 7 times the server's CPU). The agent's tag is on the flow run."""
        self._task = copy_file.with_options(
            retries=settings.max_retry_attempts,
            retry_delay_seconds=settings.retry_delay_seconds,
            tags=[settings.shared_limit_tag] if settings.shared_limit_tag else [],
        )

    def under_way(self) -> int:
        """Task runs submitted and not settled yet."""
        return len(self._futures)

    def rotate_soon(self) -> None:
        self.rotate_due = True

    def dispatch(self, hold: bool = False) -> int:
        """Submit what is ready (none while ``hold``: new paths wait); a due new pool comes first. How many."""
        rotate = self.rotate_due or self._submitted >= RUNNER_ROTATION
        if self._pool is None or (rotate and not self._futures):
            self._rotate()
        if hold or self.rotate_due or self._submitted >= RUNNER_ROTATION:
            return 0  # the copies under way end first
        assert self._pool is not None
        count = self.submit(self._pool)
        self._submitted += count
        return count

    def _rotate(self) -> None:
        """A fresh pool (the old one has no task left: closing it cancels nothing)."""
        if self._pool is not None:
            self.drain(stop_copies=False)
        self._pool = self._start_pool(self.runtime.settings.max_concurrent_copies)
        self._submitted, self.rotate_due = 0, False

    def submit(self, pool: TaskPool) -> int:
        """Queue ready files in ``pool`` up to twice the copy limit, unless the run history is behind (paced)."""
        board = self.runtime.board
        capacity = 2 * self.runtime.settings.max_concurrent_copies - len(self._futures)
        # the first Ready files in path order, as many as may be queued (those still in flight are skipped)
        first = board.ready_files(limit=max(1, capacity) + len(self._futures))
        ready = [rel for rel in first if rel not in self._futures]
        self.paced = bool(ready) and capacity > 0 and (self._unsent() > MAX_UNSENT or self.unrecorded.behind())
        if self.paced:  # the run history is behind: let Prefect's sender threads and the server catch up first
            log.debug(
                "copies paced: the run history is behind (%d unsent, %d unrecorded)", self._unsent(), self.unrecorded()
            )
            return 0
        count = 0
        for rel in ready[: max(0, capacity)]:
            board.queued(rel)
            try:
                future = pool.submit(self._task, {"rel": rel, "runtime": self.runtime})
            except Exception as exc:
                log.warning("could not submit %s (%s); it is tried again in the next cycle", rel, exc)
                board.back_to_waiting(rel, restart_timer=False, reason=str(exc))
                break
            self._futures[rel] = future
            future.add_done_callback(functools.partial(self._on_done, rel))
            count += 1
        return count

    def pause(self, seconds: float) -> float:
        """How long the loop may wait: a paced loop looks again soon, whatever else it waits for."""
        return min(seconds, PACE_SECONDS) if self.paced else seconds

    def _on_done(self, rel: str, future: CopyRun) -> None:
        """In the copy's thread: note it for the loop's thread, which settles it, and wake the loop."""
        with self._done_lock:
            self._done.append((rel, future))
        self.runtime.wake.set()

    def collect(self) -> None:
        """Settle the copies that ended since the last look."""
        with self._done_lock:
            done, self._done = self._done, []
        if done:
            self.unrecorded.ended(len(done))
        for rel, future in done:
            if self._futures.get(rel) is future:
                del self._futures[rel]
            try:
                future.wait(0)
                state = future.state
            except Exception as exc:
                log.warning("could not read the end of the copy of %s: %r", rel, exc, exc_info=True)
                state = None
            self.settle(rel, state)

    def settle(self, rel: str, state: Any) -> None:
        """Count the task run's end; a file it left in flight goes back to waiting (it is still in the source)."""
        board, summary = self.runtime.board, self.summary
        status = board.status_of(rel)
        if state is not None and state.is_completed():
            summary.completed += 1
        elif state is not None and state.is_failed() and status is None:
            summary.failed += 1  # the task marked it Failed on its last attempt
            if len(summary.failed_files) < FAILED_NAMES_KEPT:
                summary.failed_files.append(rel)
        elif state is not None and state.is_cancelled() and state.name in DEFERRED_STATES:
            summary.deferred += 1
        if status in IN_FLIGHT:
            # The task run ended without saying what became of the file (crashed, API trouble): it is still in
            # the source, so it waits for the next cycle.
            log.warning("copy of %s ended as %s; it is tried again", rel, getattr(state, "name", "unknown"))
            board.back_to_waiting(rel, restart_timer=False, reason=getattr(state, "message", None))

    def drain(self, stop_copies: bool = True) -> None:
        """Wait for the copies to end (on stop they end between two chunks and remove their temp files), close
        the pool and settle what ended.

        A second Ctrl-C or SIGTERM while waiting does not cut this short: a half-finished clean-up is what the
        clean-up is there to prevent. The first signal is re-raised by the caller.
        """
        if stop_copies:
            self.runtime.stop.set()
        pending = list(self._futures.values()) if stop_copies else []
        while pending:
            try:
                pending[-1].wait()
                pending.pop()
            except (KeyboardInterrupt, ExternalSignal):
                log.warning("still stopping: waiting for %d copy(ies) to clean up", len(pending))
            except Exception as exc:
                log.debug("while stopping: %s", exc)
                pending.pop()
        pool, self._pool = self._pool, None
        while pool is not None:
            try:
                self._close_pool(pool)
                break
            except (KeyboardInterrupt, ExternalSignal):
                continue
            except Exception as exc:
                log.debug("closing the task runner: %s", exc)
                break
        self.collect()
