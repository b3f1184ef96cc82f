"""Every benchmark in one command, then one table of the agent next to its peers and the goals.

    sudo python benchmarks/run_all.py [--quick] [--markdown BENCHMARKS.md]
        [--only copier,flow,scan,soak,latency,site,backlog]

Runs the scripts beside this one one after another (never two at once: on a small machine they would measure each
other), each with ``--json`` into a temporary folder, keeps each script's own output in ``<folder>/<name>.txt`` and
prints the combined table. ``--quick`` runs smaller versions (for a first look, not for figures to keep);
``--markdown PATH`` also writes the table with the machine line as Markdown (BENCHMARKS.md keeps the latest).
A script that fails is reported with the end of its output and the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
Rows = list[tuple[str, str, str, str]]  # measure, agent, peers, goal

FULL: dict[str, list[str]] = {
    "copier": ["copier_throughput.py", "--size", "1GiB", "--runs", "5"],
    "flow": ["flow_throughput.py", "--runs", "3"],
    "scan": ["scan_speed.py", "--files", "100000"],
    "soak": ["watch_soak.py", "--files", "10000", "--batch", "500"],
    "latency": ["detection_latency.py", "--files", "20"],
    "site": ["site_throughput.py", "--files", "1000", "--runs", "3"],
    "backlog": ["backlog.py", "--files", "20000"],
}
QUICK: dict[str, list[str]] = {
    "copier": ["copier_throughput.py", "--size", "256MiB", "--runs", "3"],
    "flow": ["flow_throughput.py", "--runs", "1", "--small-files", "400", "--big-size", "64MiB"],
    "scan": ["scan_speed.py", "--files", "20000", "--runs", "3"],
    "soak": ["watch_soak.py", "--files", "1000", "--batch", "250"],
    "latency": ["detection_latency.py", "--files", "6"],
    "site": ["site_throughput.py", "--quick"],
    "backlog": ["backlog.py", "--files", "2000"],
}


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB, Linux {platform.release()}, "
        f"{platform.python_implementation()} {platform.python_version()}"
    )


def run(name: str, argv: list[str], folder: Path) -> dict[str, Any] | None:
    out = folder / f"{name}.json"
    log = folder / f"{name}.txt"
    command = [sys.executable, str(HERE / argv[0]), *argv[1:], "--json", str(out)]
    print(f"== {name}: {' '.join(argv)}", flush=True)
    started = time.monotonic()
    with log.open("w") as sink:
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, cwd=HERE.parent).returncode
    print(f"   {time.monotonic() - started:.0f} s, exit {code}, output in {log}", flush=True)
    if not out.exists():
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print("   no figures; the end of its output:\n     " + "\n     ".join(tail), flush=True)
        return None
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "skipped"}[passed]


def copier_rows(doc: dict[str, Any]) -> Rows:
    people = doc["contenders"]
    size = doc["size_bytes"] / 1024**3
    agent = people["agent"]

    def peer(key: str, label: str) -> str:
        return f"{label} {people[key]['median_s']:.2f} s" if key in people else f"{label}: not run"

    peers = ", ".join(
        peer(key, label) for key, label in (("cp_sync", "cp+sync"), ("rsync", "rsync"), ("rclone", "rclone"))
    )
    goals = "; ".join(f"{g['goal']}: {verdict(g['passed'])} ({g['ratio']})" for g in doc["goals"])
    return [
        (f"1. one {size:g} GiB file, copier", f"{agent['median_s']:.2f} s ({agent['mb_per_s']:.0f} MB/s)", peers, goals)
    ]


def seconds_or_never(value: float | None) -> str:
    """A lag, or the sign that a run's task runs were never all recorded (null in the JSON)."""
    return "NOT all" if value is None else f"{value:.1f} s"


def flow_rows(doc: dict[str, Any]) -> Rows:
    rows: Rows = []
    for scenario in doc["scenarios"].values():
        rate, unit, seconds = scenario["rate"], scenario["rate_unit"], scenario["median_seconds"]
        peers = ", ".join(
            f"{label} {rate[key]:.0f}"
            for key, label in (("rsync", "rsync"), ("rclone", "rclone"), ("cp_sync", "cp"))
            if key in rate
        )
        agent = f"{rate['agent']:.0f} {unit} ({seconds['agent']:.2f} s)"
        if "agent_net" in rate:
            agent += f"; {rate['agent_net']:.0f} without the stable wait"
        recorded = ""
        if "agent_lag_median_seconds" in scenario:
            recorded = (
                f"recorded {seconds_or_never(scenario['agent_lag_median_seconds'])}"
                f" (max {seconds_or_never(scenario['agent_lag_max_seconds'])})"
                f" after the last copy, dropped {sum(scenario['agent_dropped'])}; CPU per file: agent"
                f" {scenario['agent_cpu_ms_per_file']:.1f} ms, server {scenario['server_cpu_ms_per_file']:.1f} ms"
            )
        rows.append((f"2. {scenario['title']}, watch flow", agent, f"{peers} {unit}", recorded))
    goals = "; ".join(f"{g['goal']}: {verdict(g['passed'])} ({g['detail']})" for g in doc["goals"])
    rows.append(("   goals", "", "", goals))
    return rows


def scan_rows(doc: dict[str, Any]) -> Rows:
    agent = f"{doc['scan_cpu_s']:.3f} s CPU ({doc['scan_wall_s']:.3f} s wall), peak RSS {doc['peak_rss_mib']:.0f} MiB"
    goal = f"< 1 s: {verdict(doc['goal_pass'])}"
    return [(f"3. scan of {doc['files']:,} files", agent, "", goal)]


