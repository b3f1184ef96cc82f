"""``transfer_once``: one sweep of what is in the source now; waits for those files to be stable, moves them, ends.

Its final state says whether any file failed, so ``prefect deployment run`` and cron-style use can rely on it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import State, flow
from prefect.states import Completed, Failed

from flows.config import resolve_settings
from flows.flow_logging import flow_logging
from flows.transfer_loop import TransferLoop
from fta.sourcelock import SourceBusy


@flow(name="transfer-once", persist_result=False, log_prints=False)
def transfer_once(config: dict[str, Any] | None = None, config_block: str | None = None) -> State[Any]:
    """Move the files present in the source now; Failed when any of them failed."""
    settings = resolve_settings(config, config_block)
    with flow_logging(settings):
        try:
            summary = TransferLoop(settings, once=True).run()
        except SourceBusy as busy:
            return Failed(message=str(busy))
    result = asdict(summary)
    if summary.failed:
        return Failed(message=f"{summary.failed} file(s) failed: {', '.join(summary.failed_files)}", data=result)
    return Completed(message=f"{summary.completed} file(s) moved", data=result)
