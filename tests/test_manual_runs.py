"""Runs started through the Prefect API narrow the agent's work, never widen it; settings never travel as parameters.

A real Prefect server, the deployments served by another process the way ``fta up`` serves them (its
``FTA_CONFIG_BLOCK`` names the block), runs created through the API as ``prefect deployment run`` creates them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from blocks.transfer_config import TransferConfig
from fta.settings import load_settings
from tests.conftest import write
from tests.prefect_helpers import fast_config, files_below, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

AGENT_BLOCK = "manual-runs-agent"
ROOT = Path(__file__).resolve().parent.parent

SERVE = """
from prefect import serve
from deployments.serve import build_deployments
ours = [d for d in build_deployments("manual-runs-agent") if d.flow_name != "storage-report"]
serve(*ours, print_starting_message=False)
"""


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


def _env(api_url: str, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "FTA_"))}
    return {
        **env,
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@pytest.fixture(scope="module")
def served(api_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The agent's deployments served by a process of their own, bound to the block ``AGENT_BLOCK``."""
    log = tmp_path_factory.mktemp("serve") / "serve.out"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVE],
            env=_env(api_url, FTA_CONFIG_BLOCK=AGENT_BLOCK),
            cwd=tmp_path_factory.mktemp("serve-cwd"),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        with get_client(sync_client=True) as client:

            def registered() -> bool:
                try:
                    client.read_deployment_by_name(f"transfer-once/{AGENT_BLOCK}")
                    client.read_deployment_by_name(f"watch-folder/{AGENT_BLOCK}")
                except Exception:
                    return False
                return True

            wait_until(registered, timeout=120, what="the deployments to be served")
        yield
    finally:
        server.terminate()
        server.wait(60)


@pytest.fixture
def agent(served: None, source: Path, destination: Path) -> dict[str, Any]:
    """The agent's own configuration for this test, saved as its block."""
    config = fast_config(source, destination, agent_name=AGENT_BLOCK)
    TransferConfig.from_settings(load_settings(config, env_file=None)).save(AGENT_BLOCK, overwrite=True)
    return config


@pytest.fixture
def elsewhere(tmp_path: Path) -> dict[str, Path]:
    """A folder outside the agent's, with files an attacker would like moved, and where they would go."""
    folder, loot = tmp_path / "elsewhere", tmp_path / "loot"
    write(folder / "secret.mxf", b"not the agent's")
    loot.mkdir()
    log = write(tmp_path / "precious.log", b"untouched\n")
    return {"folder": folder, "loot": loot, "log": log}


def start(deployment: str, parameters: dict[str, Any] | None = None, **options: Any) -> UUID:
    with get_client(sync_client=True) as client:
        found = client.read_deployment_by_name(deployment)
        return client.create_flow_run_from_deployment(found.id, parameters=parameters or {}, **options).id


def final_state(run_id: UUID, timeout: float = 120.0) -> Any:
    states: list[Any] = []
    with get_client(sync_client=True) as client:

        def ended() -> bool:
            states[:] = [client.read_flow_run(run_id).state]
            return states[0] is not None and states[0].is_final()

        wait_until(ended, timeout=timeout, what="the run to end")
    return states[0]


def run_logs(run_id: UUID) -> list[str]:
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return [log.message for log in logs]


def untouched(elsewhere: dict[str, Path]) -> None:
    assert files_below(elsewhere["folder"]).keys() == {"secret.mxf"}
    assert files_below(elsewhere["loot"]) == {}
    assert elsewhere["log"].read_bytes() == b"untouched\n"


@pytest.mark.parametrize(
    "parameters",
    [
        {"config": "OUT"},
        {"config_block": "thief"},
        {"source_path": "FOLDER", "destination_path": "LOOT"},
        {"log_file_path": "LOG"},
        {"subfolder": "cam1", "config": "OUT"},
    ],
    ids=["config", "config_block", "paths", "log_file", "narrow_plus_config"],
)
def test_a_run_that_passes_settings_is_refused_and_moves_nothing(
    agent: dict[str, Any], source: Path, destination: Path, elsewhere: dict[str, Path], parameters: dict[str, Any]
) -> None:
    thief = fast_config(elsewhere["folder"], elsewhere["loot"], log_file_path=str(elsewhere["log"]))
    TransferConfig.from_settings(load_settings(thief, env_file=None)).save("thief", overwrite=True)
    write(source / "cam1" / "a.mxf", b"the agent's own")
    names = {"OUT": thief, "FOLDER": str(elsewhere["folder"]), "LOOT": str(elsewhere["loot"])}
    names["LOG"] = str(elsewhere["log"])
    given = {key: names.get(value, value) if isinstance(value, str) else value for key, value in parameters.items()}
    run = start(f"transfer-once/{AGENT_BLOCK}", given)
    state = final_state(run)
    # Prefect binds the parameters to the flow's signature (subfolder, pattern) before any code of the agent runs,
    # and ends the run there: Crashed, the refused parameter named in the run's logs.
    assert state.is_crashed() or state.is_failed(), state

    def refusal_logged() -> bool:
        lines = [line for line in run_logs(run) if "but was provided with parameters" in line]
        return any(all(repr(name) in line for name in given) for line in lines)

    wait_until(refusal_logged, what="the refusal in the run's logs")
    untouched(elsewhere)
    assert files_below(source).keys() == {"cam1/a.mxf"} and files_below(destination) == {}


