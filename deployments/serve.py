"""``fta up``: everything an ingest machine runs, in one command.

Without ``PREFECT_API_URL`` it starts a local Prefect server as a child process (SQLite and Prefect's home in
``data_path``, bound to 127.0.0.1, analytics off, basic auth with the credential kept in ``data_path``: see
``deployments.local_server``), waits until it answers as its own server, saves the settings as the
``TransferConfig`` block named after the agent (``agent_name``) the first time, registers the served deployments

    watch-folder/<agent>          started at once; runs until stopped
    transfer-once/<agent>         ``prefect deployment run 'transfer-once/<agent>'``
    storage-report/<agent>        interval schedule, 60 s

each tagged ``agent:<agent>`` (their flow runs carry the tag), so that several agents share one server, each with
its own block, deployments, runs and artifacts.

and serves them until Ctrl-C or SIGTERM, then stops the watch run cleanly and the server. With ``PREFECT_API_URL``
set it uses that server instead. ``prefect.yaml`` declares the same deployments for ``prefect deploy``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

from deployments.local_server import LocalServer, StartError, check_remote_api
from fta.procstat import alive, child_pids
from fta.settings import Settings, agent_tag

if TYPE_CHECKING:
    from blocks.transfer_config import TransferConfig

log = logging.getLogger("fta.up")

BLOCK_ENV = "FTA_CONFIG_BLOCK"
LEGACY_BLOCK = "default"  # the one block of a single-host install from before agents had names
REPORT_INTERVAL_SECONDS = 60


def config_block(settings: Settings) -> str:
    """The block the served runs read: ``FTA_CONFIG_BLOCK`` when set, else the one named after the agent."""
    return os.environ.get(BLOCK_ENV, "").strip() or settings.agent_name


def watch_name(agent: str) -> str:
    return f"watch-folder/{agent}"


def report_name(agent: str) -> str:
    return f"storage-report/{agent}"


def ensure_config_block(settings: Settings, name: str) -> bool:
    """Save the settings as the TransferConfig block ``name`` unless it exists; True when it was created.

    A block ``default`` left by a single-host install is taken over instead, once: copied to ``name`` and removed,
    so that an agent joining the server later never takes this host's folders for its own. The block always carries
    the agent's name, which its runs publish under.
    """
    from blocks.transfer_config import TransferConfig

    try:
        block: TransferConfig | None = cast(TransferConfig, TransferConfig.load(name))
    except ValueError:
        block = _take_over_legacy(name)
    else:
        log.info("using the TransferConfig block %r (edit it to change the configuration)", name)
    if block is None:
        _save_new(TransferConfig.from_settings(settings), name)
        log.info("saved the settings as the TransferConfig block %r", name)
        return True
    if getattr(block, "agent_name", None) != settings.agent_name:
        block.agent_name = settings.agent_name  # type: ignore[attr-defined]  # a field made at run time
        block.save(name, overwrite=True)
    return False


def _save_new(block: TransferConfig, name: str) -> None:
    """Save a new block, once more when another agent registered its type or schema at the same moment.

    Saving registers the block's type and schema first: read, and created when missing. The agents of a site that
    start together on a new server (after a power cut) all find them missing; the second to create one gets a
    conflict (409) for what now exists, and ``fta up`` ended there. A second save finds both and saves the block.
    """
    from prefect.exceptions import ObjectAlreadyExists

    try:
        block.save(name)
    except ObjectAlreadyExists:
        log.info("the TransferConfig block type was registered by another agent meanwhile; saving again")
        block.save(name)


def _take_over_legacy(name: str) -> TransferConfig | None:
    """The block ``default`` copied to ``name`` (and removed), or None when there is none to take over."""
    from blocks.transfer_config import TransferConfig

    if name == LEGACY_BLOCK:
        return None
    try:
        legacy = cast(TransferConfig, TransferConfig.load(LEGACY_BLOCK))
    except ValueError:
        return None
    legacy.save(name)
    TransferConfig.delete(LEGACY_BLOCK)
    log.info("took over the TransferConfig block %r as %r (this agent's own from now on)", LEGACY_BLOCK, name)
    return cast(TransferConfig, TransferConfig.load(name))


def build_deployments(agent: str) -> list[Any]:
    from prefect.types.entrypoint import EntrypointType

    from flows.storage_report import storage_report
    from flows.transfer_once import transfer_once
    from flows.watch_folder import watch_folder

    # No parameters: the runs read the agent's own block (flows.config). A run may only narrow the work (subfolder,
    # pattern); Prefect refuses any other parameter as it binds them to the flow's signature, before our code runs.
    # Each is named after the agent and tagged with it: the runs of every agent on a shared server stay apart.
    module = EntrypointType.MODULE_PATH
    tags = [agent_tag(agent)]
    return [
        watch_folder.to_deployment(
            agent, entrypoint_type=module, tags=tags, description="Watch the source, move finished files."
        ),
        transfer_once.to_deployment(
            agent,
            entrypoint_type=module,
            tags=tags,
            description="Move what is in the source now (subfolder, pattern).",
        ),
        storage_report.to_deployment(
            agent,
            interval=REPORT_INTERVAL_SECONDS,
            entrypoint_type=module,
            tags=tags,
            description="Free space, reachability and health.",
        ),
    ]


def start_watch_run(agent: str, stop: threading.Event, timeout: float = 120.0) -> None:
    """Once the runner has registered the deployments: one watch run (stale ones of this agent, killed, are closed;
    never another agent's)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:

        def registered(name: str) -> Any:
            """The deployment once the runner has registered it (one by one); None past the deadline or at a stop."""
            while not stop.is_set():
                try:
                    return client.read_deployment_by_name(name)
                except Exception:
                    if time.monotonic() > deadline:
                        log.error("the deployment %s was not registered within %g s", name, timeout)
                        return None
                    stop.wait(0.5)
            return None

        deployment = registered(watch_name(agent))
        if deployment is None:
            return
        unfinished = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED])
                ),
                tags=FlowRunFilterTags(all_=[agent_tag(agent)]),
            ),
        )
        for stale in unfinished:  # its own deployment, its own tag: an open run is left from this agent, killed
            client.set_flow_run_state(stale.id, Crashed(message="the agent was restarted"), force=True)
        run = client.create_flow_run_from_deployment(deployment.id)
        log.info("watch run %s started", run.name)
        report = registered(report_name(agent))  # a first storage report now, not at the next full minute
        if report is None:
            return
        try:
            client.create_flow_run_from_deployment(report.id)
        except Exception as exc:
            log.warning("first storage report not started: %s", exc)


