"""The seed's JSON shapes, computed from status rows.

A status row is one file as the agent publishes it (the ``fta-status`` artifact, one row per file):
``file, status, progress, size, lastWriteTime, startedAt, finishedAt, retries, error, destination``. The board
renders its own state through these functions, and ``fta status`` / ``fta files`` render the rows they read back
from the Prefect API through the same ones, so both always agree.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

Row = dict[str, Any]

PENDING = ("Discovered", "Ready", "InQueue")
TO_DO = (*PENDING, "Copying")  # not finished one way or the other
STATUSES = (*TO_DO, "Completed", "Failed")
COUNTS_PREFIX = "File Transfer Agent: "
_COUNT = re.compile(r"\b(" + "|".join(STATUSES) + r") (\d+)\b")


def status_description(counts: Mapping[str, int], waiting_listed: int) -> str:
    """The status table's description: every count (``Ready 3, Copying 1``, zeros left out), and how many of the
    files waiting its rows list."""
    text = COUNTS_PREFIX + ", ".join(f"{name} {count}" for name, count in counts.items() if count)
    waiting = sum(counts.get(name, 0) for name in ("Discovered", "Ready"))
    if waiting > waiting_listed:
        text += f"; the table lists the first {waiting_listed} of the {waiting} files waiting, by path"
    return text


def counts_from_text(text: str | None) -> dict[str, int] | None:
    """The counts ``status_description`` wrote into ``text``; None when it holds none (a table from an older agent)."""
    if text is None or not text.startswith(COUNTS_PREFIX):
        return None
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({name: int(count) for name, count in _COUNT.findall(text.split(";", 1)[0])})
    return counts


def status_view(rows: Sequence[Row], counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The seed's ``GET /api/status`` body; ``inProgress`` is the longest-running copy, ``allInProgress`` all.

    ``counts``: every file's status counted (the table's rows may list only some of the files waiting); without
    them, the rows are counted.
    """
    pending = sorted(row["file"] for row in rows if row["status"] in PENDING)
    pending_count = len(pending) if counts is None else sum(counts.get(name, 0) for name in PENDING)
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
        "pendingFilesCount": pending_count,
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
