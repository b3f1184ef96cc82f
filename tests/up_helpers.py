"""Helpers for the tests that run ``fta up`` (and ``fta watch``) as an operator would, and read its API over HTTP."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fta.procstat import child_pids


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any Prefect setting (no API URL, no credential), plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "FTA_"))}
    env |= {"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    return env | extra


def up_options(source: Path, destination: Path, data: Path, port: int) -> list[str]:
    options = ["--source", str(source), "--destination", str(destination), "--data-path", str(data)]
    options += ["--server-port", str(port), "--file-stable-time-seconds", "0.5", "--polling-interval-seconds", "0.2"]
    return [*options, "--log-file-path", "", "--metrics-port", "0", "--storage-warning-gb", "0"]


def start_up(
    options: list[str], output: Path, env: dict[str, str] | None = None, command: str = "up"
) -> subprocess.Popen[bytes]:
    """``fta up`` in a process group of its own (as a terminal or a service manager starts it), output to a file."""
    with output.open("wb") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", command, *options],
            env=env if env is not None else clean_env(),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_fta(env: dict[str, str], *argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *argv], env=env, capture_output=True, text=True, timeout=timeout
    )


def call(url: str, credential: str | None = None, body: Any = None, timeout: float = 20) -> tuple[int, Any]:
    """(status, decoded JSON or None) of a plain HTTP request, with basic auth when ``credential`` is given."""
    headers = {"Content-Type": "application/json"}
    if credential is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(credential.encode()).decode()
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            raw = answer.read()
            return int(answer.status), json.loads(raw) if raw else None
    except urllib.error.HTTPError as refused:
        return int(refused.code), None


def flow_runs(api: str, credential: str, flow_name: str) -> list[dict[str, Any]]:
    """The flow runs of the flow ``flow_name``, as the API has them."""
    body = {"flows": {"name": {"any_": [flow_name]}}, "limit": 50}
    status, runs = call(f"{api}/flow_runs/filter", credential, body)
    assert status == 200, status
    return list(runs)


def processes_below(pid: int) -> list[int]:
    """Every descendant of ``pid`` still alive (children, their children, ...)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in child_pids(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def stop_agent(process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    """SIGTERM, as systemd stops it; killed when it has not ended within ``timeout`` (the test fails on its output)."""
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    finally:
        if process.poll() is None:
            process.kill()
