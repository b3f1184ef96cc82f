"""The ``fta`` command line (``python -m deployments.cli``).

    fta check-config [settings options]       validate and print the effective settings
    fta up [settings options]                 local Prefect server (unless PREFECT_API_URL), serve the deployments
    fta watch [settings options]              run the watch_folder flow in this process until Ctrl-C / SIGTERM
    fta once [settings options]               run transfer_once: move what is in the source now, then end
    fta status | files | storage [--json]     what the agent published in the Prefect API
    fta health [-w GB -c GB]                  Nagios plugin
    fta agents [--json] [-w GB -c GB]         every agent of the server, each judged as fta health; the worst
    fta retire --agent NAME                   remove a retired host's deployments, alerts, block and artifacts
    fta server [--database-url URL --host H --port P]   the site's central Prefect server on PostgreSQL
    fta simulate PATH --size 50MB --seconds 10 [--pause-at 40% --pause-seconds 5] [--count N]

It lives here, above the flows, because most commands run them or read the API; ``check-config`` and
``simulate`` are core (``fta.commands``) and never import Prefect. Prefect is imported inside the commands that
need it, after ``PREFECT_DEFAULTS`` are set. ``watch`` and ``once`` talk to the Prefect API at ``PREFECT_API_URL``;
without it they start a temporary local server for the run.

Every setting has an option (``--file-stable-time-seconds 5``, ``--no-use-temporary-file``, ...), which overrides
the environment (``FTA_*``) and the ``.env`` file. Invalid configuration exits with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from deployments.central_server import add_server_options
from deployments.operator_commands import add_agent_option, add_agents_options
from fta import __version__
from fta.commands import add_settings_options, check_config, settings_from_args, simulate_growth
from fta.credential import add_client_options
from fta.errors import ConfigError
from fta.health import add_threshold_options
from fta.logsetup import configure_logging
from fta.settings import agent_tag

EXIT_CONFIG = 2
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
    from prefect import tags
    from prefect.exceptions import TerminationSignal

    from deployments.local_server import StartError, temporary_server
    from flows.config import settings_in_process, stop_in_process
    from flows.transfer_once import transfer_once
    from flows.watch_folder import watch_folder
    from fta.stop_switch import StopSwitch

    configure_logging(settings, console=False)
    # Outside a flow run SIGTERM pulls the run's stop switch, which the loop honours as soon as it starts; inside
    # the watch run its own handler pulls the same switch, inside a sweep Prefect's raises TerminationSignal.
    stop = StopSwitch()
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.request())
    try:
        # The settings are handed over in this process, never as the run's parameters (shown in the UI, kept in
        # the API): the webhook URL and its token stay out of both. The server: one a Ctrl-C to the group misses.
        with (
            temporary_server(),
            settings_in_process(settings),
            stop_in_process(stop),
            tags(agent_tag(settings.agent_name)),  # the run is the agent's, as its deployment's runs are
        ):
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


def _server(args: argparse.Namespace, out: TextIO) -> int:
    """The central Prefect server (PostgreSQL, basic auth beyond loopback), in the foreground until stopped."""
    from deployments.central_server import from_args, run
    from deployments.local_server import StartError

    try:
        return run(from_args(args, os.environ), out)
    except StartError as exc:
        print(f"fta: cannot start the server: {exc}", file=sys.stderr)
        return exc.code


def _operator(args: argparse.Namespace, out: TextIO) -> int:
    """status / files / storage / health / agents: read what the agents published in the Prefect API."""
    _prefect_environment()
    from deployments import operator_commands as ops

    if args.command == "health":
        return ops.health(args.warning, args.critical, out, args.data_path, args.agent)
    if args.command == "agents":
        return ops.agents(args.warning, args.critical, args.json, out, args.data_path, args.max_agents)
    try:
        handler: Callable[[bool, TextIO, str | None], int] = getattr(ops, args.command)
        with ops.local_api(args.data_path):
            return handler(args.json, out, args.agent)
    except Exception as exc:
        print(f"fta: cannot read the Prefect API: {exc}", file=sys.stderr)
        return 3


def _retire(args: argparse.Namespace, out: TextIO) -> int:
    """Remove what a host that is gone for good kept on the server (never another agent's)."""
    _prefect_environment()
    from deployments.retire import retire

    return retire(args.agent, out, args.data_path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fta", description="File Transfer Agent")
    parser.add_argument("--version", action="version", version=f"fta {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for name, text, handler in (
        ("check-config", "validate and print the effective settings", check_config),
        ("up", "start a local Prefect server (unless PREFECT_API_URL is set), serve the deployments, watch", _up),
        ("watch", "watch the source and move finished files until stopped", _watch),
        ("once", "move what is in the source now (once stable), then end", _once),
    ):
        command = commands.add_parser(name, help=text)
        add_settings_options(command)
        command.set_defaults(handler=handler)

    for name, text in (
        ("status", "pending, copying, recently completed and failed files (the seed's /api/status)"),
        ("files", "every tracked file with the seed's per-file fields (/api/files)"),
        ("storage", "free space and status; exit 0 OK, 1 WARNING, 2 ERROR (/api/storage)"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument("--json", action="store_true", help="print the seed's JSON")
        add_client_options(command)
        add_agent_option(command)
        command.set_defaults(handler=_operator)
    for name, text, add_own_options in (
        ("health", "Nagios plugin: one line, exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN", add_agent_option),
        ("agents", "every agent of the server, each judged as health; exits with the worst", add_agents_options),
    ):
        nagios = commands.add_parser(name, help=text)
        add_threshold_options(nagios)
        add_client_options(nagios)
        add_own_options(nagios)
        nagios.set_defaults(handler=_operator)

    gone = commands.add_parser("retire", help="remove a host that is gone for good from the server (stop it first)")
    gone.add_argument("--agent", required=True, metavar="NAME", help="the agent to remove (no default)")
    add_client_options(gone)
    gone.set_defaults(handler=_retire)

    central = commands.add_parser("server", help="the site's central Prefect server on PostgreSQL, until stopped")
    add_server_options(central)
    central.set_defaults(handler=_server)

    sim = commands.add_parser("simulate", help="write files that grow like a recorder writes them")
    sim.add_argument("path", help="file to write; with --count N, PATH-001.ext ... PATH-N.ext")
    sim.add_argument("--size", default="50MB", help="final size of each file (e.g. 64KiB, 50MB, 1GiB)")
    sim.add_argument("--seconds", default="10", help="how long the growth takes")
    sim.add_argument("--pause-at", default=None, help="pause once at this point (e.g. 40%% or 0.4)")
    sim.add_argument("--pause-seconds", default="0", help="length of the pause")
    sim.add_argument("--count", type=int, default=1, help="number of files written side by side")
    sim.add_argument("--quiet", action="store_true", help="no progress bar")
    sim.set_defaults(handler=simulate_growth)
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
