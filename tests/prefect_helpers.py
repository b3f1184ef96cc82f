"""Helpers for the end-to-end tests that run the flows against a real (temporary) Prefect server."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from prefect.client.schemas.sorting import TaskRunSort

from flows.config import copy_io_in_process
from fta.copier import hash_file
from fta.copy_io import CopyIO
from fta.paths import temp_owner
from fta.settings import default_agent_name

# The agent the tests' runs belong to: they name none, so each is this host's (its short name).
AGENT = default_agent_name()


def fast_config(source: Path, destination: Path, **overrides: Any) -> dict[str, Any]:
    """Seconds-scale settings for end-to-end runs."""
    config: dict[str, Any] = {
        "source_path": str(source),
        "destination_path": str(destination),
        "file_stable_time_seconds": 0.5,
        "polling_interval_seconds": 0.1,
        "global_retry_delay_seconds": 0.2,
        "retry_delay_seconds": 0,
        "max_retry_attempts": 2,
        "log_file_path": "",
        "metrics_port": 0,
    }
    config.update(overrides)
    return config


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def task_runs(flow_run_id: UUID) -> list[TaskRun]:
    """Every task run of a flow run, once each (the API pages at 200).

    Paged by id, which no two runs share (the default order, the expected start time, can tie, and pages split
    between tied runs could show one twice and another never); a run recorded while paging shifts the later pages
    by one, and is then met twice: counted once.
    """
    runs: dict[UUID, TaskRun] = {}
    flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    offset = 0
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_task_runs(
                flow_run_filter=flow_filter, sort=TaskRunSort.ID_DESC, limit=200, offset=offset
            )
            runs.update((run.id, run) for run in page)
            offset += len(page)
            if len(page) < 200:
                return list(runs.values())


def runs_by_name(flow_run_id: UUID, expect: int = 1, timeout: float = 60.0) -> dict[str, list[TaskRun]]:
    """Task runs of a flow run by name, once at least ``expect`` of them are recorded in a final state.

    The server records task runs from events, a little behind the flow: the wait is part of what is tested.
    """
    named: dict[str, list[TaskRun]] = {}

    def recorded() -> bool:
        named.clear()
        runs = task_runs(flow_run_id)
        for run in runs:
            named.setdefault(run.name, []).append(run)
        return len(runs) >= expect and all(run.state is not None and run.state.is_final() for run in runs)

    wait_until(recorded, timeout, what=f"{expect} task runs recorded")
    return named


def files_below(root: Path) -> dict[str, str]:
    """Relative path -> checksum of every regular file below ``root``."""
    return {p.relative_to(root).as_posix(): hash_file(p) for p in root.rglob("*") if p.is_file()}


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if temp_owner(p.name) is not None]


class Background:
    """Runs a flow call in a thread; ``result()`` joins it. ``io``: the disk under the copies of the flows it runs
    (handed over in that thread: a context variable set in the test's thread does not reach a new one)."""

    def __init__(self, call: Callable[[], Any], io: CopyIO | None = None) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call, io), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any], io: CopyIO | None) -> None:
        try:
            with copy_io_in_process(io) if io is not None else contextlib.nullcontext():
                self._value = call()
        except BaseException as exc:
            self._error = exc

    def result(self, timeout: float = 60.0) -> Any:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the flow did not end within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value


def kind(run: TaskRun) -> str:
    """The run's state type (COMPLETED, FAILED, CANCELLED, ...)."""
    return run.state.type.value if run.state is not None else "NONE"


def message(run: TaskRun) -> str:
    return (run.state.message if run.state is not None else None) or ""


def state_name(run: TaskRun) -> str:
    """The run's state name (Completed, Failed, Deferred, Changed, ...)."""
    return (run.state.name if run.state is not None else None) or ""


def slow_agent(seconds_per_write: float) -> str:
    """``python -c`` code: the ``fta`` command with every chunk write slowed down (a slow NAS, a window to kill in).

    For ``fta watch`` and ``fta once``, whose flow runs in this very process: the disk is handed over around
    ``main()``, after Prefect's defaults are set as ``main()`` sets them (the handover imports Prefect). ``fta up``
    runs its flows in processes of its runner's, which no handover in this one reaches.
    """
    return (
        "import os, sys, time\n"
        "from deployments.cli import PREFECT_DEFAULTS, main\n"
        "for key, value in PREFECT_DEFAULTS.items():\n"
        "    os.environ.setdefault(key, value)\n"
        "from flows.config import copy_io_in_process\n"
        "from fta.copy_io import CopyIO\n"
        "class SlowIO(CopyIO):\n"
        "    def write_chunk(self, fd, data):\n"
        "        super().write_chunk(fd, data)\n"
        f"        time.sleep({seconds_per_write!r})\n"
        "with copy_io_in_process(SlowIO()):\n"
        "    sys.exit(main(sys.argv[1:]))\n"
    )
