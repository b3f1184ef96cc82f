"""Where a flow run's settings come from: a saved ``TransferConfig`` block (deployments), overridden by ``config``."""

from __future__ import annotations

from typing import Any, cast

from blocks.transfer_config import TransferConfig
from fta.settings import Settings, load_settings


def resolve_settings(config: dict[str, Any] | None, config_block: str | None) -> Settings:
    values: dict[str, Any] = {}
    if config_block:
        block = cast(TransferConfig, TransferConfig.load(config_block))
        values.update(block.settings_values())
    values.update(config or {})
    return load_settings(values)
