"""When does the transfer loop scan next? Every polling interval, and sooner when file events are on.

Polling alone notices a file's last write up to one interval late and checks its stable time up to one interval
late again. With file events (``fta.events``) two more reasons to scan come in:

- a change: something in the source changed, so scan now (to start the file's stable timer close to its last write);
- a deadline: a file's stable time is up, so scan then (to confirm it is unchanged and let it go at once).

Extra scans are rate-limited: at least ``MIN_GAP_SECONDS``, four times the last scan's own duration and a twentieth
of the stable time apart. A recording written all the time sends changes for hours; each such scan only restarts its
timer, so this keeps them to one every 6 s with the default stable time of 120 s (and at most a fifth of a core on a
source of 100,000 files, a scan of 0.3 s), while the copy still starts within 5 % of the stable time after the last
write. The polling interval stays the floor that finds everything events miss; polls too are at least four times
their own duration apart (a 0.1 s interval over a source of 20,000 waiting files scanned nearly all the time, and
the copies waited for the GIL the scans held). Time is the injected monotonic clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MIN_GAP_SECONDS = 0.05
SCAN_COST_FACTOR = 4.0
STABLE_SHARE = 0.05  # of the stable time: the most an extra scan's delay adds to a file's wait


class ScanSchedule:
    def __init__(
        self, polling_interval: float, clock: Callable[[], float] = time.monotonic, stable_seconds: float = 0.0
    ) -> None:
        self.polling_interval = polling_interval
        self.stable_seconds = stable_seconds
        self.events = False  # whether file events are being received (extra scans only then)
        self._clock = clock
        self._next_poll = clock()
        self._last_scan_end = float("-inf")
        self._gap = MIN_GAP_SECONDS
        self._deadline: float | None = None
        self._changed = threading.Event()

    def changed(self) -> None:
        """File events saw a change (called from the events thread)."""
        self._changed.set()

    def poll_due(self) -> bool:
        return self._clock() >= self._next_poll

    def extra_due(self) -> bool:
        """A scan before the next poll is due: a change was seen, or a file's stable time is up."""
        when = self._next_extra()
        return when is not None and self._clock() >= when

    def begin(self) -> float:
        """A scan begins: it sees every change made before this moment. Returns the moment, for ``end``."""
        self._changed.clear()
        return self._clock()

    def end(self, started: float, polled: bool, deadline: float | None) -> None:
        """The scan begun at ``started`` ended; ``deadline``: the next moment a file's stable time is up."""
        now = self._clock()
        self._last_scan_end = now
        self._gap = max(MIN_GAP_SECONDS, SCAN_COST_FACTOR * (now - started), STABLE_SHARE * self.stable_seconds)
        self._deadline = deadline
        if polled:  # a poll keeps the same gap: a short interval on a big source would leave no time for copies
            self._next_poll = now + max(self.polling_interval, SCAN_COST_FACTOR * (now - started))

    def wait_seconds(self) -> float:
        """How long the loop may sleep before its next scan (it is also woken by events and ended copies)."""
        when = self._next_poll
        extra = self._next_extra()
        if extra is not None:
            when = min(when, extra)
        return max(0.0, when - self._clock())

    def _next_extra(self) -> float | None:
        if not self.events:
            return None
        wanted: float | None = None
        if self._changed.is_set():
            wanted = self._clock()
        if self._deadline is not None:
            wanted = self._deadline if wanted is None else min(wanted, self._deadline)
        if wanted is None:
            return None
        return max(wanted, self._last_scan_end + self._gap)
