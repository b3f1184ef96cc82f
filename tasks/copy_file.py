"""The ``copy_file`` task: one verified move of one file, named after its relative path (``copy clips/a.mxf``).

Outcomes, as Prefect states:
    Completed               moved and verified (or found already delivered); the message gives destination,
                            size, checksum, seconds and MB/s, and the result holds them as a dict
    Failed                  a per-file error after ``max_retry_attempts`` retries; the source stays
    Cancelled "Deferred"    the destination is unavailable: not a failure, the file goes back to waiting and is
                            submitted again once the guard passes
    Cancelled "AwaitingRoom" the destination has no room for this file: not a failure, it waits on its own (the
                            files that fit go on) until there is room for it, it changes or it leaves the source
    Cancelled "Changed"     the source changed during the copy: it waits until it is stable again
    Cancelled "Interrupted" the agent is stopping: the temp file is gone, the file waits for the next start
Only per-file errors are retried (``retry_condition_fn``); every outcome also writes one audit log line.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.runtime import task_run as current_task_run
from prefect.states import Cancelled, Completed
from prefect.tasks import Task

from fta import metrics
from fta.copier import CopyResult
from fta.errors import CopyInterrupted, DestinationUnavailable
from fta.storage import free_bytes
from tasks.runtime import TransferRuntime

log = logging.getLogger("fta.copy")
audit_log = logging.getLogger("fta.audit")

ARTIFACT_AFTER_SECONDS = 1.0  # small files never get a progress artifact (each costs an API call)
ARTIFACT_INTERVAL_SECONDS = 1.0


def retry_per_file_errors(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Prefect's retry condition: retry per-file errors, never a missing destination or a stop."""
    try:
        state.result()
    except (DestinationUnavailable, CopyInterrupted):
        return False
    except Exception:
        return True
    return False


class _Progress:
    """Feeds the board on every report and a Prefect progress artifact about once a second for long copies."""

    def __init__(self, rel: str, runtime: TransferRuntime) -> None:
        self.rel = rel
        self.runtime = runtime
        self.started = time.monotonic()
        self.artifact_id: Any = None
        self.last_artifact = 0.0
        self.artifacts_broken = False

    def __call__(self, done: int, total: int) -> None:
        self.runtime.board.progress(self.rel, done, total)
        now = time.monotonic()
        if self.artifacts_broken or now - self.started < ARTIFACT_AFTER_SECONDS:
            return
        if now - self.last_artifact < ARTIFACT_INTERVAL_SECONDS and done < total:
            return
        self.last_artifact = now
        percent = 100.0 * done / total if total else 100.0
        try:
            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(percent, description=f"copy {self.rel}")
            else:
                update_progress_artifact(self.artifact_id, percent)
        except Exception as exc:  # the API being busy must never cost a copy
            self.artifacts_broken = True
            log.debug("progress artifact for %s disabled: %s", self.rel, exc)


def audit(outcome: str, rel: str, runtime: TransferRuntime, result: CopyResult | None = None, error: str = "") -> None:
    """One structured line per finished transfer attempt: the log file is a complete audit trail on its own."""
    settings = runtime.settings
    fields: dict[str, Any] = {
        "audit": True,
        "outcome": outcome,
        "source": str(settings.source_path / rel),
        "destination": str(result.destination) if result and result.destination else None,
        "size": result.size if result else None,
        "checksum": result.checksum if result else None,
        "seconds": round(result.seconds, 3) if result else None,
        "error": error or None,
    }
    audit_log.info(
        "transfer %s: %s -> %s size=%s checksum=%s seconds=%s%s",
        outcome,
        fields["source"],
        fields["destination"],
        fields["size"],
        fields["checksum"],
        fields["seconds"],
        f" error={error}" if error else "",
        extra=fields,
    )


def summary(result: CopyResult) -> dict[str, Any]:
    return {
        "file": result.relative_path,
        "outcome": result.outcome,
        "destination": str(result.destination),
        "size": result.size,
        "checksum": result.checksum,
        "seconds": round(result.seconds, 3),
        "mb_per_s": round(result.mb_per_s, 1),
    }


