"""Recursive scan of the source: regular files only, excludes, never the destination."""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fta.scanner import compile_excludes, scan_source, source_folders
from fta.settings import DEFAULT_EXCLUDE
from fta.stability import FileSig
from tests.conftest import write


def test_reports_regular_files_with_their_signature(source: Path) -> None:
    write(source / "a.mxf", b"12345")
    write(source / "sub" / "deeper" / "b.mxf", b"")
    found = scan_source(source)
    assert set(found) == {"a.mxf", "sub/deeper/b.mxf"}
    assert found["a.mxf"] == FileSig.from_stat(os.stat(source / "a.mxf"))
    assert found["sub/deeper/b.mxf"].size == 0


def test_empty_source_gives_nothing(source: Path) -> None:
    (source / "empty-folder").mkdir()
    assert scan_source(source) == {}


def test_symlinks_are_never_followed(tmp_path: Path, source: Path) -> None:
    outside = tmp_path / "outside"
    write(outside / "secret.mxf", b"outside the source")
    real = write(source / "real" / "clip.mxf", b"inside")
    (source / "link-to-file.mxf").symlink_to(real)
    (source / "link-to-folder").symlink_to(source / "real", target_is_directory=True)
    (source / "escape").symlink_to(outside, target_is_directory=True)
    (source / "escape-file.mxf").symlink_to(outside / "secret.mxf")
    (source / "dangling.mxf").symlink_to(tmp_path / "nothing-here")
    assert set(scan_source(source)) == {"real/clip.mxf"}
    assert sorted(source_folders(source)) == ["", "real"]


@pytest.fixture
def unix_socket(source: Path) -> Iterator[Path]:
    path = source / "s.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(os.fspath(path))
        yield path
    finally:
        server.close()


def test_fifos_and_sockets_are_ignored(source: Path, unix_socket: Path) -> None:
    os.mkfifo(source / "pipe.mxf")
    write(source / "clip.mxf", b"data")
    assert unix_socket.is_socket()
    assert set(scan_source(source)) == {"clip.mxf"}  # and the scan did not block on the FIFO


def test_default_excludes_skip_temporary_and_hidden_names(source: Path) -> None:
    skipped = [
        ".hidden.mxf",
        ".dotfolder/inside.mxf",
        "sub/.also-hidden.mxf",
        "sub/.fta-folder/x.mxf",
        "upload.tmp",
        "upload.TEMP.temp",
        "clip.mxf.part",
        "clip.partial",
        "clip.crdownload",
        "clip.download",
        "clip.filepart",
        ".clip.mxf.swp",
        "edit.swp",
        "~$document.docx",
        "backup.mxf~",
        "Thumbs.db",
        "sub/desktop.ini",
    ]
    kept = ["clip.mxf", "sub/clip.mxf", "tmp.mxf", "clip.tmp.mxf", "part/clip.mxf", "Thumbs.db.mxf"]
    for name in skipped + kept:
        write(source / name, b"data")
    assert sorted(scan_source(source, DEFAULT_EXCLUDE)) == sorted(kept)
    assert ".dotfolder" not in source_folders(source, DEFAULT_EXCLUDE)
    assert "part" in source_folders(source, DEFAULT_EXCLUDE)


def test_without_excludes_everything_is_reported(source: Path) -> None:
    for name in (".hidden", "a.tmp", ".dot/b.mxf"):
        write(source / name, b"data")
    assert set(scan_source(source)) == {".hidden", "a.tmp", ".dot/b.mxf"}


def test_pattern_with_slash_matches_the_relative_path(source: Path) -> None:
    for name in ("proxies/a.mov", "proxies/a.mxf", "other/a.mov", "a.mov", "cache/x/y.mxf", "x/y.mxf"):
        write(source / name, b"data")
    found = scan_source(source, ["proxies/*.mov", "/cache/x"])
    assert set(found) == {"proxies/a.mxf", "other/a.mov", "a.mov", "x/y.mxf"}
    assert "cache/x" not in source_folders(source, ["/cache/x"])


def test_compile_excludes_name_versus_path() -> None:
    excluded = compile_excludes(["*.tmp", "a/b*"])
    assert excluded("x.tmp", "deep/x.tmp")
    assert excluded("bc", "a/bc")
    assert not excluded("bc", "z/bc")
    assert not excluded("x.mxf", "a.tmp/x.mxf")  # name patterns look at the name only
    nothing = compile_excludes([])
    assert not nothing(".hidden", ".hidden")


def test_destination_inside_the_source_is_never_entered(source: Path) -> None:
    destination = source / "moved"
    write(destination / "already.mxf", b"copied")
    write(source / "new.mxf", b"data")
    assert set(scan_source(source, destination=destination)) == {"new.mxf"}
    assert "moved/already.mxf" in scan_source(source)  # only the destination argument hides it


