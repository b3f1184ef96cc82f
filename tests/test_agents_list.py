"""``fta agents``: every agent a shared server knows, each judged as ``fta health --agent`` judges it, the worst wins.

One Prefect server for the module, with basic auth as a site's central server has it; the agents' state is
published the way the agents publish it (the storage report flow, a sweep, a watch run, their deployments and
block), and every test starts from an empty server.
"""

from __future__ import annotations

import contextvars
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

from deployments.cli import main
from flows.api_state import CONFIG_BLOCK_TYPE, watch_is_running
from flows.config import run_in_process
from flows.storage_report import storage_report
from flows.transfer_once import transfer_once
from flows.watch_folder import watch_folder
from fta.health import CRITICAL, OK, UNKNOWN, WARNING, AgentHealth, Health, judge_site, unknown
from fta.stop_switch import StopSwitch
from tests.conftest import write
from tests.prefect_helpers import Background, fast_config, wait_until
from tests.test_up import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]  # the module's server starts in the first test's time

ROW_KEYS = {
    "agent",
    "status",
    "summary",
    "watchRunning",
    "destinationReachable",
    "freeBytes",
    "pendingFilesCount",
    "failedFilesCount",
    "lastReportAgeSeconds",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Prefect server with basic auth (the site's central server as ``fta up`` runs one), and its client
    settings for this module: ``{"url": ..., "auth": ...}``."""
    from deployments.local_server import LocalServer

    server = LocalServer(tmp_path_factory.mktemp("site-server"), free_port(), ui=False)
    server.start(timeout=180)
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url, PREFECT_API_AUTH_STRING: server.credential}):
            yield {"url": server.api_url, "auth": server.credential}
    finally:
        server.stop()


@pytest.fixture
def empty_server(site: dict[str, str]) -> None:
    """No agent left by an earlier test: runs, deployments, artifacts and TransferConfig blocks deleted."""
    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments(limit=200):
            client.delete_deployment(deployment.id)
        while runs := client.read_flow_runs(limit=200):
            for run in runs:
                client.delete_flow_run(run.id)
        while artifacts := client.read_artifacts(limit=200):
            for artifact in artifacts:
                client.delete_artifact(artifact.id)
        try:
            blocks = client.read_block_documents_by_type(CONFIG_BLOCK_TYPE, include_secrets=False)
        except PrefectHTTPStatusError:  # 404: no TransferConfig saved yet on this server
            blocks = []
        for block in blocks:
            client.delete_block_document(block.id)


def fta(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def agents_json(*options: str) -> tuple[int, dict[str, Any]]:
    code, out = fta("agents", "--json", *options)
    return code, json.loads(out)


def rows_by_agent(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["agent"]: row for row in body["agents"]}


def report(agent: str, source: Path, destination: Path, **overrides: Any) -> None:
    """The agent's storage report, as its deployment runs it every minute (it publishes storage and health)."""
    run_in_process(storage_report, fast_config(source, destination, agent_name=agent, **overrides))


def folders(tmp_path: Path, agent: str) -> tuple[Path, Path]:
    source, destination = tmp_path / agent / "source", tmp_path / agent / "destination"
    source.mkdir(parents=True)
    destination.mkdir(parents=True)
    return source, destination


@pytest.fixture
def watching(empty_server: None, tmp_path: Path, stop: StopSwitch) -> Iterator[str]:
    """A running watch run of the agent ``ingest-02``, with a storage report published; stopped at the end."""
    source, destination = folders(tmp_path, "ingest-02")
    report("ingest-02", source, destination, storage_warning_gb=0)
    config = fast_config(source, destination, agent_name="ingest-02")
    # The thread runs in this context, whose Prefect settings point at the module's server.
    context = contextvars.copy_context()
    watcher = Background(lambda: context.run(run_in_process, watch_folder, config, stop=stop, return_state=True))
    try:
        wait_until(lambda: watch_is_running("ingest-02"), what="the watch run of ingest-02 running")
        yield "ingest-02"
    finally:
        stop.request()
        watcher.result()


@pytest.mark.usefixtures("empty_server")
def test_no_agent_known_is_unknown_and_says_so() -> None:
    code, out = fta("agents")
    assert code == UNKNOWN
    assert out.startswith("FTA AGENTS UNKNOWN - no agents known to this Prefect server")
    assert len(out.splitlines()) == 1
    code, body = agents_json()
    assert code == UNKNOWN
    assert body["status"] == "UNKNOWN" and body["agents"] == []


@pytest.mark.usefixtures("empty_server")
def test_a_running_agent_is_ok_then_a_warning_by_threshold_then_a_stopped_one_is_critical_and_named(
    watching: str, tmp_path: Path
) -> None:
    code, out = fta("agents", "-w", "0", "-c", "0")
    first, *lines = out.splitlines()
    assert code == OK, out
    assert first.startswith("FTA AGENTS OK - 1 agent, all OK | agents=1 ")
    assert len(lines) == 1 and lines[0].startswith("ingest-02 OK: watch running, destination reachable, ")

    code, out = fta("agents", "-w", "1000000000", "-c", "0")
    assert code == WARNING, out
    assert out.startswith("FTA AGENTS WARNING - 1 of 1 agents warning: ingest-02 (destination free ")

    source, destination = folders(tmp_path, "ingest-01")
    report("ingest-01", source, destination, storage_warning_gb=0)  # reported, but no watch run
    code, out = fta("agents", "-w", "1000000000", "-c", "0")
    first, *lines = out.splitlines()
    assert code == CRITICAL, out
    assert first.startswith("FTA AGENTS CRITICAL - 1 of 2 agents critical: ingest-01 (watch not running")
    assert "; 1 of 2 agents warning: ingest-02 (" in first
    assert [line.split()[:2] for line in lines] == [["ingest-01", "CRITICAL:"], ["ingest-02", "WARNING:"]]
    assert "watch NOT running" in lines[0] and "watch running" in lines[1]


@pytest.mark.usefixtures("empty_server")
def test_each_row_is_what_fta_health_says_of_that_agent(watching: str, tmp_path: Path) -> None:
    source, destination = folders(tmp_path, "ingest-01")
    write(destination / "blocked", b"a file where a folder is needed")
    write(source / "blocked" / "x.mxf", b"x")
    write(source / "good.mxf", b"good")
    sweep = fast_config(source, destination, agent_name="ingest-01", max_retry_attempts=0)
    assert run_in_process(transfer_once, sweep, return_state=True).is_failed()  # one file failed, one moved
    report("ingest-01", source, tmp_path / "nas-gone")  # its destination is not reachable

    code, body = agents_json("-w", "0", "-c", "0")
    rows = rows_by_agent(body)
    assert code == CRITICAL and body["status"] == "CRITICAL"
    assert [row["agent"] for row in body["agents"]] == ["ingest-01", "ingest-02"]
    for agent, row in rows.items():
        assert set(row) >= ROW_KEYS
        health_code, line = fta("health", "--agent", agent, "-w", "0", "-c", "0")
        assert row["status"] == line.split()[1] and health_code == {"OK": 0, "WARNING": 1, "CRITICAL": 2}[row["status"]]
        assert line.startswith(f"FTA {row['status']} - {row['summary']} | ")

    stopped = rows["ingest-01"]
    assert stopped["status"] == "CRITICAL" and stopped["watchRunning"] is False
    assert "watch not running" in stopped["summary"] and "destination not reachable" in stopped["summary"]
    assert stopped["destinationReachable"] is False and stopped["freeBytes"] is None
    assert (stopped["pendingFilesCount"], stopped["failedFilesCount"]) == (0, 1)

    running = rows["ingest-02"]
    assert running["status"] == "OK" and running["watchRunning"] is True and running["destinationReachable"] is True
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    assert isinstance(running["freeBytes"], int) and abs(running["freeBytes"] - free) < 200_000_000
    assert (running["pendingFilesCount"], running["failedFilesCount"]) == (0, 0)
    assert isinstance(running["lastReportAgeSeconds"], float) and 0 <= running["lastReportAgeSeconds"] < 120


@pytest.mark.usefixtures("empty_server")
def test_a_reported_path_with_a_line_break_and_a_bar_stays_on_its_plugin_line(tmp_path: Path) -> None:
    """Nagios reads the first line, and perfdata after its first ``|``: a path in a report must not move either."""
    source, _ = folders(tmp_path, "ingest-01")
    report("ingest-01", source, tmp_path / "nas|gone\nFTA AGENTS OK - forged")
    code, out = fta("agents")
    first, *lines = out.splitlines()
    assert code == CRITICAL and len(lines) == 1
    assert first.count("|") == 1 and "nas/gone FTA AGENTS OK - forged does not exist" in first
    assert "nas/gone FTA AGENTS OK - forged" in lines[0] and "|" not in lines[0]
    code, out = fta("health", "--agent", "ingest-01")
    assert code == CRITICAL and len(out.splitlines()) == 1 and out.count("|") == 1
    assert "nas|gone\nFTA" in agents_json()[1]["agents"][0]["summary"]  # JSON keeps it as it is, escaped


@pytest.mark.usefixtures("empty_server")
def test_an_agent_whose_state_cannot_be_read_is_unknown_and_the_others_are_still_judged(tmp_path: Path) -> None:
    """Whoever can write the API can put anything under an agent's key: that agent is UNKNOWN, not the check."""
    from prefect import flow
    from prefect.artifacts import create_markdown_artifact

    source, destination = folders(tmp_path, "ingest-01")
    report("ingest-01", source, destination, storage_warning_gb=0)

    @flow
    def not_a_table() -> None:
        create_markdown_artifact("# not a storage report", key="fta-storage-ingest-02")

    not_a_table()
    code, body = agents_json("-w", "0", "-c", "0")
    rows = rows_by_agent(body)
    assert code == CRITICAL  # ingest-01's watch is not running: a critical agent outranks an unknown one
    assert rows["ingest-02"]["status"] == "UNKNOWN" and "its state cannot be read" in rows["ingest-02"]["summary"]
    assert rows["ingest-01"]["status"] == "CRITICAL" and rows["ingest-01"]["destinationReachable"] is True
    assert rows["ingest-02"]["watchRunning"] is False and rows["ingest-02"]["freeBytes"] is None
    code, out = fta("agents", "-w", "0", "-c", "0")
    assert "1 of 2 agents unknown: ingest-02 (its state cannot be read: " in out.splitlines()[0]


@pytest.mark.usefixtures("empty_server")
def test_an_agent_is_known_by_its_deployment_its_artifacts_or_its_block(tmp_path: Path) -> None:
    from prefect import flow
    from prefect.artifacts import create_table_artifact

    from blocks.transfer_config import TransferConfig
    from deployments.serve import build_deployments
    from flows.status_publisher import status_artifact_writer
    from fta.settings import load_settings

    for deployment in build_deployments("deployed-only"):
        deployment.apply()
    source, destination = folders(tmp_path, "configured-only")
    settings = load_settings(fast_config(source, destination, agent_name="configured-only"), env_file=None)
    TransferConfig.from_settings(settings).save("studio-b-settings")  # a block's name is not its agent's
    report("reported-only", source, destination)

    @flow
    def publish() -> None:
        status_artifact_writer("status-only")([{"file": "a.mxf", "status": "Ready"}], "one file")
        create_table_artifact([{"n": 1}], key="fta-status-ends-in-a-dash-")  # not an agent name
        create_table_artifact([{"n": 1}], key="old-fta-status-x")  # not the agent's key, only like it

    publish()
    code, body = agents_json()
    known = ["configured-only", "deployed-only", "reported-only", "status-only"]
    assert [row["agent"] for row in body["agents"]] == known
    assert code == CRITICAL  # none of them has a running watch
    assert all("watch not running" in row["summary"] for row in body["agents"])
    assert rows_by_agent(body)["deployed-only"]["lastReportAgeSeconds"] is None
    assert rows_by_agent(body)["status-only"]["pendingFilesCount"] == 1


@pytest.mark.usefixtures("empty_server")
def test_the_list_is_read_a_page_at_a_time_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from deployments.serve import build_deployments
    from flows import api_state

    for agent in ("edit-03", "ingest-01", "ingest-02"):
        next(d for d in build_deployments(agent) if d.flow_name == "watch-folder").apply()
    monkeypatch.setattr(api_state, "AGENTS_PAGE", 1)  # every row its own request
    code, body = agents_json()
    assert [row["agent"] for row in body["agents"]] == ["edit-03", "ingest-01", "ingest-02"]
    assert code == CRITICAL

    code, out = fta("agents", "--max-agents", "2")
    first, *lines = out.splitlines()
    assert code == CRITICAL  # the cap raises to a WARNING at least, it never hides the critical ones
    assert "more than 2 agents known: only the first 2 by name were judged" in first
    assert [line.split()[0] for line in lines] == ["edit-03", "ingest-01"]
    assert fta("agents", "--max-agents", "3")[1].count("more than") == 0


@pytest.mark.usefixtures("empty_server")
def test_without_the_credential_the_server_refuses_and_the_check_is_unknown(
    site: dict[str, str], tmp_path: Path
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "FTA_"))}
    env |= {"PREFECT_API_URL": site["url"], "PREFECT_CLIENT_MAX_RETRIES": "0", "FTA_DATA_PATH": str(tmp_path)}
    command = [sys.executable, "-m", "deployments.cli", "agents"]
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == UNKNOWN
    assert refused.stdout.startswith("FTA AGENTS UNKNOWN - cannot read the Prefect API") and "401" in refused.stdout
    allowed = subprocess.run(
        command, env={**env, "PREFECT_API_AUTH_STRING": site["auth"]}, capture_output=True, text=True, timeout=120
    )
    assert allowed.returncode == UNKNOWN, allowed.stderr[-2000:]  # read, and the empty server has no agent
    assert allowed.stdout.startswith("FTA AGENTS UNKNOWN - no agents known")


