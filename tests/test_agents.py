"""Agents sharing one Prefect server: each has a name (``agent_name``) and keeps its own things on the server.

Its block, its deployments, its artifacts and its runs (tagged ``agent:<name>``); a start of one never touches
another's runs; a one-host install's block ``default`` is taken over once. Two real agents on a central server,
each keeping its own: tests/test_site.py.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import yaml

from fta.errors import ConfigError
from fta.settings import default_agent_name, load_settings
from tests.prefect_helpers import fast_config
from tests.up_helpers import clean_env, run_fta


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


def _kept_on_server(agent: str) -> dict[str, Any]:
    """What the server keeps of ``agent``: deployments, automations, blocks, artifact versions (by name)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.exceptions import ObjectNotFound

    from deployments.alerts import ALERT_NAMES, prefix, webhook_block
    from deployments.retire import WORK_POOL
    from flows.api_state import CONFIG_BLOCK_TYPE, health_key, status_key, storage_key

    kept: dict[str, Any] = {}
    with get_client(sync_client=True) as client:
        for flow in ("watch-folder", "transfer-once", "storage-report"):
            with contextlib.suppress(ObjectNotFound):
                kept[f"{flow}/{agent}"] = client.read_deployment_by_name(f"{flow}/{agent}").id
        for name in ALERT_NAMES:
            kept[prefix(agent) + name] = sorted(
                str(a.id) for a in client.read_automations_by_name(prefix(agent) + name)
            )
        for slug, name in ((CONFIG_BLOCK_TYPE, agent), ("webhook", webhook_block(agent))):
            with contextlib.suppress(ObjectNotFound):
                kept[f"{slug}/{name}"] = client.read_block_document_by_name(name, block_type_slug=slug).id
        with contextlib.suppress(ObjectNotFound):
            kept[f"queue {agent}"] = client.read_work_queue_by_name(name=agent, work_pool_name=WORK_POOL).id
        for key in (status_key(agent), storage_key(agent), health_key(agent)):
            filtered = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            kept[key] = len(client.read_artifacts(artifact_filter=filtered, limit=200))
    return {name: value for name, value in kept.items() if value}


@pytest.mark.e2e
def test_fta_retire_removes_that_agents_things_only_and_refuses_a_running_one(
    prefect_server: None, source: Path, destination: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate, WorkPoolCreate
    from prefect.states import Running

    from deployments.alerts import ALERT_NAMES, definitions, ensure_alerts
    from deployments.cli import main
    from deployments.retire import WORK_POOL
    from deployments.serve import build_deployments, ensure_config_block
    from flows.api_state import health_key, known_agents, status_key, storage_key
    from flows.watch_folder import watch_folder
    from fta.settings import agent_tag

    def install(agent: str) -> None:
        hook = {"alert_webhook_url": "http://127.0.0.1:9/hook", "agent_name": agent}
        settings = load_settings(fast_config(source, destination, **hook), env_file=None)
        assert set(definitions(settings)) == set(ALERT_NAMES)  # retire knows every alert's name
        ensure_config_block(settings, agent)
        ensure_alerts(settings)
        for deployment in build_deployments(agent):
            deployment.apply()
        with get_client(
            sync_client=True
        ) as client:  # the worker path's queue (prefect.yaml), as prefect deploy makes it
            client.create_work_queue(name=agent, work_pool_name=WORK_POOL)
        for key in (status_key(agent), storage_key(agent), health_key(agent)):
            for version in range(3):
                with get_client(sync_client=True) as client:
                    client.create_artifact(ArtifactCreate(key=key, type="table", data=[{"version": version}]))

    pool = yaml.safe_load((Path(__file__).parents[1] / "prefect.yaml").read_text())["definitions"]["work_pool"]
    assert pool["name"] == WORK_POOL
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
    install("old-host")
    install("keep-host")
    kept = _kept_on_server("keep-host")
    assert len(_kept_on_server("old-host")) == len(kept) == 3 + 4 + 2 + 1 + 3
    with get_client(sync_client=True) as client:  # a watch run left Running by old-host when its machine died
        deployment = client.read_deployment_by_name("watch-folder/old-host")
        dead = client.create_flow_run_from_deployment(deployment.id)
        client.set_flow_run_state(dead.id, Running(), force=True)

    out = io.StringIO()
    assert main(["retire", "--agent", "old-host"], out=out) == 0, capsys.readouterr().err
    assert _kept_on_server("old-host") == {}
    assert _kept_on_server("keep-host") == kept
    assert "deployment watch-folder/old-host" in out.getvalue() and "now Crashed" in out.getvalue()
    with get_client(sync_client=True) as client:
        closed = client.read_flow_run(dead.id).state
    assert closed is not None and closed.is_crashed() and closed.message == "the agent was retired"
    assert "old-host" not in known_agents(50)[0] and "keep-host" in known_agents(50)[0]

    assert main(["retire", "--agent", "old-host"], out=io.StringIO()) == 2
    assert "knows no agent old-host" in capsys.readouterr().err
    with get_client(sync_client=True) as client:  # keep-host's watch runs (here: fta watch, no deployment)
        client.create_flow_run(watch_folder, tags=[agent_tag("keep-host")], state=Running())
    assert main(["retire", "--agent", "keep-host"], out=io.StringIO()) == 2
    assert "its watch is running" in capsys.readouterr().err
    assert _kept_on_server("keep-host") == kept
    assert main(["retire", "--agent", "Keep_Host"], out=io.StringIO()) == 2
    assert "not an agent name" in capsys.readouterr().err
