"""Final names without overwriting: every strategy of the fallback chain, and the chain itself."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from fta import renamer
from fta.renamer import STRATEGIES, NoReplaceMover, Strategy
from tests.conftest import write


def at(strategy: Strategy, temp: Path, final: Path) -> None:
    """Call a strategy on two paths of one folder, through that folder's handle."""
    fd = os.open(temp.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        strategy(fd, temp.name, final.name)
    finally:
        os.close(fd)


@pytest.mark.parametrize(("name", "strategy"), STRATEGIES, ids=[name for name, _ in STRATEGIES])
def test_each_strategy_moves_and_refuses_to_overwrite(tmp_path: Path, name: str, strategy: Strategy) -> None:
    temp = write(tmp_path / ".a.tmp", b"new")
    final = tmp_path / "a.mxf"
    at(strategy, temp, final)
    assert final.read_bytes() == b"new"
    assert not temp.exists()
    other = write(tmp_path / ".b.tmp", b"other")
    with pytest.raises(FileExistsError):
        at(strategy, other, final)
    assert final.read_bytes() == b"new"
    assert other.read_bytes() == b"other"


def _unsupported(code: int) -> Strategy:
    def strategy(folder: int, temp: str, final: str) -> None:
        raise OSError(code, os.strerror(code))

    return strategy


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM])
def test_unsupported_strategy_falls_back_and_is_remembered(
    tmp_path: Path, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def first(folder: int, temp: str, final: str) -> None:
        calls.append("first")
        _unsupported(code)(folder, temp, final)

    mover = NoReplaceMover([("first", first), ("link", renamer.link_then_unlink)])
    with caplog.at_level(logging.INFO, logger="fta.renamer"):
        mover.move(write(tmp_path / ".a", b"1"), tmp_path / "a")
        mover.move(write(tmp_path / ".b", b"2"), tmp_path / "b")
    assert calls == ["first"]  # not tried again once known to be unsupported
    assert mover.in_use == "link"
    assert (tmp_path / "a").read_bytes() == b"1" and (tmp_path / "b").read_bytes() == b"2"
    assert sum("'link'" in r.getMessage() for r in caplog.records) == 1
    assert any("not supported" in r.getMessage() for r in caplog.records)


def test_a_real_error_is_not_taken_for_unsupported(tmp_path: Path) -> None:
    mover = NoReplaceMover([("first", _unsupported(errno.EIO)), ("link", renamer.link_then_unlink)])
    with pytest.raises(OSError) as caught:
        mover.move(write(tmp_path / ".a", b"1"), tmp_path / "a")
    assert caught.value.errno == errno.EIO
    assert not (tmp_path / "a").exists()


def test_the_whole_chain_down_to_plain_rename(tmp_path: Path) -> None:
    mover = NoReplaceMover(
        [
            ("renameat2", _unsupported(errno.EINVAL)),
            ("link", _unsupported(errno.EPERM)),
            ("rename", renamer.check_then_rename),
        ]
    )
    mover.move(write(tmp_path / ".a", b"1"), tmp_path / "a")
    assert mover.in_use == "rename"
    with pytest.raises(FileExistsError):
        mover.move(write(tmp_path / ".b", b"2"), tmp_path / "a")
    assert (tmp_path / "a").read_bytes() == b"1"


def test_last_strategy_error_propagates_even_if_it_looks_unsupported(tmp_path: Path) -> None:
    mover = NoReplaceMover([("only", _unsupported(errno.EINVAL))])
    with pytest.raises(OSError) as caught:
        mover.move(write(tmp_path / ".a", b"1"), tmp_path / "a")
    assert caught.value.errno == errno.EINVAL


def test_copies_finding_a_strategy_unsupported_at_once_drop_it_once(tmp_path: Path) -> None:
    """Three copies fail with the first strategy together: the chain loses that one only, and all three move."""
    together = threading.Barrier(3, timeout=10)

    def unsupported_for_all_at_once(folder: int, temp: str, final: str) -> None:
        together.wait()
        _unsupported(errno.EINVAL)(folder, temp, final)

    class SlowHandler(logging.Handler):  # a slow log line widens the window between the check and the drop
        def emit(self, record: logging.LogRecord) -> None:
            time.sleep(0.05)

    mover = NoReplaceMover(
        [
            ("first", unsupported_for_all_at_once),
            ("link", renamer.link_then_unlink),
            ("rename", renamer.check_then_rename),
        ]
    )
    handler = SlowHandler()
    logging.getLogger("fta.renamer").addHandler(handler)
    errors: list[BaseException] = []

    def move(n: int) -> None:
        try:
            mover.move(write(tmp_path / f".{n}", b"%d" % n), tmp_path / f"{n}.mxf")
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=move, args=(n,)) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        logging.getLogger("fta.renamer").removeHandler(handler)
    assert errors == []
    assert mover.in_use == "link"  # the atomic strategy, not the last resort
    assert sorted(p.name for p in tmp_path.glob("*.mxf")) == ["0.mxf", "1.mxf", "2.mxf"]
    assert not list(tmp_path.glob(".[0-9]"))  # no temp file left


