"""Files held open for writing by another process are seen, and never lose their source."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from fta.copier import Copier
from fta.openfiles import is_open_for_writing, open_for_writing
from fta.stability import FileSig
from tests.conftest import MakeSettings, other_process, write


def held_open(path: Path, mode: str) -> AbstractContextManager[None]:
    """Another process holds ``path`` open in ``mode`` until the block ends."""
    code = "import sys\nf = open(sys.argv[1], sys.argv[2])\nprint('ready', flush=True)\nsys.stdin.read()\n"
    return other_process(code, str(path), mode)


def file_id(path: Path) -> tuple[int, int]:
    st = path.stat()
    return (st.st_dev, st.st_ino)


def test_a_writer_in_another_process_is_seen(tmp_path: Path) -> None:
    path = write(tmp_path / "rec.mxf", b"x")
    assert not is_open_for_writing(*file_id(path))
    with held_open(path, "ab"):
        assert file_id(path) in open_for_writing()
        assert is_open_for_writing(*file_id(path))
    assert not is_open_for_writing(*file_id(path))


def test_a_reader_is_not_a_writer(tmp_path: Path) -> None:
    path = write(tmp_path / "rec.mxf", b"x")
    with held_open(path, "rb"):
        assert not is_open_for_writing(*file_id(path))


def test_our_own_process_does_not_count(tmp_path: Path) -> None:
    path = write(tmp_path / "rec.mxf", b"x")
    with path.open("ab"):
        assert not is_open_for_writing(*file_id(path))


def test_source_open_for_writing_is_not_moved(make_settings: MakeSettings, source: Path, destination: Path) -> None:
    src = write(source / "rec.mxf", os.urandom(4096))
    with held_open(src, "ab"):
        result = Copier(make_settings()).copy("rec.mxf")
    assert result.outcome == "changed"
    assert src.exists()
    assert list(destination.iterdir()) == []  # no copy that looks finished while the recorder still writes


def test_writer_check_can_be_switched_off(make_settings: MakeSettings, source: Path, destination: Path) -> None:
    src = write(source / "rec.mxf", os.urandom(4096))
    with held_open(src, "ab"):
        result = Copier(make_settings(check_open_writers=False)).copy("rec.mxf")
    assert result.outcome == "copied"
    assert not src.exists()


def test_writer_that_opens_the_source_after_the_copy_keeps_it(
    make_settings: MakeSettings, source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A recorder that reopens the file between the rename and the delete: the source must stay."""
    src = write(source / "rec.mxf", os.urandom(4096))
    copier = Copier(make_settings())
    calls = {"n": 0}
    real = copier._held_by_writer

    def writer_appears_late(sig: FileSig) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            return real(sig)  # the check before the rename: nobody writes yet
        with held_open(src, "ab"):  # the check before the delete: a writer has the file open
            return real(sig)

    monkeypatch.setattr(copier, "_held_by_writer", writer_appears_late)
    result = copier.copy("rec.mxf")
    assert calls["n"] == 2
    assert result.outcome == "changed"
    assert src.exists()
