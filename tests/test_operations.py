"""Operator commands against a real Prefect server: the storage report flow, status, files, storage, health."""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from prefect.testing.utilities import prefect_test_harness

from deployments.cli import main
from flows.config import run_in_process
from flows.storage_report import storage_report
from flows.transfer_once import transfer_once
from flows.watch_folder import watch_folder
from fta.copy_io import CopyIO
from fta.stop_switch import StopSwitch
from tests.conftest import HOLD_THE_SOURCE, other_process, write
from tests.copy_ios import HoldAfterEachChunk
from tests.prefect_helpers import (
    AGENT,
    Background,
    fast_config,
    slow_agent,
    wait_until,
)

pytestmark = pytest.mark.e2e

SEED_STATUS_KEYS = {"pendingFilesCount", "pendingFiles", "inProgress", "recentlyCompleted", "failedFiles"}
SEED_FILE_KEYS = {
    "file_path",
    "status",
    "file_size",
    "last_write_time",
    "copy_progress",
    "retry_count",
    "error_message",
}


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=180):
        yield


def fta(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_storage_report_ok_then_low_then_unreachable(source: Path, destination: Path, tmp_path: Path) -> None:
    run_in_process(storage_report, fast_config(source, destination, storage_warning_gb=0))
    code, out = fta("storage", "--json")
    body = json.loads(out)
    assert code == 0
    assert set(body) == {"sourceFreeGB", "destinationFreeGB", "status"}
    assert body["status"] == "OK" and body["destinationFreeGB"] > 0 and body["sourceFreeGB"] > 0

    run_in_process(storage_report, fast_config(source, destination, storage_warning_gb=10**9))
    code, out = fta("storage", "--json")
    assert code == 1
    assert json.loads(out)["status"] == "WARNING"
    assert json.loads(out)["message"] == "Destination storage is running low."

    run_in_process(storage_report, fast_config(source, tmp_path / "gone"))
    code, out = fta("storage", "--json")
    assert code == 2
    assert json.loads(out) == {
        "sourceFreeGB": json.loads(out)["sourceFreeGB"],
        "destinationFreeGB": -1,
        "status": "ERROR",
        "message": "Destination path is not accessible.",
    }
    code, out = fta("storage")
    assert code == 2 and out.startswith("ERROR: ")


def test_status_and_files_show_what_the_agent_published(source: Path, destination: Path) -> None:
    write(destination / "blocked", b"a file where a folder is needed")
    write(source / "blocked" / "x.mxf", b"x")
    write(source / "good.mxf", b"good")
    state = run_in_process(transfer_once, fast_config(source, destination, max_retry_attempts=0), return_state=True)
    assert state.is_failed()
    code, out = fta("status", "--json")
    view = json.loads(out)
    assert code == 0
    assert set(view) >= SEED_STATUS_KEYS
    assert view["pendingFilesCount"] == 0 and view["inProgress"] is None
    assert [done["file"] for done in view["recentlyCompleted"]] == ["good.mxf"]
    assert view["recentlyCompleted"][0]["completedAt"].endswith("Z")
    blocked = f"{destination / 'blocked'} is not a folder"
    assert [(f["file"], blocked in f["error"]) for f in view["failedFiles"]] == [("blocked/x.mxf", True)]
    code, out = fta("files", "--json")
    rows = json.loads(out)["files"]
    assert code == 0
    assert all(set(row) == SEED_FILE_KEYS for row in rows)
    assert {(row["file_path"], row["status"]) for row in rows} == {
        ("good.mxf", "Completed"),
        ("blocked/x.mxf", "Failed"),
    }
    code, out = fta("status")
    assert "good.mxf" in out and "blocked/x.mxf" in out


def test_a_backlog_is_counted_whole_and_listed_in_part(tmp_path: Path) -> None:
    from prefect import flow

    from flows.api_state import observe, read_status
    from flows.status_publisher import WAITING_ROWS, BoardStatus
    from fta.board import TransferBoard
    from fta.stability import FileSig, StabilityTracker
    from tests.conftest import FakeClock

    clock = FakeClock()
    board = TransferBoard(StabilityTracker(1.0, clock=clock), clock=clock)
    backlog = {f"day{i % 3}/clip{i:04d}.mxf": FileSig(4096, i, i + 1) for i in range(WAITING_ROWS + 150)}
    board.observe(backlog)
    clock.advance(1.0)
    board.observe(backlog)
    last = max(backlog)
    board.queued(last)
    board.copying(last)  # the last by path is being copied: listed although it is not among the first waiting

    @flow
    def publish_the_backlog() -> None:
        status = BoardStatus(board, clock, agent=AGENT)
        status.publish(force=True)
        status.close()

    publish_the_backlog()
    rows, counts = read_status(AGENT)
    assert counts is not None and counts["Ready"] == WAITING_ROWS + 149 and counts["Copying"] == 1
    assert [row["file"] for row in rows] == [*sorted(backlog)[:WAITING_ROWS], last]
    code, out = fta("status", "--json")
    view = json.loads(out)
    assert code == 0 and view["pendingFilesCount"] == WAITING_ROWS + 149  # every file waiting, not the rows
    assert view["pendingFiles"] == sorted(backlog)[:WAITING_ROWS] and view["inProgress"]["file"] == last
    code, out = fta("files", "--json")
    assert code == 0 and len(json.loads(out)["files"]) == WAITING_ROWS + 1 and json.loads(out)["unlisted"] == 149
    code, out = fta("files")
    assert code == 0 and "... and 149 more files waiting" in out
    assert observe(AGENT).pending == WAITING_ROWS + 150  # what fta health and check_fta count


def _versions(key: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC
        )


def test_old_versions_of_an_artifact_are_pruned_and_the_newest_kept() -> None:
    from prefect import flow
    from prefect.artifacts import create_table_artifact

    from flows.api_state import prune_versions, read_table

    @flow
    def twelve_versions() -> None:
        for n in range(12):
            create_table_artifact([{"n": n}], key="prune-test")

    twelve_versions()
    assert prune_versions("prune-test", keep=5, batch=3) == 7  # in batches smaller than what is to go
    assert len(_versions("prune-test")) == 5
    assert read_table("prune-test")[0] == [{"n": 11}]
    assert prune_versions("prune-test", keep=5) == 0


def test_the_status_and_the_storage_report_keep_their_history_short(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Published for months, every version kept would grow the server's database without end: a run's status
    publications replace the rows of one version, and each run's new version prunes those of older runs."""
    from prefect import flow
    from prefect.runtime import flow_run

    from flows import api_state, status_publisher
    from flows.api_state import health_key, read_table, status_key, storage_key

    monkeypatch.setattr(api_state, "VERSIONS_KEPT", 2)
    written: list[Any] = []

    @flow
    def ten_tables(run: int) -> str:
        publish = status_publisher.status_artifact_writer(AGENT)
        for n in range(10):
            publish([{"file": f"r{run}-f{n}.mxf"}], f"table {n}")
            written.append(read_table(status_key(AGENT))[1])
        assert publish.join(60)
        publish.close()
        return str(flow_run.id)

    first = ten_tables(0)
    assert [str(v.flow_run_id) for v in _versions(status_key(AGENT))].count(first) == 1  # ten publications, one version
    assert read_table(status_key(AGENT))[0] == [{"file": "r0-f9.mxf"}]
    assert all(a is not None and b is not None and a <= b for a, b in itertools.pairwise(written))
    assert written[-1] is not None and written[0] is not None and written[-1] > written[0]  # its time moves on
    for run in (1, 2, 3):
        ten_tables(run)
    assert len(_versions(status_key(AGENT))) == 2
    assert read_table(status_key(AGENT))[0] == [{"file": "r3-f9.mxf"}]
    for _ in range(4):
        run_in_process(storage_report, fast_config(source, destination))
    assert len(_versions(storage_key(AGENT))) == 2 and len(_versions(health_key(AGENT))) == 2


def test_a_status_version_deleted_under_a_running_publisher_is_created_again() -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client

    from flows import status_publisher
    from flows.api_state import read_table, status_key

    @flow
    def deleted_between() -> None:
        publish = status_publisher.status_artifact_writer(AGENT)
        publish([{"file": "a.mxf"}], "one")
        with get_client(sync_client=True) as client:
            for version in _versions(status_key(AGENT)):
                client.delete_artifact(version.id)
        publish([{"file": "b.mxf"}], "two")
        assert publish.join(60)
        publish.close()

    deleted_between()
    assert len(_versions(status_key(AGENT))) == 1
    assert read_table(status_key(AGENT))[0] == [{"file": "b.mxf"}]


def test_health_follows_the_watch_run_and_the_storage_report(source: Path, destination: Path, stop: StopSwitch) -> None:
    run_in_process(storage_report, fast_config(source, destination, storage_warning_gb=0))
    code, out = fta("health", "-w", "0", "-c", "0")
    assert code == 2
    assert out.startswith("FTA CRITICAL - ") and "watch run is not running" in out
    watcher = Background(
        lambda: run_in_process(watch_folder, fast_config(source, destination), stop=stop, return_state=True)
    )
    try:
        wait_until(lambda: fta("health", "-w", "0", "-c", "0")[0] == 0, what="health OK while watching")
        code, out = fta("health", "-w", "0", "-c", "0")
        assert out.startswith("FTA OK - ") and "| dest_free_gb=" in out
        code, out = fta("health", "-w", "1000000000", "-c", "0")
        assert code == 1 and out.startswith("FTA WARNING - ")
    finally:
        stop.request()
        watcher.result()


def test_health_without_an_api_is_unknown(tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_CLIENT_MAX_RETRIES": "0"}
    done = subprocess.run(
        [sys.executable, "-c", "from deployments.operator_commands import main; main()"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 3
    assert done.stdout.startswith("FTA UNKNOWN - cannot read the Prefect API")
    assert len(done.stdout.splitlines()) == 1


def test_fta_once_exit_codes(source: Path, destination: Path) -> None:
    write(source / "a.mxf", b"a")
    options = ["--source", str(source), "--destination", str(destination), "--file-stable-time-seconds", "0.3"]
    options += ["--polling-interval-seconds", "0.1", "--log-file-path", "", "--max-retry-attempts", "0"]
    assert fta("once", *options)[0] == 0
    assert (destination / "a.mxf").read_bytes() == b"a"
    write(destination / "sub", b"in the way")
    write(source / "sub" / "b.mxf", b"b")
    assert fta("once", *options)[0] == 1
    assert (source / "sub" / "b.mxf").exists()
    assert fta("once", *options[:2], "--destination", str(source / "inside"))[0] == 2


SLOW_AGENT = slow_agent(0.3)


def test_sigterm_mid_copy_stops_cleanly(source: Path, destination: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    from fta.paths import temp_owner

    data = os.urandom(3 * 8 * 1024 * 1024)  # three chunks, 0.3 s each in this slowed-down agent
    write(source / "rec.mxf", data)
    options = ["--source", str(source), "--destination", str(destination), "--file-stable-time-seconds", "0.2"]
    options += ["--polling-interval-seconds", "0.1", "--log-file-path", ""]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    with subprocess.Popen(
        [sys.executable, "-c", SLOW_AGENT, "watch", *options], env=env, stderr=subprocess.PIPE, text=True
    ) as agent:
        wait_until(lambda: any(temp_owner(p.name) for p in destination.iterdir()), what="the copy to start")
        agent.terminate()
        _, errors = agent.communicate(timeout=60)
    assert agent.returncode == 0, errors[-2000:]
    assert list(destination.iterdir()) == []  # no temp file, nothing under a final name
    assert (source / "rec.mxf").read_bytes() == data
    # A stop, not a crash (which would raise the "watch run crashed" alert at every stop of the service)
    assert "Crash detected" not in errors and "Finished in state Completed(" in errors, errors[-2000:]


def test_the_slowed_agent_is_slow_in_its_own_process(source: Path, destination: Path, tmp_path: Path) -> None:
    """``slow_agent``'s disk reaches the copies of a child ``fta once``: each of the file's chunks takes its delay."""
    from prefect.settings import PREFECT_API_URL

    write(source / "rec.mxf", os.urandom(2 * 8 * 1024 * 1024 + 1))  # three chunks, 1 s each in this agent
    log = tmp_path / "fta.log"
    options = ["--source", str(source), "--destination", str(destination), "--file-stable-time-seconds", "0.2"]
    options += ["--polling-interval-seconds", "0.1", "--log-file-path", str(log)]
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    done = subprocess.run(
        [sys.executable, "-c", slow_agent(1.0), "once", *options], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    copied = [line for line in log.read_text().splitlines() if "transfer copied" in line]
    assert len(copied) == 1, log.read_text()[-2000:]
    seconds = float(copied[0].split(" seconds=")[1].split()[0])
    assert seconds >= 3.0  # unslowed, these 16 MiB take well under a second (0.33 s on a loaded 2-core machine)


def watch_on_block(
    name: str, source: Path, destination: Path, stop: StopSwitch, disk: CopyIO | None = None
) -> Background:
    """A watch run whose settings are the TransferConfig block ``name``, saved from the fast test settings
    (``disk``: the I/O under its copies)."""
    from blocks.transfer_config import TransferConfig
    from fta.settings import load_settings

    TransferConfig.from_settings(load_settings(fast_config(source, destination), env_file=None)).save(
        name, overwrite=True
    )
    return Background(lambda: run_in_process(watch_folder, name, stop=stop, return_state=True), io=disk)


def edit_block(name: str, **paths: Path) -> None:
    """Edit path settings of the TransferConfig block ``name``, as an operator in the UI would."""
    from blocks.transfer_config import TransferConfig

    block = cast(TransferConfig, TransferConfig.load(name))
    for field, value in paths.items():
        setattr(block, field, str(value))
    block.save(name, overwrite=True)


def test_editing_the_config_block_takes_effect_without_a_restart(
    source: Path, destination: Path, tmp_path: Path, stop: StopSwitch
) -> None:
    second = tmp_path / "second"
    second.mkdir()
    watcher = watch_on_block("reload-test", source, destination, stop)
    try:
        write(source / "one.mxf", b"1")
        wait_until((destination / "one.mxf").exists, what="the first file at the first destination")
        edit_block("reload-test", destination_path=second)
        write(source / "two.mxf", b"2")
        wait_until((second / "two.mxf").exists, what="the second file at the edited destination")
        assert not (destination / "two.mxf").exists()
    finally:
        stop.request()
        watcher.result()


def test_new_paths_wait_for_the_copies_under_way_which_keep_their_source(
    source: Path, destination: Path, tmp_path: Path, fta_log: list[str], stop: StopSwitch
) -> None:
    """A copy of the old source finishes there (and keeps the old source's lock) before the new source is moved."""
    from fta.sourcelock import SourceLock

    new_source = tmp_path / "new-source"
    new_source.mkdir()
    held = HoldAfterEachChunk()
    data = os.urandom(100_000)
    write(source / "rec.mxf", data)
    watcher = watch_on_block("switch-test", source, destination, stop, disk=held)
    try:
        assert held.in_copy.wait(30)
        edit_block("switch-test", source_path=new_source)
        write(new_source / "two.mxf", b"2")
        wait_until(lambda: any("end before the new paths apply" in line for line in fta_log), what="the switch")
        old = SourceLock(source)
        taken = old.acquire()
        old.release()
        assert not taken  # the old source stays locked while its copy runs
        held.release.set()
        wait_until(lambda: (destination / "two.mxf").exists(), what="the new source moved after the switch")
        assert (destination / "rec.mxf").read_bytes() == data and not (source / "rec.mxf").exists()
    finally:
        held.release.set()
        stop.request()
        watcher.result()


def test_a_block_edit_onto_a_source_another_run_moves_is_not_taken(
    source: Path, destination: Path, tmp_path: Path, fta_log: list[str], stop: StopSwitch
) -> None:
    """The edit would make two runs move one source: it is logged and the settings in force stay, lock and all."""
    busy = tmp_path / "busy-source"
    busy.mkdir()
    write(busy / "theirs.mxf", b"the other run's")
    with other_process(HOLD_THE_SOURCE, str(busy)):
        watcher = watch_on_block("busy-test", source, destination, stop)
        try:
            write(source / "one.mxf", b"1")
            wait_until((destination / "one.mxf").exists, what="the first file moved")
            edit_block("busy-test", source_path=busy)
            wait_until(
                lambda: any("configuration not reloaded" in line and "another run" in line for line in fta_log),
                what="the edit to be refused",
            )
            write(source / "two.mxf", b"2")
            wait_until((destination / "two.mxf").exists, what="the old source still moved")
            assert (busy / "theirs.mxf").exists() and not (destination / "theirs.mxf").exists()
        finally:
            stop.request()
            watcher.result()


class _Receiver:
    """A real HTTP server on 127.0.0.1 that keeps every POST body."""

    def __init__(self) -> None:
        import http.server
        import threading

        bodies: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                bodies.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies = bodies
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts?token=secret"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    alerts = _Receiver()
    yield alerts
    alerts.close()


def test_webhook_alerts_for_a_failed_copy_and_low_storage(source: Path, destination: Path, receiver: _Receiver) -> None:
    from prefect.automations import Automation

    from deployments.alerts import ensure_alerts
    from fta.settings import load_settings

    config = fast_config(source, destination, alert_webhook_url=receiver.url, max_retry_attempts=0)
    created = ensure_alerts(load_settings(config, env_file=None))
    assert len(created) == 4
    assert len(ensure_alerts(load_settings(config, env_file=None))) == 4  # idempotent: replaced, not doubled
    assert all(cast(Automation, Automation.read(name=name)).name == name for name in created)

    write(destination / "clips", b"a file where a folder is needed")
    write(source / "clips" / "a.mxf", b"x")
    assert run_in_process(transfer_once, config, return_state=True).is_failed()
    wait_until(lambda: any(b.get("alert") == "copy failed" for b in receiver.bodies), what="the copy-failed POST")
    failed = next(b for b in receiver.bodies if b["alert"] == "copy failed")
    assert failed["file"] == "clips/a.mxf"
    assert f"{destination / 'clips'} is not a folder" in failed["reason"]
    assert failed["time"]

    run_in_process(storage_report, {**config, "storage_warning_gb": 10**9})
    wait_until(lambda: any(b.get("alert") == "storage low" for b in receiver.bodies), what="the storage-low POST")
    low = next(b for b in receiver.bodies if b["alert"] == "storage low")
    assert "below" in low["reason"] and low["file"] == str(destination)

    assert ensure_alerts(load_settings(fast_config(source, destination), env_file=None)) == []
    with pytest.raises(ValueError):
        cast(Automation, Automation.read(name=created[0]))


def test_storage_low_alerts_once_per_repeat_time_while_it_lasts(
    source: Path, destination: Path, receiver: _Receiver
) -> None:
    """The storage report says "low" every time; the webhook hears it once, then again after alert_repeat_minutes."""
    from datetime import UTC, datetime

    from deployments.alerts import ensure_alerts
    from fta.settings import load_settings

    repeat_seconds = 10.0  # room for three reports or more, even on a slow machine
    config = fast_config(
        source,
        destination,
        alert_webhook_url=receiver.url,
        storage_warning_gb=10**9,
        alert_repeat_minutes=repeat_seconds / 60,
    )
    ensure_alerts(load_settings(config, env_file=None))
    reported: list[datetime] = []

    def low_alerts() -> list[datetime]:
        return [datetime.fromisoformat(b["time"]) for b in receiver.bodies if b.get("alert") == "storage low"]

    def report_until_a_second_alert() -> bool:
        reported.append(datetime.now(UTC))
        run_in_process(storage_report, config)
        return len(low_alerts()) >= 2

    try:
        wait_until(report_until_a_second_alert, timeout=120, what="a second storage-low POST")
    finally:
        ensure_alerts(load_settings(fast_config(source, destination), env_file=None))
    first, second = low_alerts()[:2]
    muted = [moment for moment in reported if first < moment < second]
    assert (second - first).total_seconds() >= repeat_seconds - 0.5, (first, second)
    assert len(muted) >= 2, (first, second, reported)  # reports that said "low" in between, with no POST


def test_webhook_alert_when_the_destination_stays_unavailable(
    source: Path, tmp_path: Path, receiver: _Receiver
) -> None:
    from deployments.alerts import ensure_alerts
    from fta.settings import load_settings

    nas = tmp_path / "nas"
    config = fast_config(source, nas, alert_webhook_url=receiver.url, alert_destination_minutes=0.17)
    ensure_alerts(load_settings(config, env_file=None))
    write(source / "a.mxf", b"a")
    once = Background(lambda: run_in_process(transfer_once, config, return_state=True))
    try:
        wait_until(
            lambda: any(b.get("alert", "").startswith("destination unavailable") for b in receiver.bodies),
            timeout=90,
            what="the destination-unavailable POST",
        )
    finally:
        nas.mkdir()
        assert once.result().is_completed()
    alert = next(b for b in receiver.bodies if b["alert"].startswith("destination unavailable"))
    assert alert["file"] == str(nas)


def test_webhook_alert_when_the_watch_run_crashes(
    source: Path, destination: Path, receiver: _Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from deployments.alerts import ensure_alerts
    from flows.source_watcher import SourceWatcher
    from fta.settings import load_settings

    config = fast_config(source, destination, alert_webhook_url=receiver.url)
    ensure_alerts(load_settings(config, env_file=None))

    def crash(self: SourceWatcher) -> None:
        raise KeyboardInterrupt  # what an abrupt interruption of the process looks like to the flow engine

    monkeypatch.setattr(SourceWatcher, "scan", crash)
    watcher = Background(lambda: run_in_process(watch_folder, config, return_state=True))
    with pytest.raises(KeyboardInterrupt):
        watcher.result()
    wait_until(lambda: any(b.get("alert") == "watch run crashed" for b in receiver.bodies), what="the crash POST")
    crashed = next(b for b in receiver.bodies if b["alert"] == "watch run crashed")
    assert crashed["file"]  # the flow run's name
    assert crashed["time"]


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in the metrics")


def test_prometheus_metrics(source: Path, destination: Path) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = fast_config(source, destination, metrics_port=port)
    from fta import metrics

    assert metrics.serve_metrics(port) == port
    scrape = f"http://127.0.0.1:{port}/metrics"

    def read() -> str:
        with urllib.request.urlopen(scrape, timeout=10) as answer:
            return str(answer.read().decode())

    before = read()
    write(source / "a.mxf", b"x" * 1000)
    write(source / "b.mxf", b"y" * 500)
    assert run_in_process(transfer_once, config, return_state=True).is_completed()
    after = read()
    assert _metric(after, "fta_files_completed_total") - _metric(before, "fta_files_completed_total") == 2
    assert _metric(after, "fta_bytes_moved_total") - _metric(before, "fta_bytes_moved_total") == 1500
    assert _metric(after, "fta_copy_duration_seconds_count") - _metric(before, "fta_copy_duration_seconds_count") == 2
    assert _metric(after, "fta_destination_reachable") == 1.0
    assert _metric(after, "fta_destination_free_bytes") > 0
    assert _metric(after, "fta_queue_length") == 0
    assert _metric(after, "process_resident_memory_bytes") > 0
    assert "process_cpu_seconds_total" in after