def test_destination_is_recognised_by_identity_not_by_name(tmp_path: Path, source: Path) -> None:
    write(source / "deep" / "moved" / "already.mxf", b"copied")
    write(source / "deep" / "new.mxf", b"data")
    alias = tmp_path / "alias-of-destination"
    alias.symlink_to(source / "deep" / "moved", target_is_directory=True)
    assert set(scan_source(source, destination=alias)) == {"deep/new.mxf"}
    dotted = source / "deep" / ".." / "deep" / "moved"
    assert set(scan_source(source, destination=dotted)) == {"deep/new.mxf"}


def test_destination_that_does_not_exist_hides_nothing(tmp_path: Path, source: Path) -> None:
    write(source / "a" / "b.mxf", b"data")
    assert set(scan_source(source, destination=tmp_path / "missing")) == {"a/b.mxf"}


def test_relative_paths_are_posix_and_names_round_trip(source: Path) -> None:
    names = [
        "with space.mxf",
        "line\nbreak.mxf",
        "tab\there.mxf",
        "æøå/ファイル 名.mxf",
        "emoji 🎬/clip 🎥.mov",
        "back\\slash.mxf",
        "a/b/c/d/e.mxf",
    ]
    for name in names:
        write(source / name, name.encode())
    found = scan_source(source)
    assert sorted(found) == sorted(names)
    for rel in found:
        assert (source / rel).read_bytes() == rel.encode()
    assert "a/b/c/d" in source_folders(source)


def test_undecodable_name_round_trips(source: Path) -> None:
    raw = os.fsencode(source) + b"/latin1-\xe9t\xe9.mxf"
    with open(raw, "wb") as handle:
        handle.write(b"data")
    (rel,) = scan_source(source)
    assert os.fsencode(rel) == b"latin1-\xe9t\xe9.mxf"
    assert (source / rel).read_bytes() == b"data"


@pytest.fixture
def unreadable(source: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``scandir`` of one folder fail like a permission problem (the suite runs as root)."""
    blocked = source / "locked"
    real_scandir = os.scandir

    def scandir(fd: int) -> Any:
        if blocked.exists() and os.path.samestat(os.fstat(fd), blocked.stat()):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_scandir(fd)

    monkeypatch.setattr(os, "scandir", scandir)
    return blocked


def test_unreadable_subfolder_is_skipped_with_a_warning(
    source: Path, unreadable: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(unreadable / "hidden-by-permissions.mxf", b"data")
    write(source / "ok.mxf", b"data")
    write(source / "other" / "ok.mxf", b"data")
    problems: dict[str, str] = {}
    with caplog.at_level(logging.WARNING, logger="fta.scanner"):
        found = scan_source(source, problems=problems)
    assert set(found) == {"ok.mxf", "other/ok.mxf"}
    assert problems == {"locked": "cannot scan folder locked: Permission denied"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "locked" in warnings[0] and "Permission denied" in warnings[0]
    assert sorted(source_folders(source)) == ["", "locked", "other"]


def test_unreadable_root_raises(source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def scandir(fd: int) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(PermissionError):
        scan_source(source)


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_source(tmp_path / "does-not-exist")


def test_source_folders_lists_every_folder(source: Path) -> None:
    for folder in ("a/b/c", "a/d", "e", ".hidden/x"):
        (source / folder).mkdir(parents=True)
    write(source / "a" / "file.mxf", b"data")
    assert sorted(source_folders(source)) == ["", ".hidden", ".hidden/x", "a", "a/b", "a/b/c", "a/d", "e"]
    assert sorted(source_folders(source, DEFAULT_EXCLUDE)) == ["", "a", "a/b", "a/b/c", "a/d", "e"]


def test_twenty_thousand_files_are_all_found(source: Path) -> None:
    expected = set()
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
    for folder in range(20):
        sub = source / f"f{folder:02d}"
        sub.mkdir()
        prefix = os.fspath(sub) + "/"
        for index in range(1000):
            os.close(os.open(prefix + f"{index:04d}.mxf", flags, 0o644))
            expected.add(f"f{folder:02d}/{index:04d}.mxf")
    found = scan_source(source, DEFAULT_EXCLUDE)
    assert len(found) == 20_000
    assert set(found) == expected


def test_a_path_longer_than_path_max_is_found(source: Path) -> None:
    parts = [f"{level:02d}" + "d" * 248 for level in range(20)]
    fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    for name in parts:  # made one name at a time: the whole path is too long for the kernel
        os.mkdir(name, dir_fd=fd)
        child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(os.open("clip.mxf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    os.close(fd)
    rel = "/".join([*parts, "clip.mxf"])
    assert len(os.fsencode(source / rel)) > 4096
    problems: dict[str, str] = {}
    assert set(scan_source(source, problems=problems)) == {rel}
    assert problems == {}
    assert "/".join(parts) in source_folders(source)


def test_the_walk_holds_one_handle_per_level_not_per_folder(source: Path) -> None:
    """Two thousand sibling folders are scanned under a limit of 64 open files: handles are opened when entered."""
    import resource

    for index in range(2000):
        (source / f"f{index:04d}").mkdir()
    write(source / "f1999" / "last.mxf", b"data")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        found = scan_source(source)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert set(found) == {"f1999/last.mxf"}
