"""Every way ``fta up`` cannot start ends with one readable line and exit code 2, never a traceback."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.local_server import LocalServer, StartError
from fta.credential import CREDENTIAL_FILE, CredentialError, ensure_credential, private_folder, read_credential
from tests.up_helpers import clean_env, free_port, run_fta, up_options

NOBODY_UID = 65534


def _one_line_exit_2(source: Path, destination: Path, data: Path, port: int, **env: str) -> str:
    started = run_fta(clean_env(**env), "up", *up_options(source, destination, data, port))
    said = (started.stdout + started.stderr).strip()
    assert started.returncode == 2, said
    assert len(said.splitlines()) == 1 and "Traceback" not in said, said
    assert said.startswith("fta: cannot start: "), said
    return said


@pytest.fixture
def http_listener() -> Iterator[int]:
    """A plain HTTP server (not Prefect) on a free loopback port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_a_port_held_by_another_program_is_one_line(
    source: Path, destination: Path, tmp_path: Path, http_listener: int
) -> None:
    said = _one_line_exit_2(source, destination, tmp_path / "data", http_listener)
    assert said == (
        f"fta: cannot start: port {http_listener} is already in use by another program;"
        " set server_port (--server-port, FTA_SERVER_PORT)"
    )
    assert not (tmp_path / "data" / "prefect" / "prefect.db").exists()  # no server was started


def test_a_port_bound_without_answering_is_one_line(source: Path, destination: Path, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = int(holder.getsockname()[1])
        said = _one_line_exit_2(source, destination, tmp_path / "data", port)
    assert f"port {port} is already in use by another program" in said


def test_a_data_path_of_another_user_is_refused(source: Path, destination: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chown(data, NOBODY_UID, NOBODY_UID)
    said = _one_line_exit_2(source, destination, data, free_port())
    assert f"{data} belongs to uid {NOBODY_UID}, not to this user" in said
    assert list(data.iterdir()) == []  # nothing written into it
    assert data.stat().st_mode & 0o777 == 0o755  # nor its mode changed


def test_a_data_path_that_is_a_file_is_refused(source: Path, destination: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a folder")
    said = _one_line_exit_2(source, destination, data, free_port())
    assert str(data) in said


def test_an_unreachable_api_url_is_one_line(source: Path, destination: Path, tmp_path: Path) -> None:
    api = f"http://127.0.0.1:{free_port()}/api"
    said = _one_line_exit_2(source, destination, tmp_path / "data", free_port(), PREFECT_API_URL=api)
    assert said == f"fta: cannot start: cannot reach the Prefect API at {api} (PREFECT_API_URL)"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_that_cannot_open_its_database_is_one_line(source: Path, destination: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "prefect" / "prefect.db").mkdir(parents=True)  # SQLite cannot open a folder
    said = _one_line_exit_2(source, destination, data, free_port())
    assert "the Prefect server exited with" in said and "server.log" in said


def test_the_credential_is_made_once_and_kept_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    private_folder(data)
    first = ensure_credential(data)
    assert ensure_credential(data) == first == read_credential(data)
    assert (data / CREDENTIAL_FILE).stat().st_mode & 0o777 == 0o600
    (data / CREDENTIAL_FILE).chmod(0o644)
    with pytest.raises(CredentialError, match="not a private file"):
        read_credential(data)  # a client does not use a credential others could read
    assert ensure_credential(data) == first  # the agent tightens its own file
    assert (data / CREDENTIAL_FILE).stat().st_mode & 0o777 == 0o600


def test_a_credential_file_swapped_for_a_symlink_is_not_followed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    private_folder(data)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("someone else's file\n")
    (data / CREDENTIAL_FILE).symlink_to(elsewhere)
    with pytest.raises(CredentialError):
        ensure_credential(data)
    with pytest.raises(CredentialError):
        read_credential(data)
    assert elsewhere.read_text() == "someone else's file\n"


def test_a_credential_of_another_user_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    private_folder(data)
    ensure_credential(data)
    os.chown(data / CREDENTIAL_FILE, NOBODY_UID, NOBODY_UID)
    with pytest.raises(CredentialError, match="belongs to uid"):
        ensure_credential(data)


def test_a_local_server_refuses_a_taken_port_before_starting(tmp_path: Path, http_listener: int) -> None:
    server = LocalServer(tmp_path / "data", http_listener)
    with pytest.raises(StartError, match="already in use by another program"):
        server.start()
    assert server.process is None
    shutil.rmtree(tmp_path / "data")
