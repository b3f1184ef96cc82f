"""Agents sharing one Prefect server: each has a name (``agent_name``) and keeps its own things on the server.

Its block, its deployments, its artifacts and its runs (tagged ``agent:<name>``); a start of one never touches
another's runs; a one-host install's block ``default`` is taken over once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from fta.credential import CREDENTIAL_FILE
from fta.errors import ConfigError
from fta.settings import default_agent_name, load_settings
from tests.conftest import write
from tests.prefect_helpers import fast_config, wait_until
from tests.up_helpers import call, clean_env, free_port, run_fta, start_up, stop_agent, up_options


@pytest.mark.parametrize(
    ("hostname", "name"),
    [
        ("Ingest_01.example.org", "ingest-01"),
        ("ingest-02", "ingest-02"),
        ("--Cam  Room__3--.local", "cam-room-3"),
        ("ÉDIT.lan", "dit"),
        ("x" * 70 + ".example.org", "x" * 63),
        ("a" * 62 + "_b", "a" * 62),  # cut to 63 leaves a dash at the end: trimmed
        ("___", "agent"),  # nothing usable is left
    ],
)
def test_the_default_name_is_the_hosts_short_name_made_valid(
    hostname: str, name: str, source: Path, destination: Path
) -> None:
    assert default_agent_name(hostname) == name
    folders = {"source_path": source, "destination_path": destination}
    assert load_settings({**folders, "agent_name": name}, env_file=None).agent_name == name  # a valid name


def test_without_a_name_the_agent_takes_the_hosts(
    monkeypatch: pytest.MonkeyPatch, source: Path, destination: Path
) -> None:
    import socket

    folders = {"source_path": source, "destination_path": destination}
    monkeypatch.setattr(socket, "gethostname", lambda: "Ingest_07.site.example")
    assert load_settings(folders, env_file=None).agent_name == "ingest-07"
    assert load_settings({**folders, "agent_name": " "}, env_file=None).agent_name == "ingest-07"  # blank: unset
    monkeypatch.setenv("FTA_AGENT_NAME", "edit-suite")
    assert load_settings(folders, env_file=None).agent_name == "edit-suite"


@pytest.mark.parametrize("bad", ["Bad Name", "UPPER", "-lead", "trail-", "a" * 64, "under_score", "dot.ted"])
def test_an_explicit_name_must_already_be_valid(bad: str, source: Path, destination: Path) -> None:
    folders = {"source_path": source, "destination_path": destination}
    with pytest.raises(ConfigError, match=r"agent_name: .* is not an agent name") as refused:
        load_settings({**folders, "agent_name": bad}, env_file=None)
    assert "\n" not in str(refused.value)


def test_fta_check_config_refuses_a_bad_name_with_exit_2_and_one_line(source: Path, destination: Path) -> None:
    checked = run_fta(
        clean_env(),
        "check-config",
        "--source",
        str(source),
        "--destination",
        str(destination),
        "--agent-name",
        "Bad Name",
        timeout=60,
    )
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert checked.stderr.splitlines() == [
        "fta: invalid configuration: agent_name: 'Bad Name' is not an agent name"
        " (1-63 lowercase letters, digits and dashes, no dash at either end)"
    ]
    good = run_fta(clean_env(), "check-config", "--source", str(source), "--destination", str(destination))
    assert good.returncode == 0, good.stderr
    assert re.search(rf"^agent_name +{default_agent_name()}$", good.stdout, re.M), good.stdout


# -- the block of a one-host install ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.mark.e2e
def test_the_block_default_of_a_one_host_install_is_taken_over_once(
    prefect_server: None, source: Path, destination: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from blocks.transfer_config import TransferConfig
    from deployments.serve import ensure_config_block

    old = load_settings(fast_config(source, destination, max_retry_attempts=7), env_file=None)
    legacy = TransferConfig.from_settings(old)
    legacy.agent_name = None  # type: ignore[attr-defined]  # saved before agents had names
    legacy.save("default")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    mine = load_settings(fast_config(elsewhere, destination, agent_name="ingest-01"), env_file=None)

    with caplog.at_level(logging.INFO, logger="fta.up"):
        assert ensure_config_block(mine, "ingest-01") is False  # taken over, not made from this start's settings
    taken = cast(TransferConfig, TransferConfig.load("ingest-01"))
    assert load_settings(taken.settings_values(), env_file=None) == old.model_copy(update={"agent_name": "ingest-01"})
    said = [r.getMessage() for r in caplog.records if "took over" in r.getMessage()]
    assert said == ["took over the TransferConfig block 'default' as 'ingest-01' (this agent's own from now on)"]
    with pytest.raises(ValueError):
        TransferConfig.load("default")  # once: a host that joins later does not take this one's folders

    other = load_settings(fast_config(elsewhere, destination, agent_name="ingest-02"), env_file=None)
    assert ensure_config_block(other, "ingest-02") is True  # its own, from its own settings
    theirs = cast(TransferConfig, TransferConfig.load("ingest-02"))
    assert load_settings(theirs.settings_values(), env_file=None) == other
    assert ensure_config_block(mine, "ingest-01") is False  # kept as it is
    assert cast(TransferConfig, TransferConfig.load("ingest-01")).max_retry_attempts == 7  # type: ignore[attr-defined]


# -- two agents, one server ------------------------------------------------------------------------------------------


class Host:
    """One ingest host's ``fta up``: its own name, folders and data path."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.source, self.destination, self.data = base / name / "source", base / "nas" / name, base / name / "data"
        for folder in (self.source, self.destination):
            folder.mkdir(parents=True, exist_ok=True)
        self.output = base / name / "up.out"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, port: int, env: dict[str, str]) -> None:
        options = [*up_options(self.source, self.destination, self.data, port), "--agent-name", self.name]
        self.process = start_up(options, self.output, env)

    def said(self) -> str:
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def started_watch_runs(self) -> int:
        return self.said().count("fta.up - watch run ")


