"""``fta up`` is secure by default, and knows its own server: tried against one real ``fta up``, as root and as nobody.

One agent serves the whole module (a start costs a minute on a busy machine); every test reads it over plain HTTP
or with the ``fta`` commands, and the last ones try a second ``fta up`` against it.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fta.credential import CREDENTIAL_FILE
from tests.prefect_helpers import AGENT, wait_until
from tests.up_helpers import call, clean_env, flow_runs, free_port, run_fta, start_up, stop_agent, up_options

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]

SECRET = "s3cr3t-token-of-the-hook"
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@dataclass
class Agent:
    process: subprocess.Popen[bytes]
    base: Path
    data: Path
    port: int
    output: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def credential(self) -> str:
        return (self.data / CREDENTIAL_FILE).read_text().strip()

    def said(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture(scope="module")
def agent() -> Iterator[Agent]:
    """A running ``fta up`` whose folders another user could reach (0755 up to ``data_path``)."""
    base = Path(tempfile.mkdtemp(prefix="fta-security-", dir="/tmp"))
    base.chmod(0o755)
    source, destination, data = base / "source", base / "destination", base / "data"
    for folder in (source, destination, data / "prefect"):
        folder.mkdir(parents=True)
    for folder in (data, data / "prefect"):
        folder.chmod(0o755)  # as an older version, or a careless operator, left it
    (data / "prefect" / "old.log").write_text("an older server's log")
    (data / "prefect" / "old.log").chmod(0o644)
    port = free_port()
    options = [*up_options(source, destination, data, port), "--alert-webhook-url", f"http://127.0.0.1:9/h?t={SECRET}"]
    process = start_up(options, base / "up.out")
    running = Agent(process, base, data, port, base / "up.out")
    try:
        wait_until(lambda: "agent started" in running.said(), timeout=240, what="the watch run to start")
        yield running
    finally:
        try:
            stop_agent(process)
        finally:
            shutil.rmtree(base, ignore_errors=True)


def test_data_path_its_files_and_the_credential_are_private(agent: Agent) -> None:
    assert stat.S_IMODE(agent.data.stat().st_mode) == 0o700  # tightened: it was 0755
    assert stat.S_IMODE((agent.data / "prefect").stat().st_mode) == 0o700
    assert stat.S_IMODE((agent.data / CREDENTIAL_FILE).stat().st_mode) == 0o600
    assert (agent.data / "prefect" / "prefect.db").is_file()
    readable = {
        str(path): oct(stat.S_IMODE(path.lstat().st_mode))
        for path in agent.data.rglob("*")
        if path.lstat().st_mode & 0o077
    }
    assert readable == {}  # the database (and its encryption key), its journal, the logs, the old log too
    user, password = agent.credential.split(":")
    assert user == "fta" and len(password) >= 40  # 32 random bytes


def test_a_request_without_the_credential_is_refused(agent: Agent) -> None:
    assert call(f"{agent.api}/admin/version")[0] == 401
    assert call(f"{agent.api}/admin/version", "fta:guessed")[0] == 401
    assert call(f"{agent.api}/flow_runs/filter", None, {"limit": 1})[0] == 401
    status, deployment = call(f"{agent.api}/deployments/name/transfer-once/{AGENT}", agent.credential)
    assert status == 200
    start = f"{agent.api}/deployments/{deployment['id']}/create_flow_run"
    assert call(start, None, {"parameters": {}})[0] == 401  # nobody starts a run without it
    assert call(f"{agent.api}/admin/version", agent.credential)[0] == 200


def test_the_webhook_secret_needs_the_credential(agent: Agent) -> None:
    url = f"{agent.api}/block_types/slug/webhook/block_documents/name/fta-alerts-{AGENT}?include_secrets=true"
    assert call(url)[0] == 401
    status, block = call(url, agent.credential)
    assert status == 200 and SECRET in json.dumps(block)  # the endpoint does give it, with the credential only


def test_operator_commands_use_the_credential_file(agent: Agent, tmp_path: Path) -> None:
    """No PREFECT_API_URL, no PREFECT_API_AUTH_STRING: the commands find the local server and its credential."""
    env = clean_env(FTA_SERVER_PORT=str(agent.port), FTA_DATA_PATH=str(agent.data))
    wait_until(lambda: run_fta(env, "storage", "--json").returncode == 0, timeout=120, what="a storage report")
    status = run_fta(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert "pendingFilesCount" in json.loads(status.stdout)
    elsewhere = clean_env(FTA_SERVER_PORT=str(agent.port))
    health = run_fta(elsewhere, "health", "-w", "0", "-c", "0", "--data-path", str(agent.data))
    assert health.returncode == 0 and health.stdout.startswith("FTA OK - "), health.stdout + health.stderr
    workdir = tmp_path / "nagios"  # the data_path named in the .env file of the working folder
    workdir.mkdir()
    (workdir / ".env").write_text(f"FTA_DATA_PATH={agent.data}\nFTA_SERVER_PORT={agent.port}\n")
    plugin = subprocess.run(
        [sys.executable, "-c", "from deployments.operator_commands import main; main()", "-w", "0", "-c", "0"],
        env=clean_env(),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert plugin.returncode == 0 and plugin.stdout.startswith("FTA OK - "), plugin.stdout + plugin.stderr
    empty = tmp_path / "no-agent-here"
    empty.mkdir()
    refused = run_fta(elsewhere, "health", "--data-path", str(empty))  # no credential: the server refuses
    assert refused.returncode == 3 and "401" in refused.stdout, refused.stdout
    assert len(refused.stdout.splitlines()) == 1


NOBODY_TRIES = """
import json, sys, urllib.request, urllib.error
data, api = sys.argv[1], sys.argv[2]
result = {}
for name in ("api-credential", "prefect/prefect.db", "fta-up.lock"):
    try:
        open(f"{data}/{name}", "rb").read(1)
        result[name] = "read"
    except OSError as exc:
        result[name] = type(exc).__name__
