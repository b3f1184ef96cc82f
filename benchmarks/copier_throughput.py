"""Throughput of the agent's verified move against ``cp && sync``, ``rsync`` and ``rclone move``, cold source cache.

Run as root to get a tmpfs destination and dropped caches (both are skipped, with a note, otherwise)::

    python benchmarks/copier_throughput.py [--size 1GiB] [--runs 3] [--workdir DIR] [--profile] [--with-verify-size]
                                           [--json PATH]

One file of incompressible bytes (the "master") is written once into ``WORKDIR/master`` and reused (kept between
invocations when ``--workdir`` is given). Before every timed run the source file is re-created from the master
(a hard link, or a plain copy when linking fails; never timed), the destination is emptied, dirty pages are written
back with ``sync`` and, when permitted, the page cache is dropped, so every contender starts with a cold source.
The peers are shell command lines that end in ``sync``, like the agent's fsyncs: ``cp SRC DST && sync``,
``rsync --remove-source-files SRC DST/ && sync`` and ``rclone move --config /dev/null SRC_DIR DST_DIR && sync``
(local to local, no config file, no ``RCLONE_*`` variables). rsync and rclone delete the source, like the agent; a
missing one is installed with ``apt-get`` when root, else its rows are skipped. After every run (untimed) the
destination must hold exactly the one file, with the master's checksum, and the movers must have emptied the source.
The contenders' order alternates between runs; ``--with-verify-size`` adds the agent with ``verify=size`` (no
re-read of the destination) to show what the checksum verification costs. ``--profile`` adds one more cold agent
copy under cProfile and prints where its time went (read, hash, write, preallocate, fsync, verify re-read and hash).
``--json PATH`` also writes the medians and the goals' results as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fta.copier import Copier, hash_file
from fta.settings import load_settings

FILE_NAME = "bench.bin"
WRITE_CHUNK = 8 * 1024 * 1024
GOAL_RATIO = 0.9  # the agent's median throughput against cp+sync's
GOAL_RCLONE_RATIO = 4.0  # ... and against rclone move's
AGENT = "agent Copier (checksum, temp file)"
AGENT_SIZE = "agent Copier (size only, temp file)"
CP_SYNC = "cp SRC DST && sync"
RSYNC = "rsync --remove-source-files && sync"
RCLONE = "rclone move && sync"
# Stable names for --json, whatever the table calls them.
JSON_KEYS = {AGENT: "agent", AGENT_SIZE: "agent_size", CP_SYNC: "cp_sync", RSYNC: "rsync", RCLONE: "rclone"}
APT_TIMEOUT = 600.0

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def parse_size(text: str) -> int:
    """``1GiB``, ``512MiB``, ``100MB``, ``1g`` or a plain number of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if match is None or match.group(2).lower() not in _UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 1GiB, 512MiB, 100MB)")
    size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if size <= 0:
        raise argparse.ArgumentTypeError("the size must be positive")
    return size


def human(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} B"


# -- the machine -------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fs_type(path: Path) -> str:
    try:
        done = subprocess.run(["stat", "-f", "-c", "%T", os.fspath(path)], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


def print_machine(source: Path, destination: Path) -> None:
    print(f"machine: nproc={os.cpu_count()}  cpu={cpu_model()}")
    print(f"python:  {platform.python_implementation()} {platform.python_version()}  kernel={platform.release()}")
    print(f"source:      {source}  ({fs_type(source)})")
    print(f"destination: {destination}  ({fs_type(destination)})")


# -- files, caches, the tmpfs --------------------------------------------------------------------------------------


def ensure_master(master: Path, size: int) -> None:
    """Write ``size`` random bytes once; an existing master of the right size is reused."""
    if master.is_file() and master.stat().st_size == size:
        print(f"master: reusing {master} ({human(size)})")
        return
    print(f"master: writing {human(size)} of random bytes to {master} ...", flush=True)
    partial = master.with_name(master.name + ".partial")
    with open(partial, "wb", buffering=0) as out:
        left = size
        while left:
            n = min(WRITE_CHUNK, left)
            out.write(os.urandom(n))
            left -= n
        os.fsync(out.fileno())
    os.replace(partial, master)


def recreate_source(master: Path, source: Path) -> None:
    """Put the master back as the source file (untimed): a hard link, else a plain copy."""
    with contextlib.suppress(FileNotFoundError):
        source.unlink()
    try:
        os.link(master, source)
    except OSError:
        shutil.copyfile(master, source)


def empty_folder(folder: Path) -> None:
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def drop_caches() -> bool:
    """Write back dirty pages, then drop the page cache if permitted; True when dropped."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w", encoding="ascii") as knob:
            knob.write("3\n")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def destination_mount(folder: Path, size: int) -> Iterator[bool]:
    """Mount a tmpfs on ``folder`` when root and ``mount`` works; yields whether it did. Lazily unmounted."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = False
    if os.geteuid() == 0:
        room = size + size // 8 + 64 * 1024 * 1024
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={room}", "tmpfs", os.fspath(folder)],
            capture_output=True,
            text=True,
        )
        mounted = done.returncode == 0
        if not mounted:
            print(f"note: mounting a tmpfs failed ({done.stderr.strip() or done.returncode})")
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", os.fspath(folder)], check=False)


