"""A site: two agents into one Prefect server on PostgreSQL, against one agent into the embedded SQLite server.

Run as root (the PostgreSQL cluster runs as the ``postgres`` user, the destination is a tmpfs, caches are dropped)::

    python benchmarks/site_throughput.py [--files 1000] [--size 64KiB] [--folders 4] [--runs 3] [--quick]
        [--scenarios sqlite,postgres[,postgres-1]] [--keep-caches] [--workdir DIR] [--json PATH]

Every agent is a real ``fta up`` process, started the way a host runs it, each with its own ``--agent-name``,
source, data path and destination folder (all destinations on one tmpfs, as several hosts write to one NAS), its
output in a file; ``file_stable_time_seconds`` 0.2, ``polling_interval_seconds`` 0.1, no log file, no metrics
port, the other settings at their defaults (``max_concurrent_copies``, ``verify=checksum``, INFO logging).

- ``sqlite``: ONE agent, ``fta up`` without ``PREFECT_API_URL``: it starts its own server (SQLite in its data path,
  ``deployments.local_server.LocalServer``), as on a single ingest host.
- ``postgres``: a throwaway PostgreSQL cluster (``tests.postgres.PostgresCluster``: initdb and pg_ctl as
  ``postgres`` on a loopback port), ``fta server`` on it (the site's central server: the project's server settings,
  basic auth), and TWO agents, ``fta up`` with ``PREFECT_API_URL`` and ``PREFECT_API_AUTH_STRING``, started one
  after the other.
- ``postgres-1`` (only when asked for): the same with ONE agent, the database without the second agent.

The scenarios run one after the other (never at once: on a small machine they would measure each other), each
with its own servers started before its runs and stopped after them. Each run: ``--files`` files of ``--size``
random bytes (``--folders`` folders) per agent, hard-linked (untimed) from one master into a staging folder beside
each agent's source under folders named after the run (``r1f0`` ...) and renamed into the sources, every agent's at
once. The clock runs from the first rename until every source is empty and every file is in its destination (looked
at every 10 ms); afterwards, untimed, each destination must hold exactly its files with the master's checksums.

Recording: the API is asked every 0.1 s how many of the run's task runs (``copy r1f...``, of the flow runs tagged
``agent:<name>``) are Completed, until all are or 60 s have passed: the lag from the last copy to the last record,
and ``dropped`` = files - the final count. The server logs are searched for "queue is full", "dropped" and
"Error flushing".
CPU seconds from the first rename until the records are complete, from ``/proc`` (each process with its reaped
children): the server (``fta up``'s server child, or ``fta server`` and its children), PostgreSQL (the postmaster
and its backends), the agents (each ``fta up`` and its flow-run processes, its own server excluded); also less what
the idle site uses over the same time (each part's idle share, measured once after the warm-up).

No goal: the figures say what a site's server costs against the single host's. ``--json PATH`` writes them.
"""

from __future__ import annotations

import os

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.postgres: the cluster the tests use

import argparse
import json
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from copier_throughput import destination_mount, drop_caches, human, parse_size, print_machine
from flow_throughput import (
    CONSOLE_WARNINGS,
    SERVER_WARNINGS,
    LogWatch,
    checksums,
    clear_folder,
    count_completed,
    ensure_small_master,
    free_port,
    holds_entries,
    list_files,
    place,
    small_names,
    stage,
)

from deployments.local_server import status_with
from fta.copier import hash_file
from fta.credential import CREDENTIAL_FILE
from fta.probe import PROBE_PREFIX
from fta.procstat import ProcStat, all_processes
from tests.postgres import PostgresCluster, why_not_usable

