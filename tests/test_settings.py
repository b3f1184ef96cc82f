"""Settings: seed defaults, precedence, and one-line errors for everything invalid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fta.errors import ConfigError
from fta.settings import DEFAULT_EXCLUDE, Settings, describe_settings, load_settings
from tests.conftest import MakeSettings, write


def load(source: Path, destination: Path, **overrides: Any) -> Settings:
    """Settings as the CLI builds them: overrides, then the environment and ./.env (the test's own cwd)."""
    return load_settings({"source_path": source, "destination_path": destination, **overrides})


def dotenv(*lines: str) -> Path:
    return write(Path(".env"), ("\n".join(lines) + "\n").encode())


def test_seed_defaults(source: Path, destination: Path) -> None:
    settings = load(source, destination)
    assert settings.file_stable_time_seconds == 120
    assert settings.polling_interval_seconds == 10
    assert settings.use_temporary_file is True
    assert settings.max_retry_attempts == 3
    assert settings.retry_delay_seconds == 10
    assert settings.global_retry_delay_seconds == 60
    assert settings.log_level == "INFO"
    assert settings.log_file_path == Path("logs/file_agent.log")
    assert settings.log_format == "console"
    assert settings.verify == "checksum"
    assert settings.require_mount is False
    assert settings.max_concurrent_copies == 2
    assert settings.storage_warning_gb == 100
    assert settings.syslog_address is None
    assert settings.destination_marker is None
    assert settings.exclude == list(DEFAULT_EXCLUDE)


def test_paths_are_resolved(source: Path, destination: Path) -> None:
    settings = load(source / ".." / "source", destination / ".." / "destination")
    assert settings.source_path == source.resolve()
    assert settings.destination_path == destination.resolve()
    assert settings.source_path.is_absolute()


def test_precedence_overrides_then_environment_then_dotenv_then_defaults(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv(
        "FTA_POLLING_INTERVAL_SECONDS=5",
        "FTA_RETRY_DELAY_SECONDS=5",
        "FTA_MAX_RETRY_ATTEMPTS=5",
    )
    monkeypatch.setenv("FTA_RETRY_DELAY_SECONDS", "6")
    monkeypatch.setenv("FTA_MAX_RETRY_ATTEMPTS", "6")
    settings = load(source, destination, max_retry_attempts=7, global_retry_delay_seconds=None)
    assert settings.max_retry_attempts == 7  # override beats env and .env
    assert settings.retry_delay_seconds == 6  # env beats .env
    assert settings.polling_interval_seconds == 5  # .env beats the default
    assert settings.global_retry_delay_seconds == 60  # None means "not given": the default stays


def test_paths_and_booleans_from_the_environment(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTA_SOURCE_PATH", str(source))
    monkeypatch.setenv("FTA_DESTINATION_PATH", str(destination))
    monkeypatch.setenv("FTA_USE_TEMPORARY_FILE", "false")
    monkeypatch.setenv("FTA_REQUIRE_MOUNT", "yes")
    settings = load_settings()
    assert settings.source_path == source
    assert settings.destination_path == destination
    assert settings.use_temporary_file is False
    assert settings.require_mount is True


def test_dotenv_file_elsewhere_and_none(source: Path, destination: Path, tmp_path: Path) -> None:
    other = write(tmp_path / "agent.env", b"FTA_POLLING_INTERVAL_SECONDS=3\n")
    dotenv("FTA_POLLING_INTERVAL_SECONDS=4")
    paths = {"source_path": source, "destination_path": destination}
    assert load_settings(paths, env_file=other).polling_interval_seconds == 3
    assert load_settings(paths).polling_interval_seconds == 4
    assert load_settings(paths, env_file=None).polling_interval_seconds == 10
    assert load_settings(paths, env_file=tmp_path / "missing.env").polling_interval_seconds == 10


def test_exclude_from_environment_is_comma_separated(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTA_EXCLUDE", " *.mov , proxies/* ,,.*")
    assert load(source, destination).exclude == ["*.mov", "proxies/*", ".*"]
    dotenv("FTA_EXCLUDE=*.wav")
    monkeypatch.delenv("FTA_EXCLUDE")
    assert load(source, destination).exclude == ["*.wav"]
    assert load(source, destination, exclude=["a", "b"]).exclude == ["a", "b"]


def test_non_fta_keys_in_dotenv_are_accepted(source: Path, destination: Path) -> None:
    dotenv("PREFECT_API_URL=http://127.0.0.1:4200/api", "OTHER_TOOL=1", "FTA_LOG_LEVEL=debug")
    assert load(source, destination).log_level == "DEBUG"


@pytest.mark.parametrize(("given", "expected"), [("debug", "DEBUG"), (" Warning ", "WARNING"), ("ERROR", "ERROR")])
def test_log_level_is_case_insensitive(make_settings: MakeSettings, given: str, expected: str) -> None:
    assert make_settings(log_level=given).log_level == expected


@pytest.mark.parametrize("value", ["", "  ", "none", "OFF"])
def test_empty_log_file_path_means_none(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("FTA_LOG_FILE_PATH", value)
    assert load(source, destination).log_file_path is None


def test_blank_syslog_and_marker_mean_none(make_settings: MakeSettings) -> None:
    settings = make_settings(syslog_address=" ", destination_marker="")
    assert settings.syslog_address is None
    assert settings.destination_marker is None
    assert make_settings(destination_marker="sub/.online").destination_marker == "sub/.online"


def assert_config_error(match: str, **values: Any) -> str:
    with pytest.raises(ConfigError, match=match) as caught:
        load_settings(values)
    message = str(caught.value)
    assert "\n" not in message
    assert message.strip() == message and message
    return message


def test_same_source_and_destination(source: Path) -> None:
    assert_config_error("same folder", source_path=source, destination_path=source / "." / "")


def test_destination_inside_source(source: Path) -> None:
    assert_config_error(
        "destination_path .* lies inside source_path", source_path=source, destination_path=source / "d"
    )


def test_source_inside_destination(destination: Path) -> None:
    inner = destination / "incoming"
    inner.mkdir()
    assert_config_error("source_path .* lies inside destination_path", source_path=inner, destination_path=destination)


def test_missing_source(tmp_path: Path, destination: Path) -> None:
    assert_config_error("does not exist", source_path=tmp_path / "nope", destination_path=destination)


def test_source_is_a_file(tmp_path: Path, destination: Path) -> None:
    path = write(tmp_path / "file", b"x")
    assert_config_error("is not a folder", source_path=path, destination_path=destination)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("file_stable_time_seconds", 0),
        ("file_stable_time_seconds", -5),
        ("polling_interval_seconds", 0),
        ("polling_interval_seconds", "-1"),
        ("global_retry_delay_seconds", 0),
        ("retry_delay_seconds", -0.5),
        ("max_retry_attempts", -1),
        ("max_retry_attempts", "three"),
        ("max_retry_attempts", "2.5"),
        ("max_retry_attempts", 2.5),
        ("max_concurrent_copies", 0),
        ("log_max_bytes", 0),
        ("log_level", "verbose"),
        ("log_format", "xml"),
        ("verify", "none"),
        ("destination_marker", "../outside"),
        ("destination_marker", "a/../../b"),
        ("destination_marker", "/etc/marker"),
    ],
)
def test_invalid_values_raise_one_line_config_error(source: Path, destination: Path, field: str, value: object) -> None:
    message = assert_config_error(field, source_path=source, destination_path=destination, **{field: value})
    assert message.startswith(field)


def test_several_errors_still_make_one_line(source: Path, destination: Path) -> None:
    message = assert_config_error(
        "log_level", source_path=source, destination_path=destination, log_level="loud", polling_interval_seconds=0
    )
    assert "polling_interval_seconds" in message


def test_unknown_key_in_dotenv_is_refused(source: Path, destination: Path) -> None:
    dotenv("FTA_SOURCE_PAHT=/srv", "PREFECT_API_URL=http://x")
    message = assert_config_error("unknown setting", source_path=source, destination_path=destination)
    assert "FTA_SOURCE_PAHT" in message and ".env" in message


def test_unknown_key_in_environment_is_refused(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTA_POLL_INTERVAL", "5")
    message = assert_config_error("unknown setting", source_path=source, destination_path=destination)
    assert "FTA_POLL_INTERVAL (environment)" in message


def test_unknown_key_is_refused_even_with_a_valid_override(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("fta_lowercase_typo", "1")
    with pytest.raises(ConfigError, match="fta_lowercase_typo"):
        make_settings()


def test_invalid_value_in_environment_names_the_field(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTA_FILE_STABLE_TIME_SECONDS", "soon")
    assert_config_error("file_stable_time_seconds", source_path=source, destination_path=destination)


def test_describe_settings_lists_every_field_in_order(make_settings: MakeSettings, destination: Path) -> None:
    settings = make_settings(exclude=["*.a", "*.b"], polling_interval_seconds=7, syslog_address=None)
    rows = describe_settings(settings)
    assert [name for name, _ in rows] == list(Settings.model_fields)
    values = dict(rows)
    assert values["exclude"] == "*.a,*.b"
    assert values["polling_interval_seconds"] == "7.0"
    assert values["destination_path"] == str(destination)
    assert values["log_file_path"] == ""
    assert values["syslog_address"] == ""
    assert values["use_temporary_file"] == "True"
