"""The loop's side of the destination guard: when to probe the destination, and holding the run while it is gone.

A probe costs a few system calls on a NAS that may hang (``tasks.guard.check_destination`` gives it a timeout), so
it runs only when a copy said the destination is gone, or when files are ready and the last good probe is older than
a polling interval (a copy that finds the destination gone says so itself). While it is gone the whole run holds in
``wait_for_destination`` (its own task run, with the unavailable/restored events); if even that task run cannot be
recorded (the API is down too), the loop waits here instead: the files stay in the source either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from fta.probe import ProbeResult
from fta.settings import Settings
from tasks.guard import check_destination, wait_for_destination
from tasks.runtime import TransferRuntime

log = logging.getLogger("fta.loop")


class DestinationGuard:
    def __init__(
        self,
        runtime: TransferRuntime,
        clock: Callable[[], float],
        before_hold: Callable[[], None],
        probe: Callable[[Settings], ProbeResult] = check_destination,
        hold: Callable[[Settings, str, threading.Event], object] = wait_for_destination,
    ) -> None:
        self.runtime = runtime
        self._clock = clock
        self._before_hold = before_hold  # the status table shows the hold before it starts
        self._probe = probe
        self._hold = hold
        self._probed_ok_at = float("-inf")

    def passes(self) -> bool:
        """True when copies may go on; holds while the destination is unavailable; False when stopped meanwhile."""
        runtime = self.runtime
        trouble = runtime.take_unavailable()
        if trouble is None and not runtime.board.has_ready():
            return True
        if trouble is None and self._clock() - self._probed_ok_at < runtime.settings.polling_interval_seconds:
            return True  # checked recently; a copy that finds the destination gone says so itself
        probe = self._probe(runtime.settings)
        if probe.ok:
            self._probed_ok_at = self._clock()
            return True
        reason = probe.reason or (str(trouble) if trouble else "destination unavailable")
        self._before_hold()
        try:
            return bool(self._hold(runtime.settings, reason, runtime.stop))
        except Exception as exc:  # the guard's own task run could not be recorded: wait here instead
            log.warning("guard task failed (%s); waiting in the flow", exc)
            return not runtime.stop.wait(runtime.settings.global_retry_delay_seconds)
