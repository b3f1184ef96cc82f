"""``fta up``: everything an ingest machine runs, in one command.

Without ``PREFECT_API_URL`` it starts a local Prefect server as a child process (SQLite and Prefect's home in
``data_path``, bound to 127.0.0.1, analytics off), waits until it answers ``/api/ready``, saves the settings as the
``TransferConfig`` block ``default`` the first time, registers the served deployments

    watch-folder/agent            started at once; runs until stopped
    transfer-once/manual          ``prefect deployment run 'transfer-once/manual'``
    storage-report/every-minute   interval schedule, 60 s

and serves them until Ctrl-C or SIGTERM, then stops the watch run cleanly and the server. With ``PREFECT_API_URL``
set it uses that server instead. ``prefect.yaml`` declares the same deployments for ``prefect deploy``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fta.settings import Settings

log = logging.getLogger("fta.up")

# The block the served runs read (flows.config: FTA_CONFIG_BLOCK of this process, inherited by its flow runs).
CONFIG_BLOCK = os.environ.get("FTA_CONFIG_BLOCK", "").strip() or "default"
WATCH = "watch-folder/agent"
ONCE = "transfer-once/manual"
REPORT = "storage-report/every-minute"
REPORT_INTERVAL_SECONDS = 60


# The run history is the audit log, so the server must record a burst of copies promptly and completely. Prefect's
# defaults write each task-run event in a transaction of its own: 2,000 small files left the SQLite server 23 s
# behind. In batches of up to 500, flushed every second, it is 1-5 s behind with the same 2,000 files (see
# BENCHMARKS.md). An operator's environment still overrides each of these.
#
# The server lives for months on an ingest machine. Prefect removes events after 7 days, but keeps every flow run
# with its task runs, logs and artifacts unless its flow-run vacuum is on: the storage report alone ends 1,440 flow
# runs a day. With it, ended flow runs go 90 days after their end (PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD
# in seconds to change that; ``...ENABLED=events`` keeps them all). The running watch run is never touched.
SERVER_DEFAULTS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "500",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
}


class LocalServer:
    """``prefect server start`` as a child process, on loopback, with its database in ``data_path``."""

    def __init__(self, data_path: Path, port: int) -> None:
        self.home = data_path.resolve() / "prefect"
        self.port = port
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.process: subprocess.Popen[bytes] | None = None

    def environment(self) -> dict[str, str]:
        return {
            **{name: os.environ.get(name, value) for name, value in SERVER_DEFAULTS.items()},
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{self.home / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(self.port),
            "PREFECT_UI_API_URL": self.api_url,
            "PREFECT_SERVER_LOGGING_LEVEL": os.environ.get("PREFECT_SERVER_LOGGING_LEVEL", "WARNING"),
        }

    def start(self, timeout: float = 90.0) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.environment()}
        env.pop("PREFECT_API_URL", None)
        log_file = (self.home / "server.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop the server ourselves, after the watch run
        )
        log_file.close()
        try:
            self._wait_until_ready(timeout)
        except BaseException:  # not ready in time, or a stop (Ctrl-C, SIGTERM) meanwhile: no server left behind
            self.stop()
            raise

    def _wait_until_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Prefect server exited with {self.process.returncode}; see {self.home}/server.log"
                )
            if self.ready():
                return
            time.sleep(0.25)
        raise RuntimeError(f"the Prefect server did not answer within {timeout:g} s; see {self.home}/server.log")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/ready", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ensure_config_block(settings: Settings) -> bool:
    """Save the settings as the ``default`` TransferConfig block unless it exists; True when it was created."""
    from blocks.transfer_config import TransferConfig

    try:
        TransferConfig.load(CONFIG_BLOCK)
    except ValueError:
        TransferConfig.from_settings(settings).save(CONFIG_BLOCK)
        log.info("saved the settings as the TransferConfig block %r", CONFIG_BLOCK)
        return True
    log.info("using the TransferConfig block %r (edit it to change the configuration)", CONFIG_BLOCK)
    return False


def build_deployments() -> list[Any]:
    from prefect.types.entrypoint import EntrypointType

    from flows.storage_report import storage_report
    from flows.transfer_once import transfer_once
    from flows.watch_folder import watch_folder

    # No parameters: the runs read the agent's own block (flows.config). A run may only narrow the work (subfolder,
    # pattern); Prefect refuses any other parameter as it binds them to the flow's signature, before our code runs.
    module = EntrypointType.MODULE_PATH
    return [
        watch_folder.to_deployment(
            "agent", entrypoint_type=module, description="Watch the source, move finished files."
        ),
        transfer_once.to_deployment(
            "manual", entrypoint_type=module, description="Move what is in the source now (subfolder, pattern)."
        ),
        storage_report.to_deployment(
            "every-minute",
            interval=REPORT_INTERVAL_SECONDS,
            entrypoint_type=module,
            description="Free space, reachability and health.",
        ),
    ]


def start_watch_run(stop: threading.Event, timeout: float = 120.0) -> None:
    """Once the runner has registered the deployments: one watch run (stale ones of a killed agent are closed)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
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

        deployment = registered(WATCH)
        if deployment is None:
            return
        unfinished = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED])
                )
            ),
        )
        for stale in unfinished:  # this agent serves the deployment alone: an open run is left from a killed agent
            client.set_flow_run_state(stale.id, Crashed(message="the agent was restarted"), force=True)
        run = client.create_flow_run_from_deployment(deployment.id)
        log.info("watch run %s started", run.name)
        report = registered(REPORT)  # a first storage report now, not at the next full minute
        if report is None:
            return
        try:
            client.create_flow_run_from_deployment(report.id)
        except Exception as exc:
            log.warning("first storage report not started: %s", exc)