# -- the peers' binaries -------------------------------------------------------------------------------------------


def _apt_get(*args: str) -> bool:
    """apt-get quietly: its output names the mirrors, which have no place in the benchmark's output."""
    try:
        done = subprocess.run(
            ["apt-get", "-qq", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            timeout=APT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def ensure_tool(binary: str, package: str) -> bool:
    """True when ``binary`` is on the PATH; as root a missing one is installed once (the package lists are refreshed
    only when the first try fails, since that is slow and usually not needed)."""
    if shutil.which(binary):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"{binary}: not installed, trying apt-get install -y {package} ...", flush=True)
        if not _apt_get("install", "-y", package) and _apt_get("update"):
            _apt_get("install", "-y", package)
    if shutil.which(binary):
        return True
    print(f"{binary}: not installed, skipped")
    return False


def rclone_env() -> dict[str, str]:
    """The environment without ``RCLONE_*``, which would set rclone's flags (even its config file) behind our back."""
    return {name: value for name, value in os.environ.items() if not name.upper().startswith("RCLONE_")}


# -- the contenders ------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    master: Path
    source_root: Path
    destination_root: Path
    size: int
    master_checksum: str
    copier: Copier
    size_copier: Copier
    caches_dropped: list[bool] = field(default_factory=list)

    @property
    def source(self) -> Path:
        return self.source_root / FILE_NAME

    @property
    def destination(self) -> Path:
        return self.destination_root / FILE_NAME

    def prepare(self) -> None:
        """Untimed: source back, destination empty, caches cold."""
        recreate_source(self.master, self.source)
        empty_folder(self.destination_root)
        self.caches_dropped.append(drop_caches())

    def run_agent(self) -> float:
        return self._run_copier(self.copier)

    def run_agent_size(self) -> float:
        return self._run_copier(self.size_copier)

    def _run_copier(self, copier: Copier) -> float:
        started = time.perf_counter()
        result = copier.copy(FILE_NAME)
        seconds = time.perf_counter() - started
        if result.outcome != "copied" or result.destination != self.destination:
            raise SystemExit(f"agent: unexpected result {result}")
        self.check_source_gone("agent")
        self.check_destination("agent", result.checksum)
        return seconds

    def run_cp_sync(self) -> float:
        command = ["sh", "-c", 'cp -- "$1" "$2" && sync', "sh", os.fspath(self.source), os.fspath(self.destination)]
        seconds = _timed(command)
        self.check_destination("cp", None)
        return seconds

    def run_rsync(self) -> float:
        # Without -a, like cp: neither keeps times or owners, and the agent does not either.
        script = 'rsync --remove-source-files "$1" "$2"/ && sync'
        seconds = _timed(["sh", "-c", script, "sh", os.fspath(self.source), os.fspath(self.destination_root)])
        self.check_source_gone("rsync")
        self.check_destination("rsync", None)
        return seconds

    def run_rclone(self) -> float:
        # Local paths only (absolute, so no "remote:" prefix is possible) and /dev/null as the config: no remote is
        # defined, so rclone has nothing to reach over the network and no user's settings to read.
        script = 'rclone move --config /dev/null "$1" "$2" && sync'
        command = ["sh", "-c", script, "sh", os.fspath(self.source_root), os.fspath(self.destination_root)]
        seconds = _timed(command, rclone_env())
        self.check_source_gone("rclone")
        self.check_destination("rclone", None)
        return seconds

    def check_source_gone(self, who: str) -> None:
        """The movers delete the source; rclone leaves the (empty) folder, which is fine."""
        left = sorted(entry.name for entry in os.scandir(self.source_root))
        if left:
            raise SystemExit(f"{who}: the source was not removed (left in {self.source_root}: {left})")

    def check_destination(self, who: str, reported: str | None) -> None:
        """Sanity, outside the timing: the destination holds exactly the one file (no left-over temp or partial
        file), and its checksum is the master's."""
        if reported is not None and reported != self.master_checksum:
            raise SystemExit(f"{who}: reported checksum {reported} differs from the master's {self.master_checksum}")
        found = sorted(
            os.path.relpath(os.path.join(top, name), self.destination_root)
            for top, folders, files in os.walk(self.destination_root)
            for name in folders + files
        )
        if found != [FILE_NAME] or not self.destination.is_file() or self.destination.is_symlink():
            raise SystemExit(f"{who}: the destination should hold just {FILE_NAME}, it holds {found}")
        actual = hash_file(self.destination)
        if actual != self.master_checksum:
            raise SystemExit(f"{who}: destination checksum {actual} differs from the master's {self.master_checksum}")


def _timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return time.perf_counter() - started


# -- profile of one agent copy ---------------------------------------------------------------------------------------

# (callee, caller): the copier's bytes move through fta.copy_io.CopyIO, its loop is fta.pump.Pump.pump.
_PHASES: dict[tuple[str, str], str] = {
    ("readv", "read_chunk"): "read source",
    ("update", "pump"): "hash while copying",
    ("write", "write_chunk"): "write destination",
    ("posix_fallocate", "pump"): "preallocate",
    ("fsync", "fsync"): "fsync file",
    ("preadv", "hash_fd"): "verify: re-read destination",
    ("update", "hash_fd"): "verify: hash again",
    ("fsync", "_fsync_handle"): "fsync folder",
}


def _short(func: tuple[str, int, str]) -> str:
    name = func[2]
    match = re.search(r"'([^']+)'", name)  # "<method 'readinto' of ...>" / "<built-in method posix.write>"
    if match:
        return match.group(1).rsplit(".", 1)[-1]
    return name.rsplit(".", 1)[-1].rstrip(">")


def profile_agent(bench: Bench) -> None:
    bench.prepare()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    bench.copier.copy(FILE_NAME)
    profiler.disable()
    total = time.perf_counter() - started
    bench.check_destination("agent (profiled)", None)
    stats = pstats.Stats(profiler)
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, dict[tuple[str, int, str], tuple[float, ...]]]]
    raw = stats.stats  # type: ignore[attr-defined]
    phases: dict[str, float] = {}
    for func, (_cc, _nc, _tt, _ct, callers) in raw.items():
        name = _short(func)
        for caller, caller_stats in callers.items():
            phase = _PHASES.get((name, caller[2]))
            if phase is not None:
                phases[phase] = phases.get(phase, 0.0) + float(caller_stats[2])  # time inside, from this caller
    print(f"\nprofile of one cold agent copy ({total:.2f} s wall under cProfile):")
    print(f"  {'phase':<30} {'seconds':>8} {'share':>6}")
    for phase, seconds in sorted(phases.items(), key=lambda item: -item[1]):
        print(f"  {phase:<30} {seconds:8.3f} {seconds / total:6.1%}")
    rest = total - sum(phases.values())
    print(f"  {'everything else':<30} {rest:8.3f} {rest / total:6.1%}")


