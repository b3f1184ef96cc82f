"""What a transfer loop does once at start (and after a configuration change), apart from moving files."""

from __future__ import annotations

import logging

from prefect.client.orchestration import get_client

from fta import metrics
from fta.copier import Copier
from fta.scanner import source_folders
from fta.settings import Settings
from tasks.guard import check_destination

log = logging.getLogger("fta.loop")


def remove_stale_temp_files(settings: Settings, copier: Copier) -> None:
    """This agent's temp files left by a crash, in the destination folders that mirror the source's."""
    if not check_destination(settings).ok:
        return  # the guard takes care of it; nothing to clean on a destination we cannot reach
    copier.remove_stale_temp_files(source_folders(settings.source_path, settings.exclude))


def serve_metrics(settings: Settings) -> None:
    try:
        port = metrics.serve_metrics(settings.metrics_port)
    except OSError as exc:  # another agent on this machine has the port: run without metrics
        log.warning("metrics not served on 127.0.0.1:%d: %s", settings.metrics_port, exc)
        return
    if port is not None:
        log.info("Prometheus metrics on http://127.0.0.1:%d/metrics", port)


def ensure_shared_limit(settings: Settings) -> None:
    """Create (or update) the tag concurrency limit shared by the agents writing to one NAS."""
    tag, limit = settings.shared_limit_tag, settings.shared_limit
    if tag is None or limit is None:
        return
    try:
        with get_client(sync_client=True) as client:
            client.create_concurrency_limit(tag=tag, concurrency_limit=limit)
    except Exception as exc:
        log.warning("could not set the concurrency limit %d on tag %s: %s", limit, tag, exc)
        return
    log.info("at most %d copies at once across all agents tagged %s", limit, tag)
