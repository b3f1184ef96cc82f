"""End to end through the ``transfer_once`` flow, against ``rsync --remove-source-files`` and ``cp -r && sync``.

Run as root to get a tmpfs destination and dropped caches (both are skipped, with a note, otherwise)::

    python benchmarks/flow_throughput.py [--small-files 2000] [--small-size 64KiB] [--big-size 1GiB] [--runs 3]
        [--folders 8] [--copies N] [--workdir DIR] [--profile]

Two scenarios on the same machine, in the same run: ``--small-files`` files of ``--small-size`` spread over
``--folders`` folders (files/s), and one file of ``--big-size`` (MB/s). Each is moved by the agent - the
``transfer_once`` flow called in-process, ``file_stable_time_seconds=0.2``, ``polling_interval_seconds=0.1``, no log
file, ``max_concurrent_copies`` default or ``--copies`` - timed from the flow call to its return; by
``rsync -a --remove-source-files SRC/ DST/``; and by ``cp -r SRC/. DST/ && sync``. The agent's row is also shown
minus the stable time it must wait by design. The data (random bytes) is written once into ``WORKDIR/master`` and
hard-linked (or copied, untimed) back into the source before every timed run; the destination is emptied, dirty
pages are written back and, when permitted, the page cache is dropped; the contenders' order alternates between runs.
After every run, outside the timing, the destination must hold exactly the expected files with the master's
checksums (all of them), and the agent and rsync must have emptied the source. Each run's line also gives the CPU
seconds: this process's and the temporary API server's (a child process) for the agent, the command's for the others.

Prefect: without ``PREFECT_API_URL`` the first flow call starts a temporary local server, so one untimed warm-up
on three tiny files comes first. Logging is quietened to WARNING (``PREFECT_LOGGING_LEVEL`` and the agent's own
``log_level``, which the flow applies to the ``fta`` loggers on every call). ``--profile`` adds one more small-file
agent run under cProfile (the flow's thread and the copy worker threads) and prints the top cumulative entries.
"""

from __future__ import annotations

import os

os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_LOGGING_LEVEL"] = "CRITICAL"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"

import argparse
import contextlib
import cProfile
import logging
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import prefect
from copier_throughput import (
    destination_mount,
    drop_caches,
    empty_folder,
    ensure_master,
    human,
    parse_size,
    print_machine,
)
from prefect.settings import PREFECT_API_URL

from flows.transfer_once import transfer_once
from fta.copier import hash_file

STABLE_SECONDS = 0.2
POLLING_SECONDS = 0.1
LOG_LEVEL = "WARNING"
BIG_NAME = "big.bin"
PROFILE_TOP = 15
SETTLE_INTERVAL = 0.5  # seconds between two looks at the CPU counters
SETTLE_QUIET = 0.1  # below this share of one core, this process and the API server count as idle
SETTLE_TIMEOUT = 600.0

AGENT = "agent (transfer_once flow)"
AGENT_NET = f"agent minus {STABLE_SECONDS:g} s stable wait"
RSYNC = "rsync -a --remove-source-files"
CP_SYNC = "cp -r SRC/. DST/ && sync"


# -- data ------------------------------------------------------------------------------------------------------


def small_names(count: int, folders: int) -> list[str]:
    return [f"d{index % folders:02d}/f{index:05d}.bin" for index in range(count)]


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


def link_tree(master: Path, names: list[str], target: Path) -> None:
    """Put the master files back into the source (untimed): hard links, else plain copies."""
    for folder in sorted({Path(rel).parent for rel in names}):
        (target / folder).mkdir(parents=True, exist_ok=True)
    for rel in names:
        try:
            os.link(master / rel, target / rel)
        except OSError:
            shutil.copyfile(master / rel, target / rel)


@dataclass
class Scenario:
    key: str
    title: str
    master: Path
    sums: dict[str, str]  # relative path -> xxh3-128 of the master file
    total_bytes: int
    rate_unit: str  # "files/s" or "MB/s"

    @property
    def names(self) -> list[str]:
        return list(self.sums)

    def rate(self, seconds: float) -> float:
        if seconds <= 0:
            return float("inf")
        if self.rate_unit == "files/s":
            return len(self.sums) / seconds
        return self.total_bytes / 1e6 / seconds


