"""No two transfer loops on a machine whose folders overlap: the registry, its holders, their end however it comes."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fta.sourcelock import ENTRY_PREFIX, REGISTRY, SourceLock, entries_in

# Another run on this machine: holds (source, destination) in the lock folder until its stdin closes.
HOLD = """
import sys
from pathlib import Path
from fta.sourcelock import SourceLock
folder, source, destination = (Path(arg) for arg in sys.argv[1:4])
lock = SourceLock(source, destination, folder=folder)
print("ready" if lock.acquire() and lock.held else "busy " + lock.holder(), flush=True)
sys.stdin.read()
lock.release()
"""

# One try as another process: prints held / busy <why> / unlocked.
TRY = """
import sys
from pathlib import Path
from fta.sourcelock import SourceLock
folder, source, destination = (Path(arg) for arg in sys.argv[1:4])
if len(sys.argv) > 4:
    sys.stdin.readline()  # the race: every contender is started, then all go at once
lock = SourceLock(source, destination, folder=folder)
got = lock.acquire()
print("unlocked" if lock.unlocked else "held" if got else "busy " + lock.holder(), flush=True)
if len(sys.argv) > 4:
    sys.stdin.read()
lock.release()
"""

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


@pytest.fixture
def locks(public_tmp: Path) -> Path:
    """A lock folder of the test's own, open to every user like /run/lock (sticky, writable for all)."""
    folder = public_tmp / "locks"
    folder.mkdir()
    folder.chmod(0o1777)
    return folder


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """Folders for the overlap cases, readable by every user."""
    root = tmp_path / "tree"
    for name in ("in", "in/cam1", "nas", "nas/in", "other", "nas2"):
        (root / name).mkdir(parents=True)
    for folder in (tmp_path, root):
        folder.chmod(0o755)
    return root


