"""What the tasks of one transfer run share in-process: settings, copier, board, stop signal, destination trouble.

Passed to tasks as a parameter (the tasks run in the flow's own thread pool, so nothing is serialised); a plain
class on purpose, so Prefect does not walk into it when it collects task inputs.
"""

from __future__ import annotations

import threading

from fta.board import TransferBoard
from fta.copier import Copier
from fta.errors import DestinationUnavailable
from fta.settings import Settings


class TransferRuntime:
    def __init__(self, settings: Settings, board: TransferBoard, copier: Copier, stop: threading.Event) -> None:
        self.settings = settings
        self.board = board
        self.copier = copier
        self.stop = stop
        self.wake = threading.Event()  # set whenever a copy ends, so the flow refills the queue at once
        self._lock = threading.Lock()
        self._unavailable: DestinationUnavailable | None = None

    def destination_unavailable(self, exc: DestinationUnavailable) -> None:
        """A copy found the destination gone: the flow runs the guard before it submits anything else.

        (A destination merely too full for one file is not this: that file waits on its own, see ``copy_file``.)"""
        with self._lock:
            if self._unavailable is None:
                self._unavailable = exc
        self.wake.set()

    def take_unavailable(self) -> DestinationUnavailable | None:
        with self._lock:
            exc, self._unavailable = self._unavailable, None
            return exc
