"""Cost of one watch-loop cycle on a big source: ``scan_source`` plus ``StabilityTracker.update``.

    python benchmarks/scan_speed.py [--files 100000] [--per-folder 1000] [--runs 5] [--root DIR] [--remove]

Creates ``--files`` 1-byte files in a nested tree (``--per-folder`` files per folder, folders grouped ten to a
parent) below ``--root`` (default ``$TMPDIR/fta-bench-scan-<files>``), reused when it already holds the right
count. Then times ``scan_source(root, DEFAULT_EXCLUDE)`` ``--runs`` times with a warm dentry/inode cache (the
agent scans every few seconds), reporting wall seconds, CPU seconds (``time.process_time``) and the process's peak
RSS; and the steady-state ``StabilityTracker.update`` of a fresh snapshot of the same files (the second and later
calls, as in the watch loop). When permitted, one extra scan after dropping the caches shows the cold case.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from copier_throughput import cpu_model, drop_caches

from fta.scanner import scan_source
from fta.settings import DEFAULT_EXCLUDE
from fta.stability import FileSig, StabilityTracker

GOAL_CPU_SECONDS = 1.0
FOLDERS_PER_PARENT = 10
MARKER = ".fta-bench-scan"

T = TypeVar("T")


@dataclass(frozen=True)
class Sample:
    wall: float
    cpu: float


def measure(func: Callable[[], T]) -> tuple[Sample, T]:
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = func()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Sample(wall, cpu), result


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def folder_of(index: int, per_folder: int) -> str:
    folder = index // per_folder
    return f"g{folder // FOLDERS_PER_PARENT:03d}/d{folder:04d}"


def build_tree(root: Path, files: int, per_folder: int) -> None:
    """``files`` 1-byte files, ``per_folder`` to a folder, folders ten to a parent: ``g000/d0000/f0000000.dat``."""
    marker = root / MARKER
    if root.exists():
        if any(root.iterdir()) and not marker.exists():
            raise SystemExit(f"{root} is not empty and was not made by this benchmark; choose another --root")
        shutil.rmtree(root)
    root.mkdir(parents=True)
    marker.touch()  # hidden, so excluded from the scan like any dot-file
    started = time.perf_counter()
    made: set[str] = set()
    for index in range(files):
        folder = folder_of(index, per_folder)
        if folder not in made:
            (root / folder).mkdir(parents=True)
            made.add(folder)
        fd = os.open(root / folder / f"f{index:07d}.dat", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
    print(f"tree: created {files} files in {len(made)} folders in {time.perf_counter() - started:.1f} s")


def fresh_copy(snapshot: dict[str, FileSig]) -> dict[str, FileSig]:
    """Equal signatures in new objects, as the next scan would return them."""
    return {rel: FileSig(sig.size, sig.mtime_ns, sig.inode, sig.device) for rel, sig in snapshot.items()}


def row(name: str, samples: list[Sample]) -> tuple[Sample, str]:
    by_cpu = sorted(samples, key=lambda s: s.cpu)
    median = by_cpu[len(by_cpu) // 2]  # the run with the median CPU time (an actual run, not a mean of two)
    spread = " ".join(f"{s.cpu:.3f}" for s in samples)
    return median, f"{name:<34} {median.wall:9.3f} {median.cpu:9.3f}   {spread}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--files", type=int, default=100_000, help="number of files (default 100000)")
    parser.add_argument("--per-folder", type=int, default=1000, help="files per folder (default 1000)")
    parser.add_argument("--runs", type=int, default=5, help="timed scans (default 5)")
    parser.add_argument("--root", type=Path, default=None, help="tree location (default: $TMPDIR/fta-bench-scan-N)")
    parser.add_argument("--remove", action="store_true", help="delete the tree afterwards")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.files < 1 or args.per_folder < 1 or args.runs < 1:
        parser.error("--files, --per-folder and --runs must be positive")
    root: Path = args.root or Path(tempfile.gettempdir()) / f"fta-bench-scan-{args.files}"
    root = root.resolve()

    print(f"machine: nproc={os.cpu_count()}  cpu={cpu_model()}")
    print(f"python:  {platform.python_implementation()} {platform.python_version()}  kernel={platform.release()}")
    rss_start = peak_rss_mib()
    try:
        found = len(scan_source(root, DEFAULT_EXCLUDE)) if root.is_dir() else -1
        if found == args.files:
            print(f"tree: reusing {root} ({found} files)")
        else:
            build_tree(root, args.files, args.per_folder)
        folders = sum(1 for _ in root.glob("*/*"))
        print(f"tree: {root}: {args.files} files of 1 byte, {folders} leaf folders")

        cold: Sample | None = None
        if drop_caches():
            cold, _ = measure(lambda: scan_source(root, DEFAULT_EXCLUDE))
        scan_source(root, DEFAULT_EXCLUDE)  # warm-up

        scans: list[Sample] = []
        snapshot: dict[str, FileSig] = {}
        for _ in range(args.runs):
            sample, snapshot = measure(lambda: scan_source(root, DEFAULT_EXCLUDE))
            if len(snapshot) != args.files:
                raise SystemExit(f"scan found {len(snapshot)} files, expected {args.files}")
            scans.append(sample)
        rss_after_scans = peak_rss_mib()

        tracker = StabilityTracker(stable_seconds=120)
        first, delta = measure(lambda: tracker.update(snapshot))
        if len(delta.discovered) != args.files:
            raise SystemExit(f"first update discovered {len(delta.discovered)}, expected {args.files}")
        updates: list[Sample] = []
        for _ in range(args.runs):
            again = fresh_copy(snapshot)
            sample, delta = measure(lambda: tracker.update(again))  # noqa: B023 - called at once
            if delta.discovered or delta.changed or delta.vanished:
                raise SystemExit("steady-state update reported changes")
            updates.append(sample)
        rss_after_updates = peak_rss_mib()

        tracemalloc.start()
        kept = scan_source(root, DEFAULT_EXCLUDE)
        snapshot_bytes, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del kept

        print(f"\n{args.runs} runs each, warm cache; the row is the run with the median CPU time")
        print(f"{'measure':<34} {'wall s':>9} {'CPU s':>9}   CPU s of each run")
        scan_median, line = row(f"scan_source ({args.files} files)", scans)
        print(line)
        update_median, line = row("StabilityTracker.update (steady)", updates)
        print(line)
        print(f"{'StabilityTracker.update (first)':<34} {first.wall:9.3f} {first.cpu:9.3f}")
        cycle_cpu = scan_median.cpu + update_median.cpu
        print(f"{'cycle = scan + steady update':<34} {scan_median.wall + update_median.wall:9.3f} {cycle_cpu:9.3f}")
        if cold is not None:
            print(f"{'scan_source, caches dropped':<34} {cold.wall:9.3f} {cold.cpu:9.3f}   (one run)")
        else:
            print("(no cold-cache run: dropping caches is not permitted)")
        print(
            f"\npeak RSS (ru_maxrss): {rss_start:.0f} MiB after imports, {rss_after_scans:.0f} MiB after the scans,"
            f" {rss_after_updates:.0f} MiB with the tracker filled and updated"
        )
        print(f"one snapshot holds {snapshot_bytes / 1024**2:.1f} MiB of Python objects (tracemalloc)")
        verdict = "PASS" if scan_median.cpu < GOAL_CPU_SECONDS else "MISS"
        goal = f"scan_source < {GOAL_CPU_SECONDS:g} s CPU for {args.files} files"
        print(f"\ngoal: {goal}: {scan_median.cpu:.3f} s -> {verdict}")
        cycle_verdict = "PASS" if cycle_cpu < GOAL_CPU_SECONDS else "MISS"
        print(f"      (whole cycle scan + update: {cycle_cpu:.3f} s CPU -> {cycle_verdict})")
        if args.json is not None:
            figures = {
                "benchmark": "scan_speed",
                "files": args.files,
                "scan_cpu_s": scan_median.cpu,
                "scan_wall_s": scan_median.wall,
                "update_cpu_s": update_median.cpu,
                "cold_scan_wall_s": cold.wall if cold is not None else None,
                "peak_rss_mib": rss_after_updates,
                "goal_pass": scan_median.cpu < GOAL_CPU_SECONDS,
            }
            args.json.write_text(json.dumps(figures, indent=2) + "\n")
    finally:
        if args.remove and root.exists():
            shutil.rmtree(root)
            print(f"removed {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
