"""``watch_folder``: the long-running flow. Runs until stopped (SIGTERM, its ``StopSwitch``) or cancelled."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from prefect import State, flow
from prefect.states import Failed

from flows.config import handed_stop
from flows.prefect_internals import cancel_requested
from flows.transfer_loop import TransferLoop, loop_settings
from fta.scope import ScopeRefused, parse_scope
from fta.stop_switch import StopSwitch


@contextmanager
def stop_on_sigterm() -> Iterator[StopSwitch]:
    """The run's stop switch, pulled by SIGTERM and a first SIGINT: the watch stops and the run ends Completed.

    The switch is the one handed over in this process (``flows.config.stop_in_process``: ``fta watch`` pulls it from
    its own SIGTERM handler while the flow run starts, a test from another thread), else a new one for this run.

    SIGTERM comes from systemd and ``docker stop``, from ``fta up`` stopping its runs and from ``fta watch``'s own
    stop. Prefect's handler would end the run Crashed: the "watch run crashed" alert at every restart of the
    service. Here the loop ends as from Ctrl-C in ``fta watch`` (copies stop between two chunks, temp files are
    removed). A cancel from the UI, which Prefect's runner announces before its SIGTERM, still goes to Prefect's
    handler and the run ends Cancelled. SIGINT reaches the whole process group (Ctrl-C in a terminal, a group-wide
    stop), flow-run processes of ``fta up`` included: the first is a stop like SIGTERM, a second interrupts at once.
    Signal handlers belong to the main thread: elsewhere only the switch is yielded.
    """
    stop = handed_stop() or StopSwitch()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.getsignal(signal.SIGTERM)
    previous_int = signal.getsignal(signal.SIGINT)
    stopping = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        if cancel_requested() and callable(previous) and not stopping.is_set():
            previous(signum, frame)
            return
        stopping.set()
        stop.request()

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, previous_int)  # a second Ctrl-C: the operator wants out now
        stopping.set()
        stop.request()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, interrupt)
    try:
        yield stop
    finally:
        # After a stop, a SIGTERM that comes while the run reports its end (``fta up`` stops its runs after a group
        # Ctrl-C reached them) is the same stop: Prefect's handler would turn the ending run Crashed.
        signal.signal(signal.SIGTERM, handler if stopping.is_set() else previous)
        signal.signal(signal.SIGINT, previous_int)


@flow(name="watch-folder", persist_result=False, log_prints=False)
def watch_folder(
    subfolder: str | None = None, pattern: str | None = None, max_cycles: int | None = None
) -> dict[str, Any] | State[Any]:
    """Watch the source folder and move every finished file to the destination, verified.

    Its settings are the agent's own (``flows.config``): a served run reads the TransferConfig block of its
    serving process, and an edit of that block takes effect within one cycle. A run may only narrow the work:
    ``subfolder`` (a folder of the source, relative, no ``..``) and ``pattern`` (a glob on file names).
    ``max_cycles`` ends the run after that many scans once nothing is copying (for trials; a watch normally runs
    until stopped).
    """
    try:
        scope = parse_scope(subfolder, pattern)
    except ScopeRefused as refused:
        return Failed(message=f"{refused}; nothing was done")
    with loop_settings(scope) as (settings, reload), stop_on_sigterm() as stop:
        loop = TransferLoop(settings, once=False, max_cycles=max_cycles, reload=reload, scope=scope, stop=stop)
        summary = loop.run()
    return asdict(summary)
