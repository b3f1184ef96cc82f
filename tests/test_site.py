"""A site end to end: one ``fta server`` on PostgreSQL with basic auth, two ``fta up`` agents with their own sources
writing to one NAS folder under a shared limit of one copy at a time.

One cluster, one server and one pair of agents are shared by the steps of one long test, in order: each agent
keeps its own; the shared limit holds across the hosts; one host killed outright (``kill -9`` of its process
group); PostgreSQL restarted and the Prefect server killed under load. At the end every file written is at the
destination once, with its checksum, and nowhere else.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.postgres import PostgresCluster
from tests.prefect_helpers import files_below, temp_files, wait_until
from tests.site_helpers import (
    LIMIT_TAG,
    Agent,
    Site,
    copy_runs,
    flow_runs,
    media,
    overlaps,
    watch_states,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Files arrive faster than a limit of one copy at a time moves them (about one every three seconds here: each
# waiting copy asks the server again after its Retry-After), so the load is light: one every two seconds.
LOAD_GAP = 2.0
BIG = 64 * 1024 * 1024  # a copy of it (read, hash, write, fsync, re-read) takes a second or more here


@pytest.fixture
def site(postgres: PostgresCluster, tmp_path: Path) -> Iterator[Site]:
    """The server on the cluster; stopped at the end with everything it and the agents started, checked with ps."""
    made = Site(postgres, tmp_path)
    try:
        yield made
    finally:
        try:
            made.stop()
        finally:
            postgres.stop()
        assert not site_processes(made), "processes of the site left running"


def site_processes(site: Site) -> list[str]:
    """Command lines of the processes still running for ``site``: agents and their flow runs (their API URL),
    the Prefect server (its home), PostgreSQL (its data folder)."""
    marks = [f"PREFECT_API_URL={site.api}".encode(), f"PREFECT_HOME={site.home}".encode()]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if any(mark in environ for mark in marks) or str(site.cluster.data).encode() in cmdline:
            found.append(cmdline.decode(errors="replace"))
    return found


class Written:
    """Every file the test wrote: relative path -> checksum (the destination must end up with exactly these)."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.lock = threading.Lock()

    def small(self, agent: Agent, rel: str, data: bytes) -> None:
        path = agent.source / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        from fta.copier import hash_file

        with self.lock:
            self.files[rel] = hash_file(path)

    def moved(self, site: Site, *rels: str) -> bool:
        return all((site.destination / rel).is_file() for rel in rels)


class Load(threading.Thread):
    """Files arriving on both agents, one every ``gap`` seconds in turn, until ``stop``."""

    def __init__(self, written: Written, agents: list[Agent], tag: str, gap: float = 0.1) -> None:
        super().__init__(name=f"load-{tag}", daemon=True)
        self.written, self.agents, self.tag, self.gap = written, agents, tag, gap
        self.halt = threading.Event()
        self.rels: list[str] = []

    def run(self) -> None:
        count = 0
        while not self.halt.wait(self.gap):
            agent = self.agents[count % len(self.agents)]
            rel = f"{agent.name}/{self.tag}/clip{count:04d}.mxf"
            self.written.small(agent, rel, f"{rel} {time.time()}".encode() * 2000)
            self.rels.append(rel)
            count += 1

    def stop(self) -> list[str]:
        self.halt.set()
        self.join(30)
        return self.rels


def health(site: Site, agent: str) -> tuple[int, str]:
    done = site.fta("health", "--agent", agent, "-w", "0", "-c", "0")
    return done.returncode, done.stdout.strip()


def completed(site: Site, agent: str) -> list[str]:
    status = site.fta("status", "--json", "--agent", agent)
    return sorted(done["file"] for done in json.loads(status.stdout)["recentlyCompleted"])


def check_fta_agents_names_the_dead_one(site: Site, dead: str, living: str) -> None:
    """``fta agents --json`` (its JSON: {"status", "agents": [{"agent", "status", "summary", "watchRunning", ...}]}
    and a Nagios exit code, the worst of the agents') names the dead agent CRITICAL with its watch not running."""
    done = site.fta("agents", "--json")
    report = json.loads(done.stdout)
    by_name = {item["agent"]: item for item in report["agents"]}
    assert by_name[dead]["status"] == "CRITICAL", by_name[dead]
    assert by_name[dead]["watchRunning"] is False
    assert "watch not running" in by_name[dead]["summary"]
    assert by_name[living]["watchRunning"] is True, by_name[living]
    assert (report["status"], done.returncode) == ("CRITICAL", 2)


# -- the steps -------------------------------------------------------------------------------------------------------


def start_both(site: Site, a: Agent, b: Agent) -> None:
    """Both at once, as the hosts of a site come up after a power cut (a later start of b leaves a's run alone)."""
    for agent in (a, b):
        agent.start(site.env, "--shared-limit-tag", LIMIT_TAG, "--shared-limit", "1")
    try:
        wait_until(lambda: a.started() and b.started(), 240, "both agents to start")
    except AssertionError as exc:  # what each said, so that a slow or failed start can be told apart
        said = [
            f"--- {agent.name} (exit {agent.process and agent.process.poll()}):\n{agent.said()[-3000:]}"
            for agent in (a, b)
        ]
        raise AssertionError("\n".join([str(exc), *said])) from exc
    assert [list(watch_states(site, agent.name).values()) for agent in (a, b)] == [["RUNNING"], ["RUNNING"]]


