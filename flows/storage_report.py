"""``storage_report``: free space and reachability of source and destination, every minute (seed phase 5).

Publishes the seed's storage object as the ``fta-storage-<agent>`` artifact and the health verdict as
``fta-health-<agent>`` (the agent's ``agent_name``), and
emits ``fta.storage.low`` (destination below ``storage_warning_gb``) or ``fta.destination.unavailable``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.api_state import health_key, observe, prune_versions, storage_key
from flows.config import run_settings
from flows.flow_logging import flow_logging
from fta.board import iso
from fta.health import judge
from fta.probe import Destination, probe_with_timeout
from fta.storage import storage_report as measure
from tasks.guard import PROBE_TIMEOUT_SECONDS, emit

log = logging.getLogger("fta.storage")


@flow(name="storage-report", persist_result=False, log_prints=False)
def storage_report() -> dict[str, Any]:
    """Measure storage, publish it and the agent's health; returns the seed's storage object.

    No parameters: its settings are the agent's own (``flows.config``), never a run's."""
    settings, _ = run_settings()
    storage_at, health_at = storage_key(settings.agent_name), health_key(settings.agent_name)
    with flow_logging(settings):
        probe = probe_with_timeout(Destination.of(settings), PROBE_TIMEOUT_SECONDS)
        report = measure(settings.source_path, probe, settings.storage_warning_gb)
        body = report.as_seed_json()
        row = {**body, "reason": report.reason, "checkedAt": iso(datetime.now(UTC))}
        create_table_artifact([row], key=storage_at, description=f"Storage: {report.status}")
        if report.status == "WARNING":
            log.warning("%s %s GB free", report.message, report.destination_free_gb)
            emit(
                "fta.storage.low",
                settings,
                free_gb=report.destination_free_gb,
                threshold_gb=settings.storage_warning_gb,
            )
        elif report.status == "ERROR":
            log.warning("%s %s", report.message, report.reason or "")
            emit("fta.destination.unavailable", settings, reason=report.reason or "", source="storage-report")
        health = judge(
            observe(settings.agent_name, storage=row, report_age=0.0),
            warn_gb=settings.storage_warning_gb,
            crit_gb=settings.storage_warning_gb / 2,
        )
        create_table_artifact(
            [{"status": health.status, "problems": "; ".join(health.problems), "checkedAt": row["checkedAt"]}],
            key=health_at,
            description=health.line,
        )
        for key in (storage_at, health_at):  # two versions a minute would pile up for as long as the server lives
            try:
                prune_versions(key)
            except Exception as exc:
                log.debug("old %s versions not pruned: %s", key, exc)
        return body
