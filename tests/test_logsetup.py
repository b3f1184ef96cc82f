"""Logging: rotating file, JSON lines, colour, idempotent setup, syslog over a unix socket and UDP."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.flow_logging import flow_logging
from fta.logsetup import configure_logging
from tests.conftest import MakeSettings

log = logging.getLogger("fta.test.logsetup")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """Other tests share the root logger: remove and close whatever a test added, restore the levels."""
    root = logging.getLogger()
    fta = logging.getLogger("fta")
    handlers, level, fta_level = list(root.handlers), root.level, fta.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)
    fta.setLevel(fta_level)


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "agent.log"


def flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_file_handler_writes_plain_lines(make_settings: MakeSettings, log_file: Path) -> None:
    configure_logging(make_settings(log_file_path=str(log_file)), console=False)
    log.info("copied %s", "clip.mxf")
    log.debug("not at INFO")
    flush()
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("| INFO     | fta.test.logsetup - copied clip.mxf")


def test_log_level_applies(make_settings: MakeSettings, log_file: Path) -> None:
    configure_logging(make_settings(log_file_path=str(log_file), log_level="warning"), console=False)
    logging.getLogger("fta.test").info("quiet")
    logging.getLogger("other.library").warning("loud")
    flush()
    text = log_file.read_text(encoding="utf-8")
    assert "quiet" not in text
    assert "other.library - loud" in text  # every logger reaches the root's file handler


def test_file_rotates_and_keeps_backup_count_files(make_settings: MakeSettings, log_file: Path) -> None:
    settings = make_settings(log_file_path=str(log_file), log_max_bytes=400, log_backup_count=2)
    configure_logging(settings, console=False)
    for index in range(60):
        log.info("line %03d of the rotation test", index)
    flush()
    files = sorted(p.name for p in log_file.parent.iterdir())
    assert files == ["agent.log", "agent.log.1", "agent.log.2"]
    for path in log_file.parent.iterdir():
        assert path.stat().st_size <= 400
    assert "line 059" in log_file.read_text(encoding="utf-8")
    everything = "".join(p.read_text(encoding="utf-8") for p in log_file.parent.iterdir())
    assert "line 000" not in everything  # older files were deleted (retention)


def test_json_lines_carry_extra_fields(make_settings: MakeSettings, log_file: Path) -> None:
    stream = io.StringIO()
    configure_logging(make_settings(log_file_path=str(log_file), log_format="json"), stream=stream)
    log.info("moved %s", "clip.mxf", extra={"source": "/in/clip.mxf", "size": 1234, "where": Path("/out")})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    flush()
    lines = log_file.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO"
    assert first["logger"] == "fta.test.logsetup"
    assert first["message"] == "moved clip.mxf"
    assert (first["source"], first["size"], first["where"]) == ("/in/clip.mxf", 1234, "/out")
    assert first["time"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "RuntimeError: boom" in second["exception"]
    console = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in console] == ["moved clip.mxf", "failed"]


def test_json_keeps_non_ascii(make_settings: MakeSettings, log_file: Path) -> None:
    configure_logging(make_settings(log_file_path=str(log_file), log_format="json"), console=False)
    log.warning("æøå 🎬")
    flush()
    assert "æøå 🎬" in log_file.read_text(encoding="utf-8")
    assert json.loads(log_file.read_text(encoding="utf-8"))["message"] == "æøå 🎬"


def test_console_colour_when_forced(make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    stream = io.StringIO()
    configure_logging(make_settings(), stream=stream)
    log.warning("coloured")
    text = stream.getvalue()
    assert "\x1b[33mWARNING " in text
    assert "\x1b[0m" in text
    assert text.rstrip("\n").endswith("fta.test.logsetup - coloured")


@pytest.mark.parametrize(("no_color", "force_color"), [("1", "1"), (None, None)])
def test_console_without_colour(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch, no_color: str | None, force_color: str | None
) -> None:
    for name, value in (("NO_COLOR", no_color), ("FORCE_COLOR", force_color)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    stream = io.StringIO()  # not a terminal
    configure_logging(make_settings(), stream=stream)
    log.error("plain")
    text = stream.getvalue()
    assert "\x1b" not in text
    assert "| ERROR    | fta.test.logsetup - plain" in text


def test_configuring_twice_does_not_duplicate_lines(make_settings: MakeSettings, log_file: Path) -> None:
    settings = make_settings(log_file_path=str(log_file))
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    handlers = configure_logging(settings, stream=stream)
    log.info("once")
    flush()
    assert log_file.read_text(encoding="utf-8").count("once") == 1
    assert stream.getvalue().count("once") == 1
    ours = [h for h in logging.getLogger().handlers if h in handlers]
    assert len(ours) == len(handlers) == 2


def test_reconfiguring_replaces_old_handlers(make_settings: MakeSettings, tmp_path: Path) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    configure_logging(make_settings(log_file_path=str(first)), console=False)
    configure_logging(make_settings(log_file_path=str(second)), console=False)
    log.info("where")
    flush()
    assert "where" not in first.read_text(encoding="utf-8")
    assert "where" in second.read_text(encoding="utf-8")


def test_foreign_handlers_are_left_alone(make_settings: MakeSettings) -> None:
    foreign = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(foreign)
    configure_logging(make_settings(), console=False)
    assert foreign in root.handlers


def test_console_false_adds_no_stream_handler(make_settings: MakeSettings, log_file: Path) -> None:
    stream = io.StringIO()
    handlers = configure_logging(make_settings(log_file_path=str(log_file)), console=False, stream=stream)
    assert len(handlers) == 1
    assert not [h for h in handlers if type(h) is logging.StreamHandler]
    log.warning("file only")
    assert stream.getvalue() == ""
    assert configure_logging(make_settings(), console=False) == []


def test_log_folder_is_created(make_settings: MakeSettings, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "agent.log"
    configure_logging(make_settings(log_file_path=str(path)), console=False)
    assert path.parent.is_dir()


@pytest.fixture
def unix_syslog(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.settimeout(10)
    address = str(tmp_path / "log.sock")
    server.bind(address)
    yield server, address
    server.close()


@pytest.fixture
def udp_syslog() -> Iterator[tuple[socket.socket, str]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.settimeout(10)
    server.bind(("127.0.0.1", 0))
    yield server, f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.mark.parametrize("syslog", ["unix_syslog", "udp_syslog"])
def test_syslog_receives_the_line(make_settings: MakeSettings, request: pytest.FixtureRequest, syslog: str) -> None:
    server, address = request.getfixturevalue(syslog)
    configure_logging(make_settings(syslog_address=address), console=False)
    log.warning("to syslog")
    data = server.recv(4096)
    assert data.startswith(b"<12>fta[")  # facility user, severity warning
    assert b"WARNING fta.test.logsetup - to syslog" in data


def test_inside_a_flow_prefect_logs_only_task_runs_that_did_not_complete(make_settings: MakeSettings) -> None:
    """Every line is a record the server stores: the audit line replaces Prefect's per-task "Finished" line."""
    task_runs = logging.getLogger("prefect.task_runs")
    before = task_runs.getEffectiveLevel()
    with flow_logging(make_settings(log_file_path="")):
        assert not task_runs.isEnabledFor(logging.INFO)  # "Finished in state Completed()"
        assert task_runs.isEnabledFor(logging.ERROR)  # "Finished in state Failed(...)" / Cancelled
    assert task_runs.getEffectiveLevel() == before
