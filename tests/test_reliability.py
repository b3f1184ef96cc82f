"""Faults and restarts: nothing lost, nothing duplicated, nothing half-written left behind."""

from __future__ import annotations

import functools
import io
import os
import random
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from flows.config import run_in_process
from fta.copier import hash_file
from fta.paths import temp_owner
from tests.conftest import Mount, write
from tests.prefect_helpers import slow_agent, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SLOW_AGENT = slow_agent(0.02)


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    from prefect.settings import PREFECT_API_URL

    with prefect_test_harness(server_startup_timeout=180):
        yield str(PREFECT_API_URL.value())


@pytest.fixture
def own_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Prefect server for one heavy test alone, so its load cannot spill into the other tests."""
    import socket as sockets

    from deployments.local_server import LocalServer

    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = LocalServer(tmp_path / "server", port)
    server.start(timeout=180)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", server.credential)  # the agents below inherit the environment
    try:
        yield server.api_url
    finally:
        server.stop()


def agent(command: str, source: Path, destination: Path, api: str) -> subprocess.Popen[bytes]:
    options = ["--source", str(source), "--destination", str(destination), "--file-stable-time-seconds", "0.2"]
    options += ["--polling-interval-seconds", "0.1", "--log-file-path", "", "--metrics-port", "0"]
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "WARNING"}
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_AGENT, command, *options],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.timeout(900)
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    source: Path, destination: Path, own_server: str
) -> None:
    api_url = own_server
    rng = random.Random(20261125)
    originals: dict[str, str] = {}
    for i in range(200):
        path = write(source / f"cam{i % 5}" / f"clip{i:03d}.mxf", rng.randbytes(rng.randint(1, 400_000)))
        originals[path.relative_to(source).as_posix()] = hash_file(path)
    kills_mid_copy = 0

    def moved() -> int:
        return sum(1 for p in destination.rglob("*.mxf") if p.is_file() and not temp_owner(p.name))

    def reached(count: int) -> bool:
        return moved() >= count

    for _ in range(20):
        process = agent("watch", source, destination, api_url)
        # Pull the plug after a random number of further files arrived: often in the middle of the next copy.
        target = min(len(originals), moved() + rng.randint(1, 12))
        wait_until(functools.partial(reached, target), timeout=120, what=f"{target} files moved")
        kills_mid_copy += any(temp_owner(p.name) for p in destination.rglob("*"))
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    final = agent("once", source, destination, api_url)
    assert final.wait(300) == 0
    arrived = {p.relative_to(destination).as_posix(): hash_file(p) for p in destination.rglob("*") if p.is_file()}
    left = {p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
    assert left == set()  # everything moved in the end
    assert arrived == originals  # every byte verified at the destination, no _1 duplicate, no temp file
    print(
        f"\n200 files, 20 kills (-9), {kills_mid_copy} of them with a copy under way; "
        f"{sum(p.stat().st_size for p in destination.rglob('*') if p.is_file())} bytes compared"
    )


HOSTILE = [
    "caf\u00e9.mxf",  # NFC
    "cafe\u0301.mxf",  # NFD: another name on Linux, another file
    "with space.mxf",
    "new\nline.mxf",
    "-rf.mxf",
    "--help",
    "100%d%s%n.mxf",
    "Clip.mxf",
    "clip.mxf",  # differs only in case
    "'quote\"s'.mxf",
    "tab\there.mxf",
    "\u65e5\u672c\u8a9e\u306e\u540d\u524d.mxf",
]


def test_hostile_names_and_special_files(source: Path, destination: Path, tmp_path: Path, api_url: str) -> None:
    import socket as sockets

    from flows.transfer_once import transfer_once
    from tests.prefect_helpers import fast_config

    expected: dict[str, str] = {}
    for index, name in enumerate(HOSTILE):
        path = write(source / "odd" / name, f"content {index}".encode())
        expected[f"odd/{name}"] = hash_file(path)
    deep = source.joinpath(*[f"level{i}" for i in range(40)]) / "deep.mxf"
    expected[deep.relative_to(source).as_posix()] = hash_file(write(deep, b"deep"))
    long_name = "x" * 251 + ".mxf"  # 255 bytes; the destination already has a different file of that name
    expected[long_name] = hash_file(write(source / long_name, b"new long"))
    write(destination / long_name, b"old long")
    outside = write(tmp_path / "outside" / "secret.mxf", b"not ours")
    (source / "link.mxf").symlink_to(outside)
    (source / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    os.mkfifo(source / "pipe.mxf")
    unix = sockets.socket(sockets.AF_UNIX)
    unix.bind(str(source / "sock.mxf"))
    write(source / "empty.mxf", b"")

    state = run_in_process(transfer_once, fast_config(source, destination), return_state=True)
    unix.close()
    assert state.is_completed(), state.message
    arrived = {p.relative_to(destination).as_posix(): p for p in destination.rglob("*") if p.is_file()}
    shortened = [name for name in arrived if name.endswith("_1.mxf") and name.startswith("xxx")]
    assert len(shortened) == 1 and len(shortened[0].encode()) == 255
    assert arrived.pop(shortened[0]).read_bytes() == b"new long"
    assert arrived.pop(long_name).read_bytes() == b"old long"
    expected.pop(long_name)
    assert {name: hash_file(path) for name, path in arrived.items()} == expected
    assert outside.read_bytes() == b"not ours"  # symlinks are not followed, nor moved
    left = sorted(p.name for p in source.rglob("*") if not p.is_dir() or p.is_symlink())
    assert left == ["empty.mxf", "link.mxf", "linkdir", "pipe.mxf", "sock.mxf"]


def test_unreadable_file_fails_alone_as_an_unprivileged_agent(public_tmp: Path, own_server: str) -> None:
    """Root reads everything, so the agent runs as ``nobody`` here: the one file it cannot read stays and fails."""
    import shutil

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run the agent as an unprivileged user")
    base = public_tmp / "unprivileged"
    source, destination, home = base / "source", base / "destination", base / "home"
    for folder in (source, destination, home):
        folder.mkdir(parents=True)
    readable = write(source / "ok.mxf", b"readable")
    secret = write(source / "secret.mxf", b"root only")
    secret.chmod(0o600)
    base.chmod(0o755)
    for path in (source, destination, home):
        path.chmod(0o777)
    readable.chmod(0o666)
    options = ["--source", str(source), "--destination", str(destination), "--file-stable-time-seconds", "0.2"]
    options += ["--polling-interval-seconds", "0.1", "--log-file-path", "", "--metrics-port", "0"]
    options += ["--max-retry-attempts", "1", "--retry-delay-seconds", "0"]
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable]
    can_run = subprocess.run(
        [*as_nobody, "-c", "import deployments.cli, flows, prefect"], capture_output=True, cwd=home
    )
    if can_run.returncode != 0:
        pytest.skip(f"nobody cannot run this Python or read the project: {can_run.stderr.decode()[-300:]}")
    env = {**os.environ, "PREFECT_API_URL": own_server, "PREFECT_HOME": str(home), "HOME": str(home)}
    command = [*as_nobody, "-m", "deployments.cli", "once", *options]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=home)
    assert done.returncode == 1, done.stderr[-3000:]  # a file failed
    assert (destination / "ok.mxf").exists(), done.stderr[-3000:]
    assert (destination / "ok.mxf").read_bytes() == b"readable"
    assert not readable.exists()
    assert secret.read_bytes() == b"root only"  # kept, untouched
    assert not (destination / "secret.mxf").exists()
    assert "EACCES" in done.stderr or "Permission denied" in done.stderr


@pytest.mark.timeout(600)
def test_prefect_server_down_and_back_loses_nothing(source: Path, destination: Path, tmp_path: Path) -> None:
    import socket as sockets

    from deployments.local_server import LocalServer

    with sockets.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = LocalServer(tmp_path / "server", port)
    server.start(timeout=180)
    options = ["--source", str(source), "--destination", str(destination), "--file-stable-time-seconds", "0.3"]
    options += ["--polling-interval-seconds", "0.2", "--log-file-path", "", "--metrics-port", "0"]
    env = {**os.environ, **server.client_environment(), "PREFECT_HOME": str(tmp_path / "home")}
    log_path = tmp_path / "agent.out"
    with (
        log_path.open("wb") as out,
        subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "watch", *options], env=env, stdout=out, stderr=subprocess.STDOUT
        ) as agent,
    ):
        try:
            write(source / "before.mxf", b"before")
            wait_until((destination / "before.mxf").exists, timeout=120, what="a file moved with the server up")
            server.stop()
            quick = {**env, "PREFECT_CLIENT_MAX_RETRIES": "0"}
            health = subprocess.run(
                [sys.executable, "-m", "deployments.cli", "health"],
                env=quick,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert health.returncode == 3 and health.stdout.startswith("FTA UNKNOWN - "), health.stdout
            write(source / "during.mxf", b"during")  # no task run can be recorded now: it waits in the source
            server.start(timeout=180)
            write(source / "after.mxf", b"after")
            wait_until((destination / "after.mxf").exists, timeout=180, what="a file moved after the restart")
            wait_until((destination / "during.mxf").exists, timeout=180, what="the file written during the outage")
            assert agent.poll() is None  # the watch run rode out the outage
        finally:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
                agent.wait(120)
            server.stop()
    moved = {p.name for p in destination.iterdir()}
    waiting = {p.name for p in source.iterdir()}
    assert moved | waiting == {"before.mxf", "during.mxf", "after.mxf"} and not moved & waiting
    assert not any(temp_owner(name) for name in moved)


def test_full_destination_waits_and_resumes_when_space_is_freed(
    source: Path, tmpfs: Mount, api_url: str, fta_log: list[str]
) -> None:
    from deployments.cli import main
    from flows.storage_report import storage_report
    from flows.transfer_once import transfer_once
    from tests.prefect_helpers import Background, fast_config, runs_by_name

    nas = tmpfs("4m")
    other = write(nas / "other.bin", os.urandom(3 * 1024 * 1024))  # another writer's file: 1 MiB left
    data = os.urandom(2 * 1024 * 1024)  # twice what is left
    write(source / "big.mxf", data)
    config = fast_config(source, nas, storage_warning_gb=1)
    once = Background(lambda: run_in_process(transfer_once, config, return_state=True))
    wait_until(lambda: any("destination full" in line for line in fta_log), what="the guard to wait for room")
    run_in_process(storage_report, config)
    status = main(["storage", "--json"], out=io.StringIO())
    assert status in (1, 2)  # WARNING (low) or ERROR (no room for even the probe)
    assert (source / "big.mxf").read_bytes() == data and list(nas.iterdir()) == [other]
    other.unlink()  # space is freed
    state = once.result(timeout=120)
    assert state.is_completed()
    assert (nas / "big.mxf").read_bytes() == data
    runs = runs_by_name(state.state_details.flow_run_id, expect=2)
    assert all(run.state is not None and run.state.type.value != "FAILED" for named in runs.values() for run in named)


def test_a_file_larger_than_the_whole_destination_fails_alone(source: Path, tmpfs: Mount, api_url: str) -> None:
    """It can never fit: it fails with the reason and stays; the files behind it move (no endless wait for room)."""
    from flows.transfer_once import transfer_once
    from tests.prefect_helpers import fast_config, message, runs_by_name, state_name

    nas = tmpfs("1m")
    huge = os.urandom(2 * 1024 * 1024)
    write(source / "huge.mxf", huge)
    write(source / "small.mxf", b"fits")
    state = run_in_process(transfer_once, fast_config(source, nas, max_retry_attempts=1), return_state=True)
    assert state.is_failed()
    assert (nas / "small.mxf").read_bytes() == b"fits" and not (source / "small.mxf").exists()
    assert (source / "huge.mxf").read_bytes() == huge and not (nas / "huge.mxf").exists()
    flow_run_id = state.state_details.flow_run_id
    assert flow_run_id is not None
    runs = runs_by_name(flow_run_id, expect=2)
    [failed] = runs["copy huge.mxf"]
    assert state_name(failed) == "Failed" and "larger than the whole destination filesystem" in message(failed)


def test_writer_pausing_longer_than_the_stable_time_loses_nothing(
    source: Path, destination: Path, api_url: str
) -> None:
    """A recorder keeps its file open through a long pause: the file waits; it is moved whole once closed."""
    from flows.watch_folder import watch_folder
    from fta.stop_switch import StopSwitch
    from tests.conftest import other_process
    from tests.prefect_helpers import Background, fast_config

    clip = source / "rec.mxf"
    code = (
        "import sys\n"
        "f = open(sys.argv[1], 'ab')\n"
        "f.write(b'first half ' * 1000); f.flush()\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"  # the pause lasts until the test ends it
        "f.write(b'second half' * 1000); f.close()\n"
    )
    stop = StopSwitch()
    watcher = Background(
        lambda: run_in_process(watch_folder, fast_config(source, destination), stop=stop, return_state=True)
    )
    try:
        with other_process(code, str(clip)):
            pause = threading.Event()
            pause.wait(3 * 0.5 + 1.0)  # the recorder's pause: longer than the stable time (0.5 s), several scans
            assert list(destination.iterdir()) == []  # nothing moved while the recorder holds the file
        # The rename into place comes before the source's deletion: wait for both.
        wait_until(lambda: (destination / "rec.mxf").exists() and not clip.exists(), what="the recording moved")
        assert (destination / "rec.mxf").read_bytes() == b"first half " * 1000 + b"second half" * 1000
    finally:
        stop.request()
        watcher.result()


def test_source_deleted_during_its_copy_is_simply_gone(source: Path, destination: Path, api_url: str) -> None:
    from flows.config import copy_io_in_process
    from flows.transfer_once import transfer_once
    from tests.copy_ios import AfterEachChunk
    from tests.prefect_helpers import fast_config

    clip = write(source / "a.mxf", os.urandom(8 * 1024 * 1024 + 10))
    operator_deletes_it = AfterEachChunk(lambda chunk: clip.unlink(missing_ok=True))
    with copy_io_in_process(operator_deletes_it):
        state = run_in_process(transfer_once, fast_config(source, destination), return_state=True)
    assert state.is_completed()
    assert list(destination.iterdir()) == []  # no partial copy under any name
