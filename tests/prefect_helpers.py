"""Helpers for the end-to-end tests that run the flows against a real (temporary) Prefect server."""

from __future__ import annotations

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

from fta.copier import Copier, hash_file
from fta.paths import temp_owner


def hold_copies_after_their_first_chunk(monkeypatch: Any) -> tuple[threading.Event, threading.Event]:
    """Each copy writes its first chunk, sets the first event and waits (30 s at most) for the second to be set."""
    in_copy, release = threading.Event(), threading.Event()
    real_write = Copier._write

    def held(self: Copier, fd: int, chunk: memoryview) -> None:
        real_write(self, fd, chunk)
        in_copy.set()
        release.wait(30)

    monkeypatch.setattr(Copier, "_write", held)
    return in_copy, release


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
    """Runs a flow call in a thread; ``result()`` joins it."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
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
    """``python -c`` code: the ``fta`` command with every chunk write slowed down (a slow NAS, a window to kill in)."""
    return (
        "import sys, time\n"
        "import fta.copier as copier\n"
        "real = copier.Copier._write\n"
        "def slow(self, fd, data):\n"
        "    real(self, fd, data)\n"
        f"    time.sleep({seconds_per_write!r})\n"
        "copier.Copier._write = slow\n"
        "from deployments.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
