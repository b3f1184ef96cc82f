"""Contract tests of ``flows/prefect_internals.py``: one per function, against the installed Prefect, no mocks.

Each fails with a message naming the Prefect internal that moved or behaves otherwise: after a Prefect upgrade, the
function named there (and only it) needs a look. The internals these tests use to set the scene (the runner's end of
the control channel, Prefect's global event loop) are Prefect's own, reached from here only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import LogCreate
from prefect.client.schemas.filters import LogFilter, LogFilterName
from prefect.client.schemas.objects import StateType
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.logging.handlers import APILogHandler, APILogWorker
from prefect.testing.utilities import prefect_test_harness

from flows import prefect_internals
from tests.prefect_helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


def send_log(name: str, message: str = "queued, not sent") -> None:
    record = LogCreate(name=name, level=logging.INFO, message=message, timestamp=datetime.now(UTC))
    APILogWorker.instance().send(record.model_dump(mode="json"))


def send_event() -> None:
    emit_event(event="fta.contract-test", resource={"prefect.resource.id": "fta.contract-test"})


# -- unsent_records, send_queued_records -------------------------------------------------------------------------------


@pytest.fixture
def global_loop_held() -> Iterator[threading.Event]:
    """Prefect's global event loop, where its send services take records off their queues, held until set."""
    from prefect._internal.concurrency.api import create_call, from_sync

    send_log("fta.contract-test", "starts the services")  # started now: starting needs the loop
    send_event()
    wait_until(lambda: prefect_internals.unsent_records() == 0, what="Prefect's send services to start")
    blocking, release = threading.Event(), threading.Event()

    def hold() -> None:
        blocking.set()
        release.wait(60)

    from_sync.call_soon_in_loop_thread(create_call(hold))
    assert blocking.wait(30), "Prefect's global event loop did not run a call"
    try:
        yield release
    finally:
        release.set()


def test_unsent_records_counts_what_the_send_services_have_not_taken(
    global_loop_held: threading.Event,
) -> None:
    what = (
        "flows.prefect_internals.unsent_records: _QueueServiceBase._instances (prefect._internal.concurrency.services)"
        " and each EventsWorker / APILogWorker's _queue"
    )
    try:
        before = prefect_internals.unsent_records()
    except Exception as exc:
        pytest.fail(f"{what} cannot be read any more: {exc!r}")
    for n in range(20):
        send_log("fta.contract-test", f"record {n}")
        send_event()
    # While the loop is held, each service takes at most the one record its queue reader was already waiting for.
    assert prefect_internals.unsent_records() >= before + 38, f"{what} no longer count the records queued to be sent"
    global_loop_held.set()
    wait_until(lambda: prefect_internals.unsent_records() == 0, what=f"{what} to count 0 once the records are sent")


def test_send_queued_records_delivers_them_before_it_returns() -> None:
    message = f"delivered before the server stops {uuid.uuid4().hex}"
    send_log("fta.contract-test", message)
    send_event()
    prefect_internals.send_queued_records(timeout=30)
    what = "flows.prefect_internals.send_queued_records: APILogHandler.flush() and EventsWorker.drain_all()"
    assert prefect_internals.unsent_records() == 0, f"{what} left records in the send queues"
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(name=LogFilterName(any_=["fta.contract-test"])))
    assert message in [log.message for log in logs], f"{what} did not send the log"


def test_send_queued_records_ends_the_senders_so_the_next_ones_connect_anew() -> None:
    from prefect.events.worker import EventsWorker

    send_log("fta.contract-test")
    send_event()
    events, logs = EventsWorker.instance(), APILogWorker.instance()
    prefect_internals.send_queued_records(timeout=30)
    what = "flows.prefect_internals.send_queued_records: {} kept its sender (connected to the URL of its first record)"
    assert EventsWorker.instance() is not events, what.format("EventsWorker.drain_all()")
    assert APILogWorker.instance() is not logs, what.format("APILogHandler.flush()")


# -- cancel_requested --------------------------------------------------------------------------------------------------


def test_cancel_requested_sees_the_cancel_the_runner_announces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's end of the channel (``ControlChannel``) announces a cancel as it does before its SIGTERM."""
    from prefect._internal import control_listener
    from prefect.runner._control_channel import ControlChannel, ControlSignalStatus
    from prefect.utilities.engine import capture_sigterm

    what = "flows.prefect_internals.cancel_requested: prefect._internal.control_listener.get_intent()"

    async def announce() -> tuple[bool, ControlSignalStatus, bool]:
        async with ControlChannel(ack_timeout=10) as channel:
            run_id = uuid.uuid4()
            port, token = channel.register(run_id)
            monkeypatch.setenv("PREFECT__CONTROL_PORT", str(port))
            monkeypatch.setenv("PREFECT__CONTROL_TOKEN", token)
            with capture_sigterm():  # what the flow engine does in a flow-run process; it connects the listener
                before = prefect_internals.cancel_requested()
                # the runner's side of the connection, once this process is connected (the runner's own wait)
                await asyncio.wait_for(channel._registrations[run_id].connected.wait(), 30)
                status = await channel.signal(run_id, "cancel")
                after = prefect_internals.cancel_requested()
            return before, status, after

    control_listener.reset_for_testing()  # this process has run flows: the listener reads the variables afresh
    try:
        before, status, after = asyncio.run(announce())
    finally:
        control_listener.stop()
        control_listener.reset_for_testing()
    assert not before, f"{what} says cancel before any was announced"
    assert status is ControlSignalStatus.ACKNOWLEDGED, (
        f"the flow-run side no longer takes the runner's cancel: {status}"
    )
    assert after, f"{what} does not return 'cancel' after the runner announced one"
    assert not prefect_internals.cancel_requested(), f"{what} keeps a cancel after the run's listener is reset"