def verdict(name: str, code: int) -> AgentHealth:
    return AgentHealth(name, unknown("no answer") if code == UNKNOWN else Health(code, [f"{name} problem"]))


@pytest.mark.parametrize(
    ("codes", "worst"),
    [
        ((OK, OK), OK),
        ((OK, WARNING), WARNING),
        ((WARNING, UNKNOWN), UNKNOWN),
        ((UNKNOWN, CRITICAL), CRITICAL),  # a critical agent is named as critical, never hidden by an unknown one
        ((CRITICAL, OK, WARNING), CRITICAL),
    ],
)
def test_the_worst_agent_decides(codes: tuple[int, ...], worst: int) -> None:
    site = judge_site([verdict(f"a{n}", code) for n, code in enumerate(codes)])
    assert site.code == worst
    assert site.line.startswith(f"FTA AGENTS {site.status} - ")
    assert f"agents={len(codes)} ok={codes.count(OK)} warning={codes.count(WARNING)}" in site.line


def test_the_first_line_names_a_few_and_counts_the_rest() -> None:
    site = judge_site([verdict(f"ingest-{n:02d}", CRITICAL) for n in range(1, 14)])
    assert site.line.startswith("FTA AGENTS CRITICAL - 13 of 13 agents critical: ingest-01 (ingest-01 problem), ")
    assert "ingest-10 (ingest-10 problem) and 3 more |" in site.line and "ingest-11 (" not in site.line
    assert len(site.text().splitlines()) == 14  # every agent on a line of its own below