STABLE_SECONDS = 0.2
POLLING_SECONDS = 0.1
RECORD_TIMEOUT = 60.0  # after this the task runs not yet recorded Completed count as dropped
LOOK_INTERVAL = 0.01  # seconds between two looks at the sources and destinations during a timed run
API_POLL = 0.1
MOVE_TIMEOUT = 1800.0
START_TIMEOUT = 300.0  # a server's first start runs every migration; an agent's watch run waits for its runner
SETTLE_INTERVAL = 0.5
SETTLE_MARGIN = 0.1  # share of one core above the idle site's that still counts as idle
SETTLE_TIMEOUT = 300.0
IDLE_WINDOW = 3.0
IDLE_WINDOWS = 5
STOP_TIMEOUT = 120.0
QUICK_FILES, QUICK_RUNS = 100, 1
SCENARIOS = {
    "sqlite": "1 agent, fta up's own server (SQLite)",
    "postgres": "2 agents, fta server on PostgreSQL",
    "postgres-1": "1 agent, fta server on PostgreSQL",  # not run by default: the database alone, without a 2nd agent
}
DEFAULT_SCENARIOS = "sqlite,postgres"
AGENTS = {"sqlite": 1, "postgres": 2, "postgres-1": 1}


# -- processes and their CPU ---------------------------------------------------------------------------------------


def command_line(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def descendants(root: int, processes: dict[int, ProcStat]) -> set[int]:
    """``root`` and every process below it, in one snapshot of ``/proc``."""
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, stat in processes.items() if stat.ppid in tree} - tree
        tree |= more
        grew = bool(more)
    return tree & set(processes)


def cpu_of(roots: list[int], processes: dict[int, ProcStat], exclude: set[int]) -> float:
    """CPU seconds of the trees below ``roots`` (reaped children included), without the processes in ``exclude``."""
    pids: set[int] = set()
    for root in roots:
        pids |= descendants(root, processes)
    return sum(processes[pid].cpu_ticks for pid in pids - exclude) / os.sysconf("SC_CLK_TCK")