def stop_flow_runs(keep: set[int], timeout: float = 90.0) -> None:
    """SIGTERM every flow-run process the runner started (they end their copies cleanly), then wait for them.

    One whose process was starting as the runner stopped taking new runs appears meanwhile: it is signalled too.
    """
    signalled: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        # alive() never reaps: the runner's own child watcher must see its flow runs' exit codes
        pids = [pid for pid in child_pids(os.getpid()) if pid not in keep and alive(pid)]
        for pid in set(pids) - signalled:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            signalled.add(pid)
        if not pids or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    for pid in pids:
        log.warning("flow-run process %d did not stop within %g s; killing it", pid, timeout)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def serve_until_stopped(deployments: list[Any], keep: set[int]) -> None:
    """Serve ``deployments`` until Ctrl-C or SIGTERM; the flow runs end first, then the runner.

    ``prefect.serve`` would do, but its runner answers SIGTERM (systemd's stop, ``docker stop``) by calling its async
    ``stop()`` without awaiting it and exiting from inside the event loop: a RuntimeWarning and an ERROR traceback in
    the log at every stop. And a runner whose task is cancelled kills the flow-run processes it still waits for
    (SIGTERM, then SIGKILL at once): the watch run never finished its copies nor reported its end, and stayed
    Running in the API. Here SIGTERM first stops the flow runs (``stop_flow_runs``: SIGTERM and a wait; the watch run
    ends Completed), from a thread so that the runner goes on streaming their output, and then cancels the runner's
    task, so its own clean-up runs (pausing the schedules). SIGINT (Ctrl-C in a terminal, which reaches the whole
    process group) is taken the same way: Prefect's own Ctrl-C path cancels the runner at once, which kills the
    flow runs mid-copy. ``keep``: child processes that are not flow runs (the local server).
    """
    import asyncio

    from flows.prefect_internals import runner_with_own_sigterm, stop_taking_runs

    main_task: asyncio.Task[None] | None = None  # set before ``start()``, which installs the SIGTERM handler
    stopping = False

    def on_stop(signum: int) -> None:
        nonlocal stopping
        if stopping:  # one stop is enough: a second must not cut it short
            _already_stopping(signum, None)
            return
        stopping = True
        signal.signal(signal.SIGTERM, _already_stopping)
        log.info("%s received, stopping the flow runs", signal.Signals(signum).name)
        stop_taking_runs(runner)  # no new flow run from now on (this runs in the loop's thread)
        threading.Thread(target=runs_then_runner, name="fta-stop", daemon=True).start()

    def runs_then_runner() -> None:
        try:
            stop_flow_runs(keep)
        finally:
            task = main_task
            assert task is not None  # a stop comes through the handlers that serve() installs once it runs
            task.get_loop().call_soon_threadsafe(task.cancel)  # wakes the loop; the cancellation runs in it

    runner = runner_with_own_sigterm(on_stop, pause_on_shutdown=True)
    for deployment in deployments:
        runner.add_deployment(deployment)
    served = "\n".join(f"  {deployment.flow_name}/{deployment.name}" for deployment in deployments)
    print(f"Serving the deployments (start one with: prefect deployment run <name>):\n{served}", flush=True)

    async def serve() -> None:
        nonlocal main_task
        main_task = asyncio.current_task()
        assert main_task is not None  # asyncio.run runs this coroutine as a task
        # start() installs the handler for SIGTERM only. SIGINT through the loop: it may arrive in another thread
        # (see sigint_kept_from_flow_runs), and the loop's wakeup then runs the handler at once.
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, on_stop, signal.SIGINT)
        await runner.start()

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError), sigint_kept_from_flow_runs():
        asyncio.run(serve())  # the ways a stop ends the serving: suppressed above
    log.info("stopped serving; stopping the flow runs")


