"""The ``TransferConfig`` block: the agent's settings saved in Prefect by name, loaded by the deployments.

``fta up`` saves one (``default``) from the effective settings the first time; after that the block is the
configuration of the served deployments, editable in the UI (Blocks) or with ``prefect block`` commands, and a
running watch picks up a change within one cycle. Secrets (a webhook URL with a token) are ``SecretStr``.

Its fields are not declared here: there is one per setting, generated from ``fta.settings.Settings`` in its order,
with its name and description, and with the setting's type, choices and bounds as the JSON schema the UI's form
offers and checks. A new setting is a new block field with no second declaration.

An empty field means "not set": the setting's default, or ``FTA_*`` of the serving process. The block holds what
an operator typed (paths and choices as text) and the settings model judges it, so an invalid saved value is
refused in one readable line when the settings are loaded, as an invalid environment variable is, and a document
saved by an earlier release still loads.
"""

from __future__ import annotations

import types
from abc import ABC
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self, Union, get_args, get_origin

from prefect.blocks.core import Block
from pydantic import Field, TypeAdapter, WithJsonSchema, create_model
from pydantic.fields import FieldInfo

from fta.settings import Settings

# A saved configuration names its own folders: these two are required, every other field may stay empty.
REQUIRED = ("source_path", "destination_path")


def _value_type(annotation: Any) -> Any:
    """The setting's type without ``None`` (``Path | None`` -> ``Path``)."""
    if get_origin(annotation) in (Union, types.UnionType):
        (kind,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return kind
    return annotation


def stored_type(field: FieldInfo) -> Any:
    """How the block keeps a setting's value: text for paths and choices, else the setting's own type."""
    kind = _value_type(field.annotation)
    return str if kind is Path or get_origin(kind) is Literal else kind


def form_schema(field: FieldInfo) -> dict[str, Any]:
    """The JSON schema of a setting's value (its type, choices and bounds), as the block's form shows it."""
    kind = _value_type(field.annotation)
    return TypeAdapter(Annotated[(kind, *field.metadata)] if field.metadata else kind).json_schema()


def block_field(name: str, field: FieldInfo) -> tuple[Any, Any]:
    """The block field of one setting: its stored type shown with the setting's schema, empty by default."""
    kind = stored_type(field)
    if kind is not _value_type(field.annotation) or field.metadata:
        # Stored loosely (text, no bounds), shown as the setting is. A SecretStr needs no such wrapper, and must
        # keep its own type: Prefect finds secret fields by their type.
        kind = Annotated[kind, WithJsonSchema(form_schema(field))]
    if name in REQUIRED:
        return kind, Field(description=field.description)
    return kind | None, Field(None, description=field.description)


class _TransferConfigBlock(Block, ABC):  # ABC: to Prefect a block interface, never registered itself
    """Settings of the File Transfer Agent."""

    _block_type_name: ClassVar[str] = "FTA Transfer Config"
    _block_type_slug: ClassVar[str] = "fta-transfer-config"
    _description: ClassVar[str] = "Source, destination and behaviour of a File Transfer Agent."

    def settings_values(self) -> dict[str, Any]:
        """The fields that are set, as settings overrides."""
        values = {name: getattr(self, name) for name in Settings.model_fields}
        return {name: value for name, value in values.items() if value is not None}

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        values = {name: getattr(settings, name) for name in Settings.model_fields}
        values = {name: (str(value) if hasattr(value, "__fspath__") else value) for name, value in values.items()}
        if values.get("log_file_path") is None:
            values["log_file_path"] = ""  # "no log file"; an empty field would mean the default one
        return cls(**values)


if TYPE_CHECKING:  # type checkers see the methods; the fields exist at run time only
    TransferConfig = _TransferConfigBlock
else:
    TransferConfig = create_model(
        "TransferConfig",
        __base__=_TransferConfigBlock,
        __module__=__name__,
        __doc__=_TransferConfigBlock.__doc__,
        **{name: block_field(name, field) for name, field in Settings.model_fields.items()},
    )
