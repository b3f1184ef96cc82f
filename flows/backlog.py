"""How many run-history records this process has made and not yet sent to the Prefect server.

Every task run sends its state changes as events (Pending, Running, Completed) and its log lines to the server, each
through a queue and a sender thread of Prefect's (``EventsWorker``, ``APILogWorker``). Small files can be moved
faster than those threads send: the queue, and the process's memory with it, then grows for as long as files keep
coming, and what is still queued when the process dies is missing from the history, which is the audit log. So the
transfer loop submits no copy while more than ``MAX_UNSENT`` records wait, and the history keeps pace with the
copies.

Prefect has no public API for the queue lengths: ``flows.prefect_internals`` reads its services' queues, and this
says 0 when they change shape.

Sent is not yet recorded: the server takes the events into in-memory queues of 10,000 and drops what does not fit
("Subscription queue is full, dropping message"). A local server sharing two cores with the agent fell that far
behind at 110 small files a second: 635 of 20,000 copies were never recorded as ended. So ``RecordingLag`` also asks
the server, about once a second, how many of the run's copies it has recorded as ended, and the loop submits no copy
while more than ``MAX_UNRECORDED`` ended here and are not recorded there. The events the server stores (its event
persister, slower still: 10,000 no-op task runs of Prefect's own overflowed both queues) are followed by time: the loop
also waits while the newest stored task-run event of the run is more than ``MAX_EVENT_LAG_SECONDS`` older than the
copy that ended last here.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from flows import prefect_internals

log = logging.getLogger("fta.loop")

MAX_UNSENT = 600  # records: about 150 small files' worth, sent in well under a second
MAX_UNRECORDED = 500  # copy task runs ended here, not yet recorded there: about 1,500 events of the server's 10,000
RECORD_POLL_SECONDS = 1.0
# A count the server has not raised for this long while copies wait for it: the rest were lost on the way (its
# queues dropped them); the copies go on, and the loss is logged.
RECORD_STALL_SECONDS = 30.0
MAX_EVENT_LAG_SECONDS = 15.0  # the stored events this far behind the copies: about 5,000 events at 110 files/s
CAUGHT_UP_SLACK_SECONDS = 1.0  # a copy's last event occurs a little before the loop sees it end
EVENT_WINDOW_SECONDS = 30.0  # how far back the newest stored event is looked for (nothing there: that far behind)
# No answer from the server for this long: the lag is unknown, and copies are not held back for it.
RECORD_ANSWER_SECONDS = 60.0


def unsent_records() -> int:
    """Events and log records queued in this process for the Prefect server."""
    try:
        return prefect_internals.unsent_records()
    except Exception as exc:  # a Prefect release that keeps its queues elsewhere: no throttling, said once
        if not getattr(unsent_records, "warned", False):
            setattr(unsent_records, "warned", True)  # noqa: B010
            log.warning("cannot read Prefect's send queues (%s); copies are not paced to the run history", exc)
        return 0


class RecordingLag:
    """How many of this flow run's copy task runs ended here and are not yet recorded as ended by the server.

    ``count``: the server's count of the run's ended copies (``flows.api_state.CopyRecord.ended_copies``), asked from a
    daemon thread of its own about once every ``poll`` seconds, never from the loop; None outside a flow run (no lag).
    The lag never holds copies back for good: after ``RECORD_STALL_SECONDS`` without progress the missing records
    are given up for lost, and without an answer for ``RECORD_ANSWER_SECONDS`` the lag counts as 0.
    """

    def __init__(
        self,
        count: Callable[[], int] | None,
        clock: Callable[[], float] = time.monotonic,
        poll: float = RECORD_POLL_SECONDS,
        newest_stored: Callable[[], datetime | None] | None = None,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        release: Callable[[], None] | None = None,
    ) -> None:
        """``newest_stored``: when the newest task-run event of the run the server stored occurred (None: none in
        the last ``EVENT_WINDOW_SECONDS``); ``wall``: the time of day it is compared with; ``release``: called by
        the asking thread when it ends (what it asked through is closed there, never under a question)."""
        self._count = count
        self._release = release
        self._newest_stored = newest_stored
        self._wall = wall
        self._last_end: datetime | None = None  # when the last copy ended here
        self._pending_since: datetime | None = None  # the first copy ended since the stored events caught up
        self.event_lag = 0.0  # seconds the stored events are behind the copies, as last measured
        self._newest_seen: datetime | None = None
        self._events_moved = clock()  # the last time the newest stored event changed, or they were not behind
        self._events_stuck = False
        self._clock = clock
        self._poll = poll
        self._ended = 0  # copies ended here (the loop's thread)
        self._lost = 0  # records given up for lost
        self._lag = 0
        self._answered = clock()
        self._recorded = -1
        self._progressed = clock()  # the last time the server's count rose, or nothing was missing
        self._stop = threading.Event()
        self._wake = threading.Event()  # a copy ended, or the asking is to end
        self.idle = False  # caught up and nothing ended since: not asking until a copy ends
        self._thread: threading.Thread | None = None

    @classmethod
    def of_current_flow_run(cls) -> RecordingLag:
        """The lag of the flow run this thread runs in (none outside a flow run)."""
        from prefect.context import FlowRunContext

        from flows.api_state import CopyRecord

        context = FlowRunContext.get()
        run = context.flow_run if context is not None else None
        if run is None:
            return cls(None)
        record = CopyRecord(run.id)
        return cls(
            record.ended_copies,
            newest_stored=lambda: record.newest_event(EVENT_WINDOW_SECONDS),
            release=record.close,
        )

    def ended(self, copies: int = 1) -> None:
        """Copies ended here (their task runs settled); the first one starts the asking."""
        self._ended += copies
        self._last_end = self._wall()
        if self._pending_since is None:
            self._pending_since = self._last_end
        self._wake.set()
        if self._thread is None and self._count is not None:
            context = contextvars.copy_context()  # the flow run's API and settings
            self._thread = threading.Thread(target=context.run, args=(self._run,), name="fta-recorded", daemon=True)
            self._thread.start()

    def __call__(self) -> int:
        """The lag as last measured (0 when the server has not answered for ``RECORD_ANSWER_SECONDS``)."""
        if self._clock() - self._answered > RECORD_ANSWER_SECONDS:
            return 0
        return self._lag

    def behind(self) -> bool:
        """Is the server's record too far behind the copies for another one to be submitted?"""
        if self._clock() - self._answered > RECORD_ANSWER_SECONDS:
            return False
        return self._lag > MAX_UNRECORDED or self.event_lag > MAX_EVENT_LAG_SECONDS

    def measure(self) -> None:
        """Ask the server once (the thread does this every ``poll`` seconds)."""
        assert self._count is not None
        ended, last_end, pending = self._ended, self._last_end, self._pending_since  # before asking
        try:
            recorded = self._count()
            looked = self._wall()
            newest = self._newest_stored() if self._newest_stored is not None else None
        except Exception as exc:  # the API slow or down: the last figures stand until they are too old
            log.debug("could not count the recorded copies: %s", exc)
            return
        if self._newest_stored is not None:
            self._follow_events(self._event_lag(last_end, pending, newest, looked), newest)
        now = self._clock()
        self._answered = now
        late = min(self._lost, max(0, recorded - (ended - self._lost)))  # given up for lost, recorded after all
        if late:
            self._lost -= late
            log.info("the Prefect server has recorded %d copy task run(s) given up for lost after all", late)
        missing = ended - self._lost - recorded
        if missing <= 0 or recorded > self._recorded:
            self._progressed = now
        elif now - self._progressed > RECORD_STALL_SECONDS:
            log.warning(
                "the Prefect server has not recorded the end of %d copy task run(s) in %g s; the copies go on without"
                " waiting for them (their history is lost if its log says 'queue is full')",
                missing,
                RECORD_STALL_SECONDS,
            )
            self._lost += missing
            missing, self._progressed = 0, now
        self._recorded = recorded
        self._lag = max(0, missing)

    def _follow_events(self, lag: float, newest: datetime | None) -> None:
        """Take the measured lag, unless the stored events have not moved for ``RECORD_STALL_SECONDS`` while behind
        (a server that stores no events: its event persister off): then they are not waited for until they move."""
        now = self._clock()
        behind_before = self._events_stuck or self.event_lag > MAX_EVENT_LAG_SECONDS
        if newest != self._newest_seen or lag <= MAX_EVENT_LAG_SECONDS or not behind_before:
            self._newest_seen, self._events_moved = newest, now  # moving, caught up, or just fallen behind
            if self._events_stuck:
                log.info("the Prefect server stores this run's task-run events again; the copies follow them again")
            self._events_stuck = False
        elif not self._events_stuck and now - self._events_moved > RECORD_STALL_SECONDS:
            log.warning(
                "the Prefect server has stored no task-run event of this run for %g s (its event persister may be "
                "off or behind); the copies go on without waiting for it",
                RECORD_STALL_SECONDS,
            )
            self._events_stuck = True
        self.event_lag = 0.0 if self._events_stuck else lag

    def _event_lag(
        self, last_end: datetime | None, pending: datetime | None, newest: datetime | None, looked: datetime
    ) -> float:
        """How old the oldest copy end is whose events are not stored yet (0: all stored)."""
        if last_end is None or pending is None:
            return 0.0
        if newest is not None and newest >= last_end - timedelta(seconds=CAUGHT_UP_SLACK_SECONDS):
            if self._last_end == last_end:  # no copy ended while asking: from the next end on
                self._pending_since = None
            return 0.0
        oldest_unstored = pending if newest is None else max(pending, newest)
        return min(EVENT_WINDOW_SECONDS, max(0.0, (looked - oldest_unstored).total_seconds()))

    def close(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        try:
            self._ask()
        finally:
            if self._release is not None:
                self._release()

    def _ask(self) -> None:
        """About once every ``poll`` seconds while copies end or the server is behind; an idle watch run (months of
        it) asks nothing until the next copy ends."""
        measured = -1
        while not self._stop.is_set():
            if self._ended == measured and self._lag == 0 and self.event_lag == 0.0:
                self.idle = True
                self._wake.wait()
                self._wake.clear()
                self.idle = False
                continue
            if self._stop.wait(self._poll):
                return
            measured = self._ended
            self.measure()