def each_keeps_its_own(site: Site, a: Agent, b: Agent, written: Written) -> None:
    written.small(a, "ingest-a/cam/from-a.mxf", b"a's")
    written.small(b, "ingest-b/from-b.mxf", b"b's")
    wait_until(lambda: written.moved(site, "ingest-a/cam/from-a.mxf", "ingest-b/from-b.mxf"), 120, "first files")
    wait_until(lambda: completed(site, a.name) == ["ingest-a/cam/from-a.mxf"], 60, "a's status")
    wait_until(lambda: completed(site, b.name) == ["ingest-b/from-b.mxf"], 60, "b's status")

    blocks = {
        agent.name: site.get(f"/block_types/slug/fta-transfer-config/block_documents/name/{agent.name}")[1]["data"]
        for agent in (a, b)
    }
    assert {name: (data["source_path"], data["agent_name"]) for name, data in blocks.items()} == {
        a.name: (str(a.source), a.name),
        b.name: (str(b.source), b.name),
    }
    assert site.get("/block_types/slug/fta-transfer-config/block_documents/name/default")[0] == 404
    deployments = site.post("/deployments/filter", {"limit": 50})
    names = {(item["name"], tuple(item["tags"])) for item in deployments}
    assert names == {(agent.name, (f"agent:{agent.name}",)) for agent in (a, b)}
    assert len(deployments) == 6  # watch-folder, transfer-once, storage-report of each
    wait_until(
        lambda: (
            {f"fta-status-{a.name}", f"fta-status-{b.name}", f"fta-storage-{a.name}", f"fta-health-{b.name}"}
            <= {item["key"] for item in site.post("/artifacts/filter", {"limit": 200})}
        ),
        120,
        "both agents' artifacts",
    )
    keys = {item["key"] for item in site.post("/artifacts/filter", {"limit": 200})}
    assert not {"fta-status", "fta-storage", "fta-health"} & keys
    tags = {run["name"]: set(run["tags"]) for run in copy_runs(site)}
    assert tags == {
        "copy ingest-a/cam/from-a.mxf": {LIMIT_TAG},  # the agent's tag is on the flow run (see test_flows)
        "copy ingest-b/from-b.mxf": {LIMIT_TAG},
    }


def caps_hold_across_hosts(site: Site, a: Agent, b: Agent, written: Written) -> None:
    """Two big files per agent, all ready at the same moment: without the limit four copies would start at once
    (two per agent: ``max_concurrent_copies`` 2); with it they run one after the other across both hosts."""
    limit = site.get(f"/v2/concurrency_limits/tag:{LIMIT_TAG}")[1]
    assert limit["limit"] == 1
    staged: dict[str, tuple[Path, Path]] = {}
    for agent in (a, b):
        for number in (1, 2):
            rel = f"{agent.name}/big/take{number}.mxf"
            stage = site.base / "stage" / rel
            written.files[rel] = media(stage, BIG, rel)
            staged[rel] = (stage, agent.source / rel)
            staged[rel][1].parent.mkdir(parents=True, exist_ok=True)
    for stage, target in staged.values():  # into both sources at once (a rename keeps the file as it is)
        stage.rename(target)
    rels = list(staged)
    names = {f"copy {rel}" for rel in rels}

    def recorded() -> list[dict[str, Any]]:
        runs = [run for run in copy_runs(site) if run["name"] in names]
        done = len(runs) == len(names) and all(run["end_time"] for run in runs)
        return runs if done and all(run["state"]["type"] == "COMPLETED" for run in runs) else []

    wait_until(lambda: written.moved(site, *rels), 180, "the big files")
    wait_until(lambda: bool(recorded()), 60, "the big copies' task runs")
    runs = recorded()
    shared = overlaps(runs)
    spans = sorted((run["start_time"], run["total_run_time"], run["name"]) for run in runs)
    print("\ncopies under the shared limit (start, seconds, run):", *spans, sep="\n  ")
    assert shared == [], shared
    assert {run["name"].split("/")[0][5:] for run in runs} == {a.name, b.name}  # both hosts took part


