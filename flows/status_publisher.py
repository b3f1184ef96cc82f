"""Publishes the agent's status table (the ``fta-status`` artifact) from a thread of its own.

An artifact is one HTTP round trip; when the server is busy recording a burst of task runs it can take a third of a
second. Made on the loop's thread, that stalled the submission of copies (a third of the loop's time in a burst of
small files). Here the loop only hands over the newest table; a daemon thread publishes it, the newest one wins and
older ones not yet sent are dropped. The thread runs in a copy of the flow's context, so the artifact still belongs
to the flow run.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("fta.loop")

Publish = Callable[[list[dict[str, Any]], str], None]


class StatusPublisher:
    def __init__(self, publish: Publish) -> None:
        self._publish = publish
        self._cond = threading.Condition()
        self._pending: tuple[list[dict[str, Any]], str] | None = None
        self._closing = False
        self._thread: threading.Thread | None = None

    def offer(self, rows: list[dict[str, Any]], description: str) -> None:
        """Hand over the newest table (replacing one not yet published); never waits for the API."""
        with self._cond:
            self._pending = (rows, description)
            if self._thread is None:
                context = contextvars.copy_context()
                self._thread = threading.Thread(target=context.run, args=(self._run,), name="fta-status", daemon=True)
                self._thread.start()
            self._cond.notify()

    def close(self, timeout: float = 10.0) -> bool:
        """Publish what is pending, then end the thread; False when that took longer than ``timeout``."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closing:
                    self._cond.wait()
                if self._pending is None:
                    return
                rows, description = self._pending
                self._pending = None
            try:
                self._publish(rows, description)
            except Exception as exc:  # the API being down must never end the agent
                log.debug("status artifact not published: %s", exc)
