"""Prometheus metrics of one agent process, served on a loopback port (``metrics_port``; 0 turns them off).

fta_files_completed_total        files moved and verified (including ones found already delivered)
fta_files_failed_total           files that failed after their retries
fta_bytes_moved_total            bytes of the files moved
fta_copy_duration_seconds        histogram of one file's copy time
fta_queue_length                 files waiting: discovered, ready or queued
fta_copies_running               copies under way
fta_destination_free_bytes       free space at the destination at the last check
fta_destination_reachable        1 when the last destination check passed, else 0
process_cpu_seconds_total, process_resident_memory_bytes, ...   this process (the standard process collector)
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

FILES_COMPLETED = Counter("fta_files_completed", "Files moved and verified.", registry=REGISTRY)
FILES_FAILED = Counter("fta_files_failed", "Files that failed after their retries.", registry=REGISTRY)
BYTES_MOVED = Counter("fta_bytes_moved", "Bytes of the files moved.", registry=REGISTRY)
COPY_SECONDS = Histogram(
    "fta_copy_duration_seconds",
    "Time to copy, verify and place one file.",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)
QUEUE_LENGTH = Gauge("fta_queue_length", "Files waiting: discovered, ready or queued.", registry=REGISTRY)
COPIES_RUNNING = Gauge("fta_copies_running", "Copies under way.", registry=REGISTRY)
DESTINATION_FREE = Gauge("fta_destination_free_bytes", "Free bytes at the destination.", registry=REGISTRY)
DESTINATION_REACHABLE = Gauge("fta_destination_reachable", "1 when the destination is reachable.", registry=REGISTRY)

_lock = threading.Lock()
_servers: dict[int, WSGIServer] = {}


def serve_metrics(port: int) -> int | None:
    """Start the endpoint on 127.0.0.1 once per process and port; the bound port (None when turned off)."""
    if port == 0:
        return None
    with _lock:
        if port not in _servers:
            server, _ = start_http_server(port, addr="127.0.0.1", registry=REGISTRY)
            _servers[port] = server
        return int(_servers[port].server_port)


def record_probe(reachable: bool, free_bytes: int | None) -> None:
    DESTINATION_REACHABLE.set(1 if reachable else 0)
    if free_bytes is not None:
        DESTINATION_FREE.set(free_bytes)


def record_counts(counts: dict[str, int]) -> None:
    QUEUE_LENGTH.set(counts.get("Discovered", 0) + counts.get("Ready", 0) + counts.get("InQueue", 0))
    COPIES_RUNNING.set(counts.get("Copying", 0))
