"""The agent's state as published in the Prefect API: read back by the storage report and the ``fta`` commands.

No side channel: everything comes from artifacts with stable keys and the flow runs' states.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import ArtifactSort

from fta.health import Observed

STATUS_KEY = "fta-status"
STORAGE_KEY = "fta-storage"
HEALTH_KEY = "fta-health"
WATCH_FLOW_NAME = "watch-folder"
VERSIONS_KEPT = 100  # of each keyed artifact: the newest is the state, a few before it are history enough


def read_table(key: str) -> tuple[list[dict[str, Any]], datetime | None]:
    """Rows of the latest table artifact with ``key`` and when it was written (([], None) when there is none)."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.UPDATED_DESC, limit=1
        )
    if not found:
        return [], None
    artifact = found[0]
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    written = artifact.updated or artifact.created
    return (list(data) if isinstance(data, list) else []), written


def prune_versions(key: str, keep: int | None = None, batch: int = 200) -> int:
    """Delete all but the newest ``keep`` versions of the artifact ``key``; how many were deleted.

    Prefect keeps every version of a keyed artifact as long as its flow run exists, and the watch run lives for
    months: the status table, published at every scan while a recording grows, added a version per scan (four
    recordings written around the clock: ~14,000 versions and 100 MB or more a day in the server's database).
    """
    keep = VERSIONS_KEPT if keep is None else keep
    deleted = 0
    with get_client(sync_client=True) as client:
        while True:
            old = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
                offset=keep,
                limit=batch,
            )
            for artifact in old:
                client.delete_artifact(artifact.id)
            deleted += len(old)
            if len(old) < batch:
                return deleted


def age_seconds(moment: datetime | None, now: datetime | None = None) -> float | None:
    if moment is None:
        return None
    now = now or datetime.now(UTC)
    return (now - moment.astimezone(UTC)).total_seconds()


def watch_is_running() -> bool:
    """Is a ``watch-folder`` flow run in the Running state?"""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[WATCH_FLOW_NAME])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
            ),
            limit=1,
        )
    return bool(runs)


def observe(storage: dict[str, Any] | None = None, report_age: float | None = None) -> Observed:
    """What the health verdict needs; ``storage`` given (a report just made) or read from the latest report."""
    if storage is None:
        rows, written = read_table(STORAGE_KEY)
        storage, report_age = (rows[0] if rows else None), age_seconds(written)
    status_rows, _ = read_table(STATUS_KEY)
    return Observed(
        storage=storage,
        report_age_seconds=report_age,
        watch_running=watch_is_running(),
        pending=sum(row.get("status") in ("Discovered", "Ready", "InQueue", "Copying") for row in status_rows),
        failed=sum(row.get("status") == "Failed" for row in status_rows),
    )