def _room_left(runtime: TransferRuntime, exc: DestinationUnavailable) -> int | None:
    """Free bytes at the destination when ``exc`` says it has no room for this file; None when it is not about
    room, or the destination cannot even say how much is free (then it is the destination's trouble, for the guard)."""
    if not exc.needed_bytes:
        return None
    try:
        return free_bytes(runtime.settings.destination_path)
    except OSError:
        return None


def _await_room(rel: str, runtime: TransferRuntime, needed: int, free: int) -> State[Any]:
    """The destination is too full for this file, not gone: it waits alone, the files that fit go on."""
    runtime.board.waiting_for_room(rel, needed, free)
    reason = f"waiting for room: {needed} bytes needed, {free} free"
    audit("deferred", rel, runtime, error=reason)
    log.warning("destination full for %s: %s; the files that fit go on", rel, reason)
    return Cancelled(
        name="AwaitingRoom",
        message=f"{reason}; the file stays in the source and is copied once there is room for it",
    )


@task(
    name="copy_file",
    task_run_name="copy {rel}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retry_condition_fn=retry_per_file_errors,
)
def copy_file(rel: str, runtime: TransferRuntime) -> State[Any]:
    """Move one file (relative to the source root) with the verified copier."""
    board = runtime.board
    attempt = current_task_run.get_run_count() or 1
    retries = runtime.settings.max_retry_attempts
    if runtime.stop.is_set():
        board.back_to_waiting(rel, restart_timer=False, reason="agent stopping")
        return Cancelled(name="Interrupted", message="agent stopping; the file stays in the source")
    board.copying(rel, attempt)
    if attempt > 1:
        log.warning("retry %d of %d for %s", attempt - 1, retries, rel)
    progress = _Progress(rel, runtime)
    try:
        result = runtime.copier.copy(rel, board.sig(rel), progress=progress, stop=runtime.stop)
    except DestinationUnavailable as exc:
        free = _room_left(runtime, exc)
        if exc.needed_bytes and free is not None:
            return _await_room(rel, runtime, exc.needed_bytes, free)
        audit("deferred", rel, runtime, error=str(exc))
        board.back_to_waiting(rel, restart_timer=False, reason=str(exc))
        runtime.destination_unavailable(exc)
        return Cancelled(
            name="Deferred", message=f"{exc}; the file stays in the source and is copied when the destination is back"
        )
    except CopyInterrupted:
        audit("interrupted", rel, runtime)
        board.back_to_waiting(rel, restart_timer=False, reason="agent stopping")
        return Cancelled(name="Interrupted", message="agent stopping; temp file removed, the file stays in the source")
    except Exception as exc:
        if attempt > retries:
            metrics.FILES_FAILED.inc()
            audit("failed", rel, runtime, error=str(exc))
            log.error("%s failed after %d attempts: %s", rel, attempt, exc)
            board.failed(rel, str(exc))
        else:
            log.warning("%s: %s (attempt %d of %d)", rel, exc, attempt, retries + 1)
        raise
    finally:
        runtime.wake.set()
    if result.outcome == "changed":
        audit("changed", rel, runtime, result)
        board.back_to_waiting(rel, restart_timer=True, reason="changed during the copy")
        return Cancelled(name="Changed", message="the source changed during the copy; it waits until stable again")
    audit(result.outcome, rel, runtime, result)
    metrics.FILES_COMPLETED.inc()
    metrics.COPY_SECONDS.observe(result.seconds)
    if result.outcome == "copied":
        metrics.BYTES_MOVED.inc(result.size)
    board.completed(rel, str(result.destination))
    info = summary(result)
    message = (
        f"{info['outcome']}: {info['destination']}, {info['size']} bytes, {info['checksum']}, "
        f"{info['seconds']} s, {info['mb_per_s']} MB/s"
    )
    return Completed(message=message, data=info)