@dataclass
class Agent:
    """One ingest host's ``fta up``: its name, its folders, its process."""

    name: str
    base: Path
    destination: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def source(self) -> Path:
        return self.base / "source"

    @property
    def staging(self) -> Path:
        return self.base / "staging"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def output(self) -> Path:
        return self.base / "up.out"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, env: dict[str, str], server_port: int) -> None:
        for folder in (self.source, self.staging, self.destination):
            folder.mkdir(parents=True, exist_ok=True)
        options = ["--source", str(self.source), "--destination", str(self.destination), "--data-path", str(self.data)]
        options += ["--agent-name", self.name, "--server-port", str(server_port), "--log-file-path", ""]
        options += ["--file-stable-time-seconds", f"{STABLE_SECONDS:g}"]
        options += ["--polling-interval-seconds", f"{POLLING_SECONDS:g}"]
        options += ["--metrics-port", "0", "--storage-warning-gb", "0"]
        with self.output.open("wb") as sink:  # started once per invocation
            self.process = subprocess.Popen(
                [sys.executable, "-m", "deployments.cli", "up", *options],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # as a service manager starts it
                cwd=self.base,
            )

    def wait_started(self) -> None:
        """Until ``fta up`` says it started its watch run: its block, alerts and deployments are on the server.

        Two agents that register on a fresh server at the same moment can both try to create the TransferConfig
        block type; Prefect reads, then creates, and the later one fails to start (ObjectAlreadyExists).
        """
        deadline = time.monotonic() + START_TIMEOUT
        while "fta.up - watch run " not in self.output.read_text(errors="replace"):
            if not self.alive() or time.monotonic() > deadline:
                raise SystemExit(f"{self.name}: fta up did not start its watch run (see {self.output})")
            time.sleep(0.5)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM (as systemd stops it); after STOP_TIMEOUT its whole tree is killed: nothing outlives the run."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            print(f"note: {self.name} did not stop within {STOP_TIMEOUT:g} s of SIGTERM; killed with its processes")
            tree = descendants(self.pid, all_processes())  # its server runs in a session of its own
            for pid in tree:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.process.wait()


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Prefect's or the agent's settings, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "FTA_"))}
    return env | {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"} | extra


# -- the sites -----------------------------------------------------------------------------------------------------


@dataclass
class Site:
    """A scenario's running parts: its agents, the API they report to, the server's and database's processes."""

    key: str
    agents: list[Agent]
    api_url: str
    credential: str
    server_log: LogWatch
    server_root: int  # fta server, or the server child of the one fta up
    postmaster: int | None = None

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: server, database (PostgreSQL), agents, and of the agents' the ``fta up`` processes'
        own (the runner, which also relays its flow runs' output), without their flow runs; one look at ``/proc``."""
        processes = all_processes()
        server = descendants(self.server_root, processes)
        tick = os.sysconf("SC_CLK_TCK")
        return {
            "server": cpu_of([self.server_root], processes, set()),
            "database": cpu_of([self.postmaster], processes, set()) if self.postmaster else 0.0,
            "agents": cpu_of([agent.pid for agent in self.agents], processes, exclude=server),
            "runners": sum(processes[a.pid].utime + processes[a.pid].stime for a in self.agents if a.pid in processes)
            / tick,
        }

    def busy(self) -> float:
        cpu = self.cpu()
        return cpu["server"] + cpu["database"] + cpu["agents"]  # the runners are part of the agents


def api_ready(api_url: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while status_with(f"{api_url}/ready", None) != 200:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server at {api_url} did not become ready (exit {process.poll()})")
        time.sleep(0.5)


def local_server_of(agent: Agent, timeout: float) -> int:
    """The pid of the server ``fta up`` started (a child running ``prefect server start``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and agent.alive():
        for pid in descendants(agent.pid, all_processes()):
            words = command_line(pid)
            if "prefect" in words and "server" in words and "start" in words:
                return pid
        time.sleep(0.2)
    raise SystemExit(f"{agent.name}: no local server appeared (see {agent.output})")


@contextmanager
def sqlite_site(workdir: Path, destination: Path) -> Iterator[Site]:
    shutil.rmtree(workdir / "sqlite", ignore_errors=True)  # a fresh database every invocation
    agent = Agent("solo", workdir / "sqlite" / "solo", destination / "solo")
    port = free_port()
    try:
        agent.start(clean_env(), port)
        server = local_server_of(agent, START_TIMEOUT)
        agent.wait_started()
        api_url = f"http://127.0.0.1:{port}/api"
        credential = wait_for_file(agent.data / CREDENTIAL_FILE, agent).read_text().strip()
        log = LogWatch(agent.data / "prefect" / "server.log", SERVER_WARNINGS)
        yield Site("sqlite", [agent], api_url, credential, log, server)
    finally:
        agent.stop()


def wait_for_file(path: Path, agent: Agent) -> Path:
    deadline = time.monotonic() + START_TIMEOUT
    while not path.exists():
        if not agent.alive() or time.monotonic() > deadline:
            raise SystemExit(f"{agent.name}: {path} did not appear (see {agent.output})")
        time.sleep(0.2)
    return path


@contextmanager
def postgres_site(key: str, workdir: Path, destination: Path) -> Iterator[Site]:
    reason = why_not_usable()
    if reason is not None:
        raise SystemExit(f"postgres: {reason}")
    cluster = PostgresCluster()
    folder = workdir / key
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    names = [f"site-{chr(ord('a') + number)}" for number in range(AGENTS[key])]
    members = [Agent(name, folder / name, destination / name) for name in names]
    server: subprocess.Popen[bytes] | None = None
    try:
        cluster.start()
        print(f"postgres: throwaway cluster on 127.0.0.1:{cluster.port}, up in {cluster.start_seconds:.1f} s")
        port, credential = free_port(), f"fta:{secrets.token_urlsafe(24)}"
        env = clean_env(PREFECT_API_DATABASE_CONNECTION_URL=cluster.url, PREFECT_SERVER_API_AUTH_STRING=credential)
        log_path = folder / "server.out"
        with log_path.open("wb") as sink:
            server = subprocess.Popen(
                [sys.executable, "-m", "deployments.cli", "server", "--port", str(port)],
                env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        api_url = f"http://127.0.0.1:{port}/api"
        started = time.monotonic()
        api_ready(api_url, server, START_TIMEOUT)
        print(f"postgres: fta server ready at {api_url} in {time.monotonic() - started:.1f} s (basic auth)")
        remote = clean_env(PREFECT_API_URL=api_url, PREFECT_API_AUTH_STRING=credential)
        for member in members:  # one after the other, as hosts join a site
            member.start(remote, free_port())
            member.wait_started()
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        yield Site(key, members, api_url, credential, LogWatch(log_path, SERVER_WARNINGS), server.pid, postmaster)
    finally:
        for member in members:
            member.stop()
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        cluster.stop()


# -- one run -------------------------------------------------------------------------------------------------------


def completed(site: Site, name_like: str) -> int | None:
    """Task runs named like ``name_like`` the API has Completed, over the site's agents (None: no answer)."""
    total = 0
    for agent in site.agents:
        count = count_completed(site.api_url, {"name": {"like_": name_like}}, site.credential, agent=agent.name)
        if count is None:
            return None
        total += count
    return total


@dataclass
class Run:
    files: int
    seconds: float  # first rename -> every source empty and every file in its destination
    lag: float | None  # -> every task run recorded Completed; None: not within RECORD_TIMEOUT
    recorded: int
    cpu: dict[str, float]  # server, database, agents: first rename -> recorded
    window: float  # seconds from the first rename until recorded: what the CPU figures cover
    warnings: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        return self.files - self.recorded

    @property
    def rate(self) -> float:
        return self.files / self.seconds


@dataclass
class Load:
    master: Path
    sums: dict[str, str]  # relative path -> xxh3-128, the same files for every agent

    def expected(self, tag: str) -> dict[str, str]:
        return {tag + rel: checksum for rel, checksum in self.sums.items()}


def prepare(site: Site, load: Load, tag: str, quiet: float, drop: bool) -> tuple[list[list[str]], bool]:
    """Untimed: empty folders, the run's files staged for every agent, the site idle, caches cold."""
    staged = []
    for agent in site.agents:
        for folder in (agent.source, agent.staging, agent.destination):
            clear_folder(folder)
        staged.append(stage(load.master, list(load.sums), tag, agent.staging))
    settle(site, quiet)
    return staged, drop_caches() if drop else False


def moved(site: Site, staged: list[list[str]], files: int) -> bool:
    for agent, folders in zip(site.agents, staged, strict=True):
        if any(holds_entries(agent.source / folder) for folder in folders):
            return False
    # The sources are empty; a file is renamed into its destination before its source goes, so they are all there.
    return sum(len(arrived(agent)) for agent in site.agents) >= files


def arrived(agent: Agent) -> list[str]:
    """The files in the agent's destination; its destination probe (written and removed every poll) does not count."""
    return [rel for rel in list_files(agent.destination) if not rel.startswith(PROBE_PREFIX)]


def timed_run(site: Site, load: Load, tag: str, quiet: float, drop: bool) -> tuple[Run, bool]:
    staged, dropped_caches = prepare(site, load, tag, quiet, drop)
    files = len(load.sums) * len(site.agents)
    before = site.cpu()
    started = time.perf_counter()
    for agent, folders in zip(site.agents, staged, strict=True):
        place(agent.staging, folders, agent.source)
    while not moved(site, staged, files):
        if time.perf_counter() - started > MOVE_TIMEOUT or not all(agent.alive() for agent in site.agents):
            raise SystemExit(f"{site.key}: not moved within {MOVE_TIMEOUT:g} s or an agent ended; see its up.out")
        time.sleep(LOOK_INTERVAL)
    emptied = time.perf_counter()
    lag, recorded = wait_recorded(site, f"copy {tag}f", files, emptied)
    after, window = site.cpu(), time.perf_counter() - started
    check(site, load.expected(tag))
    cpu = {key: after[key] - before[key] for key in before}
    run = Run(files, emptied - started, lag, recorded, cpu, window, site.server_log.new_matches())
    return run, dropped_caches


def wait_recorded(site: Site, name_like: str, expected: int, since: float) -> tuple[float | None, int]:
    recorded = 0
    while True:
        count = completed(site, name_like)
        now = time.perf_counter()
        recorded = recorded if count is None else count
        if recorded >= expected:
            return now - since, recorded
        if now - since >= RECORD_TIMEOUT:
            return None, recorded
        time.sleep(API_POLL)


def check(site: Site, expected: dict[str, str]) -> None:
    """Outside the timing: each destination holds exactly its agent's files, each with the master's checksum."""
    for agent in site.agents:
        there = arrived(agent)
        if there != sorted(expected):
            raise SystemExit(f"{agent.name}: {len(there)} file(s) in its destination, expected {len(expected)}")
        for rel, checksum in expected.items():
            if hash_file(agent.destination / rel) != checksum:
                raise SystemExit(f"{agent.name}: {rel} differs from the master")
        if left := list_files(agent.source):
            raise SystemExit(f"{agent.name}: {len(left)} file(s) left in its source, e.g. {left[:3]}")


def settle(site: Site, quiet: float) -> None:
    """Wait (untimed) until the site uses less than ``quiet`` of one core, twice in a row."""
    started, last, calm = time.perf_counter(), site.busy(), 0
    while calm < 2:
        if time.perf_counter() - started > SETTLE_TIMEOUT:
            print(f"note: still busy after {SETTLE_TIMEOUT:g} s of waiting to settle; going on", flush=True)
            return
        time.sleep(SETTLE_INTERVAL)
        now = site.busy()
        calm = calm + 1 if now - last < quiet * SETTLE_INTERVAL else 0
        last = now


def warm_up(site: Site) -> dict[str, float]:
    """Untimed: three tiny files per agent until moved and recorded (the watch runs have started). The idle site's
    share of one core afterwards, plus the margin, is what settling waits for."""
    started = time.perf_counter()
    for agent in site.agents:
        (agent.staging / "warmf0").mkdir(parents=True, exist_ok=True)
        for index in range(3):
            (agent.staging / "warmf0" / f"w{index}.txt").write_bytes(b"warm-up\n")
        place(agent.staging, ["warmf0"], agent.source)
    files = 3 * len(site.agents)
    while not moved(site, [["warmf0"]] * len(site.agents), files):
        if time.perf_counter() - started > START_TIMEOUT or not all(agent.alive() for agent in site.agents):
            raise SystemExit(f"{site.key}: the warm-up files were not moved; see the agents' up.out")
        time.sleep(0.1)
    lag, recorded = wait_recorded(site, "copy warmf", files, time.perf_counter())
    print(f"  warm-up: {files} tiny files moved {time.perf_counter() - started:.1f} s after they appeared (untimed)")
    if lag is None:
        print(f"  note: only {recorded}/{files} warm-up task runs recorded Completed")
    for agent in site.agents:
        clear_folder(agent.source)
        clear_folder(agent.destination)
    idle = idle_shares(site)
    shares = ", ".join(f"{name} {share:.1%}" for name, share in idle.items() if name != "database" or site.postmaster)
    total = idle["server"] + idle["database"] + idle["agents"]
    print(f"  idle: {total:.1%} of one core ({shares}); runs start once the site is that quiet")
    return idle


def idle_shares(site: Site) -> dict[str, float]:
    """The shares of one core the idle site uses (watch runs scanning, the servers' services), by part: the quietest
    of a few windows (a storage report, a flow-run process every minute, or a start still settling lifts one)."""
    windows = []
    last = site.cpu()
    for _ in range(IDLE_WINDOWS):
        time.sleep(IDLE_WINDOW)
        now = site.cpu()
        windows.append({name: (now[name] - last[name]) / IDLE_WINDOW for name in now})
        last = now
    return min(windows, key=lambda shares: shares["server"] + shares["database"] + shares["agents"])


def run_scenario(key: str, site: Site, load: Load, runs: int, drop: bool) -> dict[str, Any]:
    idle = warm_up(site)
    quiet = idle["server"] + idle["database"] + idle["agents"] + SETTLE_MARGIN
    outputs = [LogWatch(agent.output, CONSOLE_WARNINGS) for agent in site.agents]
    for output in outputs:
        output.new_matches()  # the start and the warm-up are not counted
    done: list[Run] = []
    dropped_caches = []
    for number in range(runs):
        run, dropped = timed_run(site, load, f"r{number + 1}", quiet, drop)
        done.append(run)
        dropped_caches.append(dropped)
        lag = f"recorded +{run.lag:.2f} s" if run.lag is not None else f"NOT all recorded in {RECORD_TIMEOUT:g} s"
        used = run.cpu
        database = f", PostgreSQL {used['database']:.1f} s" if site.postmaster else ""
        agents = f"agents {used['agents']:.1f} s (fta up itself {used['runners']:.1f} s)"
        cpu = f"server {used['server']:.1f} s{database}, {agents}"
        print(
            f"  run {number + 1}: {run.files} files in {run.seconds:.2f} s = {run.rate:.1f} files/s, {lag}"
            f" ({run.recorded}/{run.files}); CPU {cpu}",
            flush=True,
        )
        for line in run.warnings[:5]:
            print(f"    server log: {line}")
    warnings = [
        f"{agent.name}: {line}" for agent, out in zip(site.agents, outputs, strict=True) for line in out.new_matches()
    ]
    for line in warnings[:5]:
        print(f"    agent output: {line}")
    return summary(key, site, done, idle, all(dropped_caches), warnings)


# -- the report ----------------------------------------------------------------------------------------------------


def summary(
    key: str, site: Site, runs: list[Run], idle: dict[str, float], caches_dropped: bool, warnings: list[str]
) -> dict[str, Any]:
    files = runs[0].files
    lags = [run.lag if run.lag is not None else float("inf") for run in runs]
    median_cpu = {name: statistics.median(run.cpu[name] for run in runs) for name in runs[0].cpu}
    # What the files cost beyond the idle site over the same window (the idle share measured after the warm-up).
    above_idle = {
        name: statistics.median(run.cpu[name] - idle[name] * run.window for run in runs) for name in runs[0].cpu
    }
    return {
        "title": SCENARIOS[key],
        "agents": [agent.name for agent in site.agents],
        "files": files,
        "median_seconds": statistics.median(run.seconds for run in runs),
        "files_per_s": files / statistics.median(run.seconds for run in runs),
        "runs_seconds": [run.seconds for run in runs],
        "lags_seconds": [run.lag for run in runs],  # null: not all recorded within RECORD_TIMEOUT
        "lag_median_seconds": finite(statistics.median(lags)),
        "lag_max_seconds": finite(max(lags)),
        "dropped": [run.dropped for run in runs],
        "cpu_ms_per_file": {name: 1000 * seconds / files for name, seconds in median_cpu.items()},
        "cpu_ms_per_file_above_idle": {name: 1000 * seconds / files for name, seconds in above_idle.items()},
        "idle_cores": idle,
        "cpu_window_seconds": [run.window for run in runs],
        "server_log_warnings": sum(len(run.warnings) for run in runs),
        "agent_warnings": len(warnings),
        "caches_dropped": caches_dropped,
    }


def finite(value: float) -> float | None:
    return None if value == float("inf") else value


def lag_text(value: float | None) -> str:
    return "NOT all" if value is None else f"{value:.1f} s"


def print_table(results: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    print(
        f"\n{'scenario':<40} {'files':>6} {'median s':>9} {'files/s':>8} {'vs SQLite':>9}  {'lag med/max':>13}"
        f" {'dropped':>7}  CPU ms/file server / postgres / agents: all, above idle"
    )
    base = results.get("sqlite", {}).get("files_per_s")
    ratios = {}
    for key, doc in results.items():
        ratio = doc["files_per_s"] / base if base else None
        ratios[key] = ratio
        shown = f"{ratio:8.2f}x" if ratio is not None else f"{'-':>9}"
        lag = f"{lag_text(doc['lag_median_seconds'])}/{lag_text(doc['lag_max_seconds'])}"
        cpu = f"{cpu_text(key, doc['cpu_ms_per_file'])}, {cpu_text(key, doc['cpu_ms_per_file_above_idle'])}"
        print(
            f"{doc['title']:<40} {doc['files']:>6} {doc['median_seconds']:9.2f} {doc['files_per_s']:8.1f}"
            f" {shown}  {lag:>13} {sum(doc['dropped']):>7}  {cpu}"
        )
    print(
        "\nnote: files/s counts every agent's files (the site moves twice as many); 'vs SQLite' is that against the"
        " single agent with its own SQLite server, measured in this invocation. Lag: from the last copy to the last"
        " task run recorded Completed. CPU per file: medians over the runs, from the first rename until recorded;"
        " 'above idle' less what the idle site (watch runs scanning, server services) uses over the same time."
    )
    return ratios


def cpu_text(key: str, cpu: dict[str, float]) -> str:
    database = f"{cpu['database']:.1f}" if key != "sqlite" else "-"
    return f"{cpu['server']:.1f} / {database} / {cpu['agents']:.1f}"


def print_warnings(results: dict[str, dict[str, Any]]) -> None:
    for doc in results.values():
        print(
            f"{doc['title']}: {doc['server_log_warnings']} server-log line(s) with"
            f" {' / '.join(SERVER_WARNINGS)}; {doc['agent_warnings']} agent output line(s) at WARNING or above"
        )


def write_json(path: Path, args: argparse.Namespace, results: dict[str, Any], ratios: dict[str, float | None]) -> None:
    report = {
        "machine": {"nproc": os.cpu_count(), "loadavg_end": os.getloadavg()},
        "files_per_agent": args.files,
        "size_bytes": args.size,
        "folders": args.folders,
        "runs": args.runs,
        "stable_seconds": STABLE_SECONDS,
        "polling_seconds": POLLING_SECONDS,
        "scenarios": results,
        "vs_sqlite_files_per_s": {key: ratio for key, ratio in ratios.items() if key != "sqlite"},
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"json: {path}")


# -- main ----------------------------------------------------------------------------------------------------------


def run_both(args: argparse.Namespace, workdir: Path, load: Load, destination: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for key in args.scenarios:
        print(f"\n{SCENARIOS[key]}: {args.runs} run(s) of {args.files} files per agent", flush=True)
        print(f"  load average: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
        with ExitStack() as stack:
            if key == "sqlite":
                site = stack.enter_context(sqlite_site(workdir, destination))
            else:
                site = stack.enter_context(postgres_site(key, workdir, destination))
            results[key] = run_scenario(key, site, load, args.runs, not args.keep_caches)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=None, help="files per agent and run (default 1000)")
    parser.add_argument("--size", type=parse_size, default=parse_size("64KiB"), help="default 64KiB")
    parser.add_argument("--folders", type=int, default=4, help="folders the files are spread over (default 4)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per scenario (default 3)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_FILES} files, {QUICK_RUNS} run: a smoke check")
    parser.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help=f"comma-separated, run in this order, of {', '.join(SCENARIOS)} (default: {DEFAULT_SCENARIOS})",
    )
    parser.add_argument("--keep-caches", action="store_true", help="do not drop the page cache before the runs")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.files = args.files if args.files is not None else QUICK_FILES if args.quick else 1000
    args.runs = args.runs if args.runs is not None else QUICK_RUNS if args.quick else 3
    if args.runs < 1 or args.files < 1 or args.folders < 1:
        parser.error("--runs, --files and --folders must be at least 1")
    args.scenarios = [key.strip() for key in args.scenarios.split(",") if key.strip()]
    if not args.scenarios or set(args.scenarios) - set(SCENARIOS):
        parser.error(f"--scenarios: one or more of {', '.join(SCENARIOS)}")

    own_workdir = args.workdir is None
    workdir = (Path(tempfile.mkdtemp(prefix="fta-bench-site-")) if own_workdir else args.workdir).resolve()
    names = small_names(args.files, args.folders)
    page = 4096
    room = 3 * args.files * (-(-args.size // page) * page + page)  # three agents' files at most at once: 2 + spare
    try:
        master = workdir / "master"
        ensure_small_master(master, names, args.size)
        load = Load(master, checksums(master, names))
        with destination_mount(workdir / "destination", room) as mounted:
            if not mounted:
                print("note: no tmpfs (not root or mount failed): the destinations are folders on the same disk")
            print_machine(workdir, workdir / "destination")
            print(
                f"agents: fta up, stable {STABLE_SECONDS:g} s, polling {POLLING_SECONDS:g} s, other settings at their"
                f" defaults; {args.files} x {human(args.size)} per agent and run in {args.folders} folders"
            )
            results = run_both(args, workdir, load, workdir / "destination")
        print(f"\nload average at the end: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
        if not all(doc["caches_dropped"] for doc in results.values()):
            print("page cache: NOT dropped before every run (--keep-caches or not permitted)")
        ratios = print_table(results)
        print_warnings(results)
        if args.json is not None:
            write_json(args.json, args, results, ratios)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