def child_pids(parent: int) -> list[int]:
    """Processes whose parent is ``parent`` (Linux ``/proc``)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(entry))
    return children


def stop_flow_runs(keep: set[int], timeout: float = 90.0) -> None:
    """SIGTERM every flow-run process the runner started (they end their copies cleanly), then wait for them.

    One whose process was starting as the runner stopped taking new runs appears meanwhile: it is signalled too.
    """
    signalled: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = [pid for pid in child_pids(os.getpid()) if pid not in keep and _alive(pid)]
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


def _alive(pid: int) -> bool:
    """Still running. Never reaps: the runner's own child watcher must see its flow runs' exit codes."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has ended; its parent reaps it


def serve_until_stopped(deployments: list[Any], keep: set[int]) -> None:
    """Serve ``deployments`` until Ctrl-C or SIGTERM; on SIGTERM the flow runs end first, then the runner.

    ``prefect.serve`` would do, but its runner answers SIGTERM (systemd's stop, ``docker stop``) by calling its async
    ``stop()`` without awaiting it and exiting from inside the event loop: a RuntimeWarning and an ERROR traceback in
    the log at every stop. And a runner whose task is cancelled kills the flow-run processes it still waits for
    (SIGTERM, then SIGKILL at once): the watch run never finished its copies nor reported its end, and stayed
    Running in the API. Here SIGTERM first stops the flow runs (``stop_flow_runs``: SIGTERM and a wait; the watch run
    ends Completed), from a thread so that the runner goes on streaming their output, and then cancels the runner's
    task, as Ctrl-C does, so its own clean-up runs (pausing the schedules). ``keep``: child processes that are not
    flow runs (the local server).
    """
    import asyncio

    from prefect.runner import Runner

    class AgentRunner(Runner):
        main_task: asyncio.Task[None]  # set before ``start()``, which installs ``handle_sigterm``

        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            signal.signal(signal.SIGTERM, _already_stopping)  # one stop is enough: a second must not cut it short
            log.info("SIGTERM received, stopping the flow runs")
            self.stopping = True  # no new flow run from now on (this runs in the loop's thread)
            poller = getattr(self, "_scheduled_run_poller", None)
            if poller is not None:
                poller.stopping = True
            threading.Thread(target=self._runs_then_runner, name="fta-stop", daemon=True).start()

        def _runs_then_runner(self) -> None:
            try:
                stop_flow_runs(keep)
            finally:
                task = self.main_task
                task.get_loop().call_soon_threadsafe(task.cancel)  # wakes the loop; the cancellation runs in it

    runner = AgentRunner(pause_on_shutdown=True)
    for deployment in deployments:
        runner.add_deployment(deployment)
    served = "\n".join(f"  {deployment.flow_name}/{deployment.name}" for deployment in deployments)
    print(f"Serving the deployments (start one with: prefect deployment run <name>):\n{served}", flush=True)

    async def serve() -> None:
        task = asyncio.current_task()
        assert task is not None  # asyncio.run runs this coroutine as a task
        runner.main_task = task
        await runner.start()

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):  # the ways a stop ends the serving
        asyncio.run(serve())
    log.info("stopped serving; stopping the flow runs")


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM before the runner serves (it then takes SIGTERM itself): the same clean way out as Ctrl-C."""
    raise KeyboardInterrupt


def _already_stopping(signum: int, frame: Any) -> None:
    log.info("SIGTERM received again; the agent is already stopping")


def up(settings: Settings) -> int:
    """Run the agent with its deployments until Ctrl-C / SIGTERM, which may come at any moment, start-up included."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    server: LocalServer | None = None
    not_flow_runs: set[int] = set()  # children that stop_flow_runs leaves alone: the local server
    stop = threading.Event()
    try:
        if not os.environ.get("PREFECT_API_URL"):
            server = LocalServer(settings.data_path, settings.server_port)
            os.environ.update(server.environment())
            server.start()
            assert server.process is not None  # started
            not_flow_runs.add(server.process.pid)
            os.environ["PREFECT_API_URL"] = server.api_url
            print(f"Prefect server and UI: http://127.0.0.1:{settings.server_port}", flush=True)
        from prefect.logging.configuration import ensure_logging_setup

        ensure_logging_setup()  # Prefect's console handler, which this process's own lines go to as well
        logging.getLogger("fta").setLevel(settings.log_level)
        ensure_config_block(settings)
        from deployments.alerts import ensure_alerts
        from flows.config import resolve_settings

        ensure_alerts(resolve_settings(None, CONFIG_BLOCK))  # the saved configuration decides the alerts
        deployments = build_deployments()
        starter = threading.Thread(target=start_watch_run, args=(stop,), name="fta-start-watch", daemon=True)
        starter.start()
        serve_until_stopped(deployments, keep=not_flow_runs)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while starting: a stop like any other
        log.info("stopped while starting")
    finally:
        signal.signal(signal.SIGTERM, _already_stopping)  # the clean-up below is not cut short by another SIGTERM
        stop.set()
        stop_flow_runs(not_flow_runs)
        if server is not None:
            server.stop()
        signal.signal(signal.SIGTERM, previous)
    return 0