# -- main ----------------------------------------------------------------------------------------------------------


def median_table(size: int, times: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in times.items()}
    reference, best_reference = medians[CP_SYNC], min(times[CP_SYNC])
    rclone = medians.get(RCLONE)
    width = max(len(name) for name in times)
    print(
        f"\n{'contender':<{width}} {'median s':>9} {'MB/s':>8} {'vs cp+sync':>11} {'vs rclone':>10}"
        f" {'best s':>7} {'best vs':>8}   runs (s)"
    )
    for name, values in times.items():
        med, best = medians[name], min(values)
        versus_rclone = f"{rclone / med:9.2f}x" if rclone is not None else f"{'-':>10}"
        runs = " ".join(f"{v:.2f}" for v in values)
        print(
            f"{name:<{width}} {med:9.3f} {size / 1e6 / med:8.1f} {reference / med:10.2f}x {versus_rclone}"
            f" {best:7.3f} {best_reference / best:7.2f}x   {runs}"
        )
    print("(ratios are a peer's median seconds / the contender's; 'best vs' compares the fastest runs with cp+sync's)")


@dataclass
class Goal:
    text: str  # "agent >= 0.9 x cp+sync"
    peer: str
    least: float
    ratio: float | None  # the peer's median seconds / the agent's; None when the peer was skipped

    @property
    def passed(self) -> bool | None:
        return None if self.ratio is None else self.ratio >= self.least

    def line(self) -> str:
        if self.ratio is None:
            return f"goal: {self.text}: SKIPPED ({self.peer.split()[0]} not run)"
        return f"goal: {self.text}: {'PASS' if self.passed else 'FAIL'} ({self.ratio:.2f})"


def goals(times: dict[str, list[float]]) -> list[Goal]:
    agent = statistics.median(times[AGENT])
    wanted = [(f"agent >= {GOAL_RATIO:g} x cp+sync", CP_SYNC, GOAL_RATIO)]
    wanted.append((f"agent >= {GOAL_RCLONE_RATIO:g} x rclone move", RCLONE, GOAL_RCLONE_RATIO))
    return [
        Goal(text, peer, least, statistics.median(times[peer]) / agent if peer in times else None)
        for text, peer, least in wanted
    ]


