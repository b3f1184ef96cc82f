"""The transfer board: every tracked file and its status (the seed's FileStatus and TrackedFile), thread-safe.

The flow feeds it scans and copy outcomes; it answers which files to queue next and renders the seed's
``GET /api/status`` and ``GET /api/files`` shapes. It is rebuilt from the filesystem at start: whatever is in the
source is still to do.

    Discovered -> Ready -> InQueue -> Copying -> Completed (source gone)
                   ^ ^        |          |----> Failed (source kept; tried again once the file changes)
                   | |________|__________|      (destination unavailable, source changed, stop: back to waiting)
                   |___ waiting for room _|     (no room for this file: Ready, but not queued until there is)

What it remembers is bounded by what is in the source, never by a count: a failed file is remembered by its
signature for as long as it is there unchanged (forgetting it after some number of failures would make it new
again, and retried), and a file waiting for room waits only while it is there unchanged. The views show the newest
failures only.
"""

from __future__ import annotations

import bisect
import heapq
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fta.stability import Clock, FileSig, StabilityTracker
from fta.views import Row, files_view, status_view

WallClock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class FileStatus(StrEnum):
    DISCOVERED = "Discovered"
    READY = "Ready"
    IN_QUEUE = "InQueue"
    COPYING = "Copying"
    COMPLETED = "Completed"
    FAILED = "Failed"


@dataclass(frozen=True, slots=True)
class RoomWait:
    """A file the destination had no room for: ``needed`` bytes, ``free_when_refused`` free when it was refused
    (at ``refused_at`` on the agent's monotonic clock)."""

    needed: int
    free_when_refused: int
    refused_at: float

    @property
    def reason(self) -> str:
        return f"waiting for room: {self.needed} bytes needed, {self.free_when_refused} free"

    def fits(self, free: int, now: float, retry_after: float) -> bool:
        """Room for it now: enough free, and more than when it was refused or, failing that, ``retry_after``
        seconds since.

        A write can run out of room that the free space said was there: another copy filled the disk for a moment
        and has removed its temp file since, or a quota or the filesystem's own overhead refused it. Trying such a
        file again at every cycle would fail the same way each time; at the pace of the destination guard it costs
        one attempt a minute at most, and a copy that merely collided with another goes through.
        """
        if self.needed > free:
            return False
        return free > self.free_when_refused or now - self.refused_at >= retry_after


@dataclass
class TrackedFile:
    """The seed's TrackedFile, plus what the status view needs."""

    file_path: str
    status: FileStatus
    file_size: int
    last_write_time: datetime
    copy_progress: float = 0.0
    error_message: str | None = None
    retry_count: int = 0
    sig: FileSig | None = field(default=None, repr=False)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    destination: str | None = None
    room: RoomWait | None = None  # set while the file waits for room at the destination

    def as_row(self) -> Row:
        """The file as one status row (see ``fta.views``)."""
        return {
            "file": self.file_path,
            "status": str(self.status),
            "progress": round(self.copy_progress, 1),
            "size": self.file_size,
            "lastWriteTime": iso(self.last_write_time),
            "startedAt": iso(self.started_at),
            "finishedAt": iso(self.finished_at),
            "retries": self.retry_count,
            "error": self.error_message,
            "destination": self.destination,
        }


IN_FLIGHT = (FileStatus.IN_QUEUE, FileStatus.COPYING)


def _path(tracked: TrackedFile) -> str:
    return tracked.file_path


