"""Soak: many transfers in ONE watch_folder run; does memory stay flat, does per-file latency hold?

    python benchmarks/watch_soak.py [--files 10000] [--batch 500] [--size 4KiB]

Feeds the running watch flow batches of small files and waits for each batch to be moved. After every batch it
prints the process RSS, the batch's files/s and its median latency (file written -> source gone); at the end the
first and last batches side by side. Uses a temporary local Prefect server unless PREFECT_API_URL is set.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.config import run_in_process
from flows.watch_folder import watch_folder
from fta.simulator import parse_size
from fta.stop_switch import StopSwitch


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--size", default="4KiB")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    size = parse_size(args.size)
    work = Path(tempfile.mkdtemp(prefix="fta-soak-"))
    source, destination = work / "source", work / "destination"
    source.mkdir()
    destination.mkdir()
    config: dict[str, Any] = {
        "source_path": str(source),
        "destination_path": str(destination),
        "file_stable_time_seconds": 0.2,
        "polling_interval_seconds": 0.2,
        "log_file_path": "",
        "log_level": "WARNING",
        "max_concurrent_copies": 4,
    }
    outcome: list[Any] = []
    stop = StopSwitch()
    runner = threading.Thread(
        target=lambda: outcome.append(run_in_process(watch_folder, config, stop=stop, return_state=True))
    )
    started = time.monotonic()
    runner.start()
    payload = os.urandom(size)
    rows: list[tuple[int, int, float, float, float]] = []
    print(f"{args.files} files of {size} bytes in batches of {args.batch}; RSS at start {rss_mb():.0f} MB", flush=True)
    print(f"{'batch':>5} {'moved':>7} {'RSS MB':>7} {'files/s':>8} {'median latency s':>17}", flush=True)
    done = 0
    batch_no = 0
    while done < args.files:
        batch_no += 1
        count = min(args.batch, args.files - done)
        folder = source / f"b{batch_no:04d}"
        folder.mkdir()
        written: dict[Path, float] = {}
        for i in range(count):
            path = folder / f"clip{i:05d}.mxf"
            path.write_bytes(payload)
            written[path] = time.monotonic()
        t0 = time.monotonic()
        latencies: list[float] = []
        while written:
            time.sleep(0.05)
            now = time.monotonic()
            for path in [p for p in written if not p.exists()]:
                latencies.append(now - written.pop(path))
            if now - t0 > 600:
                raise SystemExit(f"batch {batch_no} did not finish in 600 s ({len(written)} left)")
        seconds = time.monotonic() - t0
        done += count
        rows.append((batch_no, done, rss_mb(), count / seconds, statistics.median(latencies)))
        b, moved, rss, rate, latency = rows[-1]
        print(f"{b:>5} {moved:>7} {rss:>7.0f} {rate:>8.1f} {latency:>17.2f}", flush=True)
    stop.request()
    runner.join(120)
    total = time.monotonic() - started
    arrived = sum(1 for p in destination.rglob("*") if p.is_file())
    print(f"\n{arrived} of {args.files} files arrived in {total:.0f} s; flow state: {outcome[0] if outcome else '?'}")
    first, last = rows[min(1, len(rows) - 1)], rows[-1]
    print(f"RSS after batch {first[0]}: {first[2]:.0f} MB; after batch {last[0]}: {last[2]:.0f} MB")
    print(f"median latency batch {first[0]}: {first[4]:.2f} s; batch {last[0]}: {last[4]:.2f} s")
    if args.json is not None:
        keys = ("batch", "moved", "rss_mb", "files_per_s", "median_latency_s")
        figures = {
            "benchmark": "watch_soak",
            "files": args.files,
            "arrived": arrived,
            "first": dict(zip(keys, first, strict=True)),
            "last": dict(zip(keys, last, strict=True)),
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
