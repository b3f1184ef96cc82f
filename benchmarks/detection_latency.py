"""Detection latency: from a file's last write to the start of its copy, polling only and with file events.

    python benchmarks/detection_latency.py [--stable 1.0] [--poll 1.0] [--files 20] [--mode both] [--json PATH]

For each mode (``file_events=False``: polling only; ``file_events=True``: woken by file events, still polling) it
runs the ``watch_folder`` flow, and so ``flows.transfer_loop.TransferLoop``, in-process (a temporary local Prefect
server unless PREFECT_API_URL is set) on fresh source and destination folders. One untimed warm-up file proves the
loop is running; then ``--files`` files are written one after another, each after a pause drawn uniformly from zero
to one polling interval (so its phase relative to the scans is random), in ``--chunks`` chunks ``--chunk-gap``
seconds apart. The last write's moment is ``time.monotonic()`` after the file is closed; the copy's start is
``time.monotonic()`` when ``fta.copier.Copier.copy`` is entered for that file (wrapped in this process), so the
latency includes the scan, the stable time, the submission and the start of the ``copy_file`` task run.

Polling alone bounds it by ``stable + 2 x poll`` (a change is seen up to one interval late, and readiness is checked
up to one interval after the stable time has passed); with file events it should stay near ``stable``.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from copier_throughput import cpu_model

from flows.config import run_in_process
from flows.watch_folder import watch_folder
from fta.copier import Copier
from fta.simulator import parse_size
from fta.stop_switch import StopSwitch

MODES = {"off": ("polling only", False), "on": ("file events", True)}
STARTUP_TIMEOUT = 180.0  # the first flow run starts the temporary server
GRACE_SECONDS = 30.0  # after the polling bound, before a file counts as missed


class CopyStarts:
    """Wraps ``Copier.copy`` for the whole process: the monotonic time of the first call per relative path."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self._lock = threading.Lock()

    def install(self) -> None:
        original: Callable[..., Any] = Copier.copy
        starts = self

        @functools.wraps(original)
        def copy(copier: Copier, rel: str, *args: Any, **kwargs: Any) -> Any:
            now = time.monotonic()
            with starts._lock:
                starts.times.setdefault(rel, now)
            return original(copier, rel, *args, **kwargs)

        setattr(Copier, "copy", copy)  # noqa: B010 - a plain assignment to a method is what mypy refuses

    def reset(self) -> None:
        with self._lock:
            self.times.clear()


@dataclass
class ModeResult:
    label: str
    file_events: bool
    latencies: list[float] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    events_thread: bool = False  # a watch thread of fta.events was running during the run

    def summary(self) -> dict[str, Any]:
        values = sorted(self.latencies)
        return {
            "label": self.label,
            "file_events": self.file_events,
            "median_s": round(statistics.median(values), 3) if values else None,
            "p95_s": round(nearest_rank(values, 0.95), 3) if values else None,
            "max_s": round(values[-1], 3) if values else None,
            "arrived": len(values),
            "missed": self.missed,
            "events_thread_seen": self.events_thread,
        }


def nearest_rank(ordered: list[float], fraction: float) -> float:
    """The smallest value with at least ``fraction`` of the values at or below it."""
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def write_in_chunks(path: Path, size: int, chunks: int, gap: float) -> float:
    """Write ``size`` random bytes in ``chunks`` writes ``gap`` seconds apart; the monotonic time after close."""
    payload = os.urandom(size)
    step = max(1, math.ceil(size / chunks))
    with path.open("wb") as handle:
        for offset in range(0, size, step):
            if offset:
                time.sleep(gap)
            handle.write(payload[offset : offset + step])
            handle.flush()
    return time.monotonic()


def arrived(source: Path, destination: Path, rel: str, size: int) -> bool:
    target = destination / rel
    return not (source / rel).exists() and target.is_file() and target.stat().st_size == size


def events_thread_running() -> bool:
    return any(thread.name == "fta-events" and thread.is_alive() for thread in threading.enumerate())


