"""``transfer_once``: one sweep of what is in the source now; waits for those files to be stable, moves them, ends.

Its final state says whether any file failed, so ``prefect deployment run`` and cron-style use can rely on it.
Its settings are the agent's own (``flows.config``); a run may only narrow them to a ``subfolder`` of the source
and a file-name ``pattern`` (``fta.scope``), e.g. ``prefect deployment run 'transfer-once/manual' --param
subfolder=cam1``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from prefect import State, flow
from prefect.states import Completed, Failed

from flows.config import handed_stop
from flows.transfer_loop import TransferLoop, loop_settings
from fta.scope import ScopeRefused, parse_scope
from fta.sourcelock import SourceBusy


@flow(name="transfer-once", persist_result=False, log_prints=False)
def transfer_once(subfolder: str | None = None, pattern: str | None = None) -> State[Any]:
    """Move the files present in the source now; Failed when any of them failed.

    ``subfolder``: only files below this folder of the source (relative, no ``..``). ``pattern``: only files whose
    name matches this glob (``*.mxf``). Paths and every other setting are the agent's own configuration.
    """
    try:
        scope = parse_scope(subfolder, pattern)
    except ScopeRefused as refused:
        return Failed(message=f"{refused}; nothing was done")
    with loop_settings(scope) as (settings, _):
        try:
            summary = TransferLoop(settings, once=True, scope=scope, stop=handed_stop()).run()
        except SourceBusy as busy:
            return Failed(message=str(busy))
    result = asdict(summary)
    if summary.failed:
        return Failed(message=f"{summary.failed} file(s) failed: {', '.join(summary.failed_files)}", data=result)
    return Completed(message=f"{summary.completed} file(s) moved", data=result)
