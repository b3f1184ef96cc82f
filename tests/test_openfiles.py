"""Files held open for writing by another process are seen, and never lose their source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from fta.copier import Copier
from fta.openfiles import (
    filesystems_by_device,
    is_open_for_writing,
    lease_says_open_for_writing,
    leases_trusted,
    open_for_writing,
)
from fta.stability import FileSig, ReadinessCheck
from tests.conftest import MakeSettings, other_process, write
from tests.prefect_helpers import wait_until


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

    def writer_appears_late(sig: FileSig, src_fd: int) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:
            return real(sig, src_fd)  # the check before the rename: nobody writes yet
        with held_open(src, "ab"):  # the check before the delete: a writer has the file open
            return real(sig, src_fd)

    monkeypatch.setattr(copier, "_held_by_writer", writer_appears_late)
    result = copier.copy("rec.mxf")
    assert calls["n"] == 2
    assert result.outcome == "changed"
    assert src.exists()


@contextmanager
def read_only(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def test_the_lease_sees_a_writer_of_any_process(tmp_path: Path) -> None:
    path = write(tmp_path / "rec.mxf", b"x")
    with read_only(path) as fd:
        assert lease_says_open_for_writing(fd) is False
        with held_open(path, "ab"):
            assert lease_says_open_for_writing(fd) is True
            assert is_open_for_writing(*file_id(path), fd=fd)
        assert lease_says_open_for_writing(fd) is False
        with held_open(path, "rb"):
            assert lease_says_open_for_writing(fd) is False  # readers do not count


def test_a_writable_mapping_counts_as_a_writer_for_the_lease(tmp_path: Path) -> None:
    """A recorder that writes through mmap and closed its descriptor: /proc/<pid>/fd no longer shows it."""
    path = write(tmp_path / "rec.mxf", b"x" * 4096)
    code = (
        "import mmap, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\nm = mmap.mmap(fd, 4096)\nos.close(fd)\n"
        "print('ready', flush=True)\nsys.stdin.read()\n"
    )
    with read_only(path) as fd, other_process(code, str(path)):
        assert lease_says_open_for_writing(fd) is True


def lease_breaking(inode: int) -> bool:
    """/proc/locks lists our lease as BREAKING while a writer's open waits for it."""
    lines = Path("/proc/locks").read_text().splitlines()
    return any("LEASE" in line and "BREAK" in line and f":{inode} " in line for line in lines)


def test_a_writer_opening_while_the_lease_is_held_waits_and_does_not_end_us(tmp_path: Path) -> None:
    """The kernel signals the lease holder when a writer opens: the process must survive and the writer proceed."""
    path = write(tmp_path / "rec.mxf", b"x")
    inode = path.stat().st_ino
    seen_breaking: list[bool] = []
    writer: list[subprocess.Popen[bytes]] = []

    def open_for_append_meanwhile() -> None:
        code = "import sys\nopen(sys.argv[1], 'ab').write(b'y')\n"
        writer.append(subprocess.Popen([sys.executable, "-c", code, str(path)]))
        wait_until(lambda: lease_breaking(inode), timeout=20, what="the writer's open to wait on the lease")
        seen_breaking.append(True)

    with read_only(path) as fd:
        assert lease_says_open_for_writing(fd, while_held=open_for_append_meanwhile) is False
    assert writer[0].wait(timeout=30) == 0
    assert path.read_bytes() == b"xy"
    assert seen_breaking == [True]  # the writer's open really waited on the lease the probe held


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_without_the_right_to_a_lease_the_answer_is_unknown(tmp_path: Path) -> None:
    """Another user's file, no CAP_LEASE: the lease cannot answer, so callers scan /proc instead."""
    folder = Path(tempfile.mkdtemp(prefix="fta-lease-", dir="/tmp"))
    folder.chmod(0o755)
    path = write(folder / "rec.mxf", b"x")
    path.chmod(0o644)
    code = (
        "import os, sys\nfrom fta.openfiles import lease_says_open_for_writing\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\nprint(lease_says_open_for_writing(fd))\n"
    )
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code, str(path)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    try:
        answer = subprocess.run(as_nobody, capture_output=True, text=True, env=env, timeout=60)
    finally:
        shutil.rmtree(folder)
    assert answer.stdout.strip() == "None", answer.stderr


MOUNTINFO = """\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 27 0:41 / /mnt/ingest rw,relatime shared:5 - cifs //nas/ingest rw,vers=3.1.1
32 27 0:42 / /mnt/nfs rw,relatime - nfs4 nas:/export rw
33 27 0:43 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw,lowerdir=a
a line that is not a mount
"""


def test_the_filesystem_of_each_device_comes_from_mountinfo() -> None:
    kinds = filesystems_by_device(MOUNTINFO)
    assert kinds == {
        os.makedev(254, 0): "ext4",
        os.makedev(0, 41): "cifs",
        os.makedev(0, 42): "nfs4",
        os.makedev(0, 43): "overlay",
    }


def test_leases_are_asked_only_where_they_tell_the_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_settings: MakeSettings, source: Path
) -> None:
    """On SMB a read lease fails with EAGAIN whenever the server gave no oplock: every file would look written.
    There (and on NFS, overlay, FUSE) the /proc scan answers, and still sees a local writer."""
    path = write(source / "rec.mxf", b"x")
    device, _ = file_id(path)
    monkeypatch.setattr("fta.openfiles._lease_trusted", {})
    monkeypatch.setattr("fta.openfiles.filesystems_by_device", lambda: {device: "cifs"})

    def no_lease(fd: int) -> bool | None:
        raise AssertionError("a lease was asked on a filesystem whose leases do not tell")

    monkeypatch.setattr("fta.openfiles.lease_says_open_for_writing", no_lease)
    monkeypatch.setattr("fta.stability.lease_says_open_for_writing", no_lease)
    with read_only(path) as fd:
        assert not is_open_for_writing(*file_id(path), fd=fd)
        with held_open(path, "ab"):
            assert is_open_for_writing(*file_id(path), fd=fd)
            check = ReadinessCheck(source, lambda rel: FileSig.from_stat(path.stat()))
            assert not check("rec.mxf")
    assert ReadinessCheck(source, lambda rel: FileSig.from_stat(path.stat()))("rec.mxf")


def test_leases_are_trusted_on_local_filesystems_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    device, _ = file_id(write(tmp_path / "x", b"x"))
    assert filesystems_by_device().get(device) is not None  # this machine's own mounts are read
    for kind, trusted in (("ext4", True), ("xfs", True), ("tmpfs", True), ("cifs", False), ("nfs4", False)):
        monkeypatch.setattr("fta.openfiles._lease_trusted", {})
        monkeypatch.setattr("fta.openfiles.filesystems_by_device", lambda kind=kind: {device: kind})
        assert leases_trusted(device) is trusted, kind
    monkeypatch.setattr("fta.openfiles._lease_trusted", {})
    monkeypatch.setattr("fta.openfiles.filesystems_by_device", lambda: {})
    assert not leases_trusted(device)  # not found among the mounts: the /proc scan answers