@contextlib.contextmanager
def sigint_kept_from_flow_runs() -> Iterator[None]:
    """The flow-run processes started meanwhile do not take Ctrl-C: this process stops them, in order.

    Ctrl-C in a terminal reaches the whole process group: a storage report or a manual run interrupted by it ended
    Crashed, with a traceback, while this process was about to stop them cleanly anyway. A blocked signal stays
    blocked across fork and exec, and Python does not unblock it: blocked in the thread that starts the flow-run
    processes (this one, which runs the event loop), SIGINT stays pending in them. This process still takes it: a
    thread started before the block keeps SIGINT open, the kernel delivers it there and Python runs the handler in
    the main thread as always.
    """
    receiver = threading.Event()
    threading.Thread(target=receiver.wait, name="fta-sigint", daemon=True).start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        receiver.set()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM before the runner serves (it then takes SIGTERM itself): the same clean way out as Ctrl-C."""
    raise KeyboardInterrupt


def _already_stopping(signum: int, frame: Any) -> None:
    log.info("%s received again; the agent is already stopping", signal.Signals(signum).name)


def _start_server(settings: Settings) -> LocalServer:
    """The local server, known as ours; this process and its flow runs then talk to it with its credential."""
    server = LocalServer(settings.data_path, settings.server_port)
    server.prepare()
    os.environ.update(server.environment())
    server.start()
    os.environ.update(server.client_environment())
    print(f"Prefect server and UI: http://127.0.0.1:{settings.server_port}", flush=True)
    return server


def _prepare(settings: Settings) -> list[Any]:
    """The saved configuration, its alerts and the deployments, once the API answers."""
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect's console handler, which this process's own lines go to as well
    logging.getLogger("fta").setLevel(settings.log_level)
    block = config_block(settings)
    os.environ[BLOCK_ENV] = block  # the served runs (child processes) read the agent's block
    ensure_config_block(settings, block)
    from deployments.alerts import ensure_alerts
    from flows.config import resolve_settings

    ensure_alerts(resolve_settings(None, block))  # the saved configuration decides the alerts
    return build_deployments(settings.agent_name)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def up(settings: Settings) -> int:
    """Run the agent with its deployments until Ctrl-C / SIGTERM, which may come at any moment, start-up included.

    Exit 0 after a stop; 2 with one line when it cannot start (port taken, data_path unusable, server down, API
    unreachable); 1 with one line for any other failure while starting.
    """
    previous = {stop: signal.signal(stop, _interrupt) for stop in STOP_SIGNALS}
    server: LocalServer | None = None
    not_flow_runs: set[int] = set()  # children that stop_flow_runs leaves alone: the local server
    stop = threading.Event()
    code = 0
    step = "start"
    try:
        if os.environ.get("PREFECT_API_URL"):
            check_remote_api(os.environ["PREFECT_API_URL"])
        else:
            server = _start_server(settings)
            assert server.process is not None  # started
            not_flow_runs.add(server.process.pid)
        deployments = _prepare(settings)
        starter = threading.Thread(
            target=start_watch_run, args=(settings.agent_name, stop), name="fta-start-watch", daemon=True
        )
        starter.start()
        step = "serve"
        serve_until_stopped(deployments, keep=not_flow_runs)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while starting: a stop like any other
        log.info("stopped while starting")
    except StartError as exc:
        print(f"fta: cannot start: {exc}", file=sys.stderr, flush=True)
        code = exc.code
    except Exception as exc:  # the API refused the start-up's writes, an unreadable block, ...
        print(f"fta: cannot {step}: {_one_line(exc)}", file=sys.stderr, flush=True)
        code = 1
    finally:
        for signum in STOP_SIGNALS:  # the clean-up below is not cut short by another signal
            signal.signal(signum, _already_stopping)
        stop.set()
        stop_flow_runs(not_flow_runs)
        if server is not None:
            server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code
