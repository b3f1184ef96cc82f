"""A backlog: many small files already waiting in the source when ``fta up`` starts, measured from outside.

Run as root (the destination is a tmpfs, the page cache is dropped)::

    python benchmarks/backlog.py [--files 20000] [--size 4KiB] [--folders 20] [--noop-task-runs 2000]
        [--small-file-rate FILES_PER_S] [--agent-name backlog] [--workdir DIR] [--json PATH]

As after a weekend with the destination unreachable: ``--files`` files of ``--size`` random bytes in ``--folders``
folders wait in the source when ``fta up`` starts. ``fta up`` is a real process, started as a host runs it
(``site_throughput.Agent``: its own agent name, data path, source and destination, ``file_stable_time_seconds`` 0.2,
``polling_interval_seconds`` 0.1, no log file, no metrics port, the other settings at their defaults) with its own
server (SQLite in its data path). It is started once beforehand with an empty source and stopped (the server's
migrations, the block, the deployments), so that the database's size before the files are placed is known; the
files are then renamed into the source, the page cache is dropped and ``fta up`` starts again over the same data path,
as after a reboot. Measured from its start:

- seconds to the first file at the destination; files/s from the first copy to the last and over the whole run;
  seconds until the source is empty; the lag until every task run is recorded Completed in the API;
- peak RSS and CPU seconds (``/proc``, every 0.2 s) of the watch run's process (the flow-run process whose
  ``PREFECT__FLOW_RUN_ID`` is a ``watch-folder`` run), of the server (``prefect server start`` and its children) and
  of ``fta up`` itself;
- the size of the SQLite database (``prefect.db`` and its ``-wal``, and the pages in use) before the files are
  placed and once the agent is idle again, per transfer; then, against the same server, Prefect's own floor twice:
  a flow of ``--noop-task-runs`` no-op task runs from a separate process (``flow_throughput.prefect_floor``, through
  ``PREFECT_API_URL``) in a plain flow run, then in a run of a deployment with the agent's tag (no work pool, as a
  served one: its task runs' events name the same related resources as the copies', the flow run, the flow, the
  deployment and the tag), and the database's growth per no-op task run of each; the goal compares the transfer with
  the second, the same path;
- every second (own threads, Prefect's sync client): the newest version of the ``fta-status-<agent>`` artifact (its
  data's size, how old it is when the answer arrives) and the time ``read_task_runs(limit=200)`` takes to answer.

- the server's log until it is idle after the drain: lines with "queue is full", "dropped" or "error flushing" (its
  in-memory queues drop what overflows; a database growth below the floor then only means lost events).

At the end, untimed: every file is at the destination with the master's size and checksum, none is left in the
source (nor a temp file at the destination), then ``fta up`` is stopped with SIGTERM. The goals of a calm backlog are
printed with PASS/FAIL where the figure exists; ``--json PATH`` writes every figure.
"""

from __future__ import annotations

import os

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # site_throughput needs tests.postgres

import argparse
import json
import shutil
import signal
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from copier_throughput import destination_mount, drop_caches, human, parse_size, print_machine
from flow_throughput import (
    SERVER_WARNINGS,
    LogWatch,
    checksums,
    copies_of,
    count_completed,
    ensure_small_master,
    free_port,
    list_files,
    place,
    small_names,
    stage,
)
from site_throughput import (
    POLLING_SECONDS,
    STABLE_SECONDS,
    START_TIMEOUT,
    Agent,
    clean_env,
    command_line,
    descendants,
    local_server_of,
    wait_for_file,
)

from deployments.local_server import status_with
from fta.copier import hash_file
from fta.credential import CREDENTIAL_FILE
from fta.probe import PROBE_PREFIX
from fta.procstat import ProcStat, all_processes, read_stat

PROC_INTERVAL = 0.2  # seconds between two looks at /proc
FULL_LOOK_EVERY = 5  # looks: every fifth reads all of /proc
API_INTERVAL = 1.0  # seconds between two reads of the status artifact, and of the task-run list
LOOK_FIRST = 0.05  # seconds between two looks at the destination until the first file is there
LOOK_AFTER = 0.25  # ... then at least this long (a look counts every file: cheap, not free)
RECORD_TIMEOUT = 300.0
SETTLE_TIMEOUT = 120.0
SETTLE_SHARE = 0.5  # of one core: below this (twice in a row) fta up and its server count as idle
SETTLE_WINDOW = 2.0  # seconds
GOAL_RATIO = 0.9
GOAL_RSS_MB = 300.0
GOAL_GROWTH_MARGIN = 2048  # bytes per transfer above Prefect's own per task run
GOAL_STALE_SECONDS = 2.0
GOAL_LIST_SECONDS = 1.0
WATCH_FLOW = "watch-folder"
SHOWN_TABLES = 8
MB = 1e6


# -- the database --------------------------------------------------------------------------------------------------


@dataclass
class DbSize:
    main: int  # prefect.db
    wal: int  # prefect.db-wal
    used: int | None  # pages in use (page_count - freelist_count) x page_size, the WAL's committed pages included
    tables: dict[str, int] | None  # bytes of each table's pages with its indexes' (SQLite's dbstat)

    @property
    def files(self) -> int:
        return self.main + self.wal


def db_size(db: Path) -> DbSize:
    """The file sizes, and the bytes in use as a reader sees them (a read-only connection; the server keeps writing).

    The WAL file's size depends on when SQLite last checkpointed (it is reused, not shrunk), so the pages in use are
    the steadier measure of what was stored; both are reported, and the pages of each table with its indexes say
    where the growth went."""

    def size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    for _ in range(5):
        try:
            used, tables = pages_in_use(db)
            break
        except sqlite3.Error:
            time.sleep(0.5)
    else:
        used, tables = None, None
    return DbSize(size(db), size(db.with_name(db.name + "-wal")), used, tables)


