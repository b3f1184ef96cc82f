"""The destination guard: ``wait_for_destination`` holds the whole run while the destination is unavailable.

One WARNING with the reason per check, a check every ``global_retry_delay_seconds`` for as long as it takes (a loop
inside one task run, not Prefect retries, which would sleep in a worker slot and run out), the Prefect events
``fta.destination.unavailable`` and ``fta.destination.restored``, and it returns as soon as the destination is back.
No file's retry budget is used and no source is touched while it waits.

A destination that is only too full for some files is not held here: each such file waits on its own for room
(``copy_file``, ``TransferBoard.release_room``) while the files that fit go on.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from fta import metrics
from fta.probe import Destination, ProbeResult, probe_with_timeout
from fta.settings import Settings

log = logging.getLogger("fta.guard")

PROBE_TIMEOUT_SECONDS = 30.0


def destination_resource(settings: Settings) -> dict[str, str]:
    """The agent's destination as an event resource: one per agent (the alerts follow each on its own)."""
    return {
        "prefect.resource.id": f"fta.destination.{settings.agent_name}",
        "prefect.resource.name": str(settings.destination_path),
        "fta.agent": settings.agent_name,
    }


def emit(event: str, settings: Settings, **payload: Any) -> None:
    """Emit a Prefect event; an unreachable API must never stop the agent."""
    try:
        emit_event(event=event, resource=destination_resource(settings), payload=payload)
    except Exception as exc:
        log.debug("event %s not sent: %s", event, exc)


def check_destination(settings: Settings) -> ProbeResult:
    """The destination probe (with a timeout), recorded in the metrics."""
    probe = probe_with_timeout(Destination.of(settings), PROBE_TIMEOUT_SECONDS)
    metrics.record_probe(probe.ok, probe.free_bytes)
    return probe


@task(name="wait_for_destination", task_run_name="wait for destination", cache_policy=NO_CACHE, persist_result=False)
def wait_for_destination(settings: Settings, reason: str, stop: threading.Event) -> bool:
    """Block until the destination is usable (True) or the agent stops (False)."""
    started = time.monotonic()
    emit("fta.destination.unavailable", settings, reason=reason, destination=str(settings.destination_path))
    while True:
        log.warning("destination unavailable: %s; next check in %g s", reason, settings.global_retry_delay_seconds)
        if stop.wait(settings.global_retry_delay_seconds):
            return False
        probe = check_destination(settings)
        if probe.ok:
            waited = time.monotonic() - started
            log.info("destination available again after %.0f s", waited)
            emit(
                "fta.destination.restored",
                settings,
                destination=str(settings.destination_path),
                unavailable_seconds=round(waited, 1),
            )
            return True
        reason = probe.reason or "destination unavailable"
