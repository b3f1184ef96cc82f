"""End to end through the ``watch_folder`` flow and a local Prefect server, against ``rsync``, ``rclone`` and ``cp``.

Run as root to get a tmpfs destination and dropped caches (both are skipped, with a note, otherwise)::

    python benchmarks/flow_throughput.py [--small-files 2000] [--small-size 64KiB] [--folders 8] [--big-size 1GiB]
        [--runs 3] [--copies N] [--quiet-logs] [--skip-big] [--workdir DIR] [--json PATH]

The agent runs the way ``fta up`` runs it: a Prefect server started by ``deployments.serve.LocalServer`` (a child
process on 127.0.0.1, a free port, SQLite in ``WORKDIR/server/prefect``, the environment ``fta up`` gives it and
nothing more) and ONE ``watch_folder`` run for the whole invocation, here in a thread of this process
(``file_stable_time_seconds`` 0.2, ``polling_interval_seconds`` 0.1, no log file, no metrics port,
``max_concurrent_copies`` default or ``--copies``; ``log_level`` and Prefect's logging at their defaults unless
``--quiet-logs``). Prefect's console lines go to ``WORKDIR/server/agent-console.log`` instead of the terminal; the
report counts them and shows those at WARNING or above.

Two scenarios: ``--small-files`` files of ``--small-size`` spread over ``--folders`` folders (files/s), and one file
of ``--big-size`` (MB/s; ``--skip-big`` leaves it out). For every timed agent run the masters (random bytes, written
once to ``WORKDIR/master``) are hard-linked, untimed, into a staging folder beside the source under folders named
after the run (``r1f0`` ... ``r1f7`` for the first small run, ``b1f0`` for the first big one), and those folders are
renamed into the watched source, so every file appears at once. The clock runs from the last rename until none of
the files is left in the source (looked at every 10 ms); the agent's row is also shown minus the 0.2 s stable time
it waits by design. Then, untimed, the Prefect API is asked every 0.1 s how many of the run's task runs (named
``copy <relative path>``) are Completed, until all of them are or 60 s have passed: the lag from the last copy to
the last record, and ``dropped`` = files - the final count. The server's log is searched for "queue is full",
"dropped" and "Error flushing". CPU seconds per agent run, from the last rename until the records are complete:
this process (the watch run, and the benchmark's own polling) and the server (``/proc``: it and its children).

The peers move the same files from a source folder of their own (the watch run would take them from its source):
``rsync -a --remove-source-files SRC/ DST/ && sync``, ``rclone move --config /dev/null SRC DST && sync`` (local to
local, no config file, no ``RCLONE_*`` variables) and ``cp -r SRC/. DST/ && sync`` as the reference; a missing
rsync or rclone is installed with ``apt-get`` once when root, else its rows are skipped. Before every run the source
and destination are emptied, this process and the server are left to become idle, dirty pages are written back and,
when permitted, the page cache is dropped; the contenders' order alternates between runs. After every run, untimed,
the destination must hold exactly the expected files with the masters' checksums (all of them), and the movers must
have emptied their source.

Prefect alone, after the agent's runs: as many no-op task runs as small files, in one flow of their own through a
``ThreadPoolTaskRunner`` of ``max_concurrent_copies`` workers on the same server, CPU counted as the agent's is (this
process and the server, from the flow's start until the API has them all Completed). Its rate is shown twice: as
submitted (the server's record falls behind) and until all are recorded Completed (what the server sustains; the
agent is paced to that, and its own rate is also counted until its last record for that comparison).

Goals (small files): the agent's median is at least 500 files/s, stable time included; every run's task runs are
all recorded Completed within 10 s of its last copy, none dropped. ``--json PATH`` also writes the medians, lags,
dropped counts, CPU per file and the goals' results.
"""

from __future__ import annotations

import os

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"

import argparse
import contextlib
import json
import logging
import math
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from copier_throughput import (
    destination_mount,
    drop_caches,
    ensure_master,
    ensure_tool,
    human,
    parse_size,
    print_machine,
)

from deployments.local_server import LocalServer, basic_auth
from fta.copier import Copier, hash_file
from fta.probe import PROBE_PREFIX
from fta.procstat import all_processes
from fta.settings import Settings, load_settings
from fta.stop_switch import StopSwitch

# Prefect is imported only once the server runs: it reads its settings (PREFECT_API_URL) when imported.

STABLE_SECONDS = 0.2
POLLING_SECONDS = 0.1
QUIET_LEVEL = "WARNING"
BIG_NAME = "big.bin"
GOAL_FILES_PER_SECOND = 500.0
GOAL_LAG_SECONDS = 10.0
RECORD_TIMEOUT = 60.0  # after this the task runs not yet recorded Completed count as dropped
SOURCE_POLL = 0.01  # seconds between two looks at the source during a timed agent run
API_POLL = 0.1  # seconds between two counts of the recorded task runs
MOVE_TIMEOUT = 600.0  # an agent run that has not emptied the source by then has failed
WARM_UP_TIMEOUT = 180.0  # the first files also wait for the watch run to start
SETTLE_INTERVAL = 0.5  # seconds between two looks at the CPU counters
SETTLE_MARGIN = 0.1  # share of one core above the idle watch run's (it scans every 0.1 s) that still counts as idle
SETTLE_TIMEOUT = 300.0
IDLE_WINDOW = 3.0  # seconds over which the idle watch run and server are measured
SERVER_WARNINGS = ("queue is full", "dropped", "error flushing")  # matched case-insensitively
CONSOLE_WARNINGS = ("| warning", "| error", "| critical")  # the level column of Prefect's console format
SHOWN_WARNINGS = 5

