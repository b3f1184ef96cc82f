"""The health check's own write (``flows.api_state.probe_write``): recorded, refused, unanswered, lost.

Against a real temporary Prefect server for the recorded write, and against a loopback HTTP server that answers as a
server with a full database does (``500`` to every write, measured in ``tests/test_server_full.py``), never answers,
or takes a write and then cannot give it back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.testing.utilities import prefect_test_harness

from flows import api_state
from flows.api_state import PROBE_PREFIX, probe_write
from fta.health import CRITICAL, OK, REFUSED, WARNING, Observed, WriteProbe, judge
from tests.conftest import FakeClock


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=180):
        yield


def probe_variables() -> list[str]:
    with get_client(sync_client=True) as client:
        return [variable.name for variable in client.read_variables() if variable.name.startswith(PROBE_PREFIX)]


def healthy_but(probe: WriteProbe) -> Observed:
    """Everything else well: a fresh report, plenty of room, the watch running."""
    return Observed({"destinationFreeGB": 500.0, "status": "OK"}, 0.0, True, write_probe=probe)


class SlowClock(FakeClock):
    """Each reading moves the clock on: the probe's write seems to take ``step`` seconds."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.mark.e2e
def test_a_recorded_write_leaves_nothing_behind(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with get_client(sync_client=True) as client:  # another check's probe, and the operators' own variable
        client.create_variable(VariableCreate(name=f"{PROBE_PREFIX}other", value="in use"))
        client.create_variable(VariableCreate(name="operators-own", value="kept"))
    probe = probe_write()
    assert probe.refused is None
    assert 0 < probe.seconds < 5
    assert probe_variables() == [f"{PROBE_PREFIX}other"]  # young: another check may be between write and read
    monkeypatch.setattr(api_state, "PROBE_LEFT_SECONDS", 0.0)  # ... until it is old: a delete refused earlier
    assert probe_write().refused is None
    assert probe_variables() == []
    with get_client(sync_client=True) as client:
        kept = client.read_variable_by_name("operators-own")
    assert kept is not None and kept.value == "kept"


@pytest.mark.e2e
def test_a_slow_write_is_timed_on_the_injected_clock(prefect_server: None) -> None:
    probe = probe_write(clock=SlowClock(step=7.0))
    assert (probe.refused, probe.seconds) == (None, 7.0)
    assert judge(healthy_but(probe), 100, 50).code == WARNING
    assert judge(healthy_but(probe_write(clock=SlowClock(step=0.01))), 100, 50).code == OK


class _Answers(BaseHTTPRequestHandler):
    mode = "full"
    hold = threading.Event()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        sent = json.loads(self.rfile.read(length) or b"{}")
        if self.mode == "full":
            self._send(500, {"exception_message": "Internal Server Error"})
        elif self.mode == "silent":
            self.hold.wait(30)
        else:  # "lost": taken, never recorded
            self._send(201, {"name": sent.get("name"), "value": sent.get("value"), "tags": []})

    def do_GET(self) -> None:
        self._send(404, {"detail": "Variable not found."})


@pytest.fixture
def answering(request: pytest.FixtureRequest) -> Iterator[str]:
    """A loopback server answering as ``request.param`` says; yields its API URL."""
    mode = str(request.param)

    class Handler(_Answers):
        pass

    Handler.mode, Handler.hold = mode, threading.Event()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{server.server_port}/api"}):
            yield request.param
    finally:
        Handler.hold.set()
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("answering", "why"),
    [
        ("full", "HTTP 500 Internal Server Error"),
        ("silent", "a write had no answer within 0.3 s"),
        ("lost", "a new record did not read back"),
    ],
    indirect=["answering"],
)
def test_a_write_the_server_does_not_record_is_refused(answering: str, why: str) -> None:
    probe = probe_write(timeout=0.3)
    assert probe.refused == why
    health = judge(healthy_but(probe), 100, 50)
    assert health.code == CRITICAL
    assert health.line.startswith(f"FTA CRITICAL - {REFUSED} ({why}) | ")
