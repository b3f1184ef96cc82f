"""End to end under Prefect: the seed's phase 2-4 tests with the File Growth Simulator and seconds-scale settings."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.artifacts import Artifact
from prefect.testing.utilities import prefect_test_harness

from flows import api_state
from flows.api_state import CopyRecord, status_key
from flows.config import copy_io_in_process, run_in_process
from flows.transfer_once import transfer_once
from flows.watch_folder import watch_folder
from fta import copier as copier_module
from fta.copier import hash_file
from fta.copy_io import CopyIO
from fta.simulator import GrowthPlan, simulate
from fta.sourcelock import entries_in, lock_folder
from fta.stop_switch import StopSwitch
from tests.conftest import HOLD_THE_SOURCE, Mount, mount_tmpfs, other_process, unmount, write
from tests.copy_ios import AfterEachChunk, HoldAfterEachChunk, SlowDisk
from tests.prefect_helpers import (
    AGENT,
    Background,
    fast_config,
    files_below,
    kind,
    message,
    runs_by_name,
    state_name,
    temp_files,
    wait_until,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=180):
        yield


def run_once(config: dict[str, Any]) -> Any:
    return run_in_process(transfer_once, config, return_state=True)


def test_growing_file_is_copied_only_when_finished(source: Path, destination: Path, stop: StopSwitch) -> None:
    clip = source / "cam1" / "clip.mxf"
    growing = threading.Event()
    seen_early: list[str] = []

    def record() -> None:
        growing.set()
        plan = GrowthPlan(size=2_000_000, seconds=2.0, ticks_per_second=10)

        def watch_destination(done: int, total: int) -> None:
            if (destination / "cam1" / "clip.mxf").exists() and done < total:
                seen_early.append(f"copied at {done} of {total} bytes")

        simulate([clip], plan, progress=watch_destination)

    writer = threading.Thread(target=record)
    writer.start()
    growing.wait(10)
    wait_until(clip.exists, what="the recording to start")
    watcher = Background(
        lambda: run_in_process(watch_folder, fast_config(source, destination), stop=stop, return_state=True)
    )
    writer.join(30)
    wait_until(lambda: not clip.exists(), what="the source to be moved")
    stop.request()
    state = watcher.result()
    assert state.is_completed()
    assert seen_early == []
    final = destination / "cam1" / "clip.mxf"
    assert final.stat().st_size == 2_000_000
    runs = runs_by_name(state.state_details.flow_run_id)
    assert [kind(r) for r in runs["copy cam1/clip.mxf"]] == ["COMPLETED"]
    assert hash_file(final) in message(runs["copy cam1/clip.mxf"][0])


class SwitchIntervalSeen(CopyIO):
    """Notes the GIL switch interval in force whenever the copy reads a chunk."""

    def __init__(self) -> None:
        self.seen: set[float] = set()

    def read_chunk(self, fd: int, buffer: memoryview) -> int:
        self.seen.add(sys.getswitchinterval())
        return super().read_chunk(fd, buffer)


def test_copies_run_with_a_short_gil_switch_interval_restored_after_the_run(source: Path, destination: Path) -> None:
    from flows.transfer_loop import GIL_SWITCH_SECONDS

    before = sys.getswitchinterval()
    assert before != GIL_SWITCH_SECONDS  # Python's default: the run changes it
    write(source / "clip.mxf", os.urandom(64 * 1024))
    io = SwitchIntervalSeen()
    with copy_io_in_process(io):
        state = run_once(fast_config(source, destination))
    assert state.is_completed() and (destination / "clip.mxf").exists()
    assert io.seen == {GIL_SWITCH_SECONDS}
    assert sys.getswitchinterval() == before


def test_name_conflict_gives_suffix_1(source: Path, destination: Path) -> None:
    write(destination / "video.mxf", b"yesterday's recording")
    write(source / "video.mxf", b"today's recording")
    state = run_once(fast_config(source, destination))
    assert state.is_completed()
    assert (destination / "video.mxf").read_bytes() == b"yesterday's recording"
    assert (destination / "video_1.mxf").read_bytes() == b"today's recording"
    assert not (source / "video.mxf").exists()


def test_missing_destination_holds_the_run_and_fails_nothing(source: Path, tmp_path: Path, fta_log: list[str]) -> None:
    nas = tmp_path / "nas"
    write(source / "a.mxf", os.urandom(10_000))
    write(source / "b" / "c.mxf", os.urandom(10_000))
    once = Background(lambda: run_once(fast_config(source, nas)))
    wait_until(lambda: any("destination unavailable" in line for line in fta_log), what="the guard to hold")
    wait_until(lambda: sum("destination unavailable" in line for line in fta_log) >= 3, what="a few guard checks")
    assert (source / "a.mxf").exists() and (source / "b" / "c.mxf").exists()
    assert not nas.exists()  # never created by the agent
    nas.mkdir()
    state = once.result()
    assert state.is_completed()
    assert sorted(files_below(nas)) == ["a.mxf", "b/c.mxf"]
    runs = runs_by_name(state.state_details.flow_run_id)
    assert all(kind(r) != "FAILED" for named in runs.values() for r in named)
    assert [kind(r) for r in runs["wait for destination"]] == ["COMPLETED"]


def test_per_file_error_is_retried_then_failed_while_others_move(source: Path, destination: Path) -> None:
    write(destination / "clips", b"a file where the agent needs a folder")
    write(source / "clips" / "a.mxf", b"blocked")
    write(source / "other.mxf", b"fine")
    state = run_once(fast_config(source, destination, max_retry_attempts=2))
    assert state.is_failed()
    assert "clips/a.mxf" in (state.message or "")
    assert (source / "clips" / "a.mxf").read_bytes() == b"blocked"
    assert (destination / "other.mxf").read_bytes() == b"fine"
    runs = runs_by_name(state.state_details.flow_run_id, expect=2)
    failed = runs["copy clips/a.mxf"]
    assert [kind(r) for r in failed] == ["FAILED"]
    assert failed[0].run_count == 3  # the first attempt and max_retry_attempts=2 retries
    assert f"{destination / 'clips'} is not a folder" in message(failed[0])
    assert [kind(r) for r in runs["copy other.mxf"]] == ["COMPLETED"]


def test_corrupt_copy_is_detected_kept_and_retried(source: Path, destination: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    write(source / "a.mxf", data)
    spoiled: list[int] = []

    class FlipFirstWrite(CopyIO):
        def write_chunk(self, fd: int, chunk: memoryview) -> None:
            if not spoiled:
                spoiled.append(len(chunk))
                bad = bytearray(chunk)
                bad[0] ^= 0xFF
                chunk = memoryview(bad)
            super().write_chunk(fd, chunk)

    with copy_io_in_process(FlipFirstWrite()):
        state = run_once(fast_config(source, destination))
    assert state.is_completed()
    assert spoiled  # the fault was injected
    assert (destination / "a.mxf").read_bytes() == data
    assert temp_files(destination) == []
    run = runs_by_name(state.state_details.flow_run_id)["copy a.mxf"]
    assert len(run) == 1 and run[0].run_count == 2


def test_stop_mid_copy_then_restart_gives_exactly_one_verified_copy(
    source: Path, destination: Path, stop: StopSwitch
) -> None:
    data = os.urandom(8 * 1024 * 1024 + 4096)  # two chunks: the stop lands between them
    write(source / "rec" / "long.mxf", data)
    held = HoldAfterEachChunk()  # the stop lands while the copy waits
    watcher = Background(
        lambda: run_in_process(watch_folder, fast_config(source, destination), stop=stop, return_state=True), io=held
    )
    assert held.in_copy.wait(30)
    assert temp_files(destination)  # a copy is under way
    stop.request()
    held.release.set()
    watcher.result()
    assert temp_files(destination) == []
    assert not (destination / "rec" / "long.mxf").exists()
    assert (source / "rec" / "long.mxf").read_bytes() == data
    state = run_once(fast_config(source, destination))
    assert state.is_completed()
    assert files_below(destination) == {"rec/long.mxf": hash_file(write(source.parent / "expected", data))}
    assert not (source / "rec" / "long.mxf").exists()


def test_a_stop_asked_while_the_watch_run_starts_is_not_lost(source: Path, destination: Path, stop: StopSwitch) -> None:
    """SIGTERM can come before the loop has started (the flow run is still starting): the loop stops at once."""
    write(source / "waits.mxf", b"stays in the source")
    stop.request()  # no loop runs yet in this process
    watcher = Background(
        lambda: run_in_process(watch_folder, fast_config(source, destination), stop=stop, return_state=True)
    )
    try:
        state = watcher.result()
    finally:
        stop.request()  # a lost stop would leave the watch running into the next tests
    assert state.is_completed()
    assert (source / "waits.mxf").exists() and files_below(destination) == {}


def test_a_sweep_on_a_source_another_run_moves_ends_at_once_and_touches_nothing(
    source: Path, destination: Path, fta_log: list[str]
) -> None:
    """The watch run of `fta up` moves the source; a manual transfer-once of it must not move the same files too."""
    from prefect import flow
    from prefect.artifacts import create_table_artifact

    from flows.api_state import read_table

    theirs = [{"file": "cam/rec.mxf", "status": "Failed", "error": "the other run's"}]

    @flow
    def the_other_runs_status() -> None:
        create_table_artifact(theirs, key=status_key(AGENT))

    the_other_runs_status()
    write(source / "a.mxf", b"the other run's to move")
    with other_process(HOLD_THE_SOURCE, str(source)):
        state = run_once(fast_config(source, destination))
    assert state.is_failed()
    assert "being moved by another run on this machine (pid " in (state.message or "")
    assert (source / "a.mxf").exists() and files_below(destination) == {}
    assert read_table(status_key(AGENT))[0] == theirs  # the other run's status is not replaced by an empty one
    assert not any("agent started" in line for line in fta_log)


@contextmanager
def watch_kept_out(source: Path, destination: Path, fta_log: list[str], stop: StopSwitch) -> Iterator[Background]:
    """A watch started while another process holds its source, once it says it waits (stopped if the block fails)."""
    with other_process(HOLD_THE_SOURCE, str(source)):
        watcher = Background(
            lambda: run_in_process(watch_folder, fast_config(source, destination), stop=stop, return_state=True)
        )
        try:
            wait_until(lambda: any("waiting for it to end" in line for line in fta_log), what="the watch to wait")
            yield watcher
        except BaseException:
            stop.request()
            watcher.result()
            raise


def test_a_watch_waits_for_the_run_holding_its_source_then_moves(
    source: Path, destination: Path, fta_log: list[str], stop: StopSwitch
) -> None:
    """A watch started while another run still holds the source (a predecessor stopping) waits, then takes over."""
    write(source / "a.mxf", b"moved by whoever holds the source")
    with watch_kept_out(source, destination, fta_log, stop) as watcher:
        assert (source / "a.mxf").exists() and files_below(destination) == {}
    try:
        wait_until(lambda: not (source / "a.mxf").exists(), what="the move once the source was free")
    finally:
        stop.request()
    assert watcher.result().is_completed()
    assert (destination / "a.mxf").read_bytes() == b"moved by whoever holds the source"
    assert source not in [entry.source for entry in entries_in(lock_folder())]  # let go of, its file removed


def test_a_watch_stopped_while_it_waits_for_its_source_ends_cleanly(
    source: Path, destination: Path, fta_log: list[str], stop: StopSwitch
) -> None:
    write(source / "a.mxf", b"stays")
    with watch_kept_out(source, destination, fta_log, stop) as watcher:
        stop.request()
        assert watcher.result(timeout=30).is_completed()
    assert (source / "a.mxf").exists() and files_below(destination) == {}


def test_restart_after_a_crash_makes_no_duplicate(source: Path, destination: Path) -> None:
    """A crash after the rename (copy in place, source still there) plus a stale temp file from a killed copy."""
    from fta.paths import agent_id, temp_name
    from fta.settings import load_settings

    data = os.urandom(100_000)
    write(source / "a.mxf", data)
    write(destination / "a.mxf", data)
    settings = load_settings(fast_config(source, destination), env_file=None)
    stale = write(destination / "b" / temp_name("b.mxf", agent_id(settings.source_path)), b"half")
    write(source / "b" / "b.mxf", b"the whole of b")
    state = run_once(fast_config(source, destination))
    assert state.is_completed()
    assert not stale.exists()
    assert files_below(destination) == {
        "a.mxf": hash_file(destination / "a.mxf"),
        "b/b.mxf": hash_file(destination / "b" / "b.mxf"),
    }
    assert (destination / "b" / "b.mxf").read_bytes() == b"the whole of b"
    assert list(source.rglob("*.mxf")) == []


def test_two_hundred_files_arrive_exactly_once(source: Path, destination: Path) -> None:
    expected = {}
    for i in range(200):
        path = write(source / f"d{i % 7}" / f"clip{i:03d}.mxf", os.urandom(1000 + i))
        expected[path.relative_to(source).as_posix()] = hash_file(path)
    state = run_once(fast_config(source, destination, max_concurrent_copies=4))
    assert state.is_completed()
    assert files_below(destination) == expected
    assert [p for p in source.rglob("*") if p.is_file()] == []
    runs = runs_by_name(state.state_details.flow_run_id, expect=200)
    copies = {name: named for name, named in runs.items() if name.startswith("copy ")}
    assert len(copies) == 200
    assert all(len(named) == 1 and kind(named[0]) == "COMPLETED" for named in copies.values())
    artifact = Artifact.get(status_key(AGENT))
    assert artifact is not None


def test_destination_vanishing_mid_copy_defers_the_file_until_it_is_back(
    source: Path, tmpfs: Mount, fta_log: list[str]
) -> None:
    nas = tmpfs("64m")
    data = os.urandom(8 * 1024 * 1024 + 4096)  # two chunks: the share goes away between them
    write(source / "clips" / "a.mxf", data)
    held = HoldAfterEachChunk()  # the share goes while the copy waits
    once = Background(lambda: run_once(fast_config(source, nas, require_mount=True)), io=held)
    assert held.in_copy.wait(30)
    unmount(nas)
    held.release.set()
    wait_until(lambda: any("transfer deferred" in line for line in fta_log), what="the copy to be deferred")
    wait_until(lambda: any("destination unavailable" in line for line in fta_log), what="the guard to hold")
    assert list(nas.iterdir()) == []  # nothing was written into the bare mount point
    assert (source / "clips" / "a.mxf").read_bytes() == data
    mount_tmpfs(nas, "64m")
    remounted = time.monotonic()
    wait_until((nas / "clips" / "a.mxf").exists, what="the copy after the remount")
    resumed = time.monotonic() - remounted
    print(f"\nresumed {resumed:.2f} s after the remount (global_retry_delay 0.2 s + poll 0.1 s + an 8 MiB copy)")
    state = once.result()
    assert state.is_completed()
    assert (nas / "clips" / "a.mxf").read_bytes() == data
    assert temp_files(nas) == []
    runs = runs_by_name(state.state_details.flow_run_id, expect=3)
    outcomes = sorted(state_name(r) for r in runs["copy clips/a.mxf"])
    assert outcomes == ["Completed", "Deferred"]
    assert all(kind(r) != "FAILED" for named in runs.values() for r in named)


def test_source_changing_during_the_copy_waits_and_is_copied_whole(source: Path, destination: Path) -> None:
    clip = write(source / "a.mxf", os.urandom(8 * 1024 * 1024 + 4096))
    appended: list[int] = []

    def recorder_appends_once(chunk: memoryview) -> None:
        if not appended:
            with clip.open("ab") as f:
                appended.append(f.write(b"the end of the recording"))

    with copy_io_in_process(AfterEachChunk(recorder_appends_once)):
        state = run_once(fast_config(source, destination))
    expected = 8 * 1024 * 1024 + 4096 + appended[0]
    assert state.is_completed()
    assert (destination / "a.mxf").stat().st_size == expected
    assert (destination / "a.mxf").read_bytes().endswith(b"the end of the recording")
    runs = runs_by_name(state.state_details.flow_run_id, expect=2)
    assert sorted(state_name(r) for r in runs["copy a.mxf"]) == ["Changed", "Completed"]


def test_api_trouble_never_loses_a_file(source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows import status_publisher

    real_submit = ThreadPoolTaskRunner.submit
    refused: list[str] = []

    def submit_refused_once(self: Any, task: Any, parameters: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not refused:
            refused.append(parameters["rel"])
            raise RuntimeError("503 Service Unavailable")
        return real_submit(self, task, parameters, *args, **kwargs)

    def artifact_refused(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(ThreadPoolTaskRunner, "submit", submit_refused_once)
    monkeypatch.setattr(status_publisher, "create_table_artifact", artifact_refused)
    write(source / "a.mxf", b"a")
    write(source / "b.mxf", b"b")
    state = run_once(fast_config(source, destination))
    assert state.is_completed()
    assert refused == ["a.mxf"]
    assert sorted(files_below(destination)) == ["a.mxf", "b.mxf"]


def test_copy_task_runs_carry_no_tag_of_their_own_their_flow_run_the_agents(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tag on a task run makes Prefect ask the server for a concurrency slot at every run (a write transaction on
    SQLite, limit or not): the copies carry none, though the run was started inside the agent's tag (as ``fta
    watch`` starts it), and the agent's tag stays on their flow run."""
    from prefect.client.orchestration import get_client

    from fta.settings import agent_tag, default_agent_name

    write(source / "a.mxf", os.urandom(1000))
    write(source / "cam" / "b.mxf", os.urandom(1000))
    state = run_once(fast_config(source, destination))
    assert state.is_completed()
    runs = runs_by_name(state.state_details.flow_run_id, expect=2)
    copies = [run for name, named in runs.items() if name.startswith("copy ") for run in named]
    assert sorted(run.name for run in copies) == ["copy a.mxf", "copy cam/b.mxf"]
    assert [run.tags for run in copies] == [[], []]
    opened: list[object] = []

    def counted_get_client(*args: Any, **kwargs: Any) -> Any:
        opened.append(kwargs)
        return get_client(*args, **kwargs)  # the one flows.api_state imports

    monkeypatch.setattr(api_state, "get_client", counted_get_client)
    record = CopyRecord(state.state_details.flow_run_id)  # what pacing asks the server (flows.backlog)
    assert record.ended_copies() == 2
    assert record.ended_copies() == 2
    stored: list[datetime | None] = [None]

    def newest_stored() -> bool:
        stored[0] = record.newest_event(600)
        return stored[0] is not None

    wait_until(newest_stored, what="the copies' events stored")
    assert len(opened) == 1  # one client for every question: a client per question builds a TLS context each time
    record.close()
    assert record.ended_copies() == 2 and len(opened) == 2  # closed, the next question opens another
    record.close()
    ends = [run.end_time for run in copies if run.end_time is not None]
    assert stored[0] is not None and len(ends) == 2
    assert abs((stored[0] - max(ends)).total_seconds()) < 5  # the last copy's Completed event
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.tags == [agent_tag(default_agent_name())]


