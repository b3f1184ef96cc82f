"""The seed's JSON shapes, computed from status rows.

A status row is one file as the agent publishes it (the ``fta-status`` artifact, one row per file):
``file, status, progress, size, lastWriteTime, startedAt, finishedAt, retries, error, destination``. The board
renders its own state through these functions, and ``fta status`` / ``fta files`` render the rows they read back
from the Prefect API through the same ones, so both always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Row = dict[str, Any]

PENDING = ("Discovered", "Ready", "InQueue")


def status_view(rows: Sequence[Row]) -> dict[str, Any]:
    """The seed's ``GET /api/status`` body; ``inProgress`` is the longest-running copy, ``allInProgress`` all."""
    pending = sorted(row["file"] for row in rows if row["status"] in PENDING)
    copying = sorted((row for row in rows if row["status"] == "Copying"), key=lambda row: row["startedAt"] or "")
    running = [
        {
            "file": row["file"],
            "progressPercentage": round(row["progress"]),
            "status": row["status"],
            "startTime": row["startedAt"],
        }
        for row in copying
    ]
    return {
        "pendingFilesCount": len(pending),
        "pendingFiles": pending,
        "inProgress": running[0] if running else None,
        "allInProgress": running,
        "recentlyCompleted": [
            {"file": row["file"], "completedAt": row["finishedAt"]} for row in rows if row["status"] == "Completed"
        ],
        "failedFiles": [
            {"file": row["file"], "error": row["error"], "failedAt": row["finishedAt"]}
            for row in rows
            if row["status"] == "Failed"
        ],
    }


def files_view(rows: Sequence[Row]) -> dict[str, Any]:
    """The seed's ``GET /api/files`` body."""
    return {
        "files": [
            {
                "file_path": row["file"],
                "status": row["status"],
                "file_size": row["size"],
                "last_write_time": row["lastWriteTime"],
                "copy_progress": row["progress"],
                "retry_count": row["retries"],
                "error_message": row["error"],
            }
            for row in rows
        ]
    }