AGENT = "agent (watch_folder flow)"
AGENT_NET = f"agent minus {STABLE_SECONDS:g} s stable wait"
RSYNC = "rsync -a --remove-source-files && sync"
RCLONE = "rclone move && sync"
CP_SYNC = "cp -r && sync"
PEER_SCRIPTS = {
    RSYNC: 'rsync -a --remove-source-files "$1"/ "$2"/ && sync',
    # Absolute local paths (no "remote:" possible) and /dev/null as the config: nothing to reach over the network.
    RCLONE: 'rclone move --config /dev/null -q "$1" "$2" && sync',
    CP_SYNC: 'cp -r -- "$1/." "$2/" && sync',
}
MOVERS = {RSYNC, RCLONE}  # the peers that delete their source, like the agent
TASK_RUN = "agent: its copy task run (API times)"
COPIER_ALONE = "agent's copier alone, no flow"
JSON_KEYS = {
    AGENT: "agent",
    AGENT_NET: "agent_net",
    TASK_RUN: "agent_task_run",
    COPIER_ALONE: "copier_alone",
    RSYNC: "rsync",
    RCLONE: "rclone",
    CP_SYNC: "cp_sync",
}
GOAL_VS_FLOOR = 0.8  # small files: the agent's rate against Prefect's own no-op task runs, in the same run
GOAL_TASK_VS_COPIER = 1.10  # the big file's copy task run takes at most this many times the copier alone
GOAL_TASK_VS_CP = 0.9  # and is at least this fast as cp + sync (cp's seconds / the task run's)


# -- data ------------------------------------------------------------------------------------------------------


def small_names(count: int, folders: int) -> list[str]:
    return [f"f{index % folders}/c{index:05d}.bin" for index in range(count)]


def ensure_small_master(root: Path, names: list[str], size: int) -> None:
    """Write the small files once (random bytes); a master with exactly these names and sizes is reused."""
    wanted = set(names)
    present = {rel: os.stat(root / rel).st_size for rel in list_files(root)} if root.is_dir() else {}
    if set(present) == wanted and all(value == size for value in present.values()):
        print(f"master: reusing {root} ({len(names)} x {human(size)})")
        return
    print(f"master: writing {len(names)} x {human(size)} of random bytes to {root} ...", flush=True)
    shutil.rmtree(root, ignore_errors=True)
    for rel in names:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb", buffering=0) as out:
            out.write(os.urandom(size))
    os.sync()


def list_files(root: Path) -> list[str]:
    """Relative paths of every regular file below ``root``, hidden ones included (a left-over temp file counts)."""
    found: list[str] = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found.append(path.relative_to(root).as_posix())
    return sorted(found)


def clear_folder(folder: Path) -> None:
    """Remove everything in ``folder``; an entry that vanishes meanwhile (the agent's destination probe) is fine."""
    for entry in os.scandir(folder):
        with contextlib.suppress(FileNotFoundError):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)


def stage(master: Path, names: list[str], tag: str, staging: Path) -> list[str]:
    """Untimed: hard links (else copies) of the master files in ``staging``, each top folder prefixed with the run's
    tag (``f0/c00000.bin`` -> ``r1f0/c00000.bin``); returns those folders."""
    folders = sorted({tag + rel.split("/", 1)[0] for rel in names})
    for folder in folders:
        (staging / folder).mkdir(parents=True)
    for rel in names:
        try:
            os.link(master / rel, staging / (tag + rel))
        except OSError:
            shutil.copyfile(master / rel, staging / (tag + rel))
    return folders


def place(staging: Path, folders: list[str], source: Path) -> None:
    """The staged folders into the source: a few renames, so every file appears at once."""
    for folder in folders:
        os.rename(staging / folder, source / folder)


