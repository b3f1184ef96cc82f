"""Folder handles: folders below a root are opened one name at a time (or by openat2), never through a symlink."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fta import handles
from fta.errors import UnsafePath
from tests.conftest import write


@pytest.fixture(params=["openat2", "walk"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test runs with openat2 (where the kernel has it) and with the name-by-name walk."""
    if request.param == "walk":
        monkeypatch.setattr(handles, "_openat2_works", False)
    elif not handles._openat2_works:
        pytest.skip("openat2 is not available here")
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[int]:
    fd = handles.open_root(tmp_path)
    yield fd
    os.close(fd)


def names_in(fd: int) -> list[str]:
    return sorted(os.listdir(fd))


def test_a_folder_below_the_root_is_opened(tmp_path: Path, root: int, way: str) -> None:
    write(tmp_path / "a" / "b" / "clip.mxf", b"data")
    with handles.folder(root, ["a", "b"]) as fd:
        assert names_in(fd) == ["clip.mxf"]
    with handles.folder(root, []) as fd:  # no parts: the root itself, as a handle of its own
        assert fd != root and "a" in names_in(fd)


@pytest.mark.parametrize("depth", [0, 1])
def test_a_symlinked_folder_is_refused_with_its_name(tmp_path: Path, root: int, way: str, depth: int) -> None:
    outside = tmp_path / "outside"
    write(outside / "secret.mxf", b"not ours")
    parts = ["a", "link"][-1 - depth :]
    (tmp_path / "a").mkdir()
    tmp_path.joinpath(*parts).symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath) as caught:
        handles.open_folder(root, [*parts, "inner"], label=tmp_path)
    assert caught.value.errno == errno.ELOOP
    assert caught.value.strerror == f"{tmp_path.joinpath(*parts)} is a symlink: not followed"


def test_a_file_where_a_folder_is_needed_is_refused(tmp_path: Path, root: int, way: str) -> None:
    write(tmp_path / "clips", b"a file")
    with pytest.raises(UnsafePath, match="clips is not a folder"):
        handles.open_folder(root, ["clips", "day1"])


def test_missing_folders_are_made_only_when_asked(tmp_path: Path, root: int) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        handles.open_folder(root, ["x", "y"], label=tmp_path)
    assert caught.value.filename == str(tmp_path / "x")
    assert not (tmp_path / "x").exists()
    os.close(handles.open_folder(root, ["x", "y"], create=True))
    assert (tmp_path / "x" / "y").is_dir()


def test_making_folders_never_follows_a_symlink(tmp_path: Path, root: int) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "cam1").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePath, match="is a symlink: not followed"):
        handles.open_folder(root, ["cam1", "day1"], create=True)
    assert list(outside.iterdir()) == []


def test_openat2_never_leaves_the_root(tmp_path: Path, root: int) -> None:
    if not handles._openat2_works:
        pytest.skip("openat2 is not available here")
    (tmp_path / "a").mkdir()
    fd = handles._openat2(root, b"a", handles.FOLDER_FLAGS)
    assert fd is not None
    os.close(fd)
    assert handles._openat2(root, b"../" + os.fsencode(tmp_path.name), handles.FOLDER_FLAGS) is None
    assert handles._openat2(root, b"/tmp", handles.FOLDER_FLAGS) is None


def test_a_path_longer_than_path_max_is_walked(tmp_path: Path, root: int, way: str) -> None:
    parts = [f"{level:02d}" + "x" * 248 for level in range(20)]
    os.close(handles.open_folder(root, parts, create=True))
    with handles.folder(root, parts) as fd:
        assert names_in(fd) == []
    assert len("/".join(parts)) > 4096


def test_open_beneath_opens_a_file_and_refuses_symlinks(tmp_path: Path, way: str) -> None:
    write(tmp_path / "src" / "a" / "clip.mxf", b"ours")
    outside = write(tmp_path / "outside" / "clip.mxf", b"not ours")
    (tmp_path / "src" / "link.mxf").symlink_to(outside)
    (tmp_path / "src" / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    fd = handles.open_beneath(tmp_path / "src", "a/clip.mxf")
    try:
        assert os.read(fd, 10) == b"ours"
    finally:
        os.close(fd)
    with pytest.raises(OSError) as caught:
        handles.open_beneath(tmp_path / "src", "link.mxf")
    assert caught.value.errno == errno.ELOOP
    with pytest.raises(UnsafePath, match="linkdir is a symlink: not followed"):
        handles.open_beneath(tmp_path / "src", "linkdir/clip.mxf")


def test_a_name_swapped_back_while_it_is_looked_at_is_opened(
    tmp_path: Path, root: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ELOOP for a name that is a real folder again when looked at: looked at once more, then opened."""
    (tmp_path / "cam1").mkdir()
    real_open = os.open
    answers = [OSError(errno.ELOOP, "Too many levels of symbolic links")]

    def symlink_for_an_instant(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if path == "cam1" and answers:
            raise answers.pop()
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(handles, "_openat2_works", False)
    monkeypatch.setattr(os, "open", symlink_for_an_instant)
    with handles.folder(root, ["cam1"]) as fd:
        assert os.path.samestat(os.fstat(fd), (tmp_path / "cam1").stat())
    assert answers == []


def test_a_name_that_keeps_changing_is_refused(tmp_path: Path, root: int, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "cam1").mkdir()
    real_open = os.open

    def always_a_symlink_when_opened(path: Any, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if path == "cam1":
            raise OSError(errno.ELOOP, "Too many levels of symbolic links")
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(handles, "_openat2_works", False)
    monkeypatch.setattr(os, "open", always_a_symlink_when_opened)
    with pytest.raises(UnsafePath, match="cam1 keeps changing: not followed"):
        handles.open_folder(root, ["cam1"])


def test_an_openat2_refused_by_the_kernel_is_not_asked_again(
    tmp_path: Path, root: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def no_such_call(*args: Any) -> int:
        calls.append(1)
        ctypes.set_errno(errno.ENOSYS)
        return -1

    monkeypatch.setattr(handles, "_syscall", no_such_call)
    monkeypatch.setattr(handles, "_openat2_works", True)
    (tmp_path / "a").mkdir()
    with handles.folder(root, ["a"]):
        pass
    with handles.folder(root, ["a"]):
        pass
    assert calls == [1]  # the walk answered both times; the kernel was asked once
    assert handles._openat2_works is False