def run_mode(key: str, args: argparse.Namespace, size: int, starts: CopyStarts, rng: random.Random) -> ModeResult:
    label, file_events = MODES[key]
    result = ModeResult(label, file_events)
    work = Path(tempfile.mkdtemp(prefix=f"fta-latency-{key}-"))
    source, destination = work / "source", work / "destination"
    source.mkdir()
    destination.mkdir()
    config: dict[str, Any] = {
        "source_path": str(source),
        "destination_path": str(destination),
        "file_stable_time_seconds": args.stable,
        "polling_interval_seconds": args.poll,
        "file_events": file_events,
        "log_file_path": "",
        "log_level": "WARNING",
        "metrics_port": 0,
        "max_concurrent_copies": 4,
    }
    outcome: list[Any] = []
    stop = StopSwitch()
    runner = threading.Thread(
        target=lambda: outcome.append(run_in_process(watch_folder, config, stop=stop, return_state=True)),
        name="watch",
        daemon=True,
    )
    runner.start()
    try:
        warm_up = "warm-up.bin"
        write_in_chunks(source / warm_up, size, 1, 0.0)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not arrived(source, destination, warm_up, size):
            if time.monotonic() > deadline or not runner.is_alive():
                raise SystemExit(f"{label}: the warm-up file was not moved ({outcome[0] if outcome else 'running'})")
            time.sleep(0.05)
        result.events_thread = events_thread_running()
        starts.reset()
        written: dict[str, float] = {}
        for number in range(args.files):
            time.sleep(rng.uniform(0.0, args.poll))  # a random phase relative to the scans
            rel = f"clip{number:03d}.mxf"
            written[rel] = write_in_chunks(source / rel, size, args.chunks, args.chunk_gap)
        result.events_thread = result.events_thread or events_thread_running()
        deadline = time.monotonic() + args.stable + 2 * args.poll + GRACE_SECONDS
        waiting = set(written)
        while waiting and time.monotonic() < deadline:
            waiting = {rel for rel in waiting if not arrived(source, destination, rel, size)}
            time.sleep(0.05)
        for rel, last_write in written.items():
            started = starts.times.get(rel)
            if rel in waiting or started is None:
                result.missed.append(rel)
            else:
                result.latencies.append(started - last_write)
    finally:
        stop.request()
        runner.join(120)
        shutil.rmtree(work, ignore_errors=True)
    return result


def report(results: list[ModeResult], args: argparse.Namespace) -> None:
    print(f"\n{'mode':<14} {'files':>5} {'median s':>9} {'p95 s':>7} {'max s':>7}")
    for result in results:
        row = result.summary()
        if row["median_s"] is None:
            print(f"{result.label:<14} {0:>5} {'-':>9} {'-':>7} {'-':>7}")
            continue
        print(f"{result.label:<14} {row['arrived']:>5} {row['median_s']:9.3f} {row['p95_s']:7.3f} {row['max_s']:7.3f}")
    once, twice = args.stable + args.poll, args.stable + 2 * args.poll
    print(f"bounds: stable + poll = {once:g} s; stable + 2 x poll = {twice:g} s (polling only stays below the second)")
    for result in results:
        expected = result.summary()["arrived"] + len(result.missed)
        if result.missed:
            print(f"arrived ({result.label}): {expected - len(result.missed)} of {expected}; MISSED: {result.missed}")
        else:
            print(f"arrived ({result.label}): {expected} of {expected}, none missed")
        if result.file_events and not result.events_thread:
            print(f"note ({result.label}): no file-events watch thread ran: the loop does not use file_events, so")
            print("      these are polling figures")


def write_json(path: Path, results: list[ModeResult], args: argparse.Namespace, size: int) -> None:
    document = {
        "benchmark": "detection_latency",
        "stable_s": args.stable,
        "poll_s": args.poll,
        "files": args.files,
        "size_bytes": size,
        "chunks": args.chunks,
        "bounds_s": {"stable_plus_poll": args.stable + args.poll, "stable_plus_2_poll": args.stable + 2 * args.poll},
        "modes": {key: result.summary() for key, result in zip(args.modes, results, strict=True)},
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "kernel": platform.release()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--stable", type=float, default=1.0, help="file_stable_time_seconds (default 1.0)")
    parser.add_argument("--poll", type=float, default=1.0, help="polling_interval_seconds (default 1.0)")
    parser.add_argument("--files", type=int, default=20, help="files per mode (default 20)")
    parser.add_argument("--size", default="1MiB", help="size of each file (default 1MiB)")
    parser.add_argument("--chunks", type=int, default=4, help="writes per file (default 4)")
    parser.add_argument("--chunk-gap", type=float, default=0.05, help="seconds between two writes (default 0.05)")
    parser.add_argument("--mode", choices=["both", "off", "on"], default="both", help="file events off, on or both")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random pauses (default: random)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    if args.stable <= 0 or args.poll <= 0 or args.files < 1 or args.chunks < 1 or args.chunk_gap < 0:
        parser.error("--stable and --poll must be > 0, --files and --chunks >= 1, --chunk-gap >= 0")
    args.modes = ["off", "on"] if args.mode == "both" else [args.mode]
    size = parse_size(args.size)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(f"machine: nproc={os.cpu_count()}  cpu={cpu_model()}")
    print(f"python:  {platform.python_implementation()} {platform.python_version()}  kernel={platform.release()}")
    print(
        f"stable {args.stable:g} s, poll {args.poll:g} s; {args.files} file(s) of {size} bytes per mode in"
        f" {args.chunks} chunk(s) {args.chunk_gap:g} s apart; seed {seed}"
    )
    print(f"Prefect API: {os.environ.get('PREFECT_API_URL') or 'temporary local server'}", flush=True)
    starts = CopyStarts()
    starts.install()
    rng = random.Random(seed)
    results = []
    for key in args.modes:
        print(f"running: {MODES[key][0]} ...", flush=True)
        results.append(run_mode(key, args, size, starts, rng))
    report(results, args)
    if args.json is not None:
        write_json(args.json, results, args, size)
    return 1 if any(result.missed for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
