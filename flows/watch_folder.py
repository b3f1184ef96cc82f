"""``watch_folder``: the long-running flow. Runs until cancelled (or ``request_stop()`` / SIGTERM in ``fta watch``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import flow

from flows.config import resolve_settings
from flows.flow_logging import flow_logging
from flows.transfer_loop import TransferLoop


@flow(name="watch-folder", persist_result=False, log_prints=False)
def watch_folder(
    config: dict[str, Any] | None = None, config_block: str | None = None, max_cycles: int | None = None
) -> dict[str, Any]:
    """Watch the source folder and move every finished file to the destination, verified.

    ``config_block`` names a saved TransferConfig block (the deployments use ``default``); its edits take effect
    within one cycle. ``config`` overrides settings (names as ``FTA_*`` without the prefix). ``max_cycles`` ends
    the run after that many scans once nothing is copying (for trials; a watch normally runs until stopped).
    """
    settings = resolve_settings(config, config_block)
    with flow_logging(settings):
        loop = TransferLoop(
            settings,
            once=False,
            max_cycles=max_cycles,
            reload=(lambda: resolve_settings(config, config_block)) if config_block else None,
        )
        summary = loop.run()
    return asdict(summary)