def test_copies_at_once_are_capped_and_the_shared_limit_is_set(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.client.orchestration import get_client

    lock = threading.Lock()
    active, peak = [0], [0]
    real_copy = copier_module.Copier.copy
    pairs = threading.Barrier(2)  # each copy waits for a second one: they overlap wherever the cap lets them

    def counted(self: copier_module.Copier, *args: Any, **kwargs: Any) -> Any:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            with contextlib.suppress(threading.BrokenBarrierError):  # alone for 10 s: the cap let only one run
                pairs.wait(timeout=10)
            return real_copy(self, *args, **kwargs)
        finally:
            with lock:
                active[0] -= 1

    monkeypatch.setattr(copier_module.Copier, "copy", counted)
    for i in range(8):
        write(source / f"f{i}.mxf", os.urandom(1000))
    config = fast_config(source, destination, max_concurrent_copies=2, shared_limit_tag="fta-test-nas", shared_limit=3)
    state = run_once(config)
    assert state.is_completed()
    assert peak[0] == 2
    assert len(files_below(destination)) == 8
    runs = runs_by_name(state.state_details.flow_run_id, expect=8)
    assert [r.tags for name, named in runs.items() if name.startswith("copy ") for r in named] == [["fta-test-nas"]] * 8
    with get_client(sync_client=True) as client:
        assert client.read_concurrency_limit_by_tag("fta-test-nas").concurrency_limit == 3


def test_guard_emits_unavailable_and_restored_events(source: Path, tmp_path: Path, fta_log: list[str]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    nas = tmp_path / "nas"
    write(source / "a.mxf", b"a")
    once = Background(lambda: run_once(fast_config(source, nas)))
    wait_until(lambda: any("destination unavailable" in line for line in fta_log), what="the guard to hold")
    nas.mkdir()
    assert once.result().is_completed()
    resource = f"fta.destination.{AGENT}"
    names = ["fta.destination.unavailable", "fta.destination.restored"]
    seen: dict[str, dict[str, Any]] = {}

    def both_recorded() -> bool:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                filter=EventFilter(event=EventNameFilter(name=names), resource=EventResourceFilter(id=[resource])),
                limit=50,  # the server refuses the client's default of 100
            )
        seen.update({event.event: event.payload for event in page.events})
        return set(seen) == set(names)

    wait_until(both_recorded, what="both guard events")
    assert "does not exist" in seen["fta.destination.unavailable"]["reason"]
    assert seen["fta.destination.restored"]["unavailable_seconds"] >= 0


def test_long_copy_has_a_progress_artifact(source: Path, destination: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType, FlowRunFilter, FlowRunFilterId

    write(source / "long.mxf", os.urandom(2 * 8 * 1024 * 1024 + 1))  # three chunks
    with copy_io_in_process(SlowDisk(0.6)):  # a slow NAS: the copy takes well over a second
        state = run_once(fast_config(source, destination))
    assert state.is_completed()
    flow_run = FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
    progress = ArtifactFilter(type=ArtifactFilterType(any_=["progress"]))
    found: list[Any] = []

    def recorded() -> bool:
        with get_client(sync_client=True) as client:
            found[:] = client.read_artifacts(artifact_filter=progress, flow_run_filter=flow_run)
        return bool(found) and found[0].data == 100.0

    wait_until(recorded, what="the progress artifact at 100 %")
    assert found[0].description == "copy long.mxf"
    assert found[0].task_run_id is not None


def test_same_name_again_later_is_copied_again_and_audited(source: Path, destination: Path, tmp_path: Path) -> None:
    """No caching: a second file of the same name in a later run is moved too; every transfer has an audit line."""
    log_file = tmp_path / "agent.log"
    config = fast_config(source, destination, log_format="json", log_file_path=str(log_file))
    write(source / "a.mxf", b"first take")
    assert run_once(config).is_completed()
    write(source / "a.mxf", b"second take")
    assert run_once(config).is_completed()
    assert (destination / "a.mxf").read_bytes() == b"first take"
    assert (destination / "a_1.mxf").read_bytes() == b"second take"
    import json

    audits = [line for line in map(json.loads, log_file.read_text().splitlines()) if line.get("audit")]
    assert [(a["outcome"], Path(a["destination"]).name, a["size"]) for a in audits] == [
        ("copied", "a.mxf", 10),
        ("copied", "a_1.mxf", 11),
    ]
    assert all(a["checksum"].startswith("xxh3_128:") and a["source"].endswith("a.mxf") for a in audits)


def test_file_events_bring_finished_files_over_long_before_the_next_poll(
    source: Path, destination: Path, stop: StopSwitch
) -> None:
    """Scans every 10 minutes: only file events (a change, then the stable time running out) can move these files
    within the deadlines below; a recording that grows meanwhile is still copied only when finished."""
    config = fast_config(source, destination, polling_interval_seconds=600)
    write(source / "first.mxf", b"found by the first scan, settled by a deadline scan")
    watcher = Background(lambda: run_in_process(watch_folder, config, stop=stop, return_state=True))
    wait_until(lambda: (destination / "first.mxf").exists(), timeout=30, what="the stable time's deadline scan")
    clip = source / "cam2" / "clip.mxf"
    seen_early: list[str] = []

    def watch_destination(done: int, total: int) -> None:
        if (destination / "cam2" / "clip.mxf").exists() and done < total:
            seen_early.append(f"copied at {done} of {total} bytes")

    simulate([clip], GrowthPlan(size=500_000, seconds=1.0, ticks_per_second=10), progress=watch_destination)
    wait_until(lambda: not clip.exists(), timeout=30, what="a change event and a deadline scan")
    stop.request()
    state = watcher.result()
    assert state.is_completed()
    assert seen_early == []
    assert (destination / "cam2" / "clip.mxf").stat().st_size == 500_000
    assert not (source / "first.mxf").exists()