@contextmanager
def holder(
    locks: Path, source: Path, destination: Path, as_user: list[str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``source`` -> ``destination`` until the block ends."""
    command = [*(as_user or []), sys.executable, "-c", HOLD, str(locks), str(source), str(destination)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/", env=_env()
    ) as proc:
        assert proc.stdout is not None and proc.stdin is not None
        try:
            said = proc.stdout.readline().strip()
            if as_user and not said:
                pytest.skip("the unprivileged user cannot run this Python or read the project")
            assert said == "ready", said
            yield proc
        finally:
            if proc.poll() is None:
                proc.stdin.close()
            proc.wait(timeout=30)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


def attempt(locks: Path, source: Path, destination: Path, as_user: list[str] | None = None) -> str:
    """What another process finds when it tries to take ``source`` -> ``destination``."""
    command = [*(as_user or []), sys.executable, "-c", TRY, str(locks), str(source), str(destination)]
    done = subprocess.run(command, capture_output=True, text=True, cwd="/", env=_env(), timeout=60)
    if done.returncode != 0:
        if as_user:
            pytest.skip(f"the unprivileged user cannot run this: {done.stderr[-300:]}")
        raise AssertionError(done.stderr)
    return done.stdout.strip()


def needs_root_and_setpriv() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")


# (theirs: source, destination), (ours: source, destination), what the refusal says
OVERLAPS = [
    (("in", "nas"), ("in", "other"), "its source {t}/in is this source"),
    (("in", "nas"), ("in/cam1", "other"), "its source {t}/in contains this source"),
    (("in/cam1", "nas"), ("in", "other"), "its source {t}/in/cam1 lies inside this source"),
    (("in", "nas/in"), ("nas", "other"), "its destination {t}/nas/in lies inside this source"),  # pulls back
    (("in", "nas"), ("nas/in", "other"), "its destination {t}/nas contains this source"),
    (("in", "nas"), ("nas", "other"), "its destination {t}/nas is this source"),
    (("nas", "other"), ("in", "nas"), "its source {t}/nas is this run's destination"),  # the reverse
    (("nas/in", "other"), ("in", "nas"), "its source {t}/nas/in lies inside this run's destination"),
    (("nas", "other"), ("in", "nas/in"), "its source {t}/nas contains this run's destination"),
]


@pytest.mark.parametrize(("theirs", "ours", "why"), OVERLAPS)
def test_an_overlapping_run_in_another_process_keeps_this_one_out(
    locks: Path, tree: Path, theirs: tuple[str, str], ours: tuple[str, str], why: str
) -> None:
    source, destination = tree / ours[0], tree / ours[1]
    lock = SourceLock(source, destination, folder=locks)
    with holder(locks, tree / theirs[0], tree / theirs[1]):
        assert not lock.acquire() and not lock.held
        said = lock.holder()
        assert said.startswith("pid ") and said.endswith(": " + why.format(t=tree)), said
    assert lock.acquire() and lock.held  # the holder ended: the kernel let go of its lock, its entry is gone
    lock.release()
    assert entries_in(locks) == []


@pytest.mark.parametrize(("theirs", "ours"), [(("in", "nas"), ("other", "nas")), (("in", "nas"), ("nas2", "other"))])
def test_runs_whose_folders_are_apart_run_side_by_side(
    locks: Path, tree: Path, theirs: tuple[str, str], ours: tuple[str, str]
) -> None:
    """Two sources delivering to one NAS folder are the normal case; folders apart never wait for each other."""
    with holder(locks, tree / theirs[0], tree / theirs[1]):
        assert attempt(locks, tree / ours[0], tree / ours[1]) == "held"


@pytest.mark.parametrize(("theirs", "ours", "why"), [OVERLAPS[1], OVERLAPS[3], OVERLAPS[6]])
def test_the_runs_of_another_user_and_roots_keep_each_other_out(
    locks: Path, tree: Path, theirs: tuple[str, str], ours: tuple[str, str], why: str
) -> None:
    """The service's run (root) and an operator's run as nobody see each other's entries, whichever came first."""
    needs_root_and_setpriv()
    with holder(locks, tree / theirs[0], tree / theirs[1]):  # root holds; nobody tries
        said = attempt(locks, tree / ours[0], tree / ours[1], AS_NOBODY)
        assert said.startswith("busy pid ") and said.endswith(why.format(t=tree)), said
    with holder(locks, tree / theirs[0], tree / theirs[1], AS_NOBODY):  # nobody holds; root tries
        said = attempt(locks, tree / ours[0], tree / ours[1])
        assert said.startswith("busy pid ") and said.endswith(why.format(t=tree)), said
    assert attempt(locks, tree / ours[0], tree / ours[1], AS_NOBODY) == "held"


def test_a_killed_holder_frees_the_folders_and_its_entry_goes(locks: Path, tree: Path) -> None:
    lock = SourceLock(tree / "in", tree / "other", folder=locks)
    with holder(locks, tree / "in" / "cam1", tree / "nas") as proc:
        assert not lock.acquire()
        assert [entry.source for entry in entries_in(locks)] == [tree / "in" / "cam1"]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        assert lock.acquire()  # its entry is left, but nobody holds it any more
    assert [entry.source for entry in entries_in(locks)] == [tree / "in"]  # the stale one was removed
    lock.release()
    assert entries_in(locks) == []


def test_a_stale_entry_of_another_user_is_ignored_where_it_cannot_be_removed(locks: Path, tree: Path) -> None:
    """Root's run killed with kill -9 leaves its entry in the sticky folder: nobody cannot remove it, nor waits."""
    needs_root_and_setpriv()
    with holder(locks, tree / "in", tree / "nas") as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert len(entries_in(locks)) == 1
    assert attempt(locks, tree / "in", tree / "nas", AS_NOBODY) == "held"
    assert len(entries_in(locks)) == 1  # root's stale entry is still there (nobody's went as it ended)


def test_of_runs_racing_for_overlapping_folders_exactly_one_gets_them(locks: Path, tree: Path) -> None:
    """The registry is examined and the entry made under one flock: two starting at once never both see none."""
    contenders = [("in", "nas"), ("in/cam1", "other"), ("in", "nas2"), ("in/cam1", "nas2")] * 2
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TRY, str(locks), str(tree / source), str(tree / destination), "race"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",
            env=_env(),
        )
        for source, destination in contenders
    ]
    try:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        said = [proc.stdout.readline().strip() for proc in procs if proc.stdout is not None]
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)
            if proc.stdout is not None:
                proc.stdout.close()
    assert said.count("held") == 1, said  # every source above overlaps every other
    assert all(line == "held" or line.startswith("busy pid ") for line in said), said


