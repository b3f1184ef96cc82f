"""``transfer_once``: one sweep of what is in the source now; waits for those files to be stable, moves them, ends.

Its final state says whether any file failed, so ``prefect deployment run`` and cron-style use can rely on it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import State, flow
from prefect.states import Completed, Failed

from flows.flow_logging import flow_logging
from flows.transfer_loop import TransferLoop
from fta.settings import load_settings


@flow(name="transfer-once", persist_result=False, log_prints=False)
def transfer_once(config: dict[str, Any] | None = None) -> State[Any]:
    """Move the files present in the source now; Failed when any of them failed."""
    settings = load_settings(config or {})
    with flow_logging(settings):
        summary = TransferLoop(settings, once=True).run()
    result = asdict(summary)
    if summary.failed:
        return Failed(message=f"{summary.failed} file(s) failed: {', '.join(summary.failed_files)}", data=result)
    return Completed(message=f"{summary.completed} file(s) moved", data=result)
