"""The worker path: ``prefect.yaml`` deployed by each ingest host into the process pool, one worker per host.

Each host's deployments go to a work queue named after its agent, and its worker takes only that queue. The pool is
created with ``deployments/process-pool.json``, a base job template whose job configuration is fixed and whose
variables schema takes nothing: a run cannot set the command, the environment or the working folder of the process
that runs it (the API refuses such job variables where it checks them; the worker ignores them where it does not).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import yaml

from deployments.local_server import port_is_free, status_with
from tests.conftest import write
from tests.prefect_helpers import fast_config, files_below, wait_until
from tests.up_helpers import call, clean_env, free_port

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deployments" / "process-pool.json"
POOL = yaml.safe_load((ROOT / "prefect.yaml").read_text())["definitions"]["work_pool"]["name"]
AGENTS = ("ingest-a", "ingest-b")
PREFECT = [sys.executable, "-m", "prefect"]
# What anyone who reaches the API could ask of a process worker, were the pool's template Prefect's default one.
HOSTILE = {
    "command": "touch /tmp/fta-owned",
    "env": {"FTA_CONFIG_BLOCK": "ingest-b"},
    "env.FTA_AGENT_NAME": "ingest-b",
    "working_dir": "/",
    "name": "other",
    "labels": {"x": "y"},
}


def job_configuration(template: dict[str, Any], variables: dict[str, Any]) -> Any:
    """What a process worker starts a run with: the pool's template merged with the run's job variables."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.workers.process import ProcessJobConfiguration

    # The merge asks the API only to resolve block and variable references, which neither side here has.
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        return asyncio.run(
            ProcessJobConfiguration.from_template_and_values(template, dict(variables), client=get_client())
        )


def test_the_pools_template_leaves_a_run_nothing_to_set() -> None:
    from prefect.workers.process import ProcessWorker

    template = json.loads(TEMPLATE.read_text())
    assert template["variables"]["properties"] == {}
    assert template["variables"]["additionalProperties"] is False  # the API refuses any job variable it checks
    assert "{{" not in json.dumps(template["job_configuration"])  # and nothing in the job comes from one
    # Prefect's default template takes them all: the run's command would replace the flow, its env reach it.
    opened = job_configuration(ProcessWorker.get_default_base_job_template(), HOSTILE)
    assert (opened.command, opened.env["FTA_CONFIG_BLOCK"], str(opened.working_dir)) == (
        HOSTILE["command"],
        "ingest-b",
        "/",
    )
    locked = job_configuration(template, HOSTILE)
    assert (locked.command, locked.env, locked.working_dir, locked.name, locked.labels) == (None, {}, None, None, {})


# -- two hosts, one server ---------------------------------------------------------------------------------------------


def site_env(api: str, home: Path, **extra: str) -> dict[str, str]:
    return clean_env(PREFECT_API_URL=api, PREFECT_HOME=str(home), **extra)


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)


def stop(*processes: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Ctrl-C to each, as an operator stops it (all at once: each worker takes seconds to end); then the process
    group of any not gone within ``timeout`` is killed, with flow-run processes a worker left behind, if any."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
    for process in processes:
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def finished(argv: list[str], env: dict[str, str], timeout: float = 180) -> None:
    ran = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert ran.returncode == 0, ran.stdout + ran.stderr


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, Path, list[subprocess.Popen[bytes]]]]:
    """A Prefect server on a free loopback port (its own home and SQLite database), stopped at the end; and a list
    of what the test starts on it (its workers), stopped before the server, also when the test fails."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server_env = site_env(
        api,
        home,
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED="false",  # only the runs the test starts
        PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home / 'prefect.db'}",
    )
    server = start(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], server_env, home / "server.log"
    )
    try:
        wait_until(
            lambda: server.poll() is None and status_with(f"{api}/health", None) == 200, 240, "the Prefect server"
        )
        workers: list[subprocess.Popen[bytes]] = []
        try:
            yield api, home, workers
        finally:
            stop(*workers)
    finally:
        stop(server)
        assert port_is_free(port)


def save_block(agent: str, source: Path, destination: Path) -> None:
    """The host's TransferConfig block, saved as the README says (``ensure_config_block``)."""
    from deployments.serve import ensure_config_block
    from fta.settings import load_settings

    assert ensure_config_block(load_settings(fast_config(source, destination, agent_name=agent), env_file=None), agent)