def test_job_variables_cannot_choose_another_block(
    agent: dict[str, Any], source: Path, destination: Path, elsewhere: dict[str, Path]
) -> None:
    """The served run's environment is its serving process's: a run's ``env`` job variable does not reach it."""
    thief = fast_config(elsewhere["folder"], elsewhere["loot"])
    TransferConfig.from_settings(load_settings(thief, env_file=None)).save("thief", overwrite=True)
    write(source / "mine.mxf", b"the agent's own")
    run = start(
        f"transfer-once/{AGENT_BLOCK}",
        job_variables={"env": {"FTA_CONFIG_BLOCK": "thief", "FTA_SOURCE_PATH": str(elsewhere["folder"])}},
    )
    state = final_state(run)
    assert state.is_completed(), state
    assert files_below(destination).keys() == {"mine.mxf"}  # it ran, on the agent's own block
    untouched(elsewhere)


@pytest.mark.parametrize(
    ("subfolder", "why"),
    [
        ("../elsewhere", "'..' would leave the source"),
        ("cam1/../../elsewhere", "'..' would leave the source"),
        ("/etc", "must be relative to the source, not absolute"),
        ("cam1//x", "empty component"),
    ],
)
def test_a_subfolder_outside_the_source_is_refused_with_the_reason(
    agent: dict[str, Any], source: Path, destination: Path, elsewhere: dict[str, Path], subfolder: str, why: str
) -> None:
    write(source / "cam1" / "a.mxf", b"the agent's own")
    state = final_state(start(f"transfer-once/{AGENT_BLOCK}", {"subfolder": subfolder}))
    assert state.is_failed()
    assert why in (state.message or "") and "nothing was done" in (state.message or ""), state.message
    untouched(elsewhere)
    assert files_below(source).keys() == {"cam1/a.mxf"} and files_below(destination) == {}


def test_a_watch_run_with_a_bad_subfolder_fails_at_once(agent: dict[str, Any], source: Path, destination: Path) -> None:
    write(source / "a.mxf", b"stays")
    state = final_state(start(f"watch-folder/{AGENT_BLOCK}", {"subfolder": "../..", "max_cycles": 3}))
    assert state.is_failed() and "'..' would leave the source" in (state.message or "")
    assert files_below(destination) == {} and (source / "a.mxf").exists()


def test_a_subfolder_and_a_pattern_move_only_those_files(
    agent: dict[str, Any], source: Path, destination: Path, elsewhere: dict[str, Path]
) -> None:
    for rel in ("cam1/a.mxf", "cam1/day2/b.mxf", "cam1/c.wav", "cam10/d.mxf", "cam2/e.mxf", "top.mxf"):
        write(source / rel, rel.encode())
    (source / "cam1" / "link").symlink_to(elsewhere["folder"], target_is_directory=True)  # never followed
    state = final_state(start(f"transfer-once/{AGENT_BLOCK}", {"subfolder": "./cam1/", "pattern": "*.mxf"}))
    assert state.is_completed(), state
    assert "2 file(s) moved" in (state.message or "")
    assert files_below(destination).keys() == {"cam1/a.mxf", "cam1/day2/b.mxf"}
    assert files_below(source).keys() == {"cam1/c.wav", "cam10/d.mxf", "cam2/e.mxf", "top.mxf"}
    untouched(elsewhere)
    state = final_state(start(f"transfer-once/{AGENT_BLOCK}", {"subfolder": "cam1/link"}))
    assert state.is_completed() and "0 file(s) moved" in (state.message or ""), state
    untouched(elsewhere)


def test_fta_once_sends_no_setting_and_no_secret_as_run_parameters(
    api_url: str, source: Path, destination: Path, tmp_path: Path
) -> None:
    """``fta once`` runs the flow in its own process: no setting among the run's parameters, no token anywhere."""
    secret = "tok-3c1f9a7e5b"
    write(source / "a.mxf", b"moved by fta once")
    options = ["--source", str(source), "--destination", str(destination), "--file-stable-time-seconds", "0.3"]
    options += ["--polling-interval-seconds", "0.1", "--log-file-path", "", "--metrics-port", "0"]
    options += ["--alert-webhook-url", f"http://127.0.0.1:9/hook?token={secret}"]
    done = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "once", *options],
        env=_env(api_url),
        cwd=tmp_path / "cwd",
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert files_below(destination).keys() == {"a.mxf"}
    with get_client(sync_client=True) as client:
        runs = [run for run in client.read_flow_runs() if run.flow_id and run.deployment_id is None]
        flows = {client.read_flow(run.flow_id).name: run for run in runs}
    run = flows["transfer-once"]
    assert set(run.parameters) <= {"subfolder", "pattern"} and not any(run.parameters.values()), run.parameters
    stored = json.dumps(run.model_dump(mode="json"))
    assert secret not in stored and str(source) not in stored and str(destination) not in stored