def _runs(api: str, credential: str, flow: str, agent: str) -> list[dict[str, Any]]:
    body = {"flows": {"name": {"any_": [flow]}}, "flow_runs": {"tags": {"all_": [f"agent:{agent}"]}}, "limit": 50}
    status, runs = call(f"{api}/flow_runs/filter", credential, body)
    assert status == 200, status
    return list(runs)


def _states(api: str, credential: str, agent: str) -> dict[str, str]:
    return {run["id"]: run["state"]["type"] for run in _runs(api, credential, "watch-folder", agent)}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_agents_on_one_server_keep_their_own_and_a_restart_crashes_only_its_own_runs(tmp_path: Path) -> None:
    base = tmp_path
    a, b = Host("ingest-a", base), Host("ingest-b", base)
    port = free_port()
    a.start(port, clean_env())  # with the server, its local one, which b joins
    try:
        wait_until(lambda: "agent started" in a.said(), timeout=240, what="a's watch run")
        credential = (a.data / CREDENTIAL_FILE).read_text().strip()
        api = f"http://127.0.0.1:{port}/api"
        remote = clean_env(PREFECT_API_URL=api, PREFECT_API_AUTH_STRING=credential)
        (a_watch,) = _states(api, credential, a.name)
        b.start(port, remote)
        wait_until(lambda: "agent started" in b.said(), timeout=240, what="b's watch run")
        assert _states(api, credential, a.name) == {a_watch: "RUNNING"}  # b's start left a's run alone

        write(a.source / "cam" / "from-a.mxf", b"a's")
        write(b.source / "from-b.mxf", b"b's")
        wait_until(
            lambda: (a.destination / "cam" / "from-a.mxf").exists() and (b.destination / "from-b.mxf").exists(),
            timeout=120,
            what="each agent to move its own file",
        )
        assert not (b.destination / "cam").exists() and not (a.destination / "from-b.mxf").exists()

        def completed(agent: str) -> list[str]:
            status = run_fta(remote, "status", "--json", "--agent", agent)
            return [done["file"] for done in json.loads(status.stdout)["recentlyCompleted"]]

        wait_until(lambda: completed(a.name) == ["cam/from-a.mxf"], timeout=60, what="a's status")
        wait_until(lambda: completed(b.name) == ["from-b.mxf"], timeout=60, what="b's status")
        blocks = {
            name: call(f"{api}/block_types/slug/fta-transfer-config/block_documents/name/{name}", credential)[1]
            for name in (a.name, b.name)
        }
        assert {name: (doc["data"]["source_path"], doc["data"]["agent_name"]) for name, doc in blocks.items()} == {
            a.name: (str(a.source), a.name),
            b.name: (str(b.source), b.name),
        }
        assert call(f"{api}/block_types/slug/fta-transfer-config/block_documents/name/default", credential)[0] == 404
        deployments = call(f"{api}/deployments/filter", credential, {"limit": 50})[1]
        names = {(item["name"], tuple(item["tags"])) for item in deployments}
        assert names == {(agent, (f"agent:{agent}",)) for agent in (a.name, b.name)}
        assert len(deployments) == 6  # watch-folder, transfer-once, storage-report of each
        keys = {item["key"] for item in call(f"{api}/artifacts/filter", credential, {"limit": 200})[1]}
        assert {f"fta-status-{a.name}", f"fta-status-{b.name}"} <= keys
        wait_until(
            lambda: (
                {f"fta-storage-{a.name}", f"fta-health-{b.name}"}
                <= {item["key"] for item in call(f"{api}/artifacts/filter", credential, {"limit": 200})[1]}
            ),
            timeout=120,
            what="both storage reports",
        )
        assert not {"fta-status", "fta-storage", "fta-health"} & keys
        copies = call(f"{api}/task_runs/filter", credential, {"limit": 50})[1]
        copy_tags = {run["name"]: set(run["tags"]) for run in copies if run["name"].startswith("copy ")}
        assert copy_tags == {"copy cam/from-a.mxf": {f"agent:{a.name}"}, "copy from-b.mxf": {f"agent:{b.name}"}}

        # b killed outright (its watch run stays Running in the API), then started again: only b's run is closed.
        (b_watch,) = _states(api, credential, b.name)
        assert b.process is not None
        os.killpg(b.process.pid, signal.SIGKILL)
        b.process.wait(60)
        assert _states(api, credential, b.name) == {b_watch: "RUNNING"}
        shutil.copy(b.output, base / "b-first.out")
        b.start(port, remote)
        wait_until(lambda: b.started_watch_runs() == 1 and "agent started" in b.said(), timeout=240, what="b again")
        wait_until(lambda: len(_states(api, credential, b.name)) == 2, timeout=60, what="b's new watch run")
        after = _states(api, credential, b.name)
        assert after.pop(b_watch) == "CRASHED"
        assert list(after.values()) in (["RUNNING"], ["PENDING"])
        assert _states(api, credential, a.name) == {a_watch: "RUNNING"}
    finally:
        for host in (b, a):
            if host.process is not None and host.process.poll() is None:
                stop_agent(host.process)