def checksums(master: Path, names: list[str]) -> dict[str, str]:
    return {rel: hash_file(master / rel) for rel in names}


# -- the contenders ------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    source_root: Path
    destination_root: Path
    copies: int | None
    caches_dropped: list[bool] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)  # CPU seconds of the API server (a child) per agent run
    afterwork: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # scenario -> (busy s, CPU s)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "source_path": self.source_root,
            "destination_path": self.destination_root,
            "file_stable_time_seconds": STABLE_SECONDS,
            "polling_interval_seconds": POLLING_SECONDS,
            "log_file_path": "",
            "log_level": LOG_LEVEL,
        }
        if self.copies is not None:
            config["max_concurrent_copies"] = self.copies
        return config

    def prepare(self, scenario: Scenario) -> None:
        """Untimed: source back from the master, destination empty, the API server idle, caches cold."""
        empty_folder(self.source_root)
        link_tree(scenario.master, scenario.names, self.source_root)
        empty_folder(self.destination_root)
        settle()
        self.caches_dropped.append(drop_caches())

    def call_flow(self, expected: int) -> None:
        state = transfer_once(config=self.config(), return_state=True)
        if not state.is_completed():
            raise SystemExit(f"agent: the flow ended {state.name}: {state.message}")
        summary = state.result()
        if not isinstance(summary, dict) or summary.get("completed") != expected or summary.get("failed"):
            raise SystemExit(f"agent: expected {expected} completed file(s), the flow says {summary}")

    def run_agent(self, scenario: Scenario) -> tuple[float, float]:
        cpu, server = time.process_time(), children_cpu_seconds()
        started = time.perf_counter()
        self.call_flow(len(scenario.sums))
        seconds = time.perf_counter() - started
        cpu, server = time.process_time() - cpu, children_cpu_seconds() - server
        self.server_cpu.append(server)
        self.afterwork.setdefault(scenario.key, []).append(settle())
        self.check(AGENT, scenario, source_emptied=True)
        return seconds, cpu

    def run_rsync(self, scenario: Scenario) -> tuple[float, float]:
        command = ["rsync", "-a", "--remove-source-files", f"{self.source_root}/", f"{self.destination_root}/"]
        seconds, cpu = timed_command(command)
        self.check(RSYNC, scenario, source_emptied=True)
        return seconds, cpu

    def run_cp_sync(self, scenario: Scenario) -> tuple[float, float]:
        script = 'cp -r -- "$1/." "$2/" && sync'
        seconds, cpu = timed_command(
            ["sh", "-c", script, "sh", os.fspath(self.source_root), os.fspath(self.destination_root)]
        )
        self.check(CP_SYNC, scenario, source_emptied=False)
        return seconds, cpu

    def check(self, who: str, scenario: Scenario, source_emptied: bool) -> None:
        """Outside the timing: exactly the expected files arrived, every one with the master's checksum."""
        arrived = list_files(self.destination_root)
        if arrived != sorted(scenario.sums):
            missing = sorted(set(scenario.sums) - set(arrived))
            extra = sorted(set(arrived) - set(scenario.sums))
            raise SystemExit(
                f"{who}: {len(arrived)} file(s) at the destination, expected {len(scenario.sums)}; "
                f"missing {missing[:5]}, unexpected {extra[:5]}"
            )
        for rel, expected in scenario.sums.items():
            actual = hash_file(self.destination_root / rel)
            if actual != expected:
                raise SystemExit(f"{who}: {rel}: checksum {actual} differs from the master's {expected}")
        if source_emptied and (left := list_files(self.source_root)):
            raise SystemExit(f"{who}: {len(left)} file(s) left in the source, e.g. {left[:3]}")