def test_the_last_resort_is_atomic_between_the_copies_of_one_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies want the same free name with check-then-rename: one gets it, the other hears it is taken."""
    other_checked = threading.Event()
    first_check = threading.Lock()
    real_taken = renamer.name_taken

    def taken_then_linger(folder: int, name: str) -> bool:
        answer = real_taken(folder, name)
        if first_check.acquire(blocking=False):  # the first copy lingers between its check and its rename
            other_checked.wait(1.0)  # long enough for the other copy's check, if nothing keeps it out
        else:
            other_checked.set()
        return answer

    monkeypatch.setattr(renamer, "name_taken", taken_then_linger)
    outcomes: dict[str, str] = {}

    def move(label: str) -> None:
        try:
            at(renamer.check_then_rename, write(tmp_path / f".{label}", label.encode()), tmp_path / "clip_1.mxf")
            outcomes[label] = "placed"
        except FileExistsError:
            outcomes[label] = "taken"

    threads = [threading.Thread(target=move, args=(label,)) for label in ("x", "y")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes.values()) == ["placed", "taken"]
    placed = next(label for label, outcome in outcomes.items() if outcome == "placed")
    taken = next(label for label, outcome in outcomes.items() if outcome == "taken")
    assert (tmp_path / "clip_1.mxf").read_bytes() == placed.encode()
    assert (tmp_path / f".{taken}").read_bytes() == taken.encode()  # kept, to go to the next name


def test_a_link_made_whose_answer_was_lost_counts_as_done(tmp_path: Path) -> None:
    """NFS: the server made the link, the reply got lost, the retransmitted call says EEXIST for our own file."""
    temp = write(tmp_path / ".a.tmp", b"recording")
    os.link(temp, tmp_path / "a.mxf")  # what the server did before its answer got lost
    at(renamer.link_then_unlink, temp, tmp_path / "a.mxf")
    assert not temp.exists()
    assert (tmp_path / "a.mxf").read_bytes() == b"recording"
    assert sorted(p.name for p in tmp_path.glob("a*")) == ["a.mxf"]  # no a_1.mxf for the same bytes


def test_default_chain_uses_renameat2_on_linux(tmp_path: Path) -> None:
    mover = NoReplaceMover()
    mover.move(write(tmp_path / ".a", b"1"), tmp_path / "a")
    assert mover.in_use == "renameat2"


def test_renameat2_missing_from_libc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(renamer, "_renameat2", None)
    with pytest.raises(OSError) as caught:
        at(renamer.rename_noreplace, write(tmp_path / ".a", b"1"), tmp_path / "a")
    assert caught.value.errno == errno.ENOSYS
    mover = NoReplaceMover()
    mover.move(tmp_path / ".a", tmp_path / "a")
    assert mover.in_use == "link"


def test_folder_fsync(tmp_path: Path) -> None:
    NoReplaceMover().fsync_folder(tmp_path)  # works on a local filesystem


def test_folder_fsync_unsupported_is_noted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def refuse(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", refuse)
    mover = NoReplaceMover()
    with caplog.at_level(logging.WARNING, logger="fta.renamer"):
        mover.fsync_folder(tmp_path)
        mover.fsync_folder(tmp_path)
    assert len(calls) == 1
    assert sum("cannot fsync a folder" in r.getMessage() for r in caplog.records) == 1


def test_folder_fsync_real_error_propagates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError) as caught:
        NoReplaceMover().fsync_folder(tmp_path)
    assert caught.value.errno == errno.EIO


@pytest.mark.parametrize(("name", "strategy"), STRATEGIES, ids=[name for name, _ in STRATEGIES])
def test_a_folder_swapped_for_a_symlink_cannot_redirect_a_rename(tmp_path: Path, name: str, strategy: Strategy) -> None:
    """The folder's handle was opened; then its path became a symlink to another folder holding the same names.
    Every strategy still renames inside the folder it opened, and the other folder is not touched."""
    real, outside = tmp_path / "dst" / "cam1", tmp_path / "outside"
    write(real / ".a.tmp", b"new")
    write(outside / ".a.tmp", b"outside temp")
    fd = os.open(real, os.O_RDONLY | os.O_DIRECTORY)
    try:
        real.rename(tmp_path / "dst" / "cam1-aside")
        real.symlink_to(outside, target_is_directory=True)
        strategy(fd, ".a.tmp", "a.mxf")
    finally:
        os.close(fd)
    assert (tmp_path / "dst" / "cam1-aside" / "a.mxf").read_bytes() == b"new"
    assert sorted(p.name for p in outside.iterdir()) == [".a.tmp"]
    assert (outside / ".a.tmp").read_bytes() == b"outside temp"


def test_move_by_paths_refuses_a_symlinked_folder(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / ".a", b"outside")
    (tmp_path / "cam1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OSError) as caught:
        NoReplaceMover().move(tmp_path / "cam1" / ".a", tmp_path / "cam1" / "a")
    assert caught.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert sorted(p.name for p in outside.iterdir()) == [".a"]


def test_folder_fsync_of_a_handle_leaves_it_open(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        NoReplaceMover().fsync_folder(fd)
        os.fstat(fd)  # still open: the caller closes its own handle
    finally:
        os.close(fd)