def holds_entries(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return next(entries, None) is not None
    except FileNotFoundError:  # the folder itself is gone
        return False


@dataclass
class Scenario:
    key: str
    letter: str  # the runs' tags are letter + run number: r1, r2 ... (small), b1, b2 ... (big)
    title: str
    master: Path
    sums: dict[str, str]  # relative path in the master (always below a folder) -> xxh3-128
    total_bytes: int
    rate_unit: str  # "files/s" or "MB/s"

    @property
    def names(self) -> list[str]:
        return list(self.sums)

    def tag(self, run: int) -> str:
        return f"{self.letter}{run + 1}"

    def expected(self, tag: str) -> dict[str, str]:
        """Relative path in a run's destination -> checksum."""
        return {tag + rel: checksum for rel, checksum in self.sums.items()}

    def rate(self, seconds: float) -> float:
        if seconds <= 0:
            return float("inf")
        if self.rate_unit == "files/s":
            return len(self.sums) / seconds
        return self.total_bytes / 1e6 / seconds


def checksums(master: Path, names: list[str]) -> dict[str, str]:
    return {rel: hash_file(master / rel) for rel in names}


# -- processes, the server, its logs ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of process ``root`` and all its descendants (with their reaped children's), from ``/proc``."""
    processes = all_processes()
    parents = {pid: stat.ppid for pid, stat in processes.items()}
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(processes[pid].cpu_ticks for pid in tree if pid in processes) / os.sysconf("SC_CLK_TCK")


def post_api(api_url: str, path: str, body: dict[str, Any], credential: str | None, timeout: float = 10) -> Any:
    """POST ``body`` as JSON to the API's ``path`` with the server's credential; the decoded answer."""
    request = urllib.request.Request(
        f"{api_url}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **basic_auth(credential)},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.load(answer)


def count_completed(
    api_url: str, task_runs: dict[str, Any], credential: str | None, timeout: float = 10, agent: str | None = None
) -> int | None:
    """How many task runs matching the ``task_runs`` filter the API has recorded Completed (None: no answer);
    ``agent``: only those of its flow runs (tagged ``agent:<agent>``; the task runs carry no tag of their own)."""
    body: dict[str, Any] = {"task_runs": {**task_runs, "state": {"type": {"any_": ["COMPLETED"]}}}}
    if agent is not None:
        body["flow_runs"] = {"tags": {"all_": [f"agent:{agent}"]}}
    try:
        return int(post_api(api_url, "/task_runs/count", body, credential, timeout))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def task_run_seconds(api_url: str, name_like: str) -> list[float]:
    """How long each Completed task run whose name contains ``name_like`` ran (its end minus its start, from the
    API): the copy itself, without the wait for the file to be stable or seen."""
    body = {"task_runs": {"name": {"like_": name_like}, "state": {"type": {"any_": ["COMPLETED"]}}}, "limit": 200}
    runs = post_api(api_url, "/task_runs/filter", body, os.environ.get("PREFECT_API_AUTH_STRING"))
    return [
        (datetime.fromisoformat(run["end_time"]) - datetime.fromisoformat(run["start_time"])).total_seconds()
        for run in runs
        if run.get("start_time") and run.get("end_time")
    ]


def completed_task_runs(api_url: str, name_like: str) -> int | None:
    """How many task runs whose name contains ``name_like`` the API has recorded Completed (None: no answer)."""
    return count_completed(api_url, {"name": {"like_": name_like}}, os.environ.get("PREFECT_API_AUTH_STRING"))


def wait_recorded(
    api_url: str, name_like: str, expected: int, since: float, timeout: float = RECORD_TIMEOUT
) -> tuple[float | None, int]:
    """Untimed: ask the API every 0.1 s until ``expected`` task runs whose name contains ``name_like`` are Completed
    or ``timeout`` seconds have passed since ``since`` (``perf_counter``). Returns the time from ``since`` (None when
    not reached) and the last count."""
    recorded = 0
    while True:
        count = completed_task_runs(api_url, name_like)
        now = time.perf_counter()
        recorded = recorded if count is None else count
        if recorded >= expected:
            return now - since, recorded
        if now - since >= timeout:
            return None, recorded
        time.sleep(API_POLL)


@dataclass
class LogWatch:
    """The lines of a growing log file that contain one of ``words``, read from where the last look ended."""

    path: Path
    words: tuple[str, ...]
    offset: int = 0
    lines: int = 0

    def new_matches(self) -> list[str]:
        try:
            with open(self.path, "rb") as log_file:
                log_file.seek(self.offset)
                chunk = log_file.read()
        except FileNotFoundError:
            return []
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written is read next time
        self.offset += len(complete)
        text = complete.decode("utf-8", errors="replace").splitlines()
        self.lines += len(text)
        return [line for line in text if any(word in line.lower() for word in self.words)]


def divert_prefect_console(path: Path) -> TextIO:
    """Prefect's console handler writes to a file instead of stderr: one line per task run (and the agent's audit
    line per file at INFO) would bury the report. The lines are still formatted and written, as under ``fta up``."""
    from prefect.logging.handlers import PrefectConsoleHandler

    stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open until the end of the invocation
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setStream(stream)
                handler.console.file = stream
    return stream


def drain_prefect_workers() -> None:
    """Send the logs and events still queued in this process while the server is up (Prefect would try at exit)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=30)


class WatchRun:
    """The agent's one ``watch_folder`` run, in a thread of this process (as ``benchmarks/watch_soak.py`` runs it)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.outcome: list[Any] = []
        self.switch = StopSwitch()
        self.thread = threading.Thread(target=self._run, name="watch_folder", daemon=True)

    def _run(self) -> None:
        from flows.config import run_in_process
        from flows.watch_folder import watch_folder

        try:
            self.outcome.append(run_in_process(watch_folder, self.config, stop=self.switch, return_state=True))
        except BaseException as exc:  # reported by stop(); the timed run sees the thread gone
            self.outcome.append(exc)

    def start(self) -> None:
        self.thread.start()

    def alive(self) -> bool:
        return self.thread.is_alive()

    def stop(self, timeout: float = 120.0) -> str:
        """Ask the loop to stop (as SIGTERM does in ``fta watch``); returns how the flow run ended."""
        self.switch.request()
        self.thread.join(timeout)
        return self.ended()

    def ended(self) -> str:
        if self.thread.is_alive():
            return "still running"
        if not self.outcome:
            return "no outcome"
        outcome = self.outcome[0]
        if isinstance(outcome, BaseException):
            return f"raised {outcome!r}"
        return f"{outcome.name}: {outcome.message}" if outcome.message else str(outcome.name)


# -- the contenders ------------------------------------------------------------------------------------------------


@dataclass
class AgentRun:
    files: int
    seconds: float  # last rename -> source empty
    lag: float | None  # source empty -> every task run recorded Completed; None: not within RECORD_TIMEOUT
    recorded: int
    agent_cpu: float  # this process, last rename -> recorded
    server_cpu: float  # the server and its children, same window
    warnings: list[str]  # server-log lines since the previous agent run
    task_seconds: list[float] = field(default_factory=list)  # each copy task run's own duration (API)

    @property
    def dropped(self) -> int:
        return self.files - self.recorded


@dataclass
class Bench:
    workdir: Path
    destination_root: Path
    server: LocalServer
    server_log: LogWatch
    console: TextIO  # where Prefect's console handler writes
    console_log: LogWatch
    peer_env: dict[str, str]
    watch: WatchRun = field(init=False)
    caches_dropped: list[bool] = field(default_factory=list)
    quiet_share: float = SETTLE_MARGIN  # raised once the idle watch run has been measured

    @property
    def server_pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    @property
    def source(self) -> Path:
        return self.workdir / "source"

    @property
    def peer_source(self) -> Path:
        return self.workdir / "peer-source"

    @property
    def staging(self) -> Path:
        return self.workdir / "staging"

    @property
    def destination(self) -> Path:
        return self.destination_root / "agent"

    @property
    def peer_destination(self) -> Path:
        return self.destination_root / "peers"

    def make_folders(self) -> None:
        for folder in (self.source, self.peer_source, self.staging, self.destination, self.peer_destination):
            folder.mkdir(parents=True, exist_ok=True)
            clear_folder(folder)

    def start_watch(self, copies: int | None, quiet: bool) -> None:
        self.watch = WatchRun(self.config(copies, quiet))
        self.watch.start()

    def config(self, copies: int | None, quiet: bool) -> dict[str, Any]:
        config: dict[str, Any] = {
            "source_path": str(self.source),
            "destination_path": str(self.destination),
            "file_stable_time_seconds": STABLE_SECONDS,
            "polling_interval_seconds": POLLING_SECONDS,
            "log_file_path": "",
            "metrics_port": 0,
        }
        if copies is not None:
            config["max_concurrent_copies"] = copies
        if quiet:
            config["log_level"] = QUIET_LEVEL
        return config

    def prepare(self, scenario: Scenario, tag: str) -> list[str]:
        """Untimed: empty sources and destinations (the tmpfs holds one run's data), the run's files staged, this
        process and the server idle, caches cold. Returns the staged folders."""
        for folder in (self.source, self.peer_source, self.staging, self.destination, self.peer_destination):
            clear_folder(folder)
        folders = stage(scenario.master, scenario.names, tag, self.staging)
        settle(self.server_pid, self.quiet_share)
        self.caches_dropped.append(drop_caches())
        return folders

    def run_agent(self, scenario: Scenario, tag: str) -> AgentRun:
        folders = self.prepare(scenario, tag)
        cpu, server = time.process_time(), tree_cpu_seconds(self.server_pid)
        place(self.staging, folders, self.source)
        started = time.perf_counter()
        emptied = self.wait_moved(folders, MOVE_TIMEOUT)
        # "copy r1f" is every task run of run r1 (its folders are r1f0, r1f1 ...) and of no other run.
        lag, recorded = self.wait_recorded(f"copy {tag}f", len(scenario.sums), emptied)
        cpu, server = time.process_time() - cpu, tree_cpu_seconds(self.server_pid) - server
        warnings = self.server_log.new_matches()
        self.check(AGENT, scenario.expected(tag), self.destination, self.source)
        tasks = task_run_seconds(self.server.api_url, f"copy {tag}f") if lag is not None else []
        return AgentRun(len(scenario.sums), emptied - started, lag, recorded, cpu, server, warnings, tasks)

    def run_copier(self, scenario: Scenario, tag: str) -> float:
        """The agent's copier with the watch run's settings, called directly: no flow, no task run, no server."""
        folders = self.prepare(scenario, tag)
        place(self.staging, folders, self.peer_source)
        config = {"source_path": str(self.peer_source), "destination_path": str(self.peer_destination)}
        copier = Copier(load_settings({**config, "log_file_path": ""}, env_file=None))
        expected = scenario.expected(tag)
        started = time.perf_counter()
        for rel in expected:
            result = copier.copy(rel)
            if result.outcome != "copied":
                raise SystemExit(f"{COPIER_ALONE}: {rel}: {result}")
        seconds = time.perf_counter() - started
        self.check(COPIER_ALONE, expected, self.peer_destination, self.peer_source)
        return seconds

    def run_peer(self, name: str, scenario: Scenario, tag: str) -> tuple[float, float]:
        folders = self.prepare(scenario, tag)
        place(self.staging, folders, self.peer_source)
        script = PEER_SCRIPTS[name]
        command = ["sh", "-c", script, "sh", os.fspath(self.peer_source), os.fspath(self.peer_destination)]
        try:
            seconds, cpu = timed_command(command, self.peer_env)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"{name}: exited with {exc.returncode}") from exc
        emptied = self.peer_source if name in MOVERS else None
        self.check(name, scenario.expected(tag), self.peer_destination, emptied)
        return seconds, cpu

    def wait_moved(self, folders: list[str], timeout: float) -> float:
        """The moment (``perf_counter``) none of the run's files is left in the source, looked at every 10 ms."""
        pending = [self.source / folder for folder in folders]
        deadline = time.perf_counter() + timeout
        while True:
            pending = [folder for folder in pending if holds_entries(folder)]
            now = time.perf_counter()
            if not pending:
                return now
            if now > deadline or not self.watch.alive():
                left = sum(len(os.listdir(folder)) for folder in pending if folder.is_dir())
                ended = "" if self.watch.alive() else f"; the watch run ended ({self.watch.ended()})"
                raise SystemExit(f"agent: {left} file(s) still in the source after {timeout:g} s{ended}")
            time.sleep(SOURCE_POLL)

    def wait_recorded(self, name_like: str, expected: int, since: float) -> tuple[float | None, int]:
        return wait_recorded(self.server.api_url, name_like, expected, since)

    def check(self, who: str, expected: dict[str, str], destination: Path, emptied: Path | None) -> None:
        """Outside the timing: exactly the expected files arrived, every one with the master's checksum; a mover left
        no file in its source. The agent's destination probe (written and removed every poll) is not counted."""
        arrived = [rel for rel in list_files(destination) if not rel.startswith(PROBE_PREFIX)]
        if arrived != sorted(expected):
            missing = sorted(set(expected) - set(arrived))
            extra = sorted(set(arrived) - set(expected))
            raise SystemExit(
                f"{who}: {len(arrived)} file(s) at the destination, expected {len(expected)}; "
                f"missing {missing[:5]}, unexpected {extra[:5]}"
            )
        for rel, checksum in expected.items():
            actual = hash_file(destination / rel)
            if actual != checksum:
                raise SystemExit(f"{who}: {rel}: checksum {actual} differs from the master's {checksum}")
        if emptied is not None and (left := list_files(emptied)):
            raise SystemExit(f"{who}: {len(left)} file(s) left in the source, e.g. {left[:3]}")

    def warm_up(self) -> None:
        """Untimed: three tiny files through the watch run (its start, the first task runs) until recorded."""
        names = [f"f0/w{index}.txt" for index in range(3)]
        for rel in names:
            (self.staging / f"warm{rel}").parent.mkdir(parents=True, exist_ok=True)
            (self.staging / f"warm{rel}").write_bytes(b"warm-up\n")
        started = time.perf_counter()
        place(self.staging, ["warmf0"], self.source)
        emptied = self.wait_moved(["warmf0"], WARM_UP_TIMEOUT)
        lag, recorded = self.wait_recorded("copy warmf", len(names), emptied)
        recording = f"recorded {lag:.1f} s later" if lag is not None else f"only {recorded} recorded"
        print(f"warm-up: 3 tiny files moved {emptied - started:.1f} s after they appeared, {recording} (untimed)")
        clear_folder(self.source)
        clear_folder(self.destination)

    def measure_idle(self) -> tuple[float, float]:
        """Shares of one core the idle watch run (this process) and the server use; settling allows that much more."""
        time.sleep(IDLE_WINDOW)
        here, server = time.process_time(), tree_cpu_seconds(self.server_pid)
        time.sleep(IDLE_WINDOW)
        here = (time.process_time() - here) / IDLE_WINDOW
        server = (tree_cpu_seconds(self.server_pid) - server) / IDLE_WINDOW
        self.quiet_share = here + server + SETTLE_MARGIN
        return here, server


def settle(server_pid: int, quiet: float) -> None:
    """Wait (untimed) until this process and the server use less than ``quiet`` of one core, twice in a row: a
    backlog of the previous run must not slow the next contender down."""
    started = time.perf_counter()
    last = time.process_time() + tree_cpu_seconds(server_pid)
    calm = 0
    while calm < 2:
        if time.perf_counter() - started > SETTLE_TIMEOUT:
            print(f"note: still busy after {SETTLE_TIMEOUT:g} s of waiting to settle; going on", flush=True)
            return
        time.sleep(SETTLE_INTERVAL)
        now = time.process_time() + tree_cpu_seconds(server_pid)
        calm = calm + 1 if now - last < quiet * SETTLE_INTERVAL else 0
        last = now


def timed_command(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and the children's CPU seconds of one command."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    seconds = time.perf_counter() - started
    after = os.times()
    return seconds, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def peer_environment() -> dict[str, str]:
    """The environment without ``RCLONE_*``, which would set rclone's flags (even its config file) behind our back."""
    return {name: value for name, value in os.environ.items() if not name.upper().startswith("RCLONE_")}


# -- the report ------------------------------------------------------------------------------------------------


def print_table(scenarios: list[Scenario], times: dict[str, dict[str, list[float]]]) -> None:
    width = max(len(scenario.title) for scenario in scenarios)
    print(f"\n{'scenario':<{width}}  {'contender':<38} {'median s':>9} {'rate':>16} {'vs cp':>7}   every run (s)")
    for scenario in scenarios:
        rows = times[scenario.key]
        reference = statistics.median(rows[CP_SYNC])
        for index, (name, values) in enumerate(rows.items()):
            median = statistics.median(values)
            rate = f"{scenario.rate(median):.1f} {scenario.rate_unit}"
            label = scenario.title if index == 0 else ""
            runs = " ".join(f"{value:.3f}" for value in values)
            print(f"{label:<{width}}  {name:<38} {median:9.3f} {rate:>16} {reference / median:6.2f}x   {runs}")
    print(
        f"\nnote: '{AGENT_NET}' is the agent's time minus file_stable_time_seconds ({STABLE_SECONDS:g} s): by design"
        " the agent copies a file only once it has been unchanged that long, the peers do not wait. Still included:"
        f" up to one polling interval ({POLLING_SECONDS:g} s) before the new files are seen, and the 10 ms"
        " resolution of the look at the source."
    )
    print("note: 'vs cp' = cp+sync median seconds / contender median seconds (above 1: faster than cp).")
    print(
        "note: the agent, rsync and rclone delete the sources (the agent after verifying each copy's checksum and"
        " fsyncing it, with one Prefect task run per file); cp leaves them. The idle watch run keeps scanning its"
        f" empty source every {POLLING_SECONDS:g} s while the peers run."
    )


def print_recording(scenario: Scenario, runs: list[AgentRun]) -> None:
    lags = " ".join(f"{run.lag:.2f}" if run.lag is not None else f">{RECORD_TIMEOUT:g}" for run in runs)
    dropped = " ".join(str(run.dropped) for run in runs)
    agent = statistics.median(run.agent_cpu for run in runs)
    server = statistics.median(run.server_cpu for run in runs)
    print(f"\n{scenario.title}, agent runs:")
    print(f"  recorded Completed in the API, seconds after the last copy: {lags}; dropped: {dropped}")
    files = len(scenario.sums)
    if files == 1:
        print(f"  CPU per run (median; last rename -> recorded): agent process {agent:.2f} s, server {server:.2f} s")
        return
    print(
        f"  CPU per run (median; last rename -> recorded): agent process {agent:.2f} s"
        f" = {1000 * agent / files:.2f} ms CPU per file, server {server:.2f} s = {1000 * server / files:.2f} ms CPU"
        " per file"
    )


@dataclass
class Goal:
    text: str
    passed: bool
    detail: str

    def line(self) -> str:
        return f"goal: {self.text}: {'PASS' if self.passed else 'FAIL'} ({self.detail})"


def goals(
    scenario: Scenario, seconds: list[float], runs: list[AgentRun], warnings: int, floor: Floor | None
) -> list[Goal]:
    median = statistics.median(seconds)
    rate, net = scenario.rate(median), scenario.rate(median - STABLE_SECONDS)
    lags = [run.lag if run.lag is not None else float("inf") for run in runs]
    dropped = sum(run.dropped for run in runs)
    files = len(scenario.sums)
    against_floor = []
    if floor is not None:
        against_floor = [
            Goal(
                f"agent >= {GOAL_VS_FLOOR:g} x Prefect's own no-op task-run rate (same server, same submission path)",
                net >= GOAL_VS_FLOOR * floor.rate,
                f"{net:.1f} files/s without the stable wait / {floor.rate:.0f} no-op task runs/s ="
                f" {net / floor.rate:.2f}",
            )
        ]
        recorded = [files / (run.seconds - STABLE_SECONDS + run.lag) for run in runs if run.lag is not None]
        if floor.recorded_rate is not None and len(recorded) == len(runs):
            agent_recorded = statistics.median(recorded)
            against_floor.append(
                Goal(
                    f"agent >= {GOAL_VS_FLOOR:g} x the no-op rate, both counted until the server has every task run"
                    " recorded Completed (the rate it sustains; the agent is paced to it)",
                    agent_recorded >= GOAL_VS_FLOOR * floor.recorded_rate,
                    f"{agent_recorded:.1f} files/s / {floor.recorded_rate:.0f} no-op task runs/s ="
                    f" {agent_recorded / floor.recorded_rate:.2f}",
                )
            )
    return [
        *against_floor,
        Goal(
            f"agent >= {GOAL_FILES_PER_SECOND:g} files/s",
            rate >= GOAL_FILES_PER_SECOND,
            f"{rate:.1f} files/s; {net:.1f} without the {STABLE_SECONDS:g} s stable wait"
            + (f"; Prefect alone: {floor.rate:.0f} no-op task runs/s" if floor is not None else ""),
        ),
        Goal(
            f"all {files} task runs Completed in the API within {GOAL_LAG_SECONDS:g} s of the last copy",
            max(lags) <= GOAL_LAG_SECONDS and dropped == 0,
            f"median lag {statistics.median(lags):.2f} s, max {max(lags):.2f} s, dropped {dropped};"
            f" server-log warnings {warnings}",
        ),
    ]


def big_goals(times: dict[str, list[float]]) -> list[Goal]:
    """The big file: its copy task run against the copier alone and against cp + sync, medians of one run."""
    task, alone, cp = (statistics.median(times[name]) for name in (TASK_RUN, COPIER_ALONE, CP_SYNC))
    return [
        Goal(
            f"big file: the copy task run within {GOAL_TASK_VS_COPIER - 1:.0%} of the copier alone",
            task <= GOAL_TASK_VS_COPIER * alone,
            f"task run {task:.3f} s, copier alone {alone:.3f} s: {task / alone:.2f}x",
        ),
        Goal(
            f"big file: the copy task run >= {GOAL_TASK_VS_CP:g} x cp + sync",
            cp / task >= GOAL_TASK_VS_CP,
            f"cp + sync {cp:.3f} s / task run {task:.3f} s = {cp / task:.2f}",
        ),
    ]


def finite(value: float) -> float | None:
    """JSON has no infinity: a lag that never ended is null."""
    return value if math.isfinite(value) else None


def write_json(
    path: Path,
    scenarios: list[Scenario],
    times: dict[str, dict[str, list[float]]],
    agent_runs: dict[str, list[AgentRun]],
    results: list[Goal],
    warnings: int,
    floor: Floor | None,
) -> None:
    report: dict[str, Any] = {"scenarios": {}, "server_log_warnings": warnings}
    if floor is not None:
        report["prefect_floor"] = {
            "task_runs": floor.task_runs,
            "seconds": floor.seconds,
            "task_runs_per_s": floor.rate,
            "cpu_ms_per_task_run": 1000 * floor.cpu / floor.task_runs,
            "server_cpu_ms_per_task_run": finite(1000 * floor.server_cpu / floor.task_runs)
            if floor.server_cpu is not None
            else None,
            "task_runs_per_s_until_recorded": floor.recorded_rate,
        }
    for scenario in scenarios:
        runs = agent_runs[scenario.key]
        files = len(scenario.sums)
        lags = [run.lag if run.lag is not None else float("inf") for run in runs]
        medians = {JSON_KEYS[name]: statistics.median(values) for name, values in times[scenario.key].items()}
        report["scenarios"][scenario.key] = {
            "title": scenario.title,
            "rate_unit": scenario.rate_unit,
            "median_seconds": medians,
            "rate": {key: scenario.rate(seconds) for key, seconds in medians.items()},
            "runs_seconds": {JSON_KEYS[name]: values for name, values in times[scenario.key].items()},
            "agent_lags_seconds": [run.lag for run in runs],  # null: not all recorded within RECORD_TIMEOUT
            "agent_lag_median_seconds": finite(statistics.median(lags)),
            "agent_lag_max_seconds": finite(max(lags)),
            "agent_dropped": [run.dropped for run in runs],
            "agent_cpu_ms_per_file": 1000 * statistics.median(run.agent_cpu for run in runs) / files,
            "server_cpu_ms_per_file": 1000 * statistics.median(run.server_cpu for run in runs) / files,
        }
    report["goals"] = [{"goal": goal.text, "passed": goal.passed, "detail": goal.detail} for goal in results]
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"json: {path}")


# -- main ----------------------------------------------------------------------------------------------------------


def build_scenarios(args: argparse.Namespace, masters: Path) -> list[Scenario]:
    names = small_names(args.small_files, args.folders)
    small = masters / "small"
    ensure_small_master(small, names, args.small_size)
    scenarios = [
        Scenario(
            "small",
            "r",
            f"{args.small_files} x {human(args.small_size)} in {min(args.folders, args.small_files)} folders",
            small,
            checksums(small, names),
            args.small_files * args.small_size,
            "files/s",
        )
    ]
    if not args.skip_big:
        big = masters / "big"
        (big / "f0").mkdir(parents=True, exist_ok=True)
        ensure_master(big / "f0" / BIG_NAME, args.big_size)
        big_names = [f"f0/{BIG_NAME}"]
        scenarios.append(
            Scenario("big", "b", f"1 x {human(args.big_size)}", big, checksums(big, big_names), args.big_size, "MB/s")
        )
    return scenarios


def start_server(data_path: Path) -> LocalServer:
    """As ``fta up`` does: its environment here too, then the server, then PREFECT_API_URL pointing at it."""
    shutil.rmtree(data_path, ignore_errors=True)  # a fresh database every invocation
    server = LocalServer(data_path, free_port())
    if os.environ.get("PREFECT_API_URL"):
        print(f"note: PREFECT_API_URL was set ({os.environ['PREFECT_API_URL']}); this benchmark uses its own server")
    os.environ.update(server.environment())
    started = time.perf_counter()
    server.start()
    os.environ.update(server.client_environment())  # its URL and credential
    print(f"server: prefect server start on {server.api_url}, up in {time.perf_counter() - started:.1f} s")
    return server


def require_own_server(api_url: str) -> None:
    """Prefect reads PREFECT_API_URL once, when imported: imported before the server ran, its runs would go to a
    temporary server of its own (another process on the same database, whose CPU no row counts)."""
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if configured != api_url:
        raise SystemExit(f"Prefect was imported before the server started: its API URL is {configured}, not {api_url}")


def copies_of(requested: int | None) -> int:
    default: int = Settings.model_fields["max_concurrent_copies"].default
    return requested if requested is not None else default


def describe_logging(quiet: bool) -> str:
    if quiet:
        return f"--quiet-logs: log_level {QUIET_LEVEL}, PREFECT_LOGGING_LEVEL={QUIET_LEVEL}"
    level = Settings.model_fields["log_level"].default
    prefect_level = os.environ.get("PREFECT_LOGGING_LEVEL", "default (INFO)")
    return f"log_level {level} (the default), PREFECT_LOGGING_LEVEL {prefect_level}; --quiet-logs for {QUIET_LEVEL}"


def time_scenario(
    bench: Bench, scenario: Scenario, peers: list[str], runs: int
) -> tuple[dict[str, list[float]], list[AgentRun]]:
    print(f"\n{scenario.title}: {runs} run(s) per contender", flush=True)
    big = len(scenario.sums) == 1
    alone = [COPIER_ALONE]  # the copier called directly, one file after the other: what the flow adds to it
    rows: dict[str, list[float]] = {AGENT: [], AGENT_NET: [], **{name: [] for name in [*alone, *peers]}}
    if big:
        rows[TASK_RUN] = []
    agent_runs: list[AgentRun] = []
    contenders = [AGENT, *alone, *peers]
    for run in range(runs):
        tag = scenario.tag(run)
        for name in contenders if run % 2 == 0 else contenders[::-1]:
            if name == AGENT:
                result = bench.run_agent(scenario, tag)
                agent_runs.append(result)
                rows[AGENT].append(result.seconds)
                rows[AGENT_NET].append(result.seconds - STABLE_SECONDS)
                if big:
                    rows[TASK_RUN].append(max(result.task_seconds, default=float("nan")))
                print_agent_run(run, scenario, result)
                continue
            if name == COPIER_ALONE:
                seconds = bench.run_copier(scenario, tag)
                rows[name].append(seconds)
                print(f"  run {run + 1}: {name:<38} {seconds:8.3f} s", flush=True)
                continue
            seconds, cpu = bench.run_peer(name, scenario, tag)
            rows[name].append(seconds)
            rate = f"{scenario.rate(seconds):.1f} {scenario.rate_unit}"
            print(f"  run {run + 1}: {name:<38} {seconds:8.3f} s {rate:>16}   CPU {cpu:6.2f} s", flush=True)
    return rows, agent_runs


@dataclass
class Floor:
    """What Prefect alone costs per task run here: no-op task runs through the agent's task runner and server."""

    task_runs: int
    seconds: float
    cpu: float  # this process, from the flow's start until its task runs are recorded Completed (as the agent's)
    server_cpu: float | None = None  # the server and its children, same window; None: not measured
    recorded_seconds: float | None = None  # from the flow's start until the API has them all Completed

    @property
    def recorded_rate(self) -> float | None:
        """No-op task runs per second as the server records them: what it sustains, where ``rate`` is how fast
        they are submitted while the server's record falls behind."""
        return self.task_runs / self.recorded_seconds if self.recorded_seconds else None

    @property
    def rate(self) -> float:
        return self.task_runs / self.seconds

    def line(self) -> str:
        server = "" if self.server_cpu is None else f", server {1000 * self.server_cpu / self.task_runs:.2f} ms"
        recorded = "" if self.recorded_rate is None else f" ({self.recorded_rate:.0f}/s until all recorded Completed)"
        return (
            f"Prefect alone: {self.task_runs} no-op task runs (one flow, its own ThreadPoolTaskRunner, this server):"
            f" {self.rate:.0f} task runs/s{recorded}; CPU per run until recorded: this process"
            f" {1000 * self.cpu / self.task_runs:.2f} ms{server}"
        )


def prefect_floor(
    task_runs: int,
    workers: int,
    server_pid: int | None = None,
    flow_tags: tuple[str, ...] = (),
    deployment: str | None = None,
) -> Floor:
    """The same submission path as the watch flow (a flow's thread pool, one named task run each, no result kept),
    with nothing to do in the task: the rate no per-file work can beat on this machine. The CPU is counted as the
    agent's is, until the API has every task run recorded Completed (60 s at most). ``flow_tags``: tags on the flow
    run, as the agent's carries its own, and as in the watch flow none on the task runs (their events name the flow
    run's tags as related resources). ``deployment``: each flow run is a run of a deployment of this name (no work
    pool, as a served one), made in this process, so that the task runs' events name the same kinds of related
    resources as the copies of ``fta up``'s served watch run: the flow run, the flow, the deployment, the tags."""
    from prefect import flow, tags, task
    from prefect.cache_policies import NO_CACHE
    from prefect.client.orchestration import get_client
    from prefect.context import TagsContext
    from prefect.flow_engine import run_flow
    from prefect.settings import get_current_settings
    from prefect.task_runners import ThreadPoolTaskRunner

    @task(name="noop", task_run_name="noop {number}", cache_policy=NO_CACHE, persist_result=False)
    def noop(number: int) -> None:
        return None

    @flow(name="prefect-floor", persist_result=False)
    def floor(count: int) -> float:
        started = time.perf_counter()
        runner: ThreadPoolTaskRunner[Any]
        submitted: Any = noop  # submitted as the watch flow submits copy_file
        with TagsContext(current_tags=set()), ThreadPoolTaskRunner(max_workers=workers) as runner:
            futures: list[Any] = [runner.submit(submitted, {"number": number}) for number in range(count)]
            for future in futures:
                future.wait()
        return time.perf_counter() - started

    deployed = None
    if deployment is not None:  # made once, before anything is timed
        with get_client(sync_client=True) as client:
            deployed = client.create_deployment(client.create_flow(floor), deployment, tags=list(flow_tags))

    def run(count: int) -> float:
        if deployed is None:
            with tags(*flow_tags):
                return floor(count)
        with get_client(sync_client=True) as client:
            flow_run = client.create_flow_run_from_deployment(deployed, parameters={"count": count})
        result = run_flow(floor, flow_run=flow_run, parameters={"count": count})
        assert isinstance(result, float)
        return result

    api_url = str(get_current_settings().api.url)
    before = completed_task_runs(api_url, "noop ") or 0  # earlier floors' runs
    warm_up = min(50, task_runs)
    run(warm_up)
    started, cpu, server = time.perf_counter(), time.process_time(), tree_cpu_seconds(server_pid) if server_pid else 0.0
    seconds = run(task_runs)
    recorded, _ = wait_recorded(api_url, "noop ", before + warm_up + task_runs, started, seconds + RECORD_TIMEOUT)
    cpu = time.process_time() - cpu
    server_cpu = tree_cpu_seconds(server_pid) - server if server_pid else None
    return Floor(task_runs, seconds, cpu, server_cpu, recorded)


def print_agent_run(run: int, scenario: Scenario, result: AgentRun) -> None:
    rate = f"{scenario.rate(result.seconds):.1f} {scenario.rate_unit}"
    recorded = f"recorded +{result.lag:.2f} s" if result.lag is not None else f"NOT recorded in {RECORD_TIMEOUT:g} s"
    print(
        f"  run {run + 1}: {AGENT:<38} {result.seconds:8.3f} s {rate:>16}   {recorded}"
        f" ({result.recorded}/{result.files}), CPU agent {result.agent_cpu:.2f} s, server {result.server_cpu:.2f} s",
        flush=True,
    )
    for line in result.warnings[:SHOWN_WARNINGS]:
        print(f"    server log: {line}")


def report(
    args: argparse.Namespace,
    bench: Bench,
    scenarios: list[Scenario],
    times: dict[str, dict[str, list[float]]],
    agent_runs: dict[str, list[AgentRun]],
    floor: Floor | None,
) -> None:
    if all(bench.caches_dropped):
        print("\npage cache: dropped before every timed run (sync; echo 3 > /proc/sys/vm/drop_caches)")
    else:
        print("\npage cache: NOT dropped (not permitted); sync only - the source may be served from memory")
    print(f"load average at the end: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    print_table(scenarios, times)
    for scenario in scenarios:
        print_recording(scenario, agent_runs[scenario.key])
    late = bench.server_log.new_matches()  # since the last agent run
    for line in late[:SHOWN_WARNINGS]:
        print(f"  server log: {line}")
    warnings = len(late) + sum(len(run.warnings) for runs in agent_runs.values() for run in runs)
    words = " / ".join(f"'{word}'" for word in SERVER_WARNINGS)
    print(f"\nserver log ({bench.server_log.path}): {warnings} line(s) with {words}")
    print_console_log(bench)
    small = scenarios[0]
    results = goals(small, times[small.key][AGENT], agent_runs[small.key], warnings, floor)
    for scenario in scenarios:
        if TASK_RUN in times[scenario.key]:
            results += big_goals(times[scenario.key])
    if floor is not None:
        print(f"\n{floor.line()}")
    print()
    for goal in results:
        print(goal.line())
    if args.json is not None:
        write_json(args.json, scenarios, times, agent_runs, results, warnings, floor)


def print_console_log(bench: Bench) -> None:
    bench.console.flush()
    serious = bench.console_log.new_matches()
    print(
        f"agent console log ({bench.console_log.path}): {bench.console_log.lines} line(s),"
        f" {len(serious)} at WARNING or above"
    )
    for line in serious[:SHOWN_WARNINGS]:
        print(f"  {line}")


def run_all(args: argparse.Namespace, workdir: Path, scenarios: list[Scenario], destination_root: Path) -> None:
    peers = [name for name, binary in ((RSYNC, "rsync"), (RCLONE, "rclone")) if ensure_tool(binary, binary)] + [CP_SYNC]
    server = start_server(workdir / "server")
    if args.quiet_logs:  # read when Prefect is imported, just below; the server started without it
        os.environ["PREFECT_LOGGING_LEVEL"] = QUIET_LEVEL
    console: TextIO | None = None
    bench: Bench | None = None
    try:
        import prefect

        import flows.watch_folder  # noqa: F401 - Prefect's flow machinery, which sets its logging up when imported

        require_own_server(server.api_url)

        assert server.home is not None  # a server with its home in data_path
        console = divert_prefect_console(server.home.parent / "agent-console.log")
        server_log = LogWatch(server.home / "server.log", SERVER_WARNINGS)
        console_log = LogWatch(Path(console.name), CONSOLE_WARNINGS)
        bench = Bench(workdir, destination_root, server, server_log, console, console_log, peer_environment())
        bench.make_folders()
        print_machine(bench.source, bench.destination)
        copies = args.copies if args.copies is not None else f"{Settings.model_fields['max_concurrent_copies'].default}"
        print(
            f"agent:   prefect {prefect.__version__}; one watch_folder run in this process, stable"
            f" {STABLE_SECONDS:g} s, polling {POLLING_SECONDS:g} s, max_concurrent_copies {copies}, verify=checksum,"
            f" no log file, no metrics port"
        )
        print(f"logging: {describe_logging(args.quiet_logs)}; Prefect's console lines go to {console.name}")
        print(f"load average at start: {' '.join(f'{value:.2f}' for value in os.getloadavg())}", flush=True)
        bench.start_watch(args.copies, args.quiet_logs)
        bench.warm_up()
        here, there = bench.measure_idle()
        print(f"idle: the watch run uses {here:.1%} of a core, the server {there:.1%} (untimed runs wait for that)")
        times: dict[str, dict[str, list[float]]] = {}
        agent_runs: dict[str, list[AgentRun]] = {}
        for scenario in scenarios:
            times[scenario.key], agent_runs[scenario.key] = time_scenario(bench, scenario, peers, args.runs)
        print(f"watch run: {bench.watch.stop()}")
        floor = None
        if not args.skip_floor:
            floor = prefect_floor(len(scenarios[0].sums), copies_of(args.copies), bench.server_pid)
        report(args, bench, scenarios, times, agent_runs, floor)
    finally:
        if bench is not None and hasattr(bench, "watch") and bench.watch.alive():
            bench.watch.stop()
        if "prefect" in sys.modules:
            drain_prefect_workers()
        server.stop()
        if console is not None:
            console.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small-files", type=int, default=2000, help="number of small files (default 2000)")
    parser.add_argument("--small-size", type=parse_size, default=parse_size("64KiB"), help="default 64KiB")
    parser.add_argument("--folders", type=int, default=8, help="folders the small files are spread over (default 8)")
    parser.add_argument("--big-size", type=parse_size, default=parse_size("1GiB"), help="the big file (default 1GiB)")
    parser.add_argument("--skip-big", action="store_true", help="only the small-file scenario")
    parser.add_argument(
        "--skip-floor", action="store_true", help="skip the no-op task runs that show what Prefect alone costs"
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs per contender and scenario (default 3)")
    parser.add_argument("--copies", type=int, default=None, help="max_concurrent_copies (default: the setting's)")
    parser.add_argument("--quiet-logs", action="store_true", help=f"log_level and Prefect's logging at {QUIET_LEVEL}")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON to this file")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.small_files < 1 or args.folders < 1:
        parser.error("--runs, --small-files and --folders must be at least 1")
    if args.copies is not None and args.copies < 1:
        parser.error("--copies must be at least 1")

    own_workdir = args.workdir is None
    workdir: Path = Path(tempfile.mkdtemp(prefix="fta-bench-flow-")) if own_workdir else args.workdir
    workdir = workdir.resolve()
    page = 4096
    small_room = args.small_files * (-(-args.small_size // page) * page + page)
    room = small_room if args.skip_big else max(args.big_size, small_room)
    try:
        scenarios = build_scenarios(args, workdir / "master")
        with destination_mount(workdir / "destination", room) as mounted:
            if not mounted:
                print("note: no tmpfs (not root or mount failed): the destination is a folder on the same disk")
            run_all(args, workdir, scenarios, workdir / "destination")
    finally:
        for folder in ("source", "peer-source", "staging"):
            shutil.rmtree(workdir / folder, ignore_errors=True)
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept the masters and the server's data in {workdir} (delete it to free the space)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
