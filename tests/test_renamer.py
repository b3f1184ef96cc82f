"""Final names without overwriting: every strategy of the fallback chain, and the chain itself."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from fta import renamer
from fta.renamer import STRATEGIES, NoReplaceMover, Strategy
from tests.conftest import write


@pytest.mark.parametrize(("name", "strategy"), STRATEGIES, ids=[name for name, _ in STRATEGIES])
def test_each_strategy_moves_and_refuses_to_overwrite(tmp_path: Path, name: str, strategy: Strategy) -> None:
    temp = write(tmp_path / ".a.tmp", b"new")
    final = tmp_path / "a.mxf"
    strategy(temp, final)
    assert final.read_bytes() == b"new"
    assert not temp.exists()
    other = write(tmp_path / ".b.tmp", b"other")
    with pytest.raises(FileExistsError):
        strategy(other, final)
    assert final.read_bytes() == b"new"
    assert other.read_bytes() == b"other"


def _unsupported(code: int) -> Strategy:
    def strategy(temp: Path, final: Path) -> None:
        raise OSError(code, os.strerror(code))

    return strategy


@pytest.mark.parametrize("code", [errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM])
def test_unsupported_strategy_falls_back_and_is_remembered(
    tmp_path: Path, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def first(temp: Path, final: Path) -> None:
        calls.append("first")
        _unsupported(code)(temp, final)

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


def test_default_chain_uses_renameat2_on_linux(tmp_path: Path) -> None:
    mover = NoReplaceMover()
    mover.move(write(tmp_path / ".a", b"1"), tmp_path / "a")
    assert mover.in_use == "renameat2"


def test_renameat2_missing_from_libc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(renamer, "_renameat2", None)
    with pytest.raises(OSError) as caught:
        renamer.rename_noreplace(write(tmp_path / ".a", b"1"), tmp_path / "a")
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