def test_a_run_takes_over_from_its_own_lock_when_its_folders_change(locks: Path, tree: Path) -> None:
    """An edited configuration (another destination) is checked against the others, never against itself."""
    current = SourceLock(tree / "in", tree / "nas", folder=locks)
    assert current.acquire()
    assert not SourceLock(tree / "in", tree / "other", folder=locks).acquire()  # without the take-over: itself
    fresh = SourceLock(tree / "in", tree / "other", folder=locks, replacing=current)
    assert fresh.acquire()
    current.release()
    assert [(entry.source, entry.destination) for entry in entries_in(locks)] == [(tree / "in", tree / "other")]
    fresh.release()


def test_entries_name_the_holder_and_the_folders_and_are_readable_by_all(locks: Path, tree: Path) -> None:
    lock = SourceLock(tree / "in", tree / "nas", folder=locks)
    assert lock.acquire() and lock.path is not None
    record = json.loads(lock.path.read_text())
    assert record["source"] == str(tree / "in") and record["destination"] == str(tree / "nas")
    assert record["holder"].startswith(f"pid {os.getpid()} on ")
    assert lock.path.stat().st_mode & 0o777 == 0o644
    assert (locks / REGISTRY).stat().st_mode & 0o777 == 0o666
    lock.release()
    assert not lock.path.exists()


def test_the_entry_is_removed_from_the_folder_it_was_made_in(locks: Path, tree: Path, tmp_path: Path) -> None:
    """The entry goes through the lock folder's handle: a folder put in the place of the lock folder's path
    meanwhile (with a file of the entry's name) keeps that file."""
    lock = SourceLock(tree / "in", tree / "nas", folder=locks)
    assert lock.acquire() and lock.path is not None
    name = lock.path.name
    moved = tmp_path / "moved-locks"
    locks.rename(moved)
    locks.mkdir()
    (locks / name).write_text("somebody else's")
    lock.release()
    assert (locks / name).read_text() == "somebody else's"
    assert not (moved / name).exists()
    shutil.rmtree(moved)


def test_planted_files_are_not_followed_nor_block_a_start(locks: Path, tree: Path, tmp_path: Path) -> None:
    """A symlink or a FIFO dressed as an entry is neither followed nor opened for long; a symlinked registry
    is refused (the run goes on without a lock and says so rather than lock or truncate another file)."""
    target = tmp_path / "precious"
    target.write_text("keep")
    (locks / f"{ENTRY_PREFIX}link.lock").symlink_to(target)
    os.mkfifo(locks / f"{ENTRY_PREFIX}fifo.lock")
    lock = SourceLock(tree / "in", tree / "nas", folder=locks)
    assert lock.acquire() and lock.held
    lock.release()
    assert target.read_text() == "keep"
    (locks / REGISTRY).unlink()
    (locks / REGISTRY).symlink_to(target)
    assert SourceLock(tree / "in", tree / "nas", folder=locks).acquire()
    assert target.read_text() == "keep"


def test_where_no_lock_can_be_had_the_loop_goes_on_and_says_so(
    source: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lock = SourceLock(source, folder=tmp_path / "no-such-folder")
    with caplog.at_level(logging.WARNING, logger="fta.sourcelock"):
        assert lock.acquire()
    assert lock.unlocked and not lock.held
    assert any("no lock for" in record.getMessage() for record in caplog.records)
    assert lock.holder() == "unknown"
    lock.release()
    assert not lock.unlocked


def test_the_default_folder_is_shared_by_the_runs_of_the_machine(source: Path, destination: Path) -> None:
    """Without a folder given, runs meet in /run/lock (or the temp folder): two locks on one source exclude."""
    first, second = SourceLock(source, destination), SourceLock(source, destination)
    assert first.acquire() and first.held
    try:
        assert not second.acquire()
        assert second.holder().endswith(f": its source {source} is this source")
    finally:
        first.release()
    assert second.acquire()
    second.release()
