"""A stop switch: how whoever owns a run's stop (a signal handler, a test, a benchmark) reaches its transfer loop.

One switch per run, made by its owner and handed to the loop, instead of a registry of running loops in the
process: nothing outlives the run, so a stop meant for one run can never stop the next. A switch is pulled once and
stays pulled: a stop that comes before the loop has started (SIGTERM while the flow run is still starting) is not
lost, the loop stops as soon as it looks. Each loop registers what wakes it (``on_request``); a request runs those
callbacks at once, so a loop waiting for its next scan, up to a polling interval away, stops now.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class StopSwitch:
    def __init__(self) -> None:
        self._requested = threading.Event()
        # Reentrant: a signal handler calling ``request`` may interrupt this thread inside ``on_request``.
        self._lock = threading.RLock()
        self._wakes: list[Callable[[], None]] = []

    def request(self) -> None:
        """Stop the run (and any loop that takes this switch later). Safe from a signal handler and any thread."""
        with self._lock:
            self._requested.set()
            wakes = list(self._wakes)
        for wake in wakes:
            wake()

    def is_requested(self) -> bool:
        return self._requested.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once a stop is requested; False when ``timeout`` passed first."""
        return self._requested.wait(timeout)

    def on_request(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` when a stop is requested (now, if it already was); returns how to stop being called."""
        with self._lock:
            self._wakes.append(wake)
            requested = self._requested.is_set()
        if requested:
            wake()

        def forget() -> None:
            with self._lock:
                if wake in self._wakes:
                    self._wakes.remove(wake)

        return forget