def children_cpu_seconds() -> float:
    """CPU seconds used so far by this process's running children (the temporary Prefect API server)."""
    ticks = os.sysconf("SC_CLK_TCK")
    own = str(os.getpid())
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat_file:
                fields = stat_file.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 12 and fields[1] == own:
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def settle() -> tuple[float, float]:
    """Wait (untimed) until this process and its children (the temporary API server) are idle.

    The flow run's task runs reach the server as events, which it records after the flow has returned; that backlog
    must not slow the next contender down. Returns how long they stayed busy and the CPU seconds they used meanwhile.
    """
    started = time.perf_counter()
    first = last = time.process_time() + children_cpu_seconds()
    busy_until, calm = started, 0
    while calm < 2 and time.perf_counter() - started < SETTLE_TIMEOUT:
        time.sleep(SETTLE_INTERVAL)
        now = time.process_time() + children_cpu_seconds()
        if now - last < SETTLE_QUIET * SETTLE_INTERVAL:
            calm += 1
        else:
            calm, busy_until = 0, time.perf_counter()
        last = now
    return busy_until - started, last - first


def timed_command(command: list[str]) -> tuple[float, float]:
    """Wall seconds and the children's CPU seconds of one command."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    after = os.times()
    return seconds, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def ensure_rsync() -> bool:
    """rsync is a Debian package: install it once when root and it is missing."""
    if shutil.which("rsync"):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("rsync is missing: apt-get install -y rsync ...", flush=True)
        subprocess.run(
            ["sh", "-c", "apt-get update -qq && apt-get install -y -qq rsync"],
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    if shutil.which("rsync"):
        return True
    print("note: rsync is not available (and could not be installed); its rows are skipped")
    return False


def warm_up(bench: Bench) -> float:
    """Three tiny files through the flow: the first call starts Prefect's temporary server. Returns the seconds of
    a second, identical call with the server up (the fixed cost of a flow run)."""
    tiny = {f"warm/w{index}.txt": b"warm-up %d\n" % index for index in range(3)}
    seconds = 0.0
    for attempt in range(2):
        empty_folder(bench.source_root)
        empty_folder(bench.destination_root)
        for rel, data in tiny.items():
            (bench.source_root / rel).parent.mkdir(parents=True, exist_ok=True)
            (bench.source_root / rel).write_bytes(data)
        if attempt == 0:
            print("warm-up: first flow call (starts the Prefect API when none is configured) ...", flush=True)
        else:
            settle()
        started = time.perf_counter()
        bench.call_flow(len(tiny))
        seconds = time.perf_counter() - started
        if attempt == 0:
            print(f"warm-up: {seconds:.1f} s (untimed)")
    empty_folder(bench.source_root)
    empty_folder(bench.destination_root)
    return seconds


# -- profile of one small-file agent run ---------------------------------------------------------------------------


@contextlib.contextmanager
def profile_threads() -> Iterator[list[tuple[str, cProfile.Profile]]]:
    """A cProfile of every thread started inside the block (each enables its own profiler on its first event)."""
    profiles: list[tuple[str, cProfile.Profile]] = []

    def start(frame: FrameType, event: str, arg: Any) -> None:
        sys.setprofile(None)
        profiler = cProfile.Profile()
        profiles.append((threading.current_thread().name, profiler))
        profiler.enable()

    threading.setprofile(start)
    try:
        yield profiles
    finally:
        threading.setprofile(None)


def _where(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    for marker in ("site-packages/", f"{Path.cwd()}/", "/lib/python3."):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            if marker == "/lib/python3.":
                filename = filename.split("/", 1)[-1]
            break
    return f"{filename}:{line}({name})"


def _raw(stats: pstats.Stats) -> dict[tuple[str, int, str], tuple[int, int, float, float, Any]]:
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    return raw


def print_top(title: str, stats: pstats.Stats) -> None:
    rows = sorted(_raw(stats).items(), key=lambda item: -item[1][3])[:PROFILE_TOP]
    print(f"\n  {title}: top {PROFILE_TOP} by cumulative time")
    print(f"  {'ncalls':>8} {'tottime':>8} {'cumtime':>8}  function")
    for func, (_cc, ncalls, tottime, cumtime, _callers) in rows:
        print(f"  {ncalls:8d} {tottime:8.3f} {cumtime:8.3f}  {_where(func)}")


def cumulative(stats: pstats.Stats, path_end: str, name: str) -> tuple[float, int]:
    """Cumulative seconds and calls of the functions called ``name`` in a file whose path ends with ``path_end``."""
    seconds, calls = 0.0, 0
    for (filename, _line, func), (_cc, ncalls, _tt, cumtime, _callers) in _raw(stats).items():
        if func == name and filename.endswith(path_end):
            seconds, calls = seconds + cumtime, calls + ncalls
    return seconds, calls


def print_parts(title: str, total: float, parts: list[tuple[str, float, int]], files: int) -> None:
    """One line per part: seconds, share of ``total``, calls, milliseconds per file; the remainder last."""
    print(f"\n  {title}: {total:.2f} s")
    rows = [*parts, ("everything else", total - sum(part[1] for part in parts), 0)]
    width = max(len(row[0]) for row in rows)
    for label, seconds, calls in rows:
        share = seconds / total if total else 0.0
        count = f"{calls:6d} calls" if calls else " " * 12
        print(f"    {label:<{width}} {seconds:7.2f} s {share:6.1%}  {count}  {1000 * seconds / files:6.1f} ms/file")


def print_breakdown(main: pstats.Stats, workers: pstats.Stats | None, files: int) -> None:
    flow_total, _ = cumulative(main, "prefect/flow_engine.py", "run_flow_sync")
    loop, _ = cumulative(main, "flows/transfer_loop.py", "run")
    flow_parts = [
        ("flow engine outside the loop (create/start/end the flow run)", flow_total - loop, 1),
        (
            "guard: destination probe (new thread, write + fsync a file)",
            *cumulative(main, "flows/transfer_loop.py", "_guard"),
        ),
        ("scan + readiness (scan_source, /proc writer scan)", *cumulative(main, "flows/transfer_loop.py", "_scan")),
        ("submit copy_file task runs", *cumulative(main, "flows/transfer_loop.py", "_submit")),
        ("collect ended task runs", *cumulative(main, "flows/transfer_loop.py", "_collect")),
        ("status artifact (API call, at most ~1/s)", *cumulative(main, "flows/transfer_loop.py", "_publish")),
        ("drain: shut the thread pool down", *cumulative(main, "flows/transfer_loop.py", "_drain")),
    ]
    print_parts(
        "where the flow's thread spent its time (wall; the rest is waiting for copies or the next poll)",
        flow_total,
        flow_parts,
        files,
    )
    if workers is None:
        return
    in_pool, _ = cumulative(workers, "concurrent/futures/thread.py", "run")
    engine, runs = cumulative(workers, "prefect/task_engine.py", "run_task_sync")
    task, _ = cumulative(workers, "tasks/copy_file.py", "copy_file")
    copy, _ = cumulative(workers, "fta/copier.py", "copy")
    writers, writer_calls = cumulative(workers, "fta/openfiles.py", "open_for_writing")
    pump, pump_calls = cumulative(workers, "fta/copier.py", "_pump")
    place, place_calls = cumulative(workers, "fta/copier.py", "_place")
    worker_parts = [
        ("Prefect task engine around copy_file (states, events, hooks)", engine - task, runs),
        ("copy_file around the copier (board, audit log line)", task - copy, 0),
        ("copier: open-writer checks (/proc scan of every process)", writers, writer_calls),
        ("copier: read + hash + write + fsync + read-back (_pump)", pump, pump_calls),
        ("copier: no-replace rename + folder fsync (_place)", place, place_calls),
        ("copier: the rest (open, stat, checks, delete the source)", copy - writers - pump - place, 0),
    ]
    print_parts("where the copy worker threads spent their time (summed over threads)", in_pool, worker_parts, files)


def profile_agent(bench: Bench, scenario: Scenario) -> None:
    bench.prepare(scenario)
    main_profile = cProfile.Profile()
    with profile_threads() as threads:
        started = time.perf_counter()
        main_profile.enable()
        bench.call_flow(len(scenario.sums))
        main_profile.disable()
        total = time.perf_counter() - started
    bench.check(AGENT, scenario, source_emptied=True)
    print(
        f"\nprofile of one {scenario.title} agent run: {total:.2f} s wall under cProfile "
        f"({scenario.rate(total):.1f} {scenario.rate_unit}; cProfile slows Python code down)"
    )
    main_stats = pstats.Stats(main_profile)
    print_top("the flow's thread (scan, guard, submit, wait)", main_stats)
    workers = [profile for name, profile in threads if name.startswith("ThreadPoolExecutor")]
    merged = pstats.Stats(workers[0]) if workers else None
    if merged is not None:
        for profile in workers[1:]:
            merged.add(profile)
        print_top(f"the {len(workers)} copy worker thread(s), summed (copy_file task runs)", merged)
    print_breakdown(main_stats, merged, len(scenario.sums))


# -- main ----------------------------------------------------------------------------------------------------------


def print_table(scenarios: list[Scenario], times: dict[str, dict[str, list[float]]]) -> None:
    width = max(len(scenario.title) for scenario in scenarios)
    print(f"\n{'scenario':<{width}}  {'contender':<32} {'median s':>9} {'rate':>16} {'vs cp':>7}   runs (s)")
    for scenario in scenarios:
        rows = times[scenario.key]
        reference = statistics.median(rows[CP_SYNC])
        for index, (name, values) in enumerate(rows.items()):
            median = statistics.median(values)
            rate = f"{scenario.rate(median):.1f} {scenario.rate_unit}"
            label = scenario.title if index == 0 else ""
            runs = " ".join(f"{value:.2f}" for value in values)
            print(f"{label:<{width}}  {name:<32} {median:9.3f} {rate:>16} {reference / median:6.2f}x   {runs}")
    print(
        f"\nnote: '{AGENT_NET}' is the agent's time minus file_stable_time_seconds ({STABLE_SECONDS:g} s): by design"
        " the agent copies a file only once it has been unchanged that long, rsync and cp do not wait. Still"
        f" included: the flow run's start and end (API calls), the first scan, and up to one polling interval"
        f" ({POLLING_SECONDS:g} s) before the stable files are seen."
    )
    print("note: 'vs cp' = cp+sync median seconds / contender median seconds (above 1: faster than cp).")
    print(
        "note: the agent and rsync delete the sources (the agent after verifying each copy's checksum and fsyncing"
        " it); cp leaves them."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--small-files", type=int, default=2000, help="number of small files (default 2000)")
    parser.add_argument("--small-size", type=parse_size, default=parse_size("64KiB"), help="default 64KiB")
    parser.add_argument("--folders", type=int, default=8, help="folders the small files are spread over (default 8)")
    parser.add_argument("--big-size", type=parse_size, default=parse_size("1GiB"), help="the big file (default 1GiB)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per contender and scenario (default 3)")
    parser.add_argument("--copies", type=int, default=None, help="max_concurrent_copies (default: the setting's)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temp folder)")
    parser.add_argument("--profile", action="store_true", help="also profile one small-file agent run")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.small_files < 1 or args.folders < 1:
        parser.error("--runs, --small-files and --folders must be at least 1")
    if args.copies is not None and args.copies < 1:
        parser.error("--copies must be at least 1")
    logging.getLogger("fta").setLevel(LOG_LEVEL)

    own_workdir = args.workdir is None
    workdir: Path = Path(tempfile.mkdtemp(prefix="fta-bench-flow-")) if own_workdir else args.workdir
    workdir = workdir.resolve()
    small_master = workdir / "master" / "small"
    big_master = workdir / "master" / "big"
    source_root = workdir / "source"
    destination_root = workdir / "destination"
    for folder in (big_master, source_root):
        folder.mkdir(parents=True, exist_ok=True)
    page = 4096
    room = max(args.big_size, args.small_files * (-(-args.small_size // page) * page + page))
    try:
        names = small_names(args.small_files, args.folders)
        ensure_small_master(small_master, names, args.small_size)
        ensure_master(big_master / BIG_NAME, args.big_size)
        scenarios = [
            Scenario(
                "small",
                f"{args.small_files} x {human(args.small_size)} in {min(args.folders, args.small_files)} folders",
                small_master,
                checksums(small_master, names),
                args.small_files * args.small_size,
                "files/s",
            ),
            Scenario(
                "big",
                f"1 x {human(args.big_size)}",
                big_master,
                checksums(big_master, [BIG_NAME]),
                args.big_size,
                "MB/s",
            ),
        ]
        have_rsync = ensure_rsync()
        with destination_mount(destination_root, room) as mounted:
            if not mounted:
                print("note: no tmpfs (not root or mount failed): the destination is a folder on the same disk")
            empty_folder(destination_root)
            bench = Bench(source_root, destination_root, args.copies)
            print_machine(source_root, destination_root)
            api = PREFECT_API_URL.value() or "temporary local server"
            copies = args.copies if args.copies is not None else "2 (default)"
            print(
                f"agent:   prefect {prefect.__version__}, API {api}; transfer_once with stable {STABLE_SECONDS:g} s,"
                f" polling {POLLING_SECONDS:g} s, max_concurrent_copies {copies}, verify=checksum, log {LOG_LEVEL}"
            )
            print(f"load average at start: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
            baseline = warm_up(bench)
            print(f"baseline: transfer_once on 3 tiny files with the API up: {baseline:.2f} s (fixed cost of a run)")

            contenders: list[tuple[str, Callable[[Scenario], tuple[float, float]]]] = [(AGENT, bench.run_agent)]
            if have_rsync:
                contenders.append((RSYNC, bench.run_rsync))
            contenders.append((CP_SYNC, bench.run_cp_sync))
            times: dict[str, dict[str, list[float]]] = {}
            for scenario in scenarios:
                print(f"\n{scenario.title}: {args.runs} run(s) per contender", flush=True)
                rows: dict[str, list[float]] = {AGENT: [], AGENT_NET: []}
                rows.update({name: [] for name, _ in contenders[1:]})
                for run in range(args.runs):
                    order = contenders if run % 2 == 0 else contenders[::-1]
                    for name, contender in order:
                        bench.prepare(scenario)
                        seconds, cpu = contender(scenario)
                        rows[name].append(seconds)
                        if name == AGENT:
                            rows[AGENT_NET].append(seconds - STABLE_SECONDS)
                        rate = f"{scenario.rate(seconds):.1f} {scenario.rate_unit}"
                        whose = "the command"
                        if name == AGENT:
                            busy, busy_cpu = bench.afterwork[scenario.key][-1]
                            whose = (
                                f"here + {bench.server_cpu[-1]:.2f} s API server; then busy {busy:.1f} s more,"
                                f" {busy_cpu:.2f} s CPU"
                            )
                        print(
                            f"  run {run + 1}: {name:<32} {seconds:8.3f} s {rate:>16}   CPU {cpu:6.2f} s ({whose})",
                            flush=True,
                        )
                times[scenario.key] = rows
            if all(bench.caches_dropped):
                print("\npage cache: dropped before every timed run (sync; echo 3 > /proc/sys/vm/drop_caches)")
            else:
                print("\npage cache: NOT dropped (not permitted); sync only - the source may be served from memory")
            print(f"load average at the end: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
            print_table(scenarios, times)
            for scenario in scenarios:
                after = bench.afterwork.get(scenario.key, [])
                if after:
                    busy = statistics.median(value[0] for value in after)
                    busy_cpu = statistics.median(value[1] for value in after)
                    print(
                        f"note: {scenario.title}: after the flow returned, this process and the API server stayed busy"
                        f" a median {busy:.1f} s more ({busy_cpu:.2f} s CPU; recording the task runs), not timed;"
                        " every timed run starts once they are idle."
                    )
            if args.profile:
                profile_agent(bench, scenarios[0])
            empty_folder(source_root)
            empty_folder(destination_root)
    finally:
        with contextlib.suppress(FileNotFoundError):
            empty_folder(source_root)
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept the masters in {workdir / 'master'} for the next run (delete {workdir} to free the space)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
