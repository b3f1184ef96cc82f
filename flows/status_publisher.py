"""Publishes the agent's status table (the ``fta-status-<agent>`` artifact) from a thread of its own.

``BoardStatus`` decides when: when the board changed, at most about once a second (and at once when the loop is
about to hold, so the table shows why). Every decision also updates the Prometheus counts, in or out of a flow run.

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
import uuid
from collections.abc import Callable
from typing import Any

from prefect.artifacts import create_table_artifact
from prefect.context import FlowRunContext

from flows.api_state import KeptClient, prune_versions, status_key, update_table
from fta import metrics
from fta.board import TransferBoard
from fta.views import TO_DO, status_description

log = logging.getLogger("fta.loop")

Publish = Callable[[list[dict[str, Any]], str], None]
PUBLISH_GAP_SECONDS = 1.0
WAITING_ROWS = 100  # files waiting (not yet copying) listed in the table; the counts in its description cover all


class StatusPublisher:
    def __init__(self, publish: Publish, done: Callable[[], None] | None = None) -> None:
        """``done``: called by the thread as it ends (the writer's client closed)."""
        self._publish = publish
        self._done = done
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
        try:
            self._publish_until_closed()
        finally:
            if self._done is not None:
                self._done()

    def _publish_until_closed(self) -> None:
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


class StatusArtifactWriter:
    """Publishes ``agent``'s status table: the first publication creates a version of the artifact (it belongs to the
    flow run), later ones replace its rows in place (``update_table``); one gone meanwhile is created again. Each
    version created deletes the key's old versions (``prune_versions``: those of earlier runs) in a thread of its own.

    A version per publication kept the server storing the whole table three times a second under load, and a pruning
    of a hundred versions, one request each, took a minute on a busy server. A publication never waits for a pruning:
    one due while another is under way is done again once that one ends.
    """

    def __init__(self, agent: str) -> None:
        self._key = status_key(agent)
        self._artifact: uuid.UUID | None = None
        self._client = KeptClient()
        self._lock = threading.Lock()
        self._again = False
        self._pruning: threading.Thread | None = None

    def __call__(self, rows: list[dict[str, Any]], description: str) -> None:
        if self._artifact is not None and update_table(self._client, self._artifact, rows, description):
            return
        created = create_table_artifact(rows, key=self._key, description=description)
        assert isinstance(created, uuid.UUID)  # called from a thread, never from async code: the sync form
        self._artifact = created
        self._prune_soon()

    def close(self) -> None:
        """Close the kept client (a later publication opens another)."""
        self._client.close()

    def _prune_soon(self) -> None:
        with self._lock:
            self._again = True
            if self._pruning is not None and self._pruning.is_alive():
                return  # it looks again before it ends
            context = contextvars.copy_context()  # the flow run's API and settings
            self._pruning = threading.Thread(target=context.run, args=(self._prune,), name="fta-prune", daemon=True)
            self._pruning.start()

    def _prune(self) -> None:
        while True:
            with self._lock:
                if not self._again:
                    return
                self._again = False
            try:
                prune_versions(self._key)
            except Exception as exc:  # history left for the next pruning; never a reason to stop
                log.debug("old status versions not pruned: %s", exc)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for a pruning under way (and those due meanwhile); False when it outlasted ``timeout``."""
        with self._lock:
            thread = self._pruning
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()


def status_artifact_writer(agent: str) -> StatusArtifactWriter:
    """Publishes ``agent``'s status table (see ``StatusArtifactWriter``)."""
    return StatusArtifactWriter(agent)


class BoardStatus:
    """The board's counts and table, published when they changed, at most about once a second; and again a second
    after the last one while files are to do, changed or not, so that the table's time says how current it is (a
    loop holding its copies while the server catches up changes nothing for seconds). An idle agent's table stays as
    it was: no request a second for months."""

    def __init__(
        self, board: TransferBoard, clock: Callable[[], float], publish: Publish | None = None, agent: str = ""
    ) -> None:
        """``publish``: where the tables go (default: the artifact of ``agent``, the agent's ``agent_name``)."""
        self._board = board
        self._clock = clock
        if publish is None:
            writer = status_artifact_writer(agent)
            self._publisher = StatusPublisher(writer, writer.close)
        else:
            self._publisher = StatusPublisher(publish)
        self._version = -1
        self._at = float("-inf")
        self._to_do = False  # the last table had files to do
        self._table: tuple[list[dict[str, Any]], str] | None = None  # the last one handed over (rows, description)

    def publish(self, force: bool = False) -> None:
        """Hand the table over if the board changed (``force``: even within a second of the last one), or if it
        did not, a second after the last one while files are to do."""
        version, now = self._board.version, self._clock()
        due = now - self._at >= PUBLISH_GAP_SECONDS
        if version == self._version:
            if due and self._to_do and self._table is not None:  # the same table again: nothing to count or build
                self._at = now
                self._publisher.offer(*self._table)
            return
        if not (force or due):
            return
        counts = self._board.counts()
        metrics.record_counts(counts)
        self._version, self._at = version, now
        self._to_do = any(counts.get(status, 0) for status in TO_DO)
        if FlowRunContext.get() is None:  # an artifact belongs to a flow run: outside one, the counts only
            return
        self._table = (self._board.rows(waiting=WAITING_ROWS), status_description(counts, WAITING_ROWS))
        self._publisher.offer(*self._table)

    def close(self) -> None:
        """The last table out (the final counts), waited for up to ten seconds."""
        self.publish(force=True)
        if not self._publisher.close():
            log.warning("the last status artifact was not published: the Prefect API is slow or down")
