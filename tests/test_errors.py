"""The OSError -> error tree mapping is complete for the errnos that matter, on both sides."""

from __future__ import annotations

import errno

import pytest

from fta.errors import (
    DestinationBlocked,
    DestinationUnavailable,
    FileError,
    FileIOError,
    SourceUnreadable,
    SourceVanished,
    TransferError,
    map_os_error,
)

# errno -> (error on the destination side, error on the source side)
EXPECTED: dict[int, tuple[type[TransferError], type[TransferError]]] = {
    errno.ENOSPC: (DestinationUnavailable, FileIOError),
    errno.EDQUOT: (DestinationUnavailable, FileIOError),
    errno.EIO: (DestinationUnavailable, FileIOError),
    errno.ENOTCONN: (DestinationUnavailable, FileIOError),
    errno.ESTALE: (DestinationUnavailable, FileIOError),
    errno.EROFS: (DestinationUnavailable, FileIOError),
    errno.EHOSTDOWN: (DestinationUnavailable, FileIOError),
    errno.EACCES: (DestinationBlocked, SourceUnreadable),
    errno.EPERM: (DestinationBlocked, SourceUnreadable),
    errno.ENOENT: (DestinationBlocked, SourceVanished),
    errno.ENOTDIR: (DestinationBlocked, FileIOError),
    errno.EISDIR: (DestinationBlocked, FileIOError),
    errno.ENAMETOOLONG: (DestinationBlocked, FileIOError),
}


@pytest.mark.parametrize("code", sorted(EXPECTED), ids=lambda c: errno.errorcode[c])
def test_mapping_by_side(code: int) -> None:
    on_destination, on_source = EXPECTED[code]
    exc = OSError(code, "boom", "/some/file")
    mapped_destination = map_os_error(exc, "destination")
    mapped_source = map_os_error(exc, "source")
    assert type(mapped_destination) is on_destination
    assert type(mapped_source) is on_source
    assert errno.errorcode[code] in str(mapped_destination)
    assert "/some/file" in str(mapped_source)


def test_global_errors_are_never_file_errors() -> None:
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOTCONN, errno.ESTALE, errno.EROFS):
        mapped = map_os_error(OSError(code, "x"), "destination")
        assert not isinstance(mapped, FileError)


def test_file_errors_remember_their_side() -> None:
    dest = map_os_error(OSError(errno.EACCES, "denied"), "destination")
    src = map_os_error(OSError(errno.EACCES, "denied"), "source")
    assert isinstance(dest, FileError) and dest.side == "destination"
    assert isinstance(src, FileError) and src.side == "source"


def test_unknown_errno_is_a_per_file_io_error() -> None:
    mapped = map_os_error(OSError(errno.EMLINK, "too many links"), "destination")
    assert type(mapped) is FileIOError


def test_oserror_without_errno() -> None:
    mapped = map_os_error(OSError("odd"), "source")
    assert type(mapped) is FileIOError
    assert "odd" in str(mapped)
