"""The ``TransferConfig`` block: the agent's settings saved in Prefect by name, loaded by the deployments.

``fta up`` saves one (``default``) from the effective settings the first time; after that the block is the
configuration of the served deployments, editable in the UI (Blocks) or with ``prefect block`` commands, and a
running watch picks up a change within one cycle. Secrets (a webhook URL with a token) are ``SecretStr``.
Every field matches a setting of the same name (see the README's settings table); empty means "the default".
"""

from __future__ import annotations

from typing import Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, SecretStr

from fta.settings import Settings


class TransferConfig(Block):
    """Settings of the File Transfer Agent."""

    _block_type_name: ClassVar[str] = "FTA Transfer Config"
    _block_type_slug: ClassVar[str] = "fta-transfer-config"
    _description: ClassVar[str] = "Source, destination and behaviour of a File Transfer Agent."

    source_path: str = Field(description="Folder watched for new files; must exist.")
    destination_path: str = Field(description="Root the files are moved to; never created by the agent.")
    file_stable_time_seconds: float | None = Field(None, description="Seconds unchanged before a file is finished.")
    polling_interval_seconds: float | None = Field(None, description="Seconds between two scans of the source.")
    file_events: bool | None = Field(
        None, description="Wake on file-system events to notice files sooner; the rescan goes on (network shares)."
    )
    use_temporary_file: bool | None = Field(None, description="Write a hidden temp file, rename when verified.")
    max_retry_attempts: int | None = Field(None, description="Retries of a per-file error before Failed.")
    retry_delay_seconds: float | None = Field(None, description="Seconds between per-file retries.")
    global_retry_delay_seconds: float | None = Field(
        None, description="Seconds between checks while the destination is unavailable."
    )
    log_level: str | None = Field(None, description="DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    log_file_path: str | None = Field(None, description="Rotating log file; empty string for none.")
    log_format: str | None = Field(None, description="console or json.")
    log_max_bytes: int | None = Field(None, description="Size at which the log file rotates.")
    log_backup_count: int | None = Field(None, description="Rotated log files kept.")
    syslog_address: str | None = Field(None, description="Syslog socket path or host:port.")
    verify: str | None = Field(None, description="checksum or size.")
    require_mount: bool | None = Field(None, description="The destination root must be a mount point.")
    destination_marker: str | None = Field(None, description="A file that must exist in the destination root.")
    exclude: list[str] | None = Field(None, description="Glob patterns never moved (replaces the default list).")
    stability_lock: bool | None = Field(None, description="Also require a free exclusive flock.")
    check_open_writers: bool | None = Field(None, description="A file open for writing elsewhere is not finished.")
    max_concurrent_copies: int | None = Field(None, description="Copies at once in one agent.")
    shared_limit_tag: str | None = Field(None, description="Prefect tag for a limit shared by several agents.")
    shared_limit: int | None = Field(None, description="Copies at once across the agents with the tag.")
    storage_warning_gb: float | None = Field(None, description="Destination free GB below this is a WARNING.")
    data_path: str | None = Field(None, description="Where `fta up` keeps its local Prefect server.")
    server_port: int | None = Field(None, description="Port of the local Prefect server `fta up` starts.")
    metrics_port: int | None = Field(None, description="Prometheus metrics on 127.0.0.1 at this port (0: off).")
    alert_webhook_url: SecretStr | None = Field(None, description="Where alerts are POSTed (may carry a token).")
    alert_destination_minutes: float | None = Field(
        None, description="Alert when the destination has been unavailable this many minutes."
    )
    alert_repeat_minutes: float | None = Field(
        None, description="At most one storage-low alert per destination this many minutes apart."
    )

    def settings_values(self) -> dict[str, Any]:
        """The fields that are set, as settings overrides."""
        values = {name: getattr(self, name) for name in Settings.model_fields}
        return {name: value for name, value in values.items() if value is not None}

    @classmethod
    def from_settings(cls, settings: Settings) -> TransferConfig:
        values = {name: getattr(settings, name) for name in Settings.model_fields}
        values = {name: (str(value) if hasattr(value, "__fspath__") else value) for name, value in values.items()}
        if values.get("log_file_path") is None:
            values["log_file_path"] = ""
        return cls(**values)
