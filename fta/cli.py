"""The ``fta`` command line.

    fta check-config [settings options]       validate and print the effective settings
    fta watch [settings options]              run the watch_folder flow in this process until Ctrl-C / SIGTERM
    fta once [settings options]               run transfer_once: move what is in the source now, then end
    fta simulate PATH --size 50MB --seconds 10 [--pause-at 40% --pause-seconds 5] [--count N]

``watch`` and ``once`` talk to the Prefect API at ``PREFECT_API_URL``; without it they start a temporary local
server for the run. They import Prefect; the other commands do not.

Every setting has an option (``--file-stable-time-seconds 5``, ``--no-use-temporary-file``, ...), which overrides
the environment (``FTA_*``) and the ``.env`` file. Invalid configuration exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from fta import __version__
from fta.credential import add_client_options
from fta.errors import ConfigError
from fta.health import add_threshold_options
from fta.logsetup import configure_logging
from fta.probe import probe_destination
from fta.settings import Settings, describe_settings, load_settings
from fta.simulator import GrowthPlan, numbered, parse_fraction, parse_size, simulate

EXIT_CONFIG = 2
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


def _check_config(args: argparse.Namespace, out: TextIO) -> int:
    settings = settings_from_args(args)
    rows = describe_settings(settings)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}", file=out)
    probe = probe_destination(settings.destination_path, settings.require_mount, settings.destination_marker)
    if probe.ok:
        free = (probe.free_bytes or 0) / 1e9
        print(f"\nconfiguration OK; destination reachable, {free:.1f} GB free", file=out)
    else:
        print(f"\nconfiguration OK; destination not reachable now: {probe.reason}", file=out)
    return 0


PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
}
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def _prefect_environment() -> None:
    """Offline and quiet defaults, set before Prefect is imported (an operator's own values win)."""
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)


def _run_flow(args: argparse.Namespace, once: bool) -> int:
    settings = settings_from_args(args)  # invalid settings: exit 2 before Prefect is even imported
    _prefect_environment()
    # Prefect is imported only by the commands that run flows.
    from prefect.exceptions import TerminationSignal

    from deployments.local_server import StartError, temporary_server
    from flows.config import settings_in_process
    from flows.transfer_loop import request_stop
    from flows.transfer_once import transfer_once
    from flows.watch_folder import watch_folder

    configure_logging(settings, console=False)
    # Outside a flow run SIGTERM asks the loop to stop; inside one, Prefect's own handler raises TerminationSignal.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: request_stop())
    try:
        # The settings are handed over in this process, never as the run's parameters (shown in the UI, kept in
        # the API): the webhook URL and its token stay out of both.
        with temporary_server(), settings_in_process(settings):  # the server: one a Ctrl-C to the group misses
            state: Any = transfer_once(return_state=True) if once else watch_folder(return_state=True)
    except StartError as exc:
        print(f"fta: cannot start: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except TerminationSignal:
        return 0  # SIGTERM: a clean stop (copies ended, temp files removed)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0 if state.is_completed() else EXIT_FAILED


def _up(args: argparse.Namespace, out: TextIO) -> int:
    settings = settings_from_args(args)  # invalid settings: exit 2 before anything starts
    _prefect_environment()
    from deployments.serve import up

    return up(settings)


def _watch(args: argparse.Namespace, out: TextIO) -> int:
    return _run_flow(args, once=False)


def _once(args: argparse.Namespace, out: TextIO) -> int:
    return _run_flow(args, once=True)


def _operator(args: argparse.Namespace, out: TextIO) -> int:
    """status / files / storage / health: read what the agent published in the Prefect API."""
    _prefect_environment()
    from deployments import operator_commands as ops

    if args.command == "health":
        return ops.health(args.warning, args.critical, out, args.data_path)
    try:
        handler: Callable[[bool, TextIO], int] = getattr(ops, args.command)
        with ops.local_api(args.data_path):
            return handler(args.json, out)
    except Exception as exc:
        print(f"fta: cannot read the Prefect API: {exc}", file=sys.stderr)
        return 3


class _Bar:
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


def _simulate(args: argparse.Namespace, out: TextIO) -> int:
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
    simulate(targets, plan, progress=None if args.quiet else _Bar(sys.stderr))
    for path in targets:
        print(path, file=out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fta", description="File Transfer Agent")
    parser.add_argument("--version", action="version", version=f"fta {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = commands.add_parser("check-config", help="validate and print the effective settings")
    add_settings_options(check)
    check.set_defaults(handler=_check_config)

    run_all = commands.add_parser(
        "up", help="start a local Prefect server (unless PREFECT_API_URL is set), serve the deployments, watch"
    )
    add_settings_options(run_all)
    run_all.set_defaults(handler=_up)

    watch = commands.add_parser("watch", help="watch the source and move finished files until stopped")
    add_settings_options(watch)
    watch.set_defaults(handler=_watch)

    once = commands.add_parser("once", help="move what is in the source now (once stable), then end")
    add_settings_options(once)
    once.set_defaults(handler=_once)

    for name, text in (
        ("status", "pending, copying, recently completed and failed files (the seed's /api/status)"),
        ("files", "every tracked file with the seed's per-file fields (/api/files)"),
        ("storage", "free space and status; exit 0 OK, 1 WARNING, 2 ERROR (/api/storage)"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--json", action="store_true", help="print the seed's JSON")
        add_client_options(command)
        command.set_defaults(handler=_operator)
    nagios = commands.add_parser("health", help="Nagios plugin: one line, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN")
    add_threshold_options(nagios)
    add_client_options(nagios)
    nagios.set_defaults(handler=_operator)

    sim = commands.add_parser("simulate", help="write files that grow like a recorder writes them")
    sim.add_argument("path", help="file to write; with --count N, PATH-001.ext ... PATH-N.ext")
    sim.add_argument("--size", default="50MB", help="final size of each file (e.g. 64KiB, 50MB, 1GiB)")
    sim.add_argument("--seconds", default="10", help="how long the growth takes")
    sim.add_argument("--pause-at", default=None, help="pause once at this point (e.g. 40%% or 0.4)")
    sim.add_argument("--pause-seconds", default="0", help="length of the pause")
    sim.add_argument("--count", type=int, default=1, help="number of files written side by side")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(handler=_simulate)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace, TextIO], int] = args.handler
    try:
        return handler(args, out or sys.stdout)
    except ConfigError as exc:
        print(f"fta: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
