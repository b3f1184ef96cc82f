"""The one settings model, loaded once and passed down.

Precedence: command-line options > environment variables ``FTA_*`` > a ``.env`` file > defaults. Every field is
documented in the README's settings table; ``describe_settings()`` prints the effective values.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fta.errors import ConfigError

ENV_PREFIX = "FTA_"

# Other writers' usual temporary or partial names, and hidden files (our own temp files are hidden too).
DEFAULT_EXCLUDE: tuple[str, ...] = (
    ".*",
    "*.tmp",
    "*.temp",
    "*.part",
    "*.partial",
    "*.crdownload",
    "*.download",
    "*.filepart",
    "*.swp",
    "~$*",
    "*~",
    "Thumbs.db",
    "desktop.ini",
)


AGENT_NAME_FORM = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def default_agent_name(hostname: str | None = None) -> str:
    """The host's short name as an agent name: lowercase, other characters than [a-z0-9-] made '-', runs of '-'
    collapsed, trimmed, at most 63 characters ('Ingest_01.example.org' -> 'ingest-01'); 'agent' if nothing is left."""
    short = (socket.gethostname() if hostname is None else hostname).split(".", 1)[0].lower()
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", short)).strip("-")[:63].rstrip("-")
    return name or "agent"


def agent_tag(agent: str) -> str:
    """The tag on every flow run and task run of the agent ``agent``."""
    return f"agent:{agent}"


class Settings(BaseSettings):
    """Configuration of the agent (see the README for each field)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",  # unknown FTA_ keys are refused by load_settings(); others belong to other tools
        validate_default=True,
    )

    source_path: Path = Field(Path("/tmp/source"), description="Folder watched for new files.")
    destination_path: Path = Field(Path("/tmp/destination"), description="Root the files are moved to.")
    file_stable_time_seconds: float = Field(
        120, gt=0, description="A file is finished when size and mtime are unchanged this long."
    )
    polling_interval_seconds: float = Field(10, gt=0, description="Seconds between two scans of the source.")
    file_events: bool = Field(
        True,
        description=(
            "Wake on file-system events (inotify) to notice new and finished files sooner; the source is still"
            " rescanned every polling_interval_seconds, so nothing is missed where events do not arrive (network"
            " shares)."
        ),
    )
    use_temporary_file: bool = Field(True, description="Write to a hidden temp file, rename when verified.")
    max_retry_attempts: int = Field(3, ge=0, description="Retries of a per-file error before Failed.")
    retry_delay_seconds: float = Field(10, ge=0, description="Seconds between per-file retries.")
    global_retry_delay_seconds: float = Field(
        60, gt=0, description="Seconds between checks while the destination is unavailable."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Lowest level that is logged."
    )
    log_file_path: Path | None = Field(Path("logs/file_agent.log"), description="Rotating log file; empty for none.")
    log_format: Literal["console", "json"] = Field("console", description="Line format of console and file.")
    log_max_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Size at which the log file rotates.")
    log_backup_count: int = Field(10, ge=1, description="Rotated log files kept (retention).")
    syslog_address: str | None = Field(
        None, description="Also log to syslog: a socket path (/dev/log) or host:port (UDP)."
    )
    verify: Literal["checksum", "size"] = Field(
        "checksum", description="checksum: xxh3-128 of source vs re-read destination; size: sizes only."
    )
    require_mount: bool = Field(False, description="The destination root must be a mount point.")
    destination_marker: str | None = Field(
        None, description="A file that must exist in the destination root (guards against a bare mount point)."
    )
    exclude: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE),
        description="Glob patterns (comma-separated in env) for names that are never moved.",
    )
    stability_lock: bool = Field(
        False, description="Also require an exclusive non-blocking lock on the file before it is ready."
    )
    check_open_writers: bool = Field(
        True,
        description="A file another process holds open for writing is never ready, nor is its source deleted.",
    )
    max_concurrent_copies: int = Field(2, ge=1, description="Copies running at once in one agent.")
    shared_limit_tag: str | None = Field(
        None, description="Prefect tag put on every copy_file run (for a concurrency limit shared by several agents)."
    )
    shared_limit: int | None = Field(
        None, ge=1, description="Copies at once across all agents with shared_limit_tag; the agent sets the limit."
    )
    data_path: Path = Field(
        Path("fta-data"), description="Where `fta up` keeps its local Prefect server (database, home)."
    )
    server_port: int = Field(4200, ge=1, le=65535, description="Port of the local Prefect server `fta up` starts.")
    metrics_port: int = Field(
        9108, ge=0, le=65535, description="Prometheus metrics on 127.0.0.1 at this port (0: off)."
    )
    alert_webhook_url: SecretStr | None = Field(
        None, description="Alerts are POSTed here (Prefect automations); may carry a token, kept secret."
    )
    alert_destination_minutes: float = Field(
        5, ge=10 / 60, description="Alert when the destination has been unavailable this many minutes (>= 10 s)."
    )
    alert_repeat_minutes: float = Field(
        60, ge=0, description="At most one storage-low alert per destination this many minutes apart (0: every report)."
    )
    storage_warning_gb: float = Field(100, ge=0, description="Destination free space below this is a WARNING.")
    agent_name: str = Field(
        default_factory=default_agent_name,
        description=(
            "This agent's name on the Prefect server (its block, deployments, artifacts, tag, events); default: the"
            " host's short name. 1-63 lowercase letters, digits and dashes, not starting or ending with a dash."
        ),
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("log_file_path", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "off"):
            return None
        return value

    @field_validator(
        "syslog_address", "destination_marker", "shared_limit_tag", "shared_limit", "alert_webhook_url", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("exclude", mode="before")
    @classmethod
    def _split_exclude(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("agent_name", mode="before")
    @classmethod
    def _blank_is_default(cls, value: Any) -> Any:
        return default_agent_name() if isinstance(value, str) and not value.strip() else value

    @field_validator("agent_name")
    @classmethod
    def _name_form(cls, value: str) -> str:
        # Part of deployment names, artifact keys and tags on a server shared by several agents: one spelling only.
        if not AGENT_NAME_FORM.fullmatch(value):
            raise ValueError(
                f"{value!r} is not an agent name (1-63 lowercase letters, digits and dashes, no dash at either end)"
            )
        return value

    @field_validator("destination_marker")
    @classmethod
    def _marker_is_a_name(cls, value: str | None) -> str | None:
        if value is not None and (Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError("must be a path relative to the destination root, without '..'")
        return value

    @model_validator(mode="after")
    def _check_paths(self) -> Settings:
        if self.shared_limit is not None and self.shared_limit_tag is None:
            raise ValueError("shared_limit needs shared_limit_tag (the tag the limit applies to)")
        source = self.source_path.expanduser().resolve()
        destination = self.destination_path.expanduser().resolve()
        if not source.exists():
            raise ValueError(f"source_path {source} does not exist")
        if not source.is_dir():
            raise ValueError(f"source_path {source} is not a folder")
        if source == destination:
            raise ValueError(f"source_path and destination_path are the same folder ({source})")
        if destination.is_relative_to(source):
            raise ValueError(f"destination_path {destination} lies inside source_path {source}")
        if source.is_relative_to(destination):
            raise ValueError(f"source_path {source} lies inside destination_path {destination}")
        self.source_path = source
        self.destination_path = destination
        return self


def _unknown_keys(keys: Any, where: str) -> list[str]:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {"FTA_CONFIG_BLOCK"}  # the served block
    return [f"{key} ({where})" for key in keys if key.upper().startswith(ENV_PREFIX) and key.upper() not in known]


def _one_line(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        field = ".".join(str(loc) for loc in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}" if field else message)
    return "; ".join(parts)


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    env_file: Path | str | None = ".env",
) -> Settings:
    """Build the settings, or raise ``ConfigError`` with one readable line.

    ``overrides`` are command-line values (``None`` means "not given"); unknown ``FTA_`` keys in the environment
    or the ``.env`` file are refused, since a misspelt key would silently leave a default in place.
    """
    unknown = _unknown_keys(os.environ.keys(), "environment")
    if env_file is not None and Path(env_file).is_file():
        unknown += _unknown_keys(dotenv_values(env_file).keys(), str(env_file))
    if unknown:
        raise ConfigError(f"unknown setting {', '.join(unknown)}")
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    try:
        return Settings(_env_file=env_file, **given)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc)) from None


def describe_settings(settings: Settings) -> list[tuple[str, str]]:
    """The effective settings as (name, value) pairs, in declaration order."""
    rows = []
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, list):
            value = ",".join(value)
        rows.append((name, "" if value is None else str(value)))
    return rows