def soak_rows(doc: dict[str, Any]) -> Rows:
    first, last = doc["first"], doc["last"]
    agent = (
        f"RSS {first['rss_mb']:.0f} -> {last['rss_mb']:.0f} MB, median latency {first['median_latency_s']:.2f} ->"
        f" {last['median_latency_s']:.2f} s (batch {first['batch']} -> {last['batch']})"
    )
    return [(f"4. {doc['files']:,} transfers in one watch run", agent, "", f"{doc['arrived']:,} arrived")]


def latency_rows(doc: dict[str, Any]) -> Rows:
    rows: Rows = []
    bounds = doc["bounds_s"]
    timing = f"stable {doc['stable_s']:g} s, poll {doc['poll_s']:g} s"
    limits = f"bound stable+poll {bounds['stable_plus_poll']:g} s, stable+2 poll {bounds['stable_plus_2_poll']:g} s"
    for mode in doc["modes"].values():
        agent = f"median {mode['median_s']:.2f} s, p95 {mode['p95_s']:.2f} s, max {mode['max_s']:.2f} s"
        missed = len(mode["missed"])
        rows.append(
            (
                f"5. last write -> copy start, {mode['label']} ({timing})",
                agent,
                limits,
                f"{mode['arrived']} arrived, {missed} missed",
            )
        )
    return rows


def site_rows(doc: dict[str, Any]) -> Rows:
    rows: Rows = []
    ratios = doc["vs_sqlite_files_per_s"]
    for key, scenario in doc["scenarios"].items():
        agent = (
            f"{scenario['files_per_s']:.0f} files/s ({scenario['files']:,} files in {scenario['median_seconds']:.1f} s)"
        )
        if ratios.get(key) is not None:
            agent += f"; {ratios[key]:.2f} x the single SQLite agent"
        notes = (
            f"recorded {seconds_or_never(scenario['lag_median_seconds'])}"
            f" (max {seconds_or_never(scenario['lag_max_seconds'])}) after the last copy, dropped"
            f" {sum(scenario['dropped'])}; CPU per file (above idle): {site_cpu(key, scenario)}"
        )
        rows.append((f"6. site: {scenario['title']}", agent, "", notes))
    return rows


def site_cpu(key: str, scenario: dict[str, Any]) -> str:
    every, above = scenario["cpu_ms_per_file"], scenario["cpu_ms_per_file_above_idle"]
    parts = [("server", "server"), ("database", "PostgreSQL"), ("agents", "agents")]
    return ", ".join(
        f"{label} {every[name]:.1f} ms ({above[name]:.1f})"
        for name, label in parts
        if name != "database" or key != "sqlite"
    )


def backlog_rows(doc: dict[str, Any]) -> Rows:
    rss, floor = doc["peak_rss_mb"], doc["floor"]
    agent = (
        f"first copy {doc['first_file_seconds']:.1f} s after the start, then {doc['files_per_s_first_to_last']:.0f}"
        f" files/s; source empty after {doc['source_empty_seconds']:.0f} s"
    )
    growth = f"database +{doc['db_growth_per_transfer_files']:.0f} B per transfer"
    if floor is not None:
        growth += f" (Prefect's no-op task run: {floor['growth_per_task_run_files']:.0f} B)"
    notes = f"peak RSS watch run {rss['watch']:.0f} MB, server {rss['server']:.0f} MB; {growth}"
    goals = "; ".join(f"{g['goal']}: {verdict(g['passed'])} ({g['detail']})" for g in doc["goals"])
    return [
        (
            f"7. backlog of {doc['files']:,} x {doc['size_bytes'] // 1024} KiB waiting when fta up starts",
            agent,
            "",
            notes,
        ),
        ("   goals", "", "", goals),
    ]


def extra_arguments(name: str, done: dict[str, dict[str, Any]]) -> list[str]:
    """The backlog's drain is compared with the small-file rate the flow benchmark measured in the same run."""
    small = done.get("flow", {}).get("scenarios", {}).get("small", {}).get("rate", {}).get("agent")
    if name == "backlog" and small:
        return ["--small-file-rate", f"{small:.1f}"]
    return []


TABLES: dict[str, Callable[[dict[str, Any]], Rows]] = {
    "copier": copier_rows,
    "flow": flow_rows,
    "scan": scan_rows,
    "soak": soak_rows,
    "latency": latency_rows,
    "site": site_rows,
    "backlog": backlog_rows,
}


def markdown(rows: Rows, header: str) -> str:
    lines = [header, "", "| measure | agent | peers / bounds | goal / notes |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a first look")
    parser.add_argument("--only", default=",".join(FULL), help="comma-separated: " + ",".join(FULL))
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table as Markdown here")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the outputs (default: a temp folder)")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in FULL]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    folder = args.keep or Path(tempfile.mkdtemp(prefix="fta-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    header = f"Machine: {machine()}; {time.strftime('%Y-%m-%d')}{' (quick)' if args.quick else ''}"
    print(header, flush=True)
    rows: Rows = []
    failed = []
    done: dict[str, dict[str, Any]] = {}
    for name in chosen:
        doc = run(name, (QUICK if args.quick else FULL)[name] + extra_arguments(name, done), folder)
        if doc is None:
            failed.append(name)
            rows.append((name, "failed", "", f"see {folder / (name + '.txt')}"))
            continue
        done[name] = doc
        rows += TABLES[name](doc)
    table = markdown(rows, header)
    print("\n" + table)
    if args.markdown is not None:
        args.markdown.write_text(table)
        print(f"wrote {args.markdown}")
    print(f"outputs of each benchmark: {folder}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