def pages_in_use(db: Path) -> tuple[int, dict[str, int] | None]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as connection:
        pages, free, page = (connection.execute(f"PRAGMA {name}").fetchone()[0] for name in PRAGMAS)
        try:
            owners = dict(connection.execute("SELECT name, tbl_name FROM sqlite_master"))
            sizes = connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall()
        except sqlite3.OperationalError:  # an SQLite built without the dbstat table
            return (pages - free) * page, None
    tables: dict[str, int] = {}
    for name, pgsize in sizes:
        owner = owners.get(name, name)
        tables[owner] = tables.get(owner, 0) + int(pgsize)
    return (pages - free) * page, tables


PRAGMAS = ("page_count", "freelist_count", "page_size")


def growth_by_table(before: DbSize, after: DbSize, count: int) -> dict[str, float]:
    """Bytes per item by table (with its indexes), largest first; empty without dbstat."""
    if before.tables is None or after.tables is None:
        return {}
    names = set(before.tables) | set(after.tables)
    each = {name: (after.tables.get(name, 0) - before.tables.get(name, 0)) / count for name in names}
    return dict(sorted(each.items(), key=lambda item: -abs(item[1])))


# -- processes -----------------------------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def flow_run_id(pid: int) -> str | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in environ:
        if entry.startswith(b"PREFECT__FLOW_RUN_ID="):
            return entry.split(b"=", 1)[1].decode()
    return None


@dataclass
class Sample:
    at: float  # seconds since fta up started
    rss: dict[str, int]  # watch, server, up
    cpu: dict[str, float]  # seconds so far: watch, server, up (fta up's tree without the server and the watch run)


class ProcessWatch(threading.Thread):
    """Every 0.2 s: RSS and CPU of the watch run's process, of the server's processes and of ``fta up`` itself."""

    def __init__(self, root: int, started: float, is_watch_run: Callable[[str], bool]) -> None:
        super().__init__(name="proc-sampler", daemon=True)
        self.root, self.started, self.is_watch_run = root, started, is_watch_run
        self.server: int | None = None
        self.watch: int | None = None
        self.watch_found_at: float | None = None
        self.samples: list[Sample] = []
        self.server_processes = 0
        self.stop = threading.Event()
        self._judged: dict[int, bool] = {}
        self._last_cpu: dict[str, float] = {"watch": 0.0, "server": 0.0, "up": 0.0}
        self._looks = 0
        self._tree: set[int] = set()
        self._server_tree: set[int] = set()

    def run(self) -> None:
        while not self.stop.wait(PROC_INTERVAL):
            self.sample()

    def sample(self) -> None:
        """One look. The whole of /proc is read once a second (new processes: the server, flow runs); in between
        only the processes already known, which keeps the looking itself cheap on a small machine."""
        if self._looks % FULL_LOOK_EVERY == 0 or self.server is None or self.watch is None:
            processes = all_processes()
            self._tree = descendants(self.root, processes)
            if self.server is None:
                self.server = next((pid for pid in self._tree if is_server(pid)), None)
            self._server_tree = descendants(self.server, processes) if self.server in processes else set()
            self.server_processes = max(self.server_processes, len(self._server_tree))
            if self.watch is None:
                self.find_watch(self._tree - self._server_tree - {self.root})
        else:
            processes = {pid: stat for pid in self._tree if (stat := read_stat(pid)) is not None}
        self._looks += 1
        server_tree, tick = self._server_tree, os.sysconf("SC_CLK_TCK")
        cpu = dict(self._last_cpu)  # a process gone keeps its last figure
        if self.watch in processes:
            cpu["watch"] = processes[self.watch].cpu_ticks / tick
        if server_tree:
            cpu["server"] = ticks(processes, server_tree) / tick
        if self.root in processes:
            cpu["up"] = ticks(processes, self._tree - server_tree - {self.watch}) / tick
        self._last_cpu = cpu
        rss = {
            "watch": rss_bytes(self.watch) if self.watch is not None else 0,
            "server": sum(rss_bytes(pid) for pid in server_tree),
            "up": rss_bytes(self.root),
        }
        self.samples.append(Sample(time.perf_counter() - self.started, rss, cpu))

    def find_watch(self, candidates: set[int]) -> None:
        for pid in sorted(candidates - set(self._judged)):
            run_id = flow_run_id(pid)
            if run_id is None:
                continue
            try:
                self._judged[pid] = self.is_watch_run(run_id)
            except Exception:  # the API is busy or not up yet: asked again at the next look
                continue
            if self._judged[pid]:
                self.watch, self.watch_found_at = pid, time.perf_counter() - self.started
                return

    def peak(self, part: str, until: float) -> int:
        return max((sample.rss[part] for sample in self.samples if sample.at <= until), default=0)

    def cpu_at(self, at: float) -> dict[str, float]:
        before = [sample for sample in self.samples if sample.at <= at]
        return dict(before[-1].cpu) if before else {"watch": 0.0, "server": 0.0, "up": 0.0}


def is_server(pid: int) -> bool:
    words = command_line(pid)
    return "prefect" in words and "server" in words and "start" in words


def ticks(processes: dict[int, ProcStat], pids: set[int]) -> int:
    return sum(processes[pid].cpu_ticks for pid in pids if pid in processes)


# -- the API, every second -----------------------------------------------------------------------------------------


@dataclass
class Reading:
    at: float  # seconds since fta up started, when the answer arrived
    seconds: float  # how long the answer took
    size: int | None = None  # artifact: bytes of its data (None: no artifact yet)
    rows: int | None = None
    age: float | None = None  # artifact: now - its updated time
    error: str | None = None


class ApiWatch(threading.Thread):
    """Calls ``read`` with a client of its own about every second, from when the API answers until stopped."""

    def __init__(self, name: str, api_url: str, credential: str, started: float, read: Callable[[Any], Reading]):
        super().__init__(name=name, daemon=True)
        self.api_url, self.credential, self.started, self.read = api_url, credential, started, read
        self.readings: list[Reading] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from prefect.client.orchestration import SyncPrefectClient

        while status_with(f"{self.api_url}/ready", self.credential) != 200:
            if self.stop.wait(0.2):
                return
        with SyncPrefectClient(self.api_url, auth_string=self.credential) as client:
            while not self.stop.is_set():
                begun = time.perf_counter()
                try:
                    reading = self.read(client)
                except Exception as exc:  # recorded; the next read goes on
                    reading = Reading(0.0, 0.0, error=f"{type(exc).__name__}: {exc}"[:200])
                now = time.perf_counter()
                reading.at, reading.seconds = now - self.started, now - begun
                self.readings.append(reading)
                self.stop.wait(max(0.0, API_INTERVAL - (now - begun)))

    def during(self, start: float, end: float) -> list[Reading]:
        return [reading for reading in self.readings if start <= reading.at <= end and reading.error is None]


