"""How many run-history records this process has made and not yet sent to the Prefect server.

Every task run sends its state changes as events (Pending, Running, Completed) and its log lines to the server, each
through a queue and a sender thread of Prefect's (``EventsWorker``, ``APILogWorker``). Small files can be moved
faster than those threads send: the queue, and the process's memory with it, then grows for as long as files keep
coming, and what is still queued when the process dies is missing from the history, which is the audit log. So the
transfer loop submits no copy while more than ``MAX_UNSENT`` records wait, and the history keeps pace with the
copies.

Prefect has no public API for the queue lengths: ``flows.prefect_internals`` reads its services' queues, and this
says 0 when they change shape.
"""

from __future__ import annotations

import logging

from flows import prefect_internals

log = logging.getLogger("fta.loop")

MAX_UNSENT = 600  # records: about 150 small files' worth, sent in well under a second


def unsent_records() -> int:
    """Events and log records queued in this process for the Prefect server."""
    try:
        return prefect_internals.unsent_records()
    except Exception as exc:  # a Prefect release that keeps its queues elsewhere: no throttling, said once
        if not getattr(unsent_records, "warned", False):
            setattr(unsent_records, "warned", True)  # noqa: B010
            log.warning("cannot read Prefect's send queues (%s); copies are not paced to the run history", exc)
        return 0
