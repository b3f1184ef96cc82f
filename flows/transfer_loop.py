"""The transfer loop both flows run: scan -> settle -> guard -> submit ``copy_file`` per ready file.

Each cycle (every ``polling_interval_seconds``, and with file events also soon after a change and when a file's stable
time is up: ``fta.scan_schedule``): forget vanished files, discover new ones, update stability, let the files waiting
for room back in line when the destination has room for them (one ``statvfs`` per poll, only while some wait), run
the guard when the destination is in doubt, and submit a ``copy_file`` task for each ready file. Submission never waits
for a running copy: up to ``2 x max_concurrent_copies`` task runs are queued in the thread pool (the rest wait on the
board as Ready) and a copy that ends wakes the loop to queue the next at once.

Memory stays flat over days: task futures are dropped as soon as they end, the flow run context's result map is
emptied every cycle (these flows never pass one task's result to another, so Prefect's result-based dependency
tracking has nothing to lose), and the thread pool is replaced every ``RUNNER_ROTATION`` submissions (Prefect's
thread pool keeps a cancel event per task it ever ran): submissions pause until the old pool's copies have ended,
so closing it never cancels a queued copy.

Nothing here may end a watch run because the Prefect API is slow or down: a failed submission, artifact or event is
logged, and the file is simply still in the source for the next cycle.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefect.artifacts import create_table_artifact
from prefect.context import FlowRunContext
from prefect.exceptions import ExternalSignal
from prefect.futures import PrefectFuture
from prefect.task_runners import ThreadPoolTaskRunner

from flows.api_state import STATUS_KEY, prune_versions
from flows.backlog import MAX_UNSENT, unsent_records
from flows.config import copy_io
from flows.housekeeping import ensure_shared_limit, remove_stale_temp_files, serve_metrics
from flows.prefect_internals import close_task_runner, release_run_results, start_task_runner
from flows.status_publisher import StatusPublisher
from fta import metrics
from fta.board import IN_FLIGHT, TransferBoard
from fta.copier import Copier
from fta.events import SourceEvents
from fta.logsetup import configure_logging
from fta.scan_schedule import ScanSchedule
from fta.scanner import scan_source
from fta.scope import WHOLE_SOURCE, Scope
from fta.settings import Settings
from fta.sourcelock import SourceBusy, SourceLock
from fta.stability import ReadinessCheck, StabilityTracker
from fta.storage import free_bytes
from tasks.copy_file import copy_file
from tasks.guard import check_destination, wait_for_destination
from tasks.runtime import TransferRuntime

log = logging.getLogger("fta.loop")

RUNNER_ROTATION = 5000
EVENTS_RETRY_SECONDS = 60.0
READY_NAMES_LOGGED = 5
PACE_SECONDS = 0.05  # how often a paced loop looks again whether the run history has caught up
SOURCE_LOCK_RETRY_SECONDS = 1.0  # how often a watch kept out of its source by another run asks again
PRUNE_EVERY = 100  # status publications between two prunings of its old versions (the first one prunes too)
FAILED_NAMES_KEPT = 100  # failed files named in a run's summary (a watch runs for months: the count says the rest)
DEFERRED_STATES = ("Deferred", "AwaitingRoom")

_active_loops: set[TransferLoop] = set()
_active_lock = threading.Lock()
_stop_pending = threading.Event()  # a stop asked before any loop had started: the next loop to start honours it


def request_stop() -> None:
    """Ask every transfer loop in this process to stop cleanly (SIGTERM, Ctrl-C, tests).

    A stop that comes while no loop runs yet (SIGTERM while the flow run is starting) is kept for the next loop
    to start, which then stops at once: it is never lost."""
    with _active_lock:
        if not _active_loops:
            _stop_pending.set()
        for loop in _active_loops:
            loop.stop.set()
            loop.runtime.wake.set()  # it may be waiting for its next scan, up to a polling interval away


@dataclass
class LoopSummary:
    """What a run did; ``failed_files`` names the first ``FAILED_NAMES_KEPT`` failures, ``failed`` counts all."""

    completed: int = 0
    failed: int = 0
    deferred: int = 0
    failed_files: list[str] = field(default_factory=list)
    cycles: int = 0


class TransferLoop:
    def __init__(
        self,
        settings: Settings,
        once: bool = False,
        clock: Callable[[], float] = time.monotonic,
        max_cycles: int | None = None,
        reload: Callable[[], Settings] | None = None,
        unsent: Callable[[], int] = unsent_records,
        scope: Scope = WHOLE_SOURCE,
    ) -> None:
        self.once = once
        self.scope = scope  # what a run started through the API narrowed the work to (fta.scope)
        self.max_cycles = max_cycles
        self._clock = clock
        self._reload = reload
        self.stop = threading.Event()
        tracker = StabilityTracker(settings.file_stable_time_seconds, clock, lock_check=lambda rel: self.readiness(rel))
        self.board = TransferBoard(tracker, clock=clock)
        self.runtime = TransferRuntime(settings, self.board, Copier(settings, clock=clock, io=copy_io()), self.stop)
        self.summary = LoopSummary()
        self._futures: dict[str, PrefectFuture[Any]] = {}
        self._done: list[tuple[str, PrefectFuture[Any]]] = []
        self._done_lock = threading.Lock()
        self._sweep: set[str] | None = None  # once: the files present at the first scan
        self._probed_ok_at = float("-inf")
        self._published_version = -1
        self._published_at = float("-inf")
        self._rotate_due = False
        self._status = StatusPublisher(status_artifact_writer())
        self._unsent = unsent
        self._paced = False
        self._schedule = ScanSchedule(settings.polling_interval_seconds, clock)
        self._events: SourceEvents | None = None
        self._events_retry_at = float("-inf")
        self._source_lock: SourceLock | None = None
        self._switch_due = False  # new paths wait for the copies under way to end
        self._refused: Settings | None = None  # the last edit refused because its source was taken
        self._configure(settings)

    def _configure(self, settings: Settings) -> None:
        """Take (new) settings: everything built from them is rebuilt; copies under way finish as they began."""
        self.settings = settings
        self._schedule.polling_interval = settings.polling_interval_seconds
        self._schedule.stable_seconds = settings.file_stable_time_seconds
        tracker = self.board.tracker
        tracker.stable_seconds = settings.file_stable_time_seconds
        self.readiness = ReadinessCheck(
            settings.source_path,
            lambda rel: seen.sig if (seen := tracker.get(rel)) is not None else None,
            check_writers=settings.check_open_writers,
            use_lock=settings.stability_lock,
        )
        self.runtime.settings = settings
        self.runtime.copier = Copier(settings, clock=self._clock, io=copy_io())
        self._task = copy_file.with_options(
            retries=settings.max_retry_attempts,
            retry_delay_seconds=settings.retry_delay_seconds,
            tags=[settings.shared_limit_tag] if settings.shared_limit_tag else [],
        )

    def _reconfigure(self) -> None:
        """Pick up an edited configuration (the TransferConfig block) without a restart."""
        if self._reload is None:
            return
        try:
            fresh = self._reload()
        except Exception as exc:  # an invalid edit or an unreachable API keeps the settings in force
            log.warning("configuration not reloaded, the current one stays in force: %s", exc)
            return
        if fresh == self.settings:
            self._switch_due = False
            return
        moved_source = fresh.source_path != self.settings.source_path
        if (moved_source or fresh.destination_path != self.settings.destination_path) and self._futures:
            # Copies under way (and their retries) belong to the old paths and the old source's lock: they end
            # first, and no new copy is submitted meanwhile.
            if not self._switch_due:
                log.info(
                    "configuration changed; %d copies under way end before the new paths apply", len(self._futures)
                )
            self._switch_due = True
            return
        self._switch_due = False
        moved = moved_source or fresh.destination_path != self.settings.destination_path
        lock = SourceLock(fresh.source_path, fresh.destination_path, replacing=self._source_lock) if moved else None
        if lock is not None and not lock.acquire():
            if fresh != self._refused:  # once per edit, not at every poll
                log.warning(
                    "configuration not reloaded, the current one stays in force: %s is being moved by another run"
                    " on this machine (%s)",
                    fresh.source_path,
                    lock.holder(),
                )
                self._refused = fresh
            return
        self._refused = None
        changed = [name for name in Settings.model_fields if getattr(fresh, name) != getattr(self.settings, name)]
        log.info("configuration changed: %s", ", ".join(changed))
        old = self.settings
        if lock is not None:
            if self._source_lock is not None:
                self._source_lock.release()
            self._source_lock = lock
        self._configure(fresh)
        configure_logging(fresh, console=False)
        if fresh.max_concurrent_copies != old.max_concurrent_copies:
            self._rotate_due = True
        if fresh.shared_limit != old.shared_limit or fresh.shared_limit_tag != old.shared_limit_tag:
            ensure_shared_limit(self.settings)
        if fresh.destination_path != old.destination_path or fresh.source_path != old.source_path:
            self._remove_stale_temp_files()
        if fresh.destination_path != old.destination_path:
            self.board.end_room_waits()

    # -- the loop -------------------------------------------------------------------------------------------

    def run(self) -> LoopSummary:
        with _active_lock:
            _active_loops.add(self)
            if _stop_pending.is_set():
                _stop_pending.clear()
                self.stop.set()
        try:
            if self._take_source():  # refused or stopped while waiting: nothing was touched, nothing is published
                self._run()
        finally:
            if self._source_lock is not None:
                self._source_lock.release()
                self._source_lock = None
            with _active_lock:
                _active_loops.discard(self)
        return self.summary

    def _run(self) -> None:
        log.info(
            "agent started: %s -> %s (stable after %g s, scan every %g s, %d copies at once)",
            self.settings.source_path,
            self.settings.destination_path,
            self.settings.file_stable_time_seconds,
            self.settings.polling_interval_seconds,
            self.settings.max_concurrent_copies,
        )
        runner: ThreadPoolTaskRunner[Any] | None = None
        submitted = 0
        try:
            serve_metrics(self.settings)
            ensure_shared_limit(self.settings)
            self._remove_stale_temp_files()
            while not self.stop.is_set():
                self._scan_when_due()
                self._collect()
                if not self._guard():
                    break
                rotate = self._rotate_due or submitted >= RUNNER_ROTATION
                if runner is None or (rotate and not self._futures):
                    runner = self._rotate(runner)
                    submitted, self._rotate_due = 0, False
                if not (self._rotate_due or self._switch_due or submitted >= RUNNER_ROTATION):
                    submitted += self._submit(runner)  # a due rotation or switch of paths lets copies end first
                self._publish()
                self._release_results()
                if self._finished():
                    break
                pause = self._schedule.wait_seconds()
                self.runtime.wake.wait(min(pause, PACE_SECONDS) if self._paced else pause)
                self.runtime.wake.clear()
        finally:
            self.stop.set()  # copies still running stop between chunks and remove their temp files
            if self._events is not None:
                self._events.stop()
            self._drain(runner)
            self._publish(force=True)
            if not self._status.close():
                log.warning("the last status artifact was not published: the Prefect API is slow or down")

    def _take_source(self) -> bool:
        """This machine's one loop for the source (``fta.sourcelock``); False when stopped while waiting for it.

        A sweep (``transfer-once``) kept out ends at once with ``SourceBusy``: the run holding the source moves the
        files. A watch waits for the other run to end (a stopping predecessor), asking again every second.
        """
        lock = SourceLock(self.settings.source_path, self.settings.destination_path)
        waiting = False
        while not lock.acquire():
            why = f"{self.settings.source_path} is being moved by another run on this machine ({lock.holder()})"
            if self.once:
                raise SourceBusy(f"{why}; nothing was done: that run moves these files")
            if not waiting:
                log.warning("%s; waiting for it to end", why)
                waiting = True
            if self.stop.wait(SOURCE_LOCK_RETRY_SECONDS):
                return False
        if waiting:
            log.info("the other run has ended; this one moves %s now", self.settings.source_path)
        self._source_lock = lock
        return True

    def _finished(self) -> bool:
        if self.max_cycles is not None and self.summary.cycles >= self.max_cycles and not self._futures:
            return True
        if not self.once or self._sweep is None:
            return False
        left = [
            rel for rel in self._sweep if self.board.status_of(rel) is not None and not self._empty_and_settled(rel)
        ]
        return not left and not self._futures

    def _empty_and_settled(self, rel: str) -> bool:
        """A zero-byte file never becomes ready; once it has stayed empty for the stable time a sweep leaves it."""
        seen = self.board.tracker.get(rel)
        return (
            seen is not None
            and seen.sig.size == 0
            and self._clock() - seen.unchanged_since >= self.settings.file_stable_time_seconds
        )

    def _scan_when_due(self) -> None:
        """Every polling interval; with file events also soon after a change and when a stable time is up."""
        polled = self._schedule.poll_due()
        if not polled and not self._schedule.extra_due():
            return
        started = self._schedule.begin()
        if polled:
            self._reconfigure()
            self._ensure_events()
        self._scan()
        if polled:
            self._recheck_room()
        self._schedule.end(started, polled, self.board.next_stable_deadline())
        if polled:
            self.summary.cycles += 1

    def _ensure_events(self) -> None:
        """File events on when wanted (started again, at most once a minute, after they stopped), off when not."""
        events, settings = self._events, self.settings
        unwanted = not settings.file_events or events is None or events.root != settings.source_path
        if events is not None and (unwanted or not events.active):
            events.stop()
            self._events = None
        if settings.file_events and self._events is None and self._clock() >= self._events_retry_at:
            candidate = SourceEvents(settings.source_path, self._on_file_event)
            if candidate.start():
                self._events = candidate
            else:
                self._events_retry_at = self._clock() + max(EVENTS_RETRY_SECONDS, settings.polling_interval_seconds)
        self._schedule.events = self._events is not None

    def _on_file_event(self) -> None:
        self._schedule.changed()
        self.runtime.wake.set()

    def _scan(self) -> None:
        try:
            snapshot = scan_source(self.settings.source_path, self.settings.exclude, self.settings.destination_path)
        except OSError as exc:
            log.error("cannot scan the source %s: %s", self.settings.source_path, exc)
            if self.once:
                raise
            return
        snapshot = {rel: sig for rel, sig in snapshot.items() if self.scope.covers(rel)}
        if self._sweep is None and self.once:
            self._sweep = set(snapshot)
            log.info("one sweep of %d file(s)", len(self._sweep))
        if self._sweep is not None:
            snapshot = {rel: sig for rel, sig in snapshot.items() if rel in self._sweep}
        self.readiness.refresh()
        ready = self.board.observe(snapshot)
        if ready:  # one line per scan, not per file: each line is also a record in the run's history
            shown = ", ".join(ready[:READY_NAMES_LOGGED])
            more = f" and {len(ready) - READY_NAMES_LOGGED} more" if len(ready) > READY_NAMES_LOGGED else ""
            log.info("%s ready: %s%s", "1 file" if len(ready) == 1 else f"{len(ready)} files", shown, more)

    def _recheck_room(self) -> None:
        """Files waiting for room go back in line once the destination has room for them (``release_room``)."""
        if not self.board.room_waits():
            return
        try:
            free = free_bytes(self.settings.destination_path)
        except OSError as exc:  # the destination itself is in trouble: the next copy or the guard says so
            log.debug("free space of the destination not known: %s", exc)
            return
        released = self.board.release_room(free, self.settings.global_retry_delay_seconds)
        if released:
            shown = ", ".join(released[:READY_NAMES_LOGGED])
            more = f" and {len(released) - READY_NAMES_LOGGED} more" if len(released) > READY_NAMES_LOGGED else ""
            log.info("room at the destination (%d bytes free) for %s%s", free, shown, more)

    def _guard(self) -> bool:
        """Hold the run while the destination is unavailable; False when the agent stops meanwhile."""
        trouble = self.runtime.take_unavailable()
        if trouble is None and not self.board.ready_files():
            return True
        if trouble is None and self._clock() - self._probed_ok_at < self.settings.polling_interval_seconds:
            return True  # checked recently; a copy that finds the destination gone says so itself
        probe = check_destination(self.settings)
        if probe.ok:
            self._probed_ok_at = self._clock()
            return True
        reason = probe.reason or (str(trouble) if trouble else "destination unavailable")
        self._publish(force=True)
        try:
            return bool(wait_for_destination(self.settings, reason, self.stop))
        except Exception as exc:  # the guard's own task run could not be recorded: wait here instead
            log.warning("guard task failed (%s); waiting in the flow", exc)
            return not self.stop.wait(self.settings.global_retry_delay_seconds)

    def _rotate(self, old: ThreadPoolTaskRunner[Any] | None) -> ThreadPoolTaskRunner[Any]:
        """A fresh thread pool (the old one has no task left: closing it cancels nothing)."""
        if old is not None:
            self._drain(old, stop_copies=False)
        return start_task_runner(self.settings.max_concurrent_copies)

    def _submit(self, runner: ThreadPoolTaskRunner[Any]) -> int:
        capacity = 2 * self.settings.max_concurrent_copies - len(self._futures)
        count = 0
        # A file whose previous task run has not been settled yet waits: never two runs for one file.
        ready = [rel for rel in self.board.ready_files() if rel not in self._futures]
        self._paced = bool(ready) and capacity > 0 and self._unsent() > MAX_UNSENT
        if self._paced:  # the run history is behind: let Prefect's sender threads catch up first
            log.debug("copies paced: more than %d run-history records not yet sent", MAX_UNSENT)
            return 0
        for rel in ready[: max(0, capacity)]:
            self.board.queued(rel)
            try:
                future = runner.submit(self._task, {"rel": rel, "runtime": self.runtime})
            except Exception as exc:
                log.warning("could not submit %s (%s); it is tried again in the next cycle", rel, exc)
                self.board.back_to_waiting(rel, restart_timer=False, reason=str(exc))
                break
            self._futures[rel] = future
            future.add_done_callback(functools.partial(self._on_done, rel))
            count += 1
        return count

    def _on_done(self, rel: str, future: PrefectFuture[Any]) -> None:
        with self._done_lock:
            self._done.append((rel, future))
        self.runtime.wake.set()

    def _collect(self) -> None:
        """Settle the copies that ended since the last look."""
        with self._done_lock:
            done, self._done = self._done, []
        for rel, future in done:
            if self._futures.get(rel) is future:
                del self._futures[rel]
            try:
                future.wait(0)
                state = future.state
            except Exception as exc:
                log.warning("could not read the end of the copy of %s: %r", rel, exc, exc_info=True)
                state = None
            self._settle(rel, state)

    def _settle(self, rel: str, state: Any) -> None:
        status = self.board.status_of(rel)
        if state is not None and state.is_completed():
            self.summary.completed += 1
        elif state is not None and state.is_failed() and status is None:
            self.summary.failed += 1  # the task marked it Failed on its last attempt
            if len(self.summary.failed_files) < FAILED_NAMES_KEPT:
                self.summary.failed_files.append(rel)
        elif state is not None and state.is_cancelled() and state.name in DEFERRED_STATES:
            self.summary.deferred += 1
        if status in IN_FLIGHT:
            # The task run ended without saying what became of the file (crashed, API trouble): it is still in
            # the source, so it waits for the next cycle.
            log.warning("copy of %s ended as %s; it is tried again", rel, getattr(state, "name", "unknown"))
            self.board.back_to_waiting(rel, restart_timer=False, reason=getattr(state, "message", None))

    def _drain(self, runner: ThreadPoolTaskRunner[Any] | None, stop_copies: bool = True) -> None:
        """Wait for the copies to end (on stop they end between two chunks and remove their temp files).

        A second Ctrl-C or SIGTERM while waiting does not cut this short: a half-finished clean-up is what the
        clean-up is there to prevent. The first signal is re-raised by the caller.
        """
        if stop_copies:
            self.stop.set()
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
        if runner is not None:
            while True:
                try:
                    close_task_runner(runner)
                    break
                except (KeyboardInterrupt, ExternalSignal):
                    continue
                except Exception as exc:
                    log.debug("closing the task runner: %s", exc)
                    break
        self._collect()

    # -- housekeeping -----------------------------------------------------------------------------------------

    def _remove_stale_temp_files(self) -> None:
        remove_stale_temp_files(self.settings, self.runtime.copier)

    def _release_results(self) -> None:
        release_run_results()

    def _publish(self, force: bool = False) -> None:
        """The status artifact (stable key), when something changed, at most about once a second."""
        version = self.board.version
        now = self._clock()
        if version == self._published_version or (not force and now - self._published_at < 1.0):
            return
        counts = self.board.counts()
        metrics.record_counts(counts)
        self._published_version, self._published_at = version, now
        if FlowRunContext.get() is None:
            return
        description = ", ".join(f"{name} {count}" for name, count in counts.items() if count)
        self._status.offer(self.board.rows(), f"File Transfer Agent: {description}")


def status_artifact_writer() -> Callable[[list[dict[str, Any]], str], None]:
    """Publishes the status table; now and then deletes its old versions (``prune_versions``), in the same thread."""
    published = 0

    def publish(rows: list[dict[str, Any]], description: str) -> None:
        nonlocal published
        create_table_artifact(rows, key=STATUS_KEY, description=description)
        published += 1
        if published % PRUNE_EVERY == 1:
            try:
                prune_versions(STATUS_KEY)
            except Exception as exc:  # history left for the next pruning; never a reason to stop
                log.debug("old status versions not pruned: %s", exc)

    return publish