def status_reader(key: str) -> Callable[[Any], Reading]:
    """The newest version of the status artifact, read as the agent's own commands read it (``read_table``)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    def read(client: Any) -> Reading:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.UPDATED_DESC, limit=1
        )
        now = datetime.now(UTC)
        if not found:
            return Reading(0.0, 0.0)
        artifact = found[0]
        data = artifact.data if isinstance(artifact.data, str) else json.dumps(artifact.data)
        rows = json.loads(data) if isinstance(artifact.data, str) else artifact.data
        written = artifact.updated or artifact.created
        age = (now - written).total_seconds() if written is not None else None
        return Reading(0.0, 0.0, len(data.encode()), len(rows) if isinstance(rows, list) else None, age)

    return read


def list_reader(client: Any) -> Reading:
    client.read_task_runs(limit=200)
    return Reading(0.0, 0.0)


def watch_run_judge(api_url: str, credential: str) -> Callable[[str], bool]:
    """Whether a flow run is a ``watch-folder`` run (its flow's name), asked once per flow-run process."""
    from uuid import UUID

    from prefect.client.orchestration import SyncPrefectClient

    def judge(run_id: str) -> bool:
        with SyncPrefectClient(api_url, auth_string=credential) as client:
            run = client.read_flow_run(UUID(run_id))
            return bool(client.read_flow(run.flow_id).name == WATCH_FLOW)

    return judge


def completed(api_url: str, credential: str, agent: str) -> int | None:
    """The agent's copy task runs the API has recorded Completed (None: no answer)."""
    return count_completed(api_url, {"name": {"like_": "copy "}}, credential, timeout=30, agent=agent)


# -- the files -----------------------------------------------------------------------------------------------------


def count_arrived(destination: Path) -> int:
    """Files under their final name at the destination: no temp file, no destination probe (both are hidden)."""
    total = 0
    for _folder, _dirs, files in os.walk(destination):
        total += sum(not name.startswith(".") for name in files)
    return total


def count_files(root: Path) -> int:
    return sum(len(files) for _folder, _dirs, files in os.walk(root))


def check(destination: Path, source: Path, expected: dict[str, str], size: int, drained: bool) -> list[str]:
    """Untimed, fta up stopped: exactly the expected files at the destination, each with the master's size and
    checksum (all of them), none left in the source, no temp file left at the destination. Not drained: every file
    is either at the destination, checked so, or still in the source; none is lost or doubled."""
    problems = []
    arrived = [rel for rel in list_files(destination) if not rel.rsplit("/", 1)[-1].startswith(PROBE_PREFIX)]
    if not drained:
        left = list_files(source)
        if sorted(arrived + left) != sorted(expected):
            problems.append(f"{len(arrived)} at the destination + {len(left)} in the source != {len(expected)} files")
        expected = {rel: expected[rel] for rel in arrived if rel in expected}
        arrived = sorted(expected)
    if arrived != sorted(expected):
        missing, extra = sorted(set(expected) - set(arrived)), sorted(set(arrived) - set(expected))
        problems.append(
            f"{len(arrived)} file(s) at the destination, expected {len(expected)}; missing {missing[:5]},"
            f" unexpected {extra[:5]}"
        )
    wrong = [
        rel
        for rel, checksum in expected.items()
        if (destination / rel).is_file()
        and ((destination / rel).stat().st_size != size or hash_file(destination / rel) != checksum)
    ]
    if wrong:
        problems.append(f"{len(wrong)} file(s) differ from the master, e.g. {wrong[:5]}")
    if drained and (left := list_files(source)):
        problems.append(f"{len(left)} file(s) left in the source, e.g. {left[:5]}")
    return problems


# -- the drain -----------------------------------------------------------------------------------------------------


@dataclass
class Drain:
    files: int
    first: float  # seconds from fta up's start to the first file at the destination
    last: float  # ... to the last one (not drained: when the look stopped)
    empty: float  # ... to the source empty (not drained: when the look stopped)
    lag: float | None  # source empty -> every task run recorded Completed (None: not within RECORD_TIMEOUT)
    recorded: int
    progress: list[tuple[float, int]] = field(default_factory=list)  # (seconds, files arrived)
    arrived: int = 0  # files at the destination when the look stopped (all of them when drained)

    @property
    def drained(self) -> bool:
        return self.arrived >= self.files

    @property
    def rate(self) -> float:
        """Files/s from the first copy to the last (not drained: to the moment the look stopped)."""
        return (self.arrived - 1) / (self.last - self.first) if self.last > self.first else float("inf")

    @property
    def overall(self) -> float:
        return self.arrived / self.empty


def drain(agent: Agent, files: int, started: float, timeout: float, show: Callable[[float, int], None]) -> Drain:
    """Looks at the destination and the source until every file arrived and the source is empty."""
    first = last = empty = None
    progress: list[tuple[float, int]] = []
    step = max(1, files // 10)
    while empty is None:
        now = time.perf_counter() - started
        arrived = count_arrived(agent.destination)
        newly = bool(arrived) and first is None
        if newly:
            first = now
        if arrived >= files and last is None:
            last = now
        if last is not None and count_files(agent.source) == 0:
            empty = now
        if newly or (progress and arrived // step > progress[-1][1] // step) or empty is not None:
            progress.append((now, arrived))
            show(now, arrived)
        if not agent.alive():
            raise SystemExit(
                f"fta up ended (exit {agent.process.poll() if agent.process else '?'}); see {agent.output}"
            )
        if now > timeout and first is not None:  # what was measured until now is reported, marked as such
            print(f"  {now:7.1f} s: --timeout: {files - arrived} file(s) not yet moved; the backlog did NOT drain")
            return Drain(files, first, now, now, None, 0, progress, arrived)
        if now > timeout:
            raise SystemExit(f"no file moved {timeout:g} s after fta up started")
        # A look counts every file (tens of ms for 20,000): at most a tenth of a core goes to looking.
        time.sleep(LOOK_FIRST if first is None else max(LOOK_AFTER, 10 * (time.perf_counter() - started - now)))
    assert first is not None and last is not None
    return Drain(files, first, last, empty, None, 0, progress, files)


def wait_recorded(api_url: str, credential: str, agent: str, run: Drain, started: float) -> None:
    while True:
        count = completed(api_url, credential, agent)
        now = time.perf_counter() - started
        run.recorded = count if count is not None else run.recorded
        if run.recorded >= run.files:
            run.lag = now - run.empty
            return
        if now - run.empty > RECORD_TIMEOUT:
            return
        time.sleep(0.5)


def settle(root: int, what: str) -> None:
    """Wait until fta up's whole tree (its server included) uses under SETTLE_SHARE of a core, twice in a row: the
    server has written what it was still writing (events, logs) before the database is measured."""
    started, calm = time.perf_counter(), 0
    processes = all_processes()
    last = ticks(processes, descendants(root, processes))
    while calm < 2 and time.perf_counter() - started < SETTLE_TIMEOUT:
        time.sleep(SETTLE_WINDOW)
        processes = all_processes()
        now = ticks(processes, descendants(root, processes))
        calm = calm + 1 if (now - last) / os.sysconf("SC_CLK_TCK") < SETTLE_SHARE * SETTLE_WINDOW else 0
        last = now
    seconds = time.perf_counter() - started
    idle = f"idle after {seconds:.0f} s" if calm >= 2 else f"NOT idle after {seconds:.0f} s, measured anyway"
    print(f"{what}: fta up and its server {idle}", flush=True)


# -- Prefect's floor -----------------------------------------------------------------------------------------------


def noop_child(count: int, workers: int, out: Path, served_as: str | None, server: int | None) -> int:
    """In the separate process: one warm-up flow and one flow of ``count`` no-op task runs (flow_throughput's);
    ``served_as``: each a run of a deployment with that agent's tag, as the agent's watch run is; ``server``: the
    server's pid, whose CPU is counted until every no-op task run is recorded Completed."""
    from flow_throughput import prefect_floor

    from fta.settings import agent_tag

    tags = () if served_as is None else (agent_tag(served_as),)
    floor = prefect_floor(count, workers, server, flow_tags=tags, deployment=SERVED_FLOOR if served_as else None)
    warm_up = min(50, count)  # prefect_floor's own warm-up flow
    out.write_text(
        json.dumps(
            {
                "task_runs": count + warm_up,
                "timed": count,
                "seconds": floor.seconds,
                "cpu": floor.cpu,
                "rate": floor.rate,
                "recorded_seconds": floor.recorded_seconds,
                "server_cpu": floor.server_cpu,
            }
        )
    )
    return 0


SERVED_FLOOR = "prefect-floor"  # the no-op floor's deployment


@dataclass
class Floor:
    served: bool  # its flow runs: runs of a deployment with the agent's tag (else plain flow runs, no tag)
    task_runs: int  # all of them, the warm-up's included: each one grows the database
    rate: float  # no-op task runs/s of the timed flow, as submitted
    recorded_rate: float | None  # ... counted until the server has every one recorded Completed (None: not in time)
    cpu_ms: float  # CPU of the submitting process per task run
    server_cpu_ms: float | None  # CPU of the server per task run, until every one was recorded
    before: DbSize
    after: DbSize

    def growth(self, files: bool) -> float | None:
        return per_item(self.before, self.after, self.task_runs, files)


def per_item(before: DbSize, after: DbSize, count: int, files: bool) -> float | None:
    if files:
        return (after.files - before.files) / count
    if before.used is None or after.used is None:
        return None
    return (after.used - before.used) / count


def prefect_floor(
    workdir: Path, api_url: str, credential: str, count: int, db: Path, root: int, served_as: str | None
) -> Floor:
    """``served_as``: an agent's name; the no-op task runs then run in a deployment's flow run with its tag, so that
    their events name the same related resources as the agent's copies (flow run, flow, deployment, tag)."""
    before = db_size(db)
    name = "noop-served" if served_as else "noop"
    out, log = workdir / f"{name}.json", workdir / f"{name}.out"
    env = clean_env(PREFECT_API_URL=api_url, PREFECT_API_AUTH_STRING=credential, PREFECT_HOME=str(workdir / "noop"))
    command = [sys.executable, str(Path(__file__).resolve()), "--noop-child", str(count)]
    command += ["--noop-workers", str(copies_of(None)), "--noop-out", str(out)]
    command += ["--noop-served-as", served_as] if served_as else []
    servers = [pid for pid in descendants(root, all_processes()) if is_server(pid)]
    command += ["--noop-server-pid", str(servers[0])] if servers else []
    with log.open("wb") as sink:
        done = subprocess.run(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=1800, check=False
        )
    if done.returncode != 0 or not out.exists():
        raise SystemExit(f"the no-op task runs failed (exit {done.returncode}); see {log}")
    settle(root, "after the no-op task runs")
    result = json.loads(out.read_text())
    timed = result["timed"]
    recorded = timed / result["recorded_seconds"] if result["recorded_seconds"] else None
    server_ms = 1000 * result["server_cpu"] / timed if result["server_cpu"] is not None else None
    cpu_ms = 1000 * result["cpu"] / timed
    return Floor(
        served_as is not None, result["task_runs"], result["rate"], recorded, cpu_ms, server_ms, before, db_size(db)
    )


# -- the report ----------------------------------------------------------------------------------------------------


@dataclass
class Goal:
    text: str
    passed: bool | None  # None: no figure (or no verdict: printed only)
    detail: str

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "-"}[self.passed]
        return f"goal: {self.text}: {verdict} ({self.detail})"


@dataclass
class Measured:
    run: Drain
    procs: ProcessWatch
    status: list[Reading]  # from the first copy until the source was empty
    listing: list[Reading]  # from the API's first answer until the source was empty
    list_errors: int
    status_errors: int  # failed status reads from the first copy until the source was empty
    first_status: float | None  # seconds from fta up's start to the first status artifact read
    end: float  # seconds from fta up's start until it was idle again after the drain
    db_before: DbSize
    db_end: DbSize
    floors: list[Floor]  # plain, then served (each measured when asked for and drained)
    caches_dropped: bool
    observer_cpu: float  # this process's CPU seconds from fta up's start until the source was empty
    server_warnings: list[str]  # server-log lines with SERVER_WARNINGS, from the start until idle after the drain


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "max": None}
    return {"median": statistics.median(values), "max": max(values)}


def figures(m: Measured) -> dict[str, Any]:
    run, procs = m.run, m.procs
    cpu_empty, cpu_end = procs.cpu_at(run.empty), procs.cpu_at(m.end)
    ages = [r.age for r in m.status if r.age is not None]
    sizes = [float(r.size) for r in m.status if r.size is not None]
    return {
        "files": run.files,
        "drained": run.drained,
        "arrived": run.arrived,
        "first_file_seconds": run.first,
        "last_file_seconds": run.last,
        "source_empty_seconds": run.empty,
        "files_per_s_first_to_last": run.rate,
        "files_per_s_overall": run.overall,
        "recorded_lag_seconds": run.lag,
        "recorded": run.recorded,
        "progress": run.progress,
        "watch_process_found_seconds": procs.watch_found_at,
        "peak_rss_mb": {part: procs.peak(part, m.end) / MB for part in ("watch", "server", "up")},
        "peak_rss_mb_with_floor": {part: procs.peak(part, float("inf")) / MB for part in ("watch", "server", "up")},
        "server_processes": procs.server_processes,
        "cpu_seconds_to_empty": cpu_empty,
        "cpu_seconds_to_idle": cpu_end,
        "cpu_ms_per_file_to_idle": {part: 1000 * seconds / run.arrived for part, seconds in cpu_end.items()},
        "db_before": vars(m.db_before),
        "db_end": vars(m.db_end),
        "db_growth_per_transfer_files": per_item(m.db_before, m.db_end, run.arrived, files=True),
        "db_growth_per_transfer_used": per_item(m.db_before, m.db_end, run.arrived, files=False),
        "db_growth_per_transfer_by_table": growth_by_table(m.db_before, m.db_end, run.arrived),
        "floor": next((floor_doc(f) for f in m.floors if not f.served), None),
        "floor_served": next((floor_doc(f) for f in m.floors if f.served), None),
        "status_first_seconds": m.first_status,
        "status_reads": len(m.status),
        "status_errors": m.status_errors,
        "status_bytes": stats(sizes),
        "status_rows_max": max((r.rows for r in m.status if r.rows is not None), default=None),
        "status_age_seconds": stats(ages),
        "status_stale": [
            {"at": r.at, "age": r.age, "read_seconds": r.seconds}
            for r in m.status
            if r.age is not None and r.age > GOAL_STALE_SECONDS
        ],
        "status_read_seconds": stats([r.seconds for r in m.status]),
        "list_reads": len(m.listing),
        "list_errors": m.list_errors,
        "list_seconds": stats([r.seconds for r in m.listing]),
        "caches_dropped": m.caches_dropped,
        "observer_cpu_seconds": m.observer_cpu,
        "server_warnings": len(m.server_warnings),
        "server_warnings_first": m.server_warnings[:3],
    }


def goals(doc: dict[str, Any], small_file_rate: float | None) -> list[Goal]:
    found = [drain_goal(doc, small_file_rate)]
    for part, label in (("watch", "watch run's process"), ("server", "server")):
        peak = doc["peak_rss_mb"][part]
        found.append(Goal(f"peak RSS of the {label} < {GOAL_RSS_MB:g} MB", peak < GOAL_RSS_MB, f"{peak:.0f} MB"))
    found += growth_goals(doc)
    size = doc["status_bytes"]["max"]
    shown = "no status read during the drain"
    if size is not None:
        shown = f"largest {size / 1000:.1f} kB, {doc['status_rows_max']} rows; no verdict, see how it grows"
    found.append(Goal("status artifact bounded", None, shown))
    age = doc["status_age_seconds"]
    stale = Goal(f"status never staler than {GOAL_STALE_SECONDS:g} s", None, "no reading")
    if age["max"] is not None:
        stale.passed = age["max"] <= GOAL_STALE_SECONDS
        stale.detail = f"oldest {age['max']:.1f} s, median {age['median']:.1f} s over {doc['status_reads']} reads"
    listing = doc["list_seconds"]
    quick = Goal(f"task-run list answers in < {GOAL_LIST_SECONDS:g} s", None, "no reading")
    if listing["max"] is not None:
        quick.passed = listing["max"] < GOAL_LIST_SECONDS and doc["list_errors"] == 0
        quick.detail = (
            f"median {listing['median']:.3f} s, max {listing['max']:.3f} s,"
            f" {doc['list_reads']} reads, {doc['list_errors']} failed"
        )
    words = " / ".join(f"'{word}'" for word in SERVER_WARNINGS)
    kept = Goal("the server kept every event (its log until idle after the drain)", doc["server_warnings"] == 0, "")
    kept.detail = f"{doc['server_warnings']} line(s) with {words}"
    if doc["server_warnings_first"]:
        kept.detail += f"; the first: {doc['server_warnings_first'][0][:160]}"
    return [*found, stale, quick, kept]


def drain_goal(doc: dict[str, Any], small_file_rate: float | None) -> Goal:
    rate = doc["files_per_s_first_to_last"]
    goal = Goal(f"drain >= {GOAL_RATIO:g} x the small-file rate", None, f"{rate:.1f} files/s first -> last copy")
    if not small_file_rate:
        goal.detail += "; no --small-file-rate given"
        return goal
    if not doc["drained"]:
        goal.detail += f" until the timeout, {doc['arrived']} of {doc['files']} files: NOT drained"
    ratio = rate / small_file_rate
    goal.passed = ratio >= GOAL_RATIO and doc["drained"]
    goal.detail += (
        f" = {ratio:.2f} x {small_file_rate:g} files/s;"
        f" over the whole run {doc['files_per_s_overall'] / small_file_rate:.2f} x"
    )
    return goal


def floor_doc(floor: Floor) -> dict[str, Any]:
    return {
        "task_runs": floor.task_runs,
        "task_runs_per_s": floor.rate,
        "task_runs_per_s_recorded": floor.recorded_rate,
        "cpu_ms_per_task_run": floor.cpu_ms,
        "server_cpu_ms_per_task_run": floor.server_cpu_ms,
        "db_before": vars(floor.before),
        "db_after": vars(floor.after),
        "growth_per_task_run_files": floor.growth(files=True),
        "growth_per_task_run_used": floor.growth(files=False),
        "growth_per_task_run_by_table": growth_by_table(floor.before, floor.after, floor.task_runs),
    }


def growth_goals(doc: dict[str, Any]) -> list[Goal]:
    """Against the served floor when measured (the same related resources in each event as the copies'), else the
    plain one."""
    floor = doc["floor_served"] or doc["floor"]
    path = "in a deployment's run with the agent's tag" if doc["floor_served"] else "in a plain flow run"
    found = []
    for key, label in (("files", "files incl. -wal"), ("used", "pages in use")):
        per_transfer = doc[f"db_growth_per_transfer_{key}"]
        per_run = floor[f"growth_per_task_run_{key}"] if floor else None
        text = f"database growth per transfer <= no-op task run {path} + {GOAL_GROWTH_MARGIN} B ({label})"
        if per_transfer is None or per_run is None:
            shown = "?" if per_transfer is None else f"{per_transfer:.0f} B"
            found.append(Goal(text, None, f"{shown} per transfer; Prefect's floor not measured"))
            continue
        found.append(
            Goal(
                text,
                per_transfer <= per_run + GOAL_GROWTH_MARGIN,
                f"{per_transfer:.0f} B per transfer, {per_run:.0f} B per no-op task run",
            )
        )
    return found


def print_report(doc: dict[str, Any], found: list[Goal]) -> None:
    print(f"\nfirst file at the destination {doc['first_file_seconds']:9.1f} s after fta up started")
    empty = doc["source_empty_seconds"]
    if doc["drained"]:
        print(f"last file at the destination  {doc['last_file_seconds']:9.1f} s; source empty at {empty:.1f} s")
    else:
        print(
            f"NOT DRAINED: {doc['arrived']} of {doc['files']} files at the destination when the look stopped at"
            f" {empty:.1f} s (--timeout); every figure below is up to then, per file moved"
        )
    print(f"files/s first -> last copy    {doc['files_per_s_first_to_last']:9.1f}")
    print(
        f"files/s over the whole run    {doc['files_per_s_overall']:9.1f}  (from the start to the source empty"
        " or the timeout)"
    )
    lag = doc["recorded_lag_seconds"]
    recorded = f"+{lag:.1f} s after the source was empty" if lag is not None else f"NOT within {RECORD_TIMEOUT:g} s"
    if not doc["drained"]:
        recorded = "at the timeout"
    print(f"recorded Completed in the API {recorded} ({doc['recorded']}/{doc['files']})")
    found_at = doc["watch_process_found_seconds"]
    print(
        f"watch run's process found {found_at:.1f} s after the start"
        if found_at is not None
        else "watch run's process: NOT found (its RSS and CPU are not measured)"
    )
    print(f"\n{'process':<28} {'peak RSS MB':>11} {'CPU s to empty':>15} {'CPU s to idle':>14} {'CPU ms/file':>12}")
    labels = {"watch": "watch run", "server": f"server ({doc['server_processes']} process(es))", "up": "fta up itself"}
    for part, label in labels.items():
        print(
            f"{label:<28} {doc['peak_rss_mb'][part]:11.0f} {doc['cpu_seconds_to_empty'][part]:15.1f}"
            f" {doc['cpu_seconds_to_idle'][part]:14.1f} {doc['cpu_ms_per_file_to_idle'][part]:12.2f}"
        )
    if doc["floor"] is not None or doc["floor_served"] is not None:
        print(
            "  (peak RSS until idle after the drain; the no-op flows afterwards: server"
            f" {doc['peak_rss_mb_with_floor']['server']:.0f} MB)"
        )
    elif not doc["drained"]:
        print("  (until the timeout: 'to empty' and 'to idle' are both up to then)")
    print(f"  (this benchmark's own CPU until the source was empty: {doc['observer_cpu_seconds']:.1f} s)")
    print_database(doc)
    print_api(doc)
    print()
    for goal in found:
        print(goal.line())


def print_database(doc: dict[str, Any]) -> None:
    before, end = doc["db_before"], doc["db_end"]

    def mb(value: int | None) -> str:
        return "?" if value is None else f"{value / MB:.1f}"

    print(f"\n{'database (prefect.db)':<28} {'before MB':>10} {'end MB':>10} {'per transfer B':>15}")
    for key, label in (("files", "files (db + wal)"), ("used", "pages in use")):
        first = before["main"] + before["wal"] if key == "files" else before["used"]
        last = end["main"] + end["wal"] if key == "files" else end["used"]
        each = doc[f"db_growth_per_transfer_{key}"]
        print(f"{label:<28} {mb(first):>10} {mb(last):>10} {'?' if each is None else f'{each:.0f}':>15}")
    print(f"  (end: prefect.db {mb(end['main'])} MB, -wal {mb(end['wal'])} MB)")
    floors = {"plain flow run": doc["floor"], "deployment's run, agent's tag": doc["floor_served"]}
    if not any(floors.values()):
        print("Prefect's floor: not measured")
    for path, floor in floors.items():
        if floor is None:
            continue
        each_file, each_used = floor["growth_per_task_run_files"], floor["growth_per_task_run_used"]
        recorded, server_ms = floor["task_runs_per_s_recorded"], floor["server_cpu_ms_per_task_run"]
        print(
            f"Prefect's floor, {path}: {floor['task_runs']} no-op task runs from a separate process, same server:"
            f" {floor['task_runs_per_s']:.0f} task runs/s as submitted,"
            f" {'?' if recorded is None else f'{recorded:.0f}'} until recorded Completed;"
            f" CPU per task run {floor['cpu_ms_per_task_run']:.2f} ms submitting,"
            f" {'?' if server_ms is None else f'{server_ms:.2f}'} ms server;"
            f" database growth per task run {each_file:.0f} B (files),"
            f" {'?' if each_used is None else f'{each_used:.0f}'} B (pages in use)"
        )
    print_tables(
        doc["db_growth_per_transfer_by_table"],
        {path: floor["growth_per_task_run_by_table"] for path, floor in floors.items() if floor is not None},
    )


def print_tables(transfer: dict[str, float], floors: dict[str, dict[str, float]]) -> None:
    """Where the growth went: the tables (with their indexes) that grew most, per transfer and per no-op task run of
    each floor measured."""
    if not transfer:
        return
    shown = list(transfer)[:SHOWN_TABLES]
    rest = [name for name in transfer if name not in shown]
    heads = "".join(f" {'B per no-op, ' + path[:16]:>30}" for path in floors)
    print(f"  {'table (with its indexes)':<26} {'B per transfer':>15}{heads}")
    for name in shown:
        each = "".join(f" {noop.get(name, 0.0):30.0f}" for noop in floors.values())
        print(f"  {name:<26} {transfer[name]:15.0f}{each}")
    if rest:
        each = "".join(f" {sum(noop.get(name, 0.0) for name in rest):30.0f}" for noop in floors.values())
        print(f"  {f'{len(rest)} other(s)':<26} {sum(transfer[name] for name in rest):15.0f}{each}")


def print_api(doc: dict[str, Any]) -> None:
    size, age, read = doc["status_bytes"], doc["status_age_seconds"], doc["status_read_seconds"]
    first = doc["status_first_seconds"]
    print(
        f"\nstatus artifact ({doc['status_reads']} reads, {doc['status_errors']} failed, from the first copy until the"
        f" source was empty; first seen"
        f" {'never' if first is None else f'{first:.1f} s after the start'}):"
    )
    if size["max"] is not None:
        print(
            f"  data: largest {size['max'] / 1000:.1f} kB, median {size['median'] / 1000:.1f} kB,"
            f" up to {doc['status_rows_max']} rows"
        )
    if age["max"] is not None:
        print(f"  age of the newest version when read: median {age['median']:.1f} s, max {age['max']:.1f} s")
        stale = doc["status_stale"]
        if stale:
            shown = ", ".join(
                f"{r['age']:.1f} s at {r['at']:.0f} s (read {r['read_seconds']:.2f} s)" for r in stale[:8]
            )
            more = " ..." if len(stale) > 8 else ""
            print(f"  older than {GOAL_STALE_SECONDS:g} s: {len(stale)} reads: {shown}{more}")
    if read["max"] is not None:
        print(f"  one read took: median {read['median']:.3f} s, max {read['max']:.3f} s")
    listing = doc["list_seconds"]
    if listing["max"] is not None:
        print(
            f"task-run list, read_task_runs(limit=200): {doc['list_reads']} reads, median {listing['median']:.3f} s,"
            f" max {listing['max']:.3f} s, {doc['list_errors']} failed"
        )


# -- main ----------------------------------------------------------------------------------------------------------


def prime(agent: Agent) -> str:
    """``fta up`` once with an empty source until its watch run started (migrations, block, deployments), then stopped
    with SIGTERM; returns the server's credential, kept in the data path."""
    started = time.perf_counter()
    agent.start(clean_env(), free_port())
    try:
        local_server_of(agent, START_TIMEOUT)
        agent.wait_started()
        credential = wait_for_file(agent.data / CREDENTIAL_FILE, agent).read_text().strip()
    finally:
        agent.stop()
        agent.output.rename(agent.base / "up-first.out")
    print(f"first start (empty source, then stopped): {time.perf_counter() - started:.1f} s", flush=True)
    return credential


class Progress:
    """A line at the first file, at every tenth of the files and at the end: rate since the previous line, RSS, and
    the status artifact's size and age as last read."""

    def __init__(self, procs: ProcessWatch, status: ApiWatch) -> None:
        self.procs, self.status = procs, status
        self.last: tuple[float, int] | None = None

    def __call__(self, now: float, arrived: int) -> None:
        rate = "the first at the destination"
        if self.last is not None:
            at, before = self.last
            rate = f"{(arrived - before) / (now - at) if now > at else 0.0:6.1f} files/s since the previous line"
        self.last = (now, arrived)
        rss = self.procs.samples[-1].rss if self.procs.samples else {"watch": 0, "server": 0}
        newest = next((r for r in reversed(self.status.readings) if r.size is not None and r.age is not None), None)
        status = ""
        if newest is not None and newest.size is not None and newest.age is not None:
            status = f", status {newest.size / 1000:.0f} kB, {newest.age:.1f} s old"
        print(
            f"  {now:7.1f} s: {arrived:6d} files ({rate}); RSS watch run {rss['watch'] / MB:.0f} MB,"
            f" server {rss['server'] / MB:.0f} MB{status}",
            flush=True,
        )


@dataclass
class Threads:
    procs: ProcessWatch
    status: ApiWatch
    listing: ApiWatch

    def stop(self) -> None:
        for thread in (self.status, self.listing, self.procs):
            thread.stop.set()
        for thread in (self.status, self.listing, self.procs):
            if thread.is_alive():
                thread.join(60)


def measure(args: argparse.Namespace, agent: Agent, credential: str, before: DbSize, dropped: bool) -> Measured:
    from flows.api_state import status_key

    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    started, observer = time.perf_counter(), time.process_time()
    agent.start(clean_env(), port)
    threads = Threads(
        ProcessWatch(agent.pid, started, watch_run_judge(api_url, credential)),
        ApiWatch("status-reader", api_url, credential, started, status_reader(status_key(agent.name))),
        ApiWatch("list-reader", api_url, credential, started, list_reader),
    )
    try:
        for thread in (threads.procs, threads.status, threads.listing):
            thread.start()
        run = drain(agent, args.files, started, args.timeout, Progress(threads.procs, threads.status))
        observer = time.process_time() - observer
        if run.drained:
            wait_recorded(api_url, credential, agent.name, run, started)
        else:
            run.recorded = completed(api_url, credential, agent.name) or 0
        threads.status.stop.set()
        threads.listing.stop.set()
        if run.drained:
            settle(agent.pid, "after the drain")
        end = time.perf_counter() - started
        db = agent.data / "prefect" / "prefect.db"
        db_end = db_size(db)  # not drained: while the agent still works, as it was at the timeout
        warnings = LogWatch(agent.data / "prefect" / "server.log", SERVER_WARNINGS).new_matches()
        floors = []
        if not run.drained:
            print("Prefect's floor: not measured (the agent is still draining; it would write meanwhile)")
        elif args.noop_task_runs:
            for served_as in (None, agent.name):
                path = "in a deployment's run with the agent's tag" if served_as else "in a plain flow run"
                print(f"Prefect's floor: {args.noop_task_runs} no-op task runs {path} ...", flush=True)
                floors.append(
                    prefect_floor(agent.base, api_url, credential, args.noop_task_runs, db, agent.pid, served_as)
                )
    finally:
        threads.stop()
    answered = [r for r in threads.listing.readings if r.error is None]
    since = answered[0].at if answered else 0.0
    status_seen = [r for r in threads.status.readings if r.size is not None]
    return Measured(
        run,
        threads.procs,
        threads.status.during(run.first, run.empty),
        threads.listing.during(since, run.empty),
        sum(r.error is not None and since <= r.at <= run.empty for r in threads.listing.readings),
        sum(r.error is not None and run.first <= r.at <= run.empty for r in threads.status.readings),
        status_seen[0].at if status_seen else None,
        end,
        before,
        db_end,
        floors,
        dropped,
        observer,
        warnings,
    )


def backlog(args: argparse.Namespace, workdir: Path) -> int:
    names = small_names(args.files, args.folders)
    master = workdir / "master"
    ensure_small_master(master, names, args.size)
    sums = checksums(master, names)
    page = 4096
    room = args.files * (-(-args.size // page) * page + page)
    shutil.rmtree(workdir / "agent", ignore_errors=True)  # a fresh data path (database) every invocation
    agent = Agent(args.agent_name, workdir / "agent", workdir / "destination" / args.agent_name)
    with destination_mount(workdir / "destination", room) as mounted:
        if not mounted:
            print("note: no tmpfs (not root or mount failed): the destination is a folder on the same disk")
        try:
            credential = prime(agent)
            print_machine(agent.source, agent.destination)
            print(
                f"agent: fta up --agent-name {agent.name}, stable {STABLE_SECONDS:g} s, polling"
                f" {POLLING_SECONDS:g} s, other settings at their defaults; its own server (SQLite in"
                f" {agent.data})"
            )
            before = db_size(agent.data / "prefect" / "prefect.db")
            place(agent.staging, stage(master, names, "", agent.staging), agent.source)
            dropped = drop_caches()
            print(
                f"backlog: {args.files} x {human(args.size)} in {min(args.folders, args.files)} folders waiting in"
                f" the source; page cache {'dropped' if dropped else 'NOT dropped'}; load average"
                f" {' '.join(f'{v:.2f}' for v in os.getloadavg())}; fta up starts",
                flush=True,
            )
            measured = measure(args, agent, credential, before, dropped)
            agent.stop()
            problems = check(agent.destination, agent.source, sums, args.size, measured.run.drained)
        finally:
            agent.stop()
    print(
        f"fta up stopped with SIGTERM (exit {agent.process.returncode if agent.process else '?'}); load average"
        f" {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    doc = figures(measured)
    found = goals(doc, args.small_file_rate)
    print_report(doc, found)
    verdict = "every file arrived with the master's size and checksum, the source is empty"
    if not measured.run.drained:
        verdict = "every file moved has the master's size and checksum; the others are still in the source"
    print("\ncheck: " + (verdict if not problems else "FAILED: " + "; ".join(problems)))
    if args.json is not None:
        write_json(args, doc, found, problems)
    return 1 if problems or not measured.run.drained else 0


def write_json(args: argparse.Namespace, doc: dict[str, Any], found: list[Goal], problems: list[str]) -> None:
    report = {
        "machine": {"nproc": os.cpu_count(), "loadavg_end": os.getloadavg()},
        "size_bytes": args.size,
        "folders": args.folders,
        "stable_seconds": STABLE_SECONDS,
        "polling_seconds": POLLING_SECONDS,
        "small_file_rate": args.small_file_rate,
        **doc,
        "goals": [{"goal": goal.text, "passed": goal.passed, "detail": goal.detail} for goal in found],
        "problems": problems,
    }
    args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"json: {args.json}")


def stop_on_sigterm(signum: int, frame: object) -> None:
    """A SIGTERM ends the benchmark like Ctrl-C: fta up stopped, the tmpfs unmounted, the temp folder removed."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=20000, help="files waiting in the source (default 20000)")
    parser.add_argument("--size", type=parse_size, default=parse_size("4KiB"), help="default 4KiB")
    parser.add_argument("--folders", type=int, default=20, help="folders the files are spread over (default 20)")
    parser.add_argument("--noop-task-runs", type=int, default=2000, help="Prefect's floor; 0 skips it (default 2000)")
    parser.add_argument("--small-file-rate", type=float, default=None, help="files/s of the small-file benchmark")
    parser.add_argument("--agent-name", default="backlog", help="the agent's name (default backlog)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds until the drain counts as failed")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    parser.add_argument("--noop-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--noop-workers", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--noop-out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--noop-served-as", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--noop-server-pid", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.noop_child is not None and args.noop_out is not None:
        return noop_child(args.noop_child, args.noop_workers, args.noop_out, args.noop_served_as, args.noop_server_pid)
    if args.files < 1 or args.folders < 1 or args.noop_task_runs < 0:
        parser.error("--files and --folders must be at least 1, --noop-task-runs at least 0")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    own_workdir = args.workdir is None
    workdir = (Path(tempfile.mkdtemp(prefix="fta-bench-backlog-")) if own_workdir else args.workdir).resolve()
    try:
        return backlog(args, workdir)
    finally:
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            shutil.rmtree(workdir / "agent" / "source", ignore_errors=True)
            print(f"kept the master and the agent's data path in {workdir}")


if __name__ == "__main__":
    sys.exit(main())