def create_run(api: str, deployment: Any, parameters: dict[str, Any], variables: dict[str, Any]) -> UUID:
    """A run of ``deployment`` in its own queue, created as ``POST /flow_runs/`` allows: this path of the API does not
    check job variables against the pool's schema, so only the worker's template stands between them and the run."""
    body = {
        "flow_id": str(deployment.flow_id),
        "deployment_id": str(deployment.id),
        "parameters": parameters,
        "job_variables": variables,
        "work_pool_name": POOL,
        "work_queue_name": deployment.work_queue_name,
        "tags": deployment.tags,
        "state": {"type": "SCHEDULED", "state_details": {"scheduled_time": datetime.now(UTC).isoformat()}},
    }
    status, created = call(f"{api}/flow_runs/", body=body)
    assert status == 201, status
    return UUID(created["id"])


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(600)  # a busy machine; about 90 s on a quiet one
def test_each_hosts_runs_go_to_its_own_worker_and_a_run_cannot_change_the_job(
    site: tuple[str, Path, list[subprocess.Popen[bytes]]], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import DeploymentUpdate
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api, home, workers = site
    env = site_env(api, home)
    folders = {agent: (tmp_path / agent / "src", tmp_path / agent / "dst") for agent in AGENTS}
    for _, destination in folders.values():
        destination.mkdir(parents=True)
    (source_a, destination_a), (source_b, destination_b) = folders["ingest-a"], folders["ingest-b"]
    write(source_a / "a1.mxf", b"a1" * 1000)
    write(source_a / "cam1" / "a2.mxf", b"a2" * 1000)
    write(source_b / "b1.mxf", b"b1" * 1000)
    write(source_b / "cam9" / "b9.mxf", b"b9" * 1000)  # ingest-b's own run leaves it (its pattern is b1*)
    marker = tmp_path / "owned"
    hostile = {**HOSTILE, "command": f"touch {marker}"}

    # As the README says: the pool once, with the template; then each host its block, its deployments, its worker.
    finished([*PREFECT, "work-pool", "create", POOL, "--type", "process", "--base-job-template", str(TEMPLATE)], env)
    with temporary_settings({PREFECT_API_URL: api}):
        for agent, (source, destination) in folders.items():
            save_block(agent, source, destination)
    deploy = [*PREFECT, "--no-prompt", "deploy", "--all"]
    logs = [home / f"deploy-{agent}.log" for agent in AGENTS]
    hosts = [env | {"FTA_AGENT_NAME": agent, "AGENT_DIR": str(ROOT)} for agent in AGENTS]
    deploys = [start(deploy, host, log) for host, log in zip(hosts, logs, strict=True)]
    assert [each.wait(180) for each in deploys] == [0, 0], [log.read_text()[-2000:] for log in logs]
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        deployment = {a: client.read_deployment_by_name(f"transfer-once/{a}") for a in AGENTS}
        assert {a: d.work_queue_name for a, d in deployment.items()} == {a: a for a in AGENTS}
        # Where the API checks job variables (a deployment's run: `prefect deployment run --job-variable`, the UI's
        # custom run), the pool's schema refuses every one.
        for variables in ({"command": hostile["command"]}, {"env": hostile["env"]}):
            with pytest.raises(PrefectHTTPStatusError, match="422") as refused:
                client.create_flow_run_from_deployment(deployment["ingest-a"].id, job_variables=variables)
            assert "Additional properties are not allowed" in str(refused.value)
        # One run per host: two sweeps of one source at once would keep one of them out (it ends Failed, by design).
        runs = {
            # Where it does not (a flow run created directly), the run carries them to ingest-a's worker.
            create_run(api, deployment["ingest-a"], {}, hostile): "ingest-a",
            client.create_flow_run_from_deployment(
                deployment["ingest-b"].id, parameters={"pattern": "b1*"}
            ).id: "ingest-b",
        }
        # Nor does it check a deployment's own on update: ingest-a's run meets them there as well.
        client.update_deployment(deployment["ingest-a"].id, DeploymentUpdate(job_variables=hostile))
        assert client.read_deployment(deployment["ingest-a"].id).job_variables == hostile

    # The workers start once all of that is in place, so that ingest-a's run meets all of it.
    for agent in AGENTS:
        argv = [*PREFECT, "worker", "start", "--pool", POOL, "--work-queue", agent]
        argv += ["--name", f"worker-{agent}", "--no-create-pool-if-not-found"]
        workers.append(start(argv, env | {"FTA_AGENT_NAME": agent, "PREFECT_WORKER_QUERY_SECONDS": "1"}, home / agent))

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:

        def all_final() -> bool:
            return all((run.state is not None and run.state.is_final()) for run in map(client.read_flow_run, runs))

        # The files first, on disk (asking the API 20 times a second for minutes would slow its SQLite down).
        arrived = {destination_a: {"a1.mxf", "cam1/a2.mxf"}, destination_b: {"b1.mxf"}}
        wait_until(lambda: all(set(files_below(d)) >= f for d, f in arrived.items()), 300, "the files to move")
        wait_until(all_final, 120, "the runs to end")
        ended = {run_id: client.read_flow_run(run_id) for run_id in runs}
        pool = client.read_work_pool(POOL)

    for run_id, agent in runs.items():
        run = ended[run_id]
        assert run.state is not None and run.state.type.value == "COMPLETED", (run.name, run.state)
        assert (run.work_queue_name, run.labels.get("prefect.worker.name")) == (agent, f"worker-{agent}")
        assert run.tags == [f"agent:{agent}"]
    assert [ended[run_id].job_variables for run_id in runs] == [hostile, {}]  # what ingest-a's run carried
    assert not marker.exists()  # the run's command was not the job's: the flow ran, with ingest-a's block
    assert set(files_below(destination_a)) == {"a1.mxf", "cam1/a2.mxf"}
    assert set(files_below(destination_b)) == {"b1.mxf"}  # cam9/b9.mxf stays: no run on ingest-a took its block
    assert set(files_below(source_a)) == set()
    assert set(files_below(source_b)) == {"cam9/b9.mxf"}
    assert pool.base_job_template == json.loads(TEMPLATE.read_text())  # the workers left the pool as created