class TransferBoard:
    """All files the agent knows of; methods are called from the flow thread and from copy threads."""

    def __init__(
        self, tracker: StabilityTracker, now: WallClock = utc_now, recent: int = 50, clock: Clock = time.monotonic
    ) -> None:
        self.tracker = tracker
        self._now = now
        self._clock = clock  # the agent's monotonic clock: how long a file has waited for room
        self._lock = threading.RLock()
        self._files: dict[str, TrackedFile] = {}
        self._failed: dict[str, FileSig] = {}  # what decides "not tried again": every failed file still there
        self._failed_recent: OrderedDict[str, TrackedFile] = OrderedDict()  # the newest failures, for the views
        self._completed: deque[TrackedFile] = deque(maxlen=recent)
        self._recent = recent
        self.completed_total = 0
        # The files that may be queued, in path order, kept as they change: a backlog of tens of thousands of Ready
        # files is not sorted again at every wake. An entry can be stale (the file was queued, vanished or waits
        # for room since); ``ready_files`` checks each one it hands out and drops the stale ones it meets.
        self._line: list[str] = []
        self._in_line: set[str] = set()
        self.version = 0  # bumps on every change, so the flow publishes the status only when it changed

    def _touch(self) -> None:
        self.version += 1

    def _tracked(self, rel: str, sig: FileSig) -> TrackedFile:
        written = datetime.fromtimestamp(sig.mtime_ns / 1e9, UTC)
        return TrackedFile(rel, FileStatus.DISCOVERED, sig.size, written, sig=sig)

    # -- scans ----------------------------------------------------------------------------------------------

    def observe(self, snapshot: Mapping[str, FileSig]) -> list[str]:
        """Take a scan; return the files that just became Ready (in path order)."""
        with self._lock:
            # A failed file waits until it changes; the tracker does not watch it meanwhile.
            waiting = {rel: sig for rel, sig in snapshot.items() if self._failed.get(rel) != sig}
            delta = self.tracker.update(waiting)
            changed = bool(delta.discovered or delta.changed or delta.vanished)
            for rel in [rel for rel, sig in self._failed.items() if snapshot.get(rel) != sig]:
                self._forget_failure(rel)  # gone, or changed since it failed: it gets a fresh start
                changed = True
            for rel in [r for r, f in self._files.items() if f.status not in IN_FLIGHT and r not in self.tracker]:
                del self._files[rel]  # vanished (also one that vanished while it was being copied)
                self._leave_line(rel)
                changed = True
            for rel in [*delta.discovered, *delta.changed]:
                if not self._in_flight(rel):  # a running copy notices changes itself
                    self._files[rel] = self._tracked(rel, waiting[rel])
            ready = []
            discovered = [rel for rel, f in self._files.items() if f.status == FileStatus.DISCOVERED]
            for rel in self.tracker.ready(discovered):
                tracked = self._files.get(rel)
                if tracked is not None and tracked.status == FileStatus.DISCOVERED:
                    tracked.status = FileStatus.READY
                    self._join_line(rel)
                    ready.append(rel)
                    changed = True
            if changed:
                self._touch()
            return ready

    def next_stable_deadline(self) -> float | None:
        """When the next file still waiting (Discovered) will have been unchanged for the stable time."""
        with self._lock:
            waiting = [rel for rel, f in self._files.items() if f.status == FileStatus.DISCOVERED]
            return self.tracker.next_deadline(waiting)

    def _in_flight(self, rel: str) -> bool:
        tracked = self._files.get(rel)
        return tracked is not None and tracked.status in IN_FLIGHT

    def _forget_failure(self, rel: str) -> None:
        del self._failed[rel]
        self._failed_recent.pop(rel, None)

    def _queueable(self, rel: str) -> bool:
        tracked = self._files.get(rel)
        return tracked is not None and tracked.status == FileStatus.READY and tracked.room is None

    def _join_line(self, rel: str) -> None:
        """``rel`` may be queued now (it is Ready and waits for no room): in line, in path order."""
        if rel not in self._in_line:
            self._in_line.add(rel)
            bisect.insort(self._line, rel)

    def _leave_line(self, rel: str) -> None:
        if rel in self._in_line:
            self._in_line.discard(rel)
            del self._line[bisect.bisect_left(self._line, rel)]

    def ready_files(self, limit: int | None = None) -> list[str]:
        """Files that are Ready and not yet queued, in path order (not those waiting for room); the first
        ``limit`` of them when given."""
        with self._lock:
            found: list[str] = []
            index = 0
            while index < len(self._line) and (limit is None or len(found) < limit):
                rel = self._line[index]
                if self._queueable(rel):
                    found.append(rel)
                    index += 1
                else:  # queued, gone or waiting for room since it joined: out of line until it may be queued again
                    del self._line[index]
                    self._in_line.discard(rel)
            return found

    def has_ready(self) -> bool:
        return bool(self.ready_files(limit=1))

    def status_of(self, rel: str) -> FileStatus | None:
        """The status of a file still to do (None once it completed, failed or vanished)."""
        with self._lock:
            tracked = self._files.get(rel)
            return tracked.status if tracked is not None else None

    def sig(self, rel: str) -> FileSig | None:
        with self._lock:
            tracked = self._files.get(rel)
            return tracked.sig if tracked is not None else None

    # -- copy lifecycle ---------------------------------------------------------------------------------------

    def _set(self, rel: str, status: FileStatus, **changes: Any) -> TrackedFile | None:
        tracked = self._files.get(rel)
        if tracked is None:
            return None
        tracked.status = status
        for name, value in changes.items():
            setattr(tracked, name, value)
        self._touch()
        return tracked

    def queued(self, rel: str) -> None:
        with self._lock:
            self._set(rel, FileStatus.IN_QUEUE, copy_progress=0.0, error_message=None)

    def copying(self, rel: str, attempt: int = 1) -> None:
        with self._lock:
            self._set(rel, FileStatus.COPYING, started_at=self._now(), retry_count=max(0, attempt - 1))

    def progress(self, rel: str, done: int, total: int) -> None:
        with self._lock:
            tracked = self._files.get(rel)
            if tracked is not None:
                tracked.copy_progress = 100.0 * done / total if total else 100.0
                self._touch()

    def completed(self, rel: str, destination: str | None) -> None:
        with self._lock:
            tracked = self._set(
                rel, FileStatus.COMPLETED, copy_progress=100.0, finished_at=self._now(), destination=destination
            )
            self._files.pop(rel, None)
            self.tracker.forget(rel)
            if tracked is not None:
                self._completed.appendleft(tracked)
                self.completed_total += 1

    def failed(self, rel: str, message: str) -> None:
        with self._lock:
            tracked = self._set(rel, FileStatus.FAILED, error_message=message, finished_at=self._now())
            self._files.pop(rel, None)
            self.tracker.forget(rel)
            if tracked is not None and tracked.sig is not None:
                self._failed[rel] = tracked.sig
                self._failed_recent[rel] = tracked
                self._failed_recent.move_to_end(rel)
                while len(self._failed_recent) > 10 * self._recent:
                    self._failed_recent.popitem(last=False)

    def back_to_waiting(self, rel: str, restart_timer: bool, reason: str | None = None) -> None:
        """Not copied now (destination unavailable, source changed, stop): wait and try again."""
        with self._lock:
            seen = self.tracker.get(rel)
            if seen is None:  # the file vanished while it was in flight: nothing left to do
                self._files.pop(rel, None)
                self._touch()
                return
            status = FileStatus.DISCOVERED if restart_timer else FileStatus.READY
            tracked = self._set(rel, status, error_message=reason, room=None)
            if tracked is not None:
                tracked.sig, tracked.file_size = seen.sig, seen.sig.size
                if status == FileStatus.READY:
                    self._join_line(rel)
            if restart_timer:
                self.tracker.restart(rel)

    def waiting_for_room(self, rel: str, needed: int, free: int) -> None:
        """No room at the destination for this file: it waits on its own (Ready, not queued) until there is, it
        changes or it leaves the source; the other files go on."""
        with self._lock:
            seen, tracked = self.tracker.get(rel), self._files.get(rel)
            if seen is None or tracked is None:  # it vanished while it was in flight: nothing waits for it
                self._files.pop(rel, None)
                self._touch()
                return
            if seen.sig != tracked.sig:  # it changed while it was in flight: a fresh start, no wait for room
                self._files[rel] = self._tracked(rel, seen.sig)
                self._touch()
                return
            wait = RoomWait(needed, free, self._clock())
            self._set(rel, FileStatus.READY, error_message=wait.reason, room=wait)

    def room_waits(self) -> int:
        """How many files wait for room."""
        with self._lock:
            return sum(f.room is not None for f in self._files.values())

    def release_room(self, free: int, retry_after: float) -> list[str]:
        """``free`` bytes are free at the destination: the files waiting for room that fit (``RoomWait.fits``) go
        back in line, in path order, each taking its share of the room, so one burst of free space is not promised
        twice."""
        with self._lock:
            released: list[str] = []
            left, now = free, self._clock()
            for rel in sorted(r for r, f in self._files.items() if f.room is not None):
                tracked = self._files[rel]
                assert tracked.room is not None
                if tracked.room.fits(free, now, retry_after) and tracked.room.needed <= left:
                    left -= tracked.room.needed
                    tracked.room, tracked.error_message = None, None
                    self._join_line(rel)
                    released.append(rel)
            if released:
                self._touch()
            return released

    def end_room_waits(self) -> None:
        """The destination changed: the room they waited for was another filesystem's; they go back in line."""
        with self._lock:
            waiting = [f for f in self._files.values() if f.room is not None]
            for tracked in waiting:
                tracked.room, tracked.error_message = None, None
                self._join_line(tracked.file_path)
            if waiting:
                self._touch()

    # -- views ------------------------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Files per status; Completed counts every completion since start, Failed every failed file still in the
        source and unchanged (the views list only the newest of them)."""
        with self._lock:
            counts = {str(status): 0 for status in FileStatus}
            for tracked in self._files.values():
                counts[str(tracked.status)] += 1
            counts[str(FileStatus.COMPLETED)] = self.completed_total
            counts[str(FileStatus.FAILED)] = len(self._failed)
            return counts

    def outstanding(self) -> int:
        """Files not yet finished one way or the other (discovered, ready, queued or copying)."""
        with self._lock:
            return len(self._files)

    def rows(self, waiting: int | None = None) -> list[Row]:
        """The files as status rows: the files still to do by path, then recent completions and failures (most
        recent first). ``waiting``: of the files not in flight, only the first so many by path (every copy under
        way is always listed): a backlog of tens of thousands of files makes a short table."""
        with self._lock:
            todo: list[TrackedFile] = list(self._files.values())
            if waiting is not None:
                flying = [f for f in todo if f.status in IN_FLIGHT]
                first = heapq.nsmallest(waiting, (f for f in todo if f.status not in IN_FLIGHT), key=_path)
                todo = flying + first
            rows = [f.as_row() for f in sorted(todo, key=_path)]
            rows += [f.as_row() for f in self._completed]
            rows += [f.as_row() for f in reversed(self._failed_recent.values())]
            return rows

    def status_json(self) -> dict[str, Any]:
        """The seed's ``GET /api/status`` body."""
        return status_view(self.rows())

    def files_json(self) -> dict[str, Any]:
        """The seed's ``GET /api/files`` body: every tracked file, then recent completions and failures."""
        return files_view(self.rows())