def write_json(
    path: Path, size: int, times: dict[str, list[float]], results: list[Goal], facts: dict[str, Any]
) -> None:
    """Medians and goals for a runner that collects several benchmarks; the keys do not change with the labels."""
    contenders = {
        JSON_KEYS[name]: {
            "name": name,
            "median_s": round(statistics.median(values), 4),
            "mb_per_s": round(size / 1e6 / statistics.median(values), 1),
            "runs_s": [round(v, 4) for v in values],
        }
        for name, values in times.items()
    }
    document = {
        "benchmark": "copier_throughput",
        "size_bytes": size,
        **facts,
        "contenders": contenders,
        "goals": [
            {
                "goal": goal.text,
                "peer": JSON_KEYS[goal.peer],
                "at_least": goal.least,
                "ratio": None if goal.ratio is None else round(goal.ratio, 3),
                "passed": goal.passed,
            }
            for goal in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"), help="file size (default 1GiB)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per contender (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temp folder)")
    parser.add_argument("--profile", action="store_true", help="also profile one agent copy by phase")
    parser.add_argument(
        "--with-verify-size", action="store_true", help="add the agent with verify=size (no re-read) as a contender"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write medians and goals here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    own_workdir = args.workdir is None
    workdir: Path = Path(tempfile.mkdtemp(prefix="fta-bench-copier-")) if own_workdir else args.workdir
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    master = workdir / "master" / FILE_NAME
    source_root = workdir / "source"
    destination_root = workdir / "destination"
    for folder in (master.parent, source_root):
        folder.mkdir(parents=True, exist_ok=True)
    have = {RSYNC: ensure_tool("rsync", "rsync"), RCLONE: ensure_tool("rclone", "rclone")}
    try:
        ensure_master(master, args.size)
        master_checksum = hash_file(master)
        with destination_mount(destination_root, args.size) as mounted:
            if not mounted:
                print("note: no tmpfs (not root or mount failed): the destination is a folder on the same disk")
            empty_folder(destination_root)
            base = {
                "source_path": source_root,
                "destination_path": destination_root,
                "use_temporary_file": True,
                "log_file_path": "",
            }
            checksum_copier = Copier(load_settings({**base, "verify": "checksum"}, env_file=None))
            size_copier = Copier(load_settings({**base, "verify": "size"}, env_file=None))
            bench = Bench(
                master, source_root, destination_root, args.size, master_checksum, checksum_copier, size_copier
            )
            print_machine(source_root, destination_root)
            print(f"file: {human(args.size)} ({args.size} bytes), {args.runs} run(s) per contender")

            contenders: list[tuple[str, Callable[[], float]]] = [(AGENT, bench.run_agent), (CP_SYNC, bench.run_cp_sync)]
            contenders += [
                (name, run) for name, run in ((RSYNC, bench.run_rsync), (RCLONE, bench.run_rclone)) if have[name]
            ]
            if not mounted and have[RCLONE]:
                print("note: on one filesystem rclone renames instead of copying, so its row is no copy")
            if args.with_verify_size:
                contenders.append((AGENT_SIZE, bench.run_agent_size))
            times: dict[str, list[float]] = {name: [] for name, _ in contenders}
            for run in range(args.runs):
                order = contenders if run % 2 == 0 else contenders[::-1]
                for name, contender in order:
                    bench.prepare()
                    seconds = contender()
                    times[name].append(seconds)
                    print(f"  run {run + 1}: {name:<36} {seconds:7.3f} s", flush=True)
            dropped = all(bench.caches_dropped)
            if dropped:
                print("page cache: dropped before every timed run (sync; echo 3 > /proc/sys/vm/drop_caches)")
            else:
                print("page cache: NOT dropped (not permitted); sync only - the source may be served from memory")
            median_table(args.size, times)
            results = goals(times)
            print()
            for goal in results:
                print(goal.line())
            if args.json is not None:
                facts: dict[str, Any] = {"runs": args.runs, "destination_tmpfs": mounted, "page_cache_dropped": dropped}
                facts["skipped"] = [JSON_KEYS[name] for name, there in have.items() if not there]
                facts["machine"] = {"nproc": os.cpu_count(), "cpu": cpu_model(), "kernel": platform.release()}
                write_json(args.json, args.size, times, results, facts)
            if args.profile:
                profile_agent(bench)
            empty_folder(destination_root)
    finally:
        with contextlib.suppress(FileNotFoundError):
            (source_root / FILE_NAME).unlink()
        if own_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {master} for the next run (delete {workdir} to free {human(args.size)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
