"""Throughput of the agent's verified copy against ``cp SRC DST && sync``, cold source cache, another filesystem.

Run as root to get a tmpfs destination and dropped caches (both are skipped, with a note, otherwise)::

    python benchmarks/copier_throughput.py [--size 1GiB] [--runs 3] [--workdir DIR] [--profile] [--with-verify-size]

One file of incompressible bytes (the "master") is written once into ``WORKDIR/master`` and reused (kept between
invocations when ``--workdir`` is given). Before every timed run the source file is re-created from the master
(a hard link, or a plain copy when linking fails; never timed), the destination is emptied, dirty pages are written
back with ``sync`` and, when permitted, the page cache is dropped, so every contender starts with a cold source.
The contenders' order alternates between runs; ``--with-verify-size`` adds the agent with ``verify=size`` (no
re-read of the destination) to show what the checksum verification costs. ``--profile`` adds one more cold agent
copy under cProfile and prints where its time went (read, hash, write, preallocate, fsync, verify re-read and hash).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
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

from fta.copier import Copier, hash_file
from fta.settings import load_settings

FILE_NAME = "bench.bin"
WRITE_CHUNK = 8 * 1024 * 1024
GOAL_RATIO = 0.9
AGENT = "agent Copier (checksum, temp file)"
AGENT_SIZE = "agent Copier (size only, temp file)"
CP_SYNC = "cp SRC DST && sync"

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
        if self.source.exists():
            raise SystemExit("agent: the source was not removed")
        self.check_destination("agent", result.checksum)
        return seconds

    def run_cp_sync(self) -> float:
        command = ["sh", "-c", 'cp -- "$1" "$2" && sync', "sh", os.fspath(self.source), os.fspath(self.destination)]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - started
        self.check_destination("cp", None)
        return seconds

    def check_destination(self, who: str, reported: str | None) -> None:
        """Sanity, outside the timing: the destination's checksum is the master's."""
        if reported is not None and reported != self.master_checksum:
            raise SystemExit(f"{who}: reported checksum {reported} differs from the master's {self.master_checksum}")
        actual = hash_file(self.destination)
        if actual != self.master_checksum:
            raise SystemExit(f"{who}: destination checksum {actual} differs from the master's {self.master_checksum}")


# -- profile of one agent copy ---------------------------------------------------------------------------------------

_PHASES: dict[tuple[str, str], str] = {
    ("readinto", "_pump"): "read source",
    ("update", "_pump"): "hash while copying",
    ("write", "_write"): "write destination",
    ("posix_fallocate", "_pump"): "preallocate",
    ("fsync", "_pump"): "fsync file",
    ("readinto", "hash_file"): "verify: re-read destination",
    ("update", "hash_file"): "verify: hash again",
    ("fsync", "fsync_folder"): "fsync folder",
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
    reference = statistics.median(times[CP_SYNC])
    best_reference = min(times[CP_SYNC])
    print(f"\n{'contender':<36} {'median s':>9} {'MB/s':>8} {'vs cp+sync':>11} {'best s':>7} {'best vs':>8}   runs (s)")
    for name, values in times.items():
        med, best = statistics.median(values), min(values)
        runs = " ".join(f"{v:.2f}" for v in values)
        print(
            f"{name:<36} {med:9.3f} {size / 1e6 / med:8.1f} {reference / med:10.2f}x"
            f" {best:7.3f} {best_reference / best:7.2f}x   {runs}"
        )
    agent_ratio = reference / statistics.median(times[AGENT])
    verdict = "PASS" if agent_ratio >= GOAL_RATIO else "MISS"
    print(f"\ngoal: agent >= {GOAL_RATIO} x cp+sync (median throughput): {agent_ratio:.2f} x -> {verdict}")
    print("(ratios are cp+sync seconds / contender seconds; 'best vs' compares the fastest runs)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("1GiB"), help="file size (default 1GiB)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per contender (default 3)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temp folder)")
    parser.add_argument("--profile", action="store_true", help="also profile one agent copy by phase")
    parser.add_argument(
        "--with-verify-size", action="store_true", help="add the agent with verify=size (no re-read) as a contender"
    )
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
