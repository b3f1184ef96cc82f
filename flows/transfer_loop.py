"""The transfer loop both flows run: scan -> settle -> guard -> dispatch -> publish -> wait, until done or stopped.

Each step is a part of its own, wired here:

- ``fta.source_hold.SourceHold``: the source's lock, taken before anything is touched, held to the end;
- ``flows.config_follower.ConfigFollower``: an edited configuration, taken at a poll, and what it sets off;
- ``flows.source_watcher.SourceWatcher``: scans when due (every poll; with file events also soon after a change and
  when a file's stable time is up), the sweep of ``transfer-once``, room for files waiting for it;
- ``flows.copy_dispatcher.CopyDispatcher``: ``copy_file`` task runs in a thread pool, settled into the summary;
- ``flows.destination_guard.DestinationGuard``: holds the run while the destination is unavailable;
- ``flows.status_publisher.BoardStatus``: the status artifact and the metrics.

A stop comes from whoever owns the run's signals, through the ``fta.stop_switch.StopSwitch`` handed to the loop
(``flows.watch_folder.stop_on_sigterm``, or ``flows.config.stop_in_process`` from outside the flow run).

Memory stays flat over days: the flow run context's result map is emptied every cycle (these flows never pass one
task's result to another, so Prefect's result-based dependency tracking has nothing to lose), and the dispatcher
drops futures once settled and replaces its pool now and then. Nothing here may end a watch run because the
Prefect API is slow or down: a failed submission, artifact or event is logged, and the file is simply still in
the source for the next cycle.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prefect.context import TagsContext

from flows.backlog import RecordingLag, unsent_records
from flows.config import copy_io, run_settings
from flows.config_follower import ConfigFollower, Reactions
from flows.copy_dispatcher import CopyDispatcher, LoopSummary
from flows.destination_guard import DestinationGuard
from flows.flow_logging import flow_logging
from flows.housekeeping import ensure_shared_limit, remove_stale_temp_files, serve_metrics
from flows.prefect_internals import release_run_results
from flows.source_watcher import SourceWatcher
from flows.status_publisher import BoardStatus
from fta.board import TransferBoard
from fta.copier import Copier
from fta.scope import WHOLE_SOURCE, Scope
from fta.settings import Settings
from fta.source_hold import SourceHold
from fta.stability import StabilityTracker
from fta.stop_switch import StopSwitch
from tasks.runtime import TransferRuntime

# How long a thread of the flow's process may hold the GIL while another waits for it (Python's default: 5 ms). A copy
# takes the GIL back after each read, hash and write of a chunk; when any other thread of the process is running
# Python then (the loop, the status publisher, Prefect's senders), each of those waits could last up to the whole
# interval: a 1 GiB copy beside one busy thread took 1.72 s instead of 0.58 s, 0.96 s with 0.5 ms.
GIL_SWITCH_SECONDS = 0.0005

log = logging.getLogger("fta.loop")

Reload = Callable[[], Settings]


@contextmanager
def loop_settings(scope: Scope) -> Iterator[tuple[Settings, Reload | None]]:
    """A flow's settings (``flows.config``) and how to read them again, with the flow's logging set up for them."""
    settings, reload = run_settings()
    # The task runs carry no tag of the caller's (``fta watch`` starts its run inside ``tags("agent:...")``): a tag
    # on a task run costs a concurrency-slot request per run, a write transaction on the server even when no limit
    # has the tag. Their flow run carries the agent's tag, and their events carry it from there.
    with flow_logging(settings), TagsContext(current_tags=set()):
        if not scope.whole:
            log.info("this run moves only %s (of %s)", scope.describe(), settings.source_path)
        yield settings, reload


class TransferLoop:
    def __init__(
        self,
        settings: Settings,
        once: bool = False,
        clock: Callable[[], float] = time.monotonic,
        max_cycles: int | None = None,
        reload: Reload | None = None,
        unsent: Callable[[], int] = unsent_records,
        scope: Scope = WHOLE_SOURCE,
        stop: StopSwitch | None = None,
    ) -> None:
        self.once = once
        self.max_cycles = max_cycles
        self._clock = clock
        self._switch = stop if stop is not None else StopSwitch()
        # Set by a stop request and when the loop ends: copies under way stop between two chunks.
        self.halt = threading.Event()
        tracker = StabilityTracker(
            settings.file_stable_time_seconds, clock, lock_check=lambda rel: self.watcher.readiness(rel)
        )
        self.board = TransferBoard(tracker, clock=clock)
        self.runtime = TransferRuntime(settings, self.board, self._copier(settings), self.halt)
        self.summary = LoopSummary()
        self.hold = SourceHold()
        self.watcher = SourceWatcher(settings, self.board, clock, self.runtime.wake.set, once, scope)
        # the server's record of this run's copies, asked about once a second (none outside a flow run)
        self.dispatcher = CopyDispatcher(
            self.runtime, self.summary, unsent, unrecorded=RecordingLag.of_current_flow_run()
        )
        self.status = BoardStatus(self.board, clock, agent=settings.agent_name)
        self.guard = DestinationGuard(self.runtime, clock, before_hold=lambda: self.status.publish(force=True))
        reactions = Reactions(
            take=self._take,
            rotate_pool=self.dispatcher.rotate_soon,
            set_shared_limit=ensure_shared_limit,
            remove_stale_temps=self._remove_stale_temp_files,
            end_room_waits=self.board.end_room_waits,
        )
        self.follower = ConfigFollower(settings, reload, self.hold, self.dispatcher.under_way, reactions)

    @property
    def settings(self) -> Settings:
        """The settings in force (an edited configuration replaces them at a poll: ``ConfigFollower``)."""
        return self.follower.settings

    def _copier(self, settings: Settings) -> Copier:
        """The one place the loop builds a copier: at the start, and again for every configuration taken."""
        return Copier(settings, clock=self._clock, io=copy_io())

    def _take(self, settings: Settings) -> None:
        """New settings for every part built from them; copies under way finish as they began."""
        self.runtime.settings = settings
        self.runtime.copier = self._copier(settings)
        self.watcher.configure(settings)
        self.dispatcher.configure(settings)

    def _stop_requested(self) -> None:
        self.halt.set()
        self.runtime.wake.set()  # it may be waiting for its next scan, up to a polling interval away

    # -- the loop ---------------------------------------------------------------------------------------------------

    def run(self) -> LoopSummary:
        forget = self._switch.on_request(self._stop_requested)  # a stop asked before this start: honoured now
        try:
            settings = self.settings
            # Refused or stopped while waiting for the source: nothing was touched, nothing is published.
            if self.hold.take(settings.source_path, settings.destination_path, self.once, self.halt):
                self._run()
        finally:
            self.hold.release()
            forget()
        return self.summary

    def _run(self) -> None:
        self._log_start()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        try:
            self._cycle()
        finally:
            sys.setswitchinterval(switch)

    def _cycle(self) -> None:
        try:
            serve_metrics(self.settings)
            ensure_shared_limit(self.settings)
            self._remove_stale_temp_files()
            while not self.halt.is_set():
                self._scan_when_due()
                self.dispatcher.collect()  # settle the copies that ended
                if not self.guard.passes():
                    break
                self.dispatcher.dispatch(hold=self.follower.switch_due)
                self.status.publish()
                release_run_results()
                if self._finished():
                    break
                self._wait()
        finally:
            self.halt.set()  # copies still running stop between chunks and remove their temp files
            self.watcher.stop_events()
            self.dispatcher.drain()
            self.dispatcher.unrecorded.close()
            self.status.close()

    def _log_start(self) -> None:
        settings = self.settings
        log.info(
            "agent started: %s -> %s (stable after %g s, scan every %g s, %d copies at once)",
            settings.source_path,
            settings.destination_path,
            settings.file_stable_time_seconds,
            settings.polling_interval_seconds,
            settings.max_concurrent_copies,
        )

    def _scan_when_due(self) -> None:
        if self.watcher.scan_when_due(on_poll=self.follower.follow):
            self.summary.cycles += 1

    def _finished(self) -> bool:
        if self.dispatcher.under_way():
            return False
        if self.max_cycles is not None and self.summary.cycles >= self.max_cycles:
            return True
        return self.once and self.watcher.sweep_done()

    def _wait(self) -> None:
        """Until the next scan is due, a copy ends, a file event comes or a stop is asked (paced: soon)."""
        wake = self.runtime.wake
        wake.wait(self.dispatcher.pause(self.watcher.schedule.wait_seconds()))
        wake.clear()

    def _remove_stale_temp_files(self) -> None:
        remove_stale_temp_files(self.settings, self.runtime.copier)
