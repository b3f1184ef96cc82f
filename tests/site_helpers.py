"""A site for the end-to-end tests: one ``fta server`` on a throwaway PostgreSQL cluster, ``fta up`` agents on it.

Every process is started in a session of its own (as a service manager starts it), so that a test can kill one
agent or the server outright (``kill -9`` of its whole process group, as a crash would) and everything it started
goes with it; ``Site.stop`` ends whatever is left, also after a failed test.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from fta.copier import hash_file
from fta.procstat import alive
from tests.postgres import PostgresCluster
from tests.prefect_helpers import wait_until
from tests.up_helpers import call, clean_env, free_port, processes_below, run_fta, start_up, stop_agent, up_options

AUTH = "site:" + secrets.token_urlsafe(12)
LIMIT_TAG = "nas-site"  # the tag of the shared limit: one NAS, written by every agent of the site

# Seconds-scale server services: the foreman marks a deployment NOT_READY once its runner has not polled for 5 s
# (the runners poll every second: clean_env), the repossessor frees the slots of expired leases soon.
SERVER_TEST_SETTINGS = {
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_SERVER_SERVICES_FOREMAN_LOOP_SECONDS": "1",
    "PREFECT_SERVER_SERVICES_FOREMAN_DEPLOYMENT_LAST_POLLED_TIMEOUT_SECONDS": "5",
    "PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS": "1",
    # A copy kept out by the shared limit asks again after the server's Retry-After: the slot's average occupancy
    # times the denials, capped by this (30 s by default: small files then crawl through a limit of 1).
    "PREFECT_SERVER_TASKS_TAG_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
}


def kill_group(process: subprocess.Popen[bytes]) -> None:
    """``kill -9`` of the process's whole group (its children included), as a crash of the machine's service."""
    below = processes_below(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in below:  # anything that left the group (a session of its own) goes too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(30)
    wait_until(lambda: not any(alive(pid) for pid in below), 30, "the killed processes to be gone")


class Agent:
    """One ingest host's ``fta up``: its own name, source and data path; the site's shared destination."""

    def __init__(self, name: str, base: Path, destination: Path) -> None:
        self.name = name
        self.source, self.data = base / name / "source", base / name / "data"
        self.source.mkdir(parents=True)
        self.destination = destination
        self.outputs: list[Path] = []
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str], *extra: str) -> None:
        options = [*up_options(self.source, self.destination, self.data, free_port()), "--agent-name", self.name]
        self.outputs.append(self.source.parent / f"up-{len(self.outputs) + 1}.out")
        self.process = start_up([*options, *extra], self.outputs[-1], env)

    def said(self) -> str:
        """What the current ``fta up`` printed."""
        return self.outputs[-1].read_text(errors="replace") if self.outputs else ""

    def started(self) -> bool:
        return "agent started" in self.said()

    def kill(self) -> None:
        assert self.process is not None
        kill_group(self.process)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                stop_agent(self.process, timeout=60)
            finally:
                kill_group(self.process)


class Site:
    """The central server on the cluster and the agents on it; ``env``: what an operator's commands run with."""

    def __init__(self, cluster: PostgresCluster, base: Path) -> None:
        self.cluster = cluster
        self.base = base
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.home = base / "server-home"  # the server's PREFECT_HOME (its lease files, when kept on disk)
        self.env = clean_env(PREFECT_API_URL=self.api, PREFECT_API_AUTH_STRING=AUTH)
        self.server: subprocess.Popen[bytes] | None = None
        self.server_outputs: list[Path] = []
        self.destination = base / "nas"
        self.destination.mkdir()
        self.agents: list[Agent] = []

    def start_server(self, timeout: float = 240) -> None:
        env = clean_env(PREFECT_SERVER_API_AUTH_STRING=AUTH, PREFECT_HOME=str(self.home), **SERVER_TEST_SETTINGS)
        argv = ["server", "--database-url", self.cluster.url, "--host", "127.0.0.1", "--port", str(self.port)]
        output = self.base / f"server-{len(self.server_outputs) + 1}.out"
        self.server_outputs.append(output)
        with output.open("wb") as sink:
            self.server = subprocess.Popen(
                [sys.executable, "-m", "deployments.cli", *argv],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: "ready in" in output.read_text(errors="replace"), timeout, "fta server to be ready")

    def kill_server(self) -> None:
        assert self.server is not None
        kill_group(self.server)

    def agent(self, name: str) -> Agent:
        made = Agent(name, self.base, self.destination)
        self.agents.append(made)
        return made

    def fta(self, *argv: str) -> subprocess.CompletedProcess[str]:
        return run_fta(self.env, *argv, timeout=120)

    def post(self, path: str, body: Any) -> Any:
        status, answer = call(f"{self.api}{path}", AUTH, body)
        assert status == 200, (path, status)
        return answer

    def get(self, path: str) -> tuple[int, Any]:
        return call(f"{self.api}{path}", AUTH)

    def stop(self) -> None:
        """Every agent (SIGTERM, then its group killed), then the server; one that fails to stop (or a Ctrl-C
        meanwhile) does not keep the others running."""
        with contextlib.ExitStack() as stack:
            stack.callback(self._stop_server)  # last: the agents first, while they can still report their end
            for agent in self.agents:
                stack.callback(agent.stop)

    def _stop_server(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        self.server.send_signal(signal.SIGTERM)
        try:
            self.server.wait(60)
        finally:
            kill_group(self.server)


def flow_runs(site: Site, flow: str, agent: str) -> list[dict[str, Any]]:
    body = {"flows": {"name": {"any_": [flow]}}, "flow_runs": {"tags": {"all_": [f"agent:{agent}"]}}, "limit": 200}
    return list(site.post("/flow_runs/filter", body))


def watch_states(site: Site, agent: str) -> dict[str, str]:
    return {run["id"]: run["state"]["type"] for run in flow_runs(site, "watch-folder", agent)}


def copy_runs(site: Site) -> list[dict[str, Any]]:
    """Every ``copy ...`` task run on the server (both agents), paged by id."""
    runs: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        body = {"task_runs": {"name": {"like_": "copy "}}, "sort": "ID_DESC", "limit": 200, "offset": offset}
        page = site.post("/task_runs/filter", body)
        runs.update((run["id"], run) for run in page if run["name"].startswith("copy "))
        offset += len(page)
        if len(page) < 200:
            return list(runs.values())


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


def overlaps(runs: list[dict[str, Any]]) -> list[tuple[str, str, float]]:
    """Pairs of runs that were Running at the same time, with the seconds they shared (start/end from the API)."""
    spans = sorted((when(run["start_time"]), when(run["end_time"]), run["name"]) for run in runs)
    shared = []
    for index, (_, end, name) in enumerate(spans):
        for other_start, other_end, other in spans[index + 1 :]:
            if other_start >= end:
                break
            shared.append((name, other, (min(end, other_end) - other_start).total_seconds()))
    return shared


def media(path: Path, size: int, seed: str) -> str:
    """A file of ``size`` bytes unlike any other (a random block repeated, each copy numbered); its checksum."""
    block = hashlib.sha256(seed.encode()).digest() * (1 << 15)  # 1 MiB
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as sink:
        written = 0
        while written < size:
            piece = (written.to_bytes(8, "big") + block)[: size - written]
            sink.write(piece)
            written += len(piece)
    return hash_file(path)