def a_host_dies(site: Site, a: Agent, b: Agent, written: Written) -> None:
    """b killed outright: a goes on, b's health turns CRITICAL, and after b's restart its files move."""
    (a_watch,) = watch_states(site, a.name)
    (b_watch,) = watch_states(site, b.name)
    b.kill()
    assert watch_states(site, b.name) == {b_watch: "RUNNING"}  # nobody told the server
    written.small(a, "ingest-a/while-b-dead.mxf", b"a goes on")
    written.small(b, "ingest-b/while-b-dead.mxf", b"b waits")
    wait_until(lambda: written.moved(site, "ingest-a/while-b-dead.mxf"), 60, "a's file while b is dead")
    assert (b.source / "ingest-b/while-b-dead.mxf").is_file()

    def b_critical() -> bool:
        code, line = health(site, b.name)
        return code == 2 and re.search(r"watch (run is )?not running", line) is not None

    wait_until(b_critical, 60, "b's health to turn CRITICAL")
    code, line = health(site, a.name)
    assert code == 0, line
    check_fta_agents_names_the_dead_one(site, b.name, a.name)

    b.start(site.env)  # its settings are in its block: the shared limit included
    wait_until(lambda: b.started(), 240, "b again")
    wait_until(lambda: written.moved(site, "ingest-b/while-b-dead.mxf"), 60, "b's file after its restart")
    after = watch_states(site, b.name)
    assert after.pop(b_watch) == "CRASHED"
    assert list(after.values()) == ["RUNNING"]
    assert watch_states(site, a.name) == {a_watch: "RUNNING"}
    wait_until(lambda: health(site, b.name)[0] == 0, 60, "b's health OK again")


def history(site: Site, agents: list[Agent]) -> dict[str, Any]:
    """What the run history shows: copy task runs by state, runs not ended, watch runs by state."""
    copies = copy_runs(site)
    names = Counter(run["name"] for run in copies)
    done = {run["name"][5:] for run in copies if run["state"]["type"] == "COMPLETED"}
    moved = set(files_below(site.destination))
    return {
        "files at the destination": len(moved),
        "files moved without a Completed copy run": sorted(moved - done),
        "copy runs": dict(Counter(run["state"]["type"] for run in copies)),
        "copy runs named twice or more": {name: n for name, n in names.items() if n > 1},
        "watch runs": {agent.name: sorted(watch_states(site, agent.name).values()) for agent in agents},
        "storage reports": {
            agent.name: dict(Counter(run["state"]["type"] for run in flow_runs(site, "storage-report", agent.name)))
            for agent in agents
        },
        "copy runs not ended": sorted(
            run["name"] for run in copies if run["state"]["type"] in ("RUNNING", "PENDING", "SCHEDULED")
        ),
    }


def restarts_under_load(site: Site, a: Agent, b: Agent, written: Written) -> None:
    """PostgreSQL restarted, then the Prefect server killed and started again, while files keep arriving; the
    server is killed while a copy holds the shared slot (a big file of a's, its temp file under way)."""
    pids = {agent.name: agent.process.pid for agent in (a, b) if agent.process is not None}
    load = Load(written, [a, b], "load", gap=LOAD_GAP)

    def moved() -> int:
        return sum((site.destination / rel).is_file() for rel in list(load.rels))

    load.start()
    wait_until(lambda: moved() >= 2, 60, "the load to flow")
    site.cluster.restart()
    before = moved()
    wait_until(lambda: moved() >= before + 2, 90, "files moving after PostgreSQL's restart")

    big = "ingest-a/big/during-kill.mxf"
    stage = site.base / "stage" / big
    written.files[big] = media(stage, BIG, big)
    stage.rename(a.source / big)
    wait_until(lambda: any("during-kill" in temp.name for temp in temp_files(site.destination)), 60, "the big copy")
    site.kill_server()
    before = moved()
    site.start_server()
    wait_until(lambda: moved() >= before + 2, 90, "files moving after the server's restart")
    rels = load.stop()
    wait_until(lambda: written.moved(site, big, *rels), 120, "every file of the load")
    assert {agent.name: agent.process.pid for agent in (a, b) if agent.process is not None} == pids
    assert all(agent.process is not None and agent.process.poll() is None for agent in (a, b))
    print(f"\n{len(rels)} files arrived under load; the history afterwards:")
    print(json.dumps(history(site, [a, b]), indent=2))


def nothing_lost_nothing_twice(site: Site, agents: list[Agent], written: Written) -> None:
    assert files_below(site.destination) == written.files
    assert all(files_below(agent.source) == {} for agent in agents)
    assert temp_files(site.destination) == []


@pytest.mark.timeout(600)
def test_a_site_on_postgresql_moves_everything_once_through_a_dead_host_and_server_restarts(site: Site) -> None:
    started = time.monotonic()
    site.start_server()
    a, b = site.agent("ingest-a"), site.agent("ingest-b")
    written = Written()
    steps: list[tuple[str, Callable[[], None]]] = [
        ("start", lambda: start_both(site, a, b)),
        ("own", lambda: each_keeps_its_own(site, a, b, written)),
        ("cap", lambda: caps_hold_across_hosts(site, a, b, written)),
        ("dead host", lambda: a_host_dies(site, a, b, written)),
        ("restarts", lambda: restarts_under_load(site, a, b, written)),
    ]
    for name, step in steps:
        step_start = time.monotonic()
        step()
        print(f"\nstep {name}: {time.monotonic() - step_start:.1f} s")
    nothing_lost_nothing_twice(site, [a, b], written)
    print(f"\nsite test: {time.monotonic() - started:.1f} s")
