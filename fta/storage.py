"""Free space of source and destination, and the seed's storage status (OK / WARNING / ERROR)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fta.probe import ProbeResult

BYTES_PER_GB = 1_000_000_000
LOW_MESSAGE = "Destination storage is running low."
UNREACHABLE_MESSAGE = "Destination path is not accessible."


@dataclass(frozen=True)
class StorageReport:
    source_free_gb: float
    destination_free_gb: float
    status: Literal["OK", "WARNING", "ERROR"]
    message: str | None = None
    reason: str | None = None

    def as_seed_json(self) -> dict[str, object]:
        """The seed's ``GET /api/storage`` body (``message`` only when not OK)."""
        body: dict[str, object] = {
            "sourceFreeGB": self.source_free_gb,
            "destinationFreeGB": self.destination_free_gb,
            "status": self.status,
        }
        if self.message is not None:
            body["message"] = self.message
        return body


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on the filesystem of ``path`` (one ``statvfs``)."""
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


def free_gb(path: Path) -> float:
    return round(free_bytes(path) / BYTES_PER_GB, 2)


def storage_report(source: Path, probe: ProbeResult, warning_gb: float) -> StorageReport:
    """Combine a destination probe with free-space figures; -1 means "not reachable"."""
    try:
        source_gb = free_gb(source)
    except OSError:
        source_gb = -1.0
    if not probe.ok or probe.free_bytes is None:
        return StorageReport(source_gb, -1, "ERROR", UNREACHABLE_MESSAGE, probe.reason)
    destination_gb = round(probe.free_bytes / BYTES_PER_GB, 2)
    if destination_gb < warning_gb:
        return StorageReport(source_gb, destination_gb, "WARNING", LOW_MESSAGE)
    return StorageReport(source_gb, destination_gb, "OK")