# -- start_task_runner, close_task_runner, release_run_results -----------------------------------------------------


@task
def pool_thread() -> threading.Thread:
    return threading.current_thread()


def test_a_task_runner_started_by_hand_runs_tasks_until_it_is_closed() -> None:
    what = "flows.prefect_internals.start_task_runner/close_task_runner: ThreadPoolTaskRunner.__enter__/__exit__"

    @flow
    def with_a_runner_of_its_own() -> tuple[threading.Thread, str]:
        runner = prefect_internals.start_task_runner(1)
        thread = runner.submit(pool_thread, {}).result()
        prefect_internals.close_task_runner(runner)
        try:
            runner.submit(pool_thread, {})
        except RuntimeError as exc:
            return thread, str(exc)
        return thread, ""

    thread, refusal = with_a_runner_of_its_own()
    assert thread is not threading.main_thread(), f"{what}: the task did not run in the runner's own pool"
    assert not thread.is_alive(), f"{what}: the pool's thread outlives close_task_runner"
    assert refusal, f"{what}: a closed runner still takes tasks"


class Result:
    """A task result Prefect can link to its task run (it keeps a weak reference to it)."""


@task
def make_result() -> Result:
    return Result()


def test_release_run_results_empties_what_the_flow_run_keeps() -> None:
    what = "flows.prefect_internals.release_run_results: FlowRunContext.run_results"

    @flow
    def keeps_results() -> tuple[int, int, int]:
        context = FlowRunContext.get()
        assert context is not None
        kept = []
        for _ in range(3):
            make_result.submit().result()
            kept.append(len(context.run_results))
        prefect_internals.release_run_results()
        return kept[0], kept[-1], len(context.run_results)

    first, third, released = keeps_results()
    assert third > first > 0, f"{what}: Prefect no longer keeps each task run's result there ({first}, {third})"
    assert released == 0, f"{what} is not emptied"
    prefect_internals.release_run_results()  # outside a flow run: nothing to do, nothing raised


# -- runner_with_own_sigterm, stop_taking_runs ---------------------------------------------------------------------


@flow
def never_started() -> None:
    """Served by the runner below, which must not start it."""


def test_the_runner_gives_sigterm_to_its_handler_and_stops_taking_runs() -> None:
    from prefect.types.entrypoint import EntrypointType

    sigterm = "flows.prefect_internals.runner_with_own_sigterm: Runner.start() installing Runner.handle_sigterm"
    stopping = "flows.prefect_internals.stop_taking_runs: Runner.stopping and Runner._scheduled_run_poller.stopping"
    received: list[int] = []
    delivered = asyncio.Event()
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int) -> None:
        received.append(signum)
        prefect_internals.stop_taking_runs(runner)
        delivered.set()  # Python runs signal handlers in the main thread: the event loop's own

    runner = prefect_internals.runner_with_own_sigterm(on_sigterm, query_seconds=1, pause_on_shutdown=False)
    deployment: Any = never_started.to_deployment("contract", entrypoint_type=EntrypointType.MODULE_PATH)
    runner.add_deployment(deployment)

    async def serve() -> StateType | None:
        serving = asyncio.create_task(runner.start())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while signal.getsignal(signal.SIGTERM) != runner.handle_sigterm:
            assert loop.time() < deadline and not serving.done(), f"{sigterm}: the handler was never installed"
            await asyncio.sleep(0.05)
        while getattr(runner, "_scheduled_run_poller", None) is None:  # made once the runner has its client
            assert loop.time() < deadline and not serving.done(), f"{stopping}: the runner has no scheduled-run poller"
            await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(delivered.wait(), 30)
        assert received == [signal.SIGTERM], f"{sigterm}: SIGTERM did not reach the handler"
        poller: Any = getattr(runner, "_scheduled_run_poller", None)
        async with get_client() as client:
            served = await client.read_deployment_by_name("never-started/contract")
            run = await client.create_flow_run_from_deployment(served.id)
            await poller.run_once()  # one whole poll: it would start the run and wait for it to end
            state = (await client.read_flow_run(run.id)).state
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        return state.type if state is not None else None

    try:
        state = asyncio.run(serve())
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert state is StateType.SCHEDULED, f"{stopping}: the runner started a flow run after the stop ({state})"


# -- api_log_handlers ----------------------------------------------------------------------------------------------


def test_api_log_handlers_are_prefects_api_handler() -> None:
    handlers = prefect_internals.api_log_handlers()
    assert any(isinstance(handler, APILogHandler) for handler in handlers), (
        "flows.prefect_internals.api_log_handlers: Prefect's logging configuration no longer gives the"
        f" 'prefect.extra' logger its APILogHandler (it has {handlers}): the agent's lines would not reach the UI"
    )
