"""Every use of Prefect's internals, each behind one small function: the one module to read at a Prefect upgrade.

The rest of the agent uses Prefect's public API only. What it needs and no public API offers is reached here, and
nowhere else (a lint rule and ``tests/test_prefect_internals.py`` keep it so): a private module, a private attribute,
a method Prefect calls on itself, or a behaviour its documentation does not promise. Each function's docstring says
what it relies on and why; ``tests/test_prefect_internals.py`` has one contract test per function, run against the
installed Prefect, that names the internal when a release changes it.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from typing import Any

from prefect.runner import Runner
from prefect.task_runners import ThreadPoolTaskRunner

# -- the run history's send queues (flows.backlog) ------------------------------------------------------------------


def unsent_records() -> int:
    """Events and log records queued in this process for the Prefect server and not yet taken by its senders.

    Relies on ``prefect._internal.concurrency.services._QueueServiceBase._instances`` (the registry of the running
    send services, filled by ``instance()``) and on each service's ``_queue`` (a ``queue.Queue`` that ``send()``
    fills and the service's thread empties), for the ``EventsWorker`` (``prefect.events.worker``) and the
    ``APILogWorker`` (``prefect.logging.handlers``). Prefect has no public API for how far behind its sending is.
    Raises (``ImportError``, ``AttributeError``, ...) when they change shape: the caller decides what that means.
    """
    from prefect._internal.concurrency.services import _QueueServiceBase
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    registry: Any = _QueueServiceBase  # its ``_instances`` is typed per subclass
    services: list[Any] = list(registry._instances.values())
    return sum(service._queue.qsize() for service in services if isinstance(service, EventsWorker | APILogWorker))


def send_queued_records(timeout: float) -> None:
    """Send the logs and events still queued in this process now, waiting ``timeout`` seconds at most.

    Relies on ``APILogHandler.flush()`` and on ``EventsWorker.drain_all(timeout=...)``, a class method of the private
    ``_QueueServiceBase`` that stops the workers and waits for their queues to empty. Prefect itself drains them only
    at interpreter exit, when a temporary server the process started may be gone already.

    It also stops both senders: the next record starts new ones, connected to the API URL of that moment. A sender
    keeps the URL of its first record for its whole life (one per process, whatever ``PREFECT_API_URL`` says later).
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    EventsWorker.drain_all(timeout=timeout)


# -- a cancel announced by the runner (flows.watch_folder) -----------------------------------------------------------


def cancel_requested() -> bool:
    """Did Prefect's runner announce "cancel" (a cancel from the UI or the CLI) before sending its SIGTERM?

    Relies on ``prefect._internal.control_listener.get_intent()``: the runner sends its intent over a loopback
    channel to the flow-run process before the SIGTERM, and the listener keeps it. A SIGTERM looks the same whether it
    comes from a cancel or from systemd; no public API tells them apart. A Prefect without the channel: never.
    """
    try:
        from prefect._internal.control_listener import get_intent
    except ImportError:  # pragma: no cover - a Prefect without the control channel
        return False
    return get_intent() == "cancel"


# -- the transfer loop's thread pool (flows.copy_dispatcher) and results (flows.transfer_loop) ------------------------


def start_task_runner(max_workers: int) -> ThreadPoolTaskRunner[Any]:
    """A started thread-pool task runner that outlives any one ``with`` block: the loop replaces it now and then.

    Relies on ``ThreadPoolTaskRunner.__enter__`` creating the pool that ``submit()`` needs (Prefect's flow engine
    enters and leaves its runner around the whole flow body; a runner kept across loop iterations is entered by hand).
    """
    runner: ThreadPoolTaskRunner[Any] = ThreadPoolTaskRunner(max_workers=max_workers)
    runner.__enter__()
    return runner


def close_task_runner(runner: ThreadPoolTaskRunner[Any]) -> None:
    """Leave a runner from ``start_task_runner``: its threads end; task runs still queued in it are cancelled.

    Relies on ``ThreadPoolTaskRunner.__exit__`` shutting its pool down (``cancel_futures=True``), which is why the
    loop waits for its copies before closing it.
    """
    runner.__exit__(None, None, None)


def release_run_results() -> None:
    """Forget the results the current flow run keeps of its task runs (nothing when no flow run is current).

    Relies on ``FlowRunContext.run_results``: Prefect keeps every task run's result there until the flow run ends,
    to link results passed on to other tasks; a watch run that lives for months grows by each one. The agent's flows
    never pass one task's result to another, so nothing is lost. No public API limits or empties it.
    """
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is not None:
        context.run_results.clear()


# -- the runner's stop (deployments.serve) ---------------------------------------------------------------------------


def runner_with_own_sigterm(on_sigterm: Callable[[int], None], **options: Any) -> Runner:
    """A ``Runner(**options)`` whose SIGTERM calls ``on_sigterm(signum)`` instead of Prefect's stop-and-exit.

    Relies on ``Runner.start()`` installing the runner's ``handle_sigterm`` method as the SIGTERM handler (in the
    main thread). Prefect's own handler calls the async ``stop()`` without awaiting it and exits from inside the
    event loop; the runner takes no handler of its own through its public API.
    """

    class OwnSigtermRunner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            on_sigterm(args[0] if args else signal.SIGTERM)

    return OwnSigtermRunner(**options)


def stop_taking_runs(runner: Runner) -> None:
    """The runner starts no new flow run from now on; the runs under way go on, and so does the runner.

    Relies on ``Runner.stopping`` and on the ``stopping`` flag of its private ``_scheduled_run_poller``: the first
    steps of ``Runner.astop()``, which goes on to cancel every run under way; no public API stops only the intake.
    Call it in the runner's event-loop thread.
    """
    runner.stopping = True
    poller = getattr(runner, "_scheduled_run_poller", None)  # made as the runner starts
    if poller is not None:
        poller.stopping = True


# -- the API log handler (flows.flow_logging) --------------------------------------------------------------------------


def api_log_handlers() -> list[logging.Handler]:
    """The handlers that send a logger's lines to the Prefect API, as ``PREFECT_LOGGING_EXTRA_LOGGERS`` attaches them.

    Relies on Prefect's logging configuration giving the ``prefect.extra`` logger its API handler: Prefect copies
    that logger's handlers to the extra loggers, but only once, as it sets logging up; there is no public call for
    the handlers themselves.
    """
    return list(logging.getLogger("prefect.extra").handlers)
