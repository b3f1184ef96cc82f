"""Destination probe ("reachable, or why not") and the seed's storage status."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from fta import probe as probe_module
from fta.probe import Destination, ProbeResult, probe_destination, probe_with_timeout, root_trouble
from fta.storage import LOW_MESSAGE, UNREACHABLE_MESSAGE, storage_report
from tests.conftest import MakeSettings, Mount, unmount, write


def test_reachable_folder(destination: Path) -> None:
    result = probe_destination(Destination(destination))
    assert result.ok and bool(result)
    assert result.reason is None
    assert result.free_bytes is not None and result.free_bytes > 0
    assert list(destination.iterdir()) == []  # the write probe cleans up after itself


def test_missing_root_is_reported_and_never_created(tmp_path: Path) -> None:
    root = tmp_path / "nas"
    result = probe_destination(Destination(root))
    assert not result.ok and not bool(result)
    assert result.reason is not None and "does not exist" in result.reason
    assert not root.exists()


def test_root_that_is_a_file(tmp_path: Path) -> None:
    root = write(tmp_path / "nas", b"not a folder")
    result = probe_destination(Destination(root))
    assert not result.ok
    assert result.reason is not None and "not a folder" in result.reason


def test_root_below_a_file_cannot_be_reached(tmp_path: Path) -> None:
    write(tmp_path / "file", b"x")
    result = probe_destination(Destination(tmp_path / "file" / "nas"))
    assert not result.ok
    assert result.reason is not None and "ENOTDIR" in result.reason


def test_the_destination_is_what_the_settings_describe(make_settings: MakeSettings, tmp_path: Path) -> None:
    elsewhere = tmp_path / "nas"
    settings = make_settings(destination_path=elsewhere, require_mount=True, destination_marker=".online")
    assert Destination.of(settings) == Destination(elsewhere.resolve(), require_mount=True, marker=".online")
    assert Destination.of(make_settings()) == Destination(make_settings().destination_path, False, None)
    with pytest.raises(AttributeError):
        Destination.of(settings).marker = None  # type: ignore[misc]  # frozen: one description, shared


def test_require_mount_refuses_a_plain_folder(destination: Path) -> None:
    result = probe_destination(Destination(destination, require_mount=True))
    assert not result.ok
    assert result.reason is not None and "not a mount point" in result.reason


def test_require_mount_accepts_a_mount(tmpfs: Mount) -> None:
    assert probe_destination(Destination(tmpfs("1m"), require_mount=True)).ok


def test_marker_file(destination: Path) -> None:
    missing = probe_destination(Destination(destination, marker=".nas-online"))
    assert not missing.ok
    assert missing.reason is not None and ".nas-online" in missing.reason
    write(destination / ".nas-online", b"")
    assert probe_destination(Destination(destination, marker=".nas-online")).ok


def test_read_only_destination(tmpfs: Mount) -> None:
    mount = tmpfs("1m")
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
    result = probe_destination(Destination(mount))
    assert not result.ok
    assert result.reason is not None and "EROFS" in result.reason


def test_full_destination(tmpfs: Mount) -> None:
    mount = tmpfs("64k")
    with pytest.raises(OSError), (mount / "filler").open("wb") as f:
        for _ in range(1000):
            f.write(os.urandom(4096))
            f.flush()
    result = probe_destination(Destination(mount))
    assert not result.ok
    assert result.reason is not None and "ENOSPC" in result.reason


def test_probe_with_timeout_answers(destination: Path) -> None:
    assert probe_with_timeout(Destination(destination), timeout=30).ok


def test_hanging_destination_counts_as_unavailable(destination: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def hang(destination: Destination) -> ProbeResult:
        release.wait(30)
        return ProbeResult(True)

    monkeypatch.setattr(probe_module, "probe_destination", hang)
    try:
        result = probe_with_timeout(Destination(destination), timeout=0.05)
    finally:
        release.set()
    assert not result.ok
    assert result.reason is not None and "did not answer" in result.reason


def test_storage_ok(source: Path) -> None:
    report = storage_report(source, ProbeResult(True, None, 2048 * 10**9), warning_gb=100)
    assert report.status == "OK"
    assert report.destination_free_gb == 2048
    assert report.source_free_gb > 0
    assert report.as_seed_json() == {
        "sourceFreeGB": report.source_free_gb,
        "destinationFreeGB": 2048,
        "status": "OK",
    }


def test_storage_low_is_a_warning(source: Path) -> None:
    report = storage_report(source, ProbeResult(True, None, 80 * 10**9), warning_gb=100)
    assert report.status == "WARNING"
    assert report.as_seed_json()["message"] == LOW_MESSAGE == "Destination storage is running low."
    assert report.as_seed_json()["destinationFreeGB"] == 80


def test_storage_unreachable_is_an_error(source: Path) -> None:
    report = storage_report(source, ProbeResult(False, "destination root /nas does not exist"), warning_gb=100)
    assert report.status == "ERROR"
    assert report.destination_free_gb == -1
    assert report.reason == "destination root /nas does not exist"
    assert report.as_seed_json()["message"] == UNREACHABLE_MESSAGE == "Destination path is not accessible."


def test_storage_of_a_vanished_source(tmp_path: Path) -> None:
    report = storage_report(tmp_path / "gone", ProbeResult(True, None, 500 * 10**9), warning_gb=100)
    assert report.source_free_gb == -1
    assert report.status == "OK"


def test_a_probe_file_left_by_a_killed_agent_is_cleaned_by_the_next_probe(destination: Path) -> None:
    from fta.probe import probe_name

    write(destination / probe_name(), b"left behind by kill -9")
    assert probe_destination(Destination(destination)).ok
    assert list(destination.iterdir()) == []


def test_the_checks_are_asked_of_the_handle_returned(tmpfs: Mount) -> None:
    """``open_checked_root`` hands back the very folder it checked: unmounted afterwards, the handle still is the
    share (its own filesystem), and the path then shows the bare mount point."""
    from fta.probe import is_mount_point, open_checked_root

    mount = tmpfs("1m")
    write(mount / "NAS_MARKER", b"")
    fd, trouble = open_checked_root(Destination(mount, require_mount=True, marker="NAS_MARKER"))
    assert fd is not None and trouble is None
    try:
        assert is_mount_point(fd)
        unmount(mount)
        assert sorted(os.listdir(fd)) == ["NAS_MARKER"]  # the handle: still the share
        assert root_trouble(Destination(mount, require_mount=True)) is not None  # the path: the bare mount point
    finally:
        os.close(fd)


def test_a_plain_folder_handle_is_no_mount_point(destination: Path) -> None:
    from fta.probe import handle_trouble, is_mount_point

    fd = os.open(destination, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not is_mount_point(fd)
        assert handle_trouble(fd, Destination(destination, require_mount=True)) is not None
    finally:
        os.close(fd)


def test_a_marker_that_is_a_symlink_is_not_followed(destination: Path, tmp_path: Path) -> None:
    elsewhere = write(tmp_path / "elsewhere-marker", b"")
    (destination / ".nas-online").symlink_to(elsewhere)
    result = probe_destination(Destination(destination, marker=".nas-online"))
    assert not result.ok
    assert result.reason is not None and "marker file .nas-online is missing" in result.reason
