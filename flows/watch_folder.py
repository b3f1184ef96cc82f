"""``watch_folder``: the long-running flow. Runs until cancelled (or ``request_stop()`` / SIGTERM in ``fta watch``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow

from flows.flow_logging import flow_logging
from flows.transfer_loop import TransferLoop
from fta.settings import load_settings


@flow(name="watch-folder", persist_result=False, log_prints=False)
def watch_folder(config: dict[str, Any] | None = None, max_cycles: int | None = None) -> dict[str, Any]:
    """Watch the source folder and move every finished file to the destination, verified.

    ``config`` overrides settings (the same names as ``FTA_*`` without the prefix); ``max_cycles`` ends the run
    after that many scans once nothing is copying (for trials; a watch normally runs until it is stopped).
    """
    settings = load_settings(config or {})
    with flow_logging(settings):
        summary = TransferLoop(settings, once=False, max_cycles=max_cycles).run()
    return asdict(summary)