try:
    urllib.request.urlopen(f"{api}/flow_runs/filter", data=b"{}", timeout=10)
    result["api"] = 200
except urllib.error.HTTPError as exc:
    result["api"] = exc.code
print(json.dumps(result))
"""


def test_an_unprivileged_user_can_read_nothing_and_use_nothing(agent: Agent) -> None:
    tried = subprocess.run(
        [*NOBODY, sys.executable, "-c", NOBODY_TRIES, str(agent.data), agent.api],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert tried.returncode == 0, tried.stderr
    assert json.loads(tried.stdout) == {
        "api-credential": "PermissionError",
        "prefect/prefect.db": "PermissionError",
        "fta-up.lock": "PermissionError",
        "api": 401,
    }
    env = clean_env(FTA_SERVER_PORT=str(agent.port), HOME="/tmp")
    check = subprocess.run(
        [*NOBODY, sys.executable, "-m", "deployments.cli", "health", "--data-path", str(agent.data)],
        env=env,
        cwd="/tmp",
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert check.returncode == 3, check.stdout + check.stderr
    assert check.stdout.startswith("FTA UNKNOWN - ") and "permission denied" in check.stdout, check.stdout
    assert len(check.stdout.splitlines()) == 1


def _what_the_agent_has(agent: Agent) -> dict[str, Any]:
    watch = flow_runs(agent.api, agent.credential, "watch-folder")
    deployments = call(f"{agent.api}/deployments/filter", agent.credential, {"limit": 20})[1]
    named = f"{agent.api}/block_types/slug/fta-transfer-config/block_documents/name/{AGENT}"
    block = call(named, agent.credential)[1]
    return {
        "watch": sorted((run["id"], run["state"]["type"]) for run in watch),
        "paused": sorted((item["name"], item["paused"]) for item in deployments),
        "block": block["data"] if block else None,
    }


def test_a_second_fta_up_on_its_port_is_refused_and_changes_nothing(agent: Agent, tmp_path: Path) -> None:
    before = _what_the_agent_has(agent)
    assert (AGENT, False) in before["paused"] and before["block"] is not None
    assert [state for _, state in before["watch"]].count("RUNNING") == 1
    other = tmp_path / "other"
    (other / "source").mkdir(parents=True)
    options = up_options(other / "source", other / "destination", other / "data", agent.port)
    second = run_fta(clean_env(), "up", *options)
    said = (second.stdout + second.stderr).strip()
    assert second.returncode == 2, said
    assert said.splitlines() == [
        f"fta: cannot start: port {agent.port} is already in use by another Prefect server (another agent's?);"
        " set server_port (--server-port, FTA_SERVER_PORT)"
    ]
    options = up_options(other / "source", other / "destination", agent.data, free_port())
    same_data = run_fta(clean_env(), "up", *options)
    assert same_data.returncode == 2
    assert (same_data.stdout + same_data.stderr).strip().splitlines() == [
        f"fta: cannot start: data_path {agent.data} is in use by another fta up"
    ]
    assert _what_the_agent_has(agent) == before  # its watch run, deployments and configuration untouched
    assert agent.process.poll() is None


def test_fta_up_with_an_api_url_that_refuses_it_is_one_line(agent: Agent, tmp_path: Path) -> None:
    """PREFECT_API_URL at a server that wants a credential this fta up does not have: exit 2 before any write."""
    (tmp_path / "source").mkdir()
    options = up_options(tmp_path / "source", tmp_path / "destination", tmp_path / "data", free_port())
    refused = run_fta(clean_env(PREFECT_API_URL=agent.api), "up", *options)
    said = (refused.stdout + refused.stderr).strip()
    assert refused.returncode == 2, said
    assert said.splitlines() == [
        f"fta: cannot start: the Prefect API at {agent.api} refused the credential (PREFECT_API_AUTH_STRING)"
    ]
