"""The TransferConfig block is the settings model's schema, field by field, and loads what earlier releases saved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from blocks.transfer_config import TransferConfig
from fta.errors import ConfigError
from fta.settings import Settings, load_settings

# What 0.1.0 registered (its block schema, declared by hand) and a document its from_settings saved.
PREVIOUS = json.loads((Path(__file__).parent / "data" / "transfer_config_schema_0.1.0.json").read_text())


def properties(model: Any) -> dict[str, dict[str, Any]]:
    return {name: {k: v for k, v in spec.items() if k != "position"} for name, spec in model["properties"].items()}


def value_schema(setting: dict[str, Any]) -> dict[str, Any]:
    """The schema of a setting's value alone: its type, choices and bounds (no title, description, default)."""
    if "anyOf" in setting:
        values = [branch for branch in setting["anyOf"] if branch != {"type": "null"}]
        assert len(values) == 1, setting
        return cast(dict[str, Any], values[0])
    return {k: v for k, v in setting.items() if k not in ("title", "description", "default")}


def test_one_block_field_per_setting_in_the_same_order() -> None:
    assert list(TransferConfig.model_fields) == list(Settings.model_fields)
    assert len(Settings.model_fields) == 32


def test_each_block_field_is_its_setting_with_no_default() -> None:
    """Names, types, choices, bounds and descriptions are the setting's; the default is null ("not set"), except
    for the two folders, which a saved configuration must name."""
    settings = properties(Settings.model_json_schema())
    block = properties(TransferConfig.model_json_schema())
    assert TransferConfig.model_json_schema()["required"] == ["source_path", "destination_path"]
    for name, setting in settings.items():
        shown = {"title": setting["title"], "description": setting["description"]}
        if name in ("source_path", "destination_path"):
            expected = {**value_schema(setting), **shown}
        else:
            expected = {"anyOf": [value_schema(setting), {"type": "null"}], "default": None, **shown}
        assert block[name] == expected, name
    # The comparison above meets every kind of setting at least once.
    values = [value_schema(setting) for setting in settings.values()]
    assert {"exclusiveMinimum": 0, "type": "number"} in values
    assert {"maximum": 65535, "minimum": 1, "type": "integer"} in values
    assert {"enum": ["checksum", "size"], "type": "string"} in values
    assert {"format": "path", "type": "string"} in values
    assert {"items": {"type": "string"}, "type": "array"} in values


def test_the_webhook_url_stays_a_secret_of_the_block() -> None:
    assert TransferConfig.model_json_schema()["secret_fields"] == ["alert_webhook_url"]
    block = TransferConfig(source_path="/s", destination_path="/d", alert_webhook_url="https://hook/?token=t")
    assert "token" not in repr(block) and "token" not in block.model_dump_json()


def test_an_empty_field_leaves_the_setting_to_the_environment_or_its_default(
    source: Path, destination: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = TransferConfig(source_path=str(source), destination_path=str(destination))
    assert block.settings_values() == {"source_path": str(source), "destination_path": str(destination)}
    plain = load_settings({"source_path": source, "destination_path": destination}, env_file=None)
    assert load_settings(block.settings_values(), env_file=None) == plain
    monkeypatch.setenv("FTA_MAX_RETRY_ATTEMPTS", "7")
    assert load_settings(block.settings_values(), env_file=None).max_retry_attempts == 7


def test_settings_saved_as_a_block_come_back_the_same(source: Path, destination: Path) -> None:
    document = {**PREVIOUS["document"], "source_path": str(source), "destination_path": str(destination)}
    settings = load_settings(document, env_file=None)
    assert settings.log_file_path is None and settings.exclude == ["*.tmp", "*.part"]  # the fixture's odd values
    block = TransferConfig.from_settings(settings)
    assert load_settings(block.settings_values(), env_file=None) == settings


def test_the_block_keeps_what_an_operator_typed_and_the_settings_judge_it(source: Path, destination: Path) -> None:
    """Loading a block never fails on a value; the settings refuse an invalid one in one line, as for FTA_*."""
    paths = {"source_path": str(source), "destination_path": str(destination)}
    typed = TransferConfig(**paths, log_level="debug", destination_marker="", log_file_path="off")
    settings = load_settings(typed.settings_values(), env_file=None)
    assert (settings.log_level, settings.destination_marker, settings.log_file_path) == ("DEBUG", None, None)
    wrong = TransferConfig(**paths, file_stable_time_seconds=-1, verify="md5", server_port=70000)
    with pytest.raises(ConfigError) as refused:
        load_settings(wrong.settings_values(), env_file=None)
    assert "\n" not in str(refused.value)
    for name in ("file_stable_time_seconds", "verify", "server_port"):
        assert name in str(refused.value)


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.mark.e2e
def test_a_document_saved_by_the_previous_release_loads_and_saves_again(
    prefect_server: None, source: Path, destination: Path, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentCreate, BlockSchemaCreate

    TransferConfig.register_type_and_schema()
    document = {**PREVIOUS["document"], "source_path": str(source), "destination_path": str(destination)}
    with get_client(sync_client=True) as client:
        kind = client.read_block_type_by_slug("fta-transfer-config")
        old = client.create_block_schema(
            BlockSchemaCreate(fields=PREVIOUS["fields"], block_type_id=kind.id, capabilities=[])
        )
        assert old.checksum == PREVIOUS["checksum"] != TransferConfig._calculate_schema_checksum()
        for name, data in (
            ("saved-by-0-1-0", document),
            ("typed-in-0-1-0", {"source_path": str(source), "destination_path": str(destination), "verify": "Size"}),
        ):
            client.create_block_document(
                BlockDocumentCreate(name=name, data=data, block_schema_id=old.id, block_type_id=kind.id)
            )

    block = cast(TransferConfig, TransferConfig.load("saved-by-0-1-0"))
    assert load_settings(block.settings_values(), env_file=None) == load_settings(document, env_file=None)
    assert block.settings_values()["alert_webhook_url"].get_secret_value().endswith("token=secret")
    typed = cast(TransferConfig, TransferConfig.load("typed-in-0-1-0"))
    with pytest.raises(ConfigError, match="verify"):  # refused by the settings, as 0.1.0 refused it
        load_settings(typed.settings_values(), env_file=None)

    # Edited and saved again, the document moves to this release's schema and keeps its values.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    block.destination_path = str(elsewhere)  # type: ignore[attr-defined]
    block.save("saved-by-0-1-0", overwrite=True)
    again = cast(TransferConfig, TransferConfig.load("saved-by-0-1-0"))
    with get_client(sync_client=True) as client:
        stored = client.read_block_document_by_name("saved-by-0-1-0", "fta-transfer-config")
    assert stored.block_schema is not None
    assert stored.block_schema.checksum == TransferConfig._calculate_schema_checksum()
    expected = load_settings({**document, "destination_path": elsewhere}, env_file=None)
    assert load_settings(again.settings_values(), env_file=None) == expected
