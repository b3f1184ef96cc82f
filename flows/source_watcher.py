"""What the transfer loop sees of its source: scans when due, file events, the sweep, room for waiting files.

A scan (``fta.scanner``) forgets vanished files, finds new ones and updates every file's stable time on the board
(``TransferBoard.observe``, which sets Ready); nothing else reads the source's listing. File events only make
scans come sooner (``fta.scan_schedule``): they are started again, at most once a minute, when they stop (the
folder was replaced, the watch limit was hit), and the polling interval stays the floor that finds what events
miss. A sweep (``transfer-once``) keeps to the files present at its first scan, so a source that keeps filling does
not keep it running. Files waiting for room at the destination go back in line after one ``statvfs`` per poll,
and only while some wait. Nothing here uses Prefect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fta.board import TransferBoard
from fta.events import SourceEvents
from fta.scan_schedule import ScanSchedule
from fta.scanner import scan_source
from fta.scope import Scope
from fta.settings import Settings
from fta.stability import ReadinessCheck
from fta.storage import free_bytes

log = logging.getLogger("fta.loop")

EVENTS_RETRY_SECONDS = 60.0
READY_NAMES_LOGGED = 5


def some_names(names: list[str]) -> str:
    """The first few names and how many more: one log line per scan, not per file (each is a history record)."""
    shown = ", ".join(names[:READY_NAMES_LOGGED])
    more = len(names) - READY_NAMES_LOGGED
    return f"{shown} and {more} more" if more > 0 else shown


class SourceWatcher:
    def __init__(
        self,
        settings: Settings,
        board: TransferBoard,
        clock: Callable[[], float],
        wake: Callable[[], None],
        once: bool,
        scope: Scope,
    ) -> None:
        self.board = board
        self.once = once
        self.scope = scope  # what a run started through the API narrowed the work to (fta.scope)
        self.schedule = ScanSchedule(settings.polling_interval_seconds, clock)
        self.sweep: set[str] | None = None  # once: the files present at the first scan
        self._clock = clock
        self._wake = wake
        self._events: SourceEvents | None = None
        self._events_retry_at = float("-inf")
        self.configure(settings)

    def configure(self, settings: Settings) -> None:
        """Take (new) settings: the schedule, the stable time and the readiness check follow them."""
        self.settings = settings
        self.schedule.polling_interval = settings.polling_interval_seconds
        self.schedule.stable_seconds = settings.file_stable_time_seconds
        tracker = self.board.tracker
        tracker.stable_seconds = settings.file_stable_time_seconds
        self.readiness = ReadinessCheck(
            settings.source_path,
            lambda rel: seen.sig if (seen := tracker.get(rel)) is not None else None,
            check_writers=settings.check_open_writers,
            use_lock=settings.stability_lock,
        )

    def scan_when_due(self, on_poll: Callable[[], object]) -> bool:
        """Scan if due; True when it was a poll (a cycle). ``on_poll`` runs first at each poll (configuration)."""
        polled = self.schedule.poll_due()
        if not polled and not self.schedule.extra_due():
            return False
        started = self.schedule.begin()
        if polled:
            on_poll()
            self.ensure_events()
        self.scan()
        if polled:
            self.recheck_room()
        self.schedule.end(started, polled, self.board.next_stable_deadline())
        return polled

    def ensure_events(self) -> None:
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
        self.schedule.events = self._events is not None

    def stop_events(self) -> None:
        if self._events is not None:
            self._events.stop()
            self._events = None
        self.schedule.events = False

    def _on_file_event(self) -> None:
        self.schedule.changed()
        self._wake()

    def scan(self) -> None:
        """One scan of the source into the board (a sweep: only its own files); a sweep ends on a failed scan."""
        try:
            snapshot = scan_source(self.settings.source_path, self.settings.exclude, self.settings.destination_path)
        except OSError as exc:
            log.error("cannot scan the source %s: %s", self.settings.source_path, exc)
            if self.once:
                raise
            return
        snapshot = {rel: sig for rel, sig in snapshot.items() if self.scope.covers(rel)}
        if self.sweep is None and self.once:
            self.sweep = set(snapshot)
            log.info("one sweep of %d file(s)", len(self.sweep))
        if self.sweep is not None:
            snapshot = {rel: sig for rel, sig in snapshot.items() if rel in self.sweep}
        self.readiness.refresh()
        ready = self.board.observe(snapshot)
        if ready:
            log.info("%s ready: %s", "1 file" if len(ready) == 1 else f"{len(ready)} files", some_names(ready))

    def recheck_room(self) -> None:
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
            log.info("room at the destination (%d bytes free) for %s", free, some_names(released))

    def sweep_done(self) -> bool:
        """A sweep has nothing left of its files (an empty file left alone once it stayed empty: it never fills)."""
        if self.sweep is None:
            return False
        return not [rel for rel in self.sweep if self.board.status_of(rel) is not None and not self._left_empty(rel)]

    def _left_empty(self, rel: str) -> bool:
        """A zero-byte file never becomes ready; once it has stayed empty for the stable time a sweep leaves it."""
        seen = self.board.tracker.get(rel)
        return (
            seen is not None
            and seen.sig.size == 0
            and self._clock() - seen.unchanged_since >= self.settings.file_stable_time_seconds
        )
