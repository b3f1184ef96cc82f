"""The commands of ``fta`` that need no Prefect: the settings options, ``check-config`` and ``simulate``.

The command line itself (``deployments/cli.py``) parses and dispatches; it sits above the flows because its other
commands run them. What is here is core: it works, and is tested, without Prefect.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, TextIO

from fta.errors import ConfigError
from fta.probe import Destination, probe_destination
from fta.settings import Settings, describe_settings, load_settings
from fta.simulator import GrowthPlan, numbered, parse_fraction, parse_size, simulate

_ALIASES = {"source_path": ["--source"], "destination_path": ["--destination", "--dest"]}


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _is_list(annotation: Any) -> bool:
    return typing.get_origin(annotation) is list or any(
        typing.get_origin(arg) is list for arg in typing.get_args(annotation)
    )


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """One option per settings field, all defaulting to None ("not given")."""
    group = parser.add_argument_group("settings (override FTA_* environment variables and .env)")
    group.add_argument("--env-file", default=".env", help="dotenv file to read (default: .env)")
    for name, field in Settings.model_fields.items():
        flags = [f"--{name.replace('_', '-')}", *_ALIASES.get(name, [])]
        annotation = field.annotation
        if isinstance(annotation, types.GenericAlias | types.UnionType) and not _is_list(annotation):
            annotation = str
        if _is_bool(annotation):
            group.add_argument(*flags, dest=name, action=argparse.BooleanOptionalAction, default=None)
        elif _is_list(annotation):
            group.add_argument(*flags, dest=name, action="append", default=None, help=field.description)
        else:
            group.add_argument(*flags, dest=name, default=None, help=field.description)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {name: getattr(args, name, None) for name in Settings.model_fields}
    return load_settings(overrides, env_file=args.env_file)


def check_config(args: argparse.Namespace, out: TextIO) -> int:
    """``fta check-config``: the effective settings, then whether the destination takes files now."""
    settings = settings_from_args(args)
    rows = describe_settings(settings)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}", file=out)
    probe = probe_destination(Destination.of(settings))
    if probe.ok:
        free = (probe.free_bytes or 0) / 1e9
        print(f"\nconfiguration OK; destination reachable, {free:.1f} GB free", file=out)
    else:
        print(f"\nconfiguration OK; destination not reachable now: {probe.reason}", file=out)
    return 0


class ProgressBar:
    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream, self.width = stream, width

    def __call__(self, done: int, total: int) -> None:
        part = done / total if total else 1.0
        filled = int(part * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] {part:6.1%}  {done / 1e6:,.1f}/{total / 1e6:,.1f} MB")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def simulate_growth(args: argparse.Namespace, out: TextIO) -> int:
    """``fta simulate``: write files that grow like a recorder writes them; never over an existing file."""
    try:
        plan = GrowthPlan(
            size=parse_size(args.size),
            seconds=float(args.seconds),
            pause_at=parse_fraction(args.pause_at) if args.pause_at is not None else None,
            pause_seconds=float(args.pause_seconds),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if plan.seconds < 0 or plan.pause_seconds < 0 or args.count < 1:
        raise ConfigError("--seconds and --pause-seconds must be >= 0 and --count >= 1")
    targets = numbered(Path(args.path), args.count)
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise ConfigError(f"refusing to overwrite {', '.join(existing)}")
    simulate(targets, plan, progress=None if args.quiet else ProgressBar(sys.stderr))
    for path in targets:
        print(path, file=out)
    return 0
