"""``fta status``, ``files``, ``storage``, ``health`` (also ``check_fta``) and ``agents``: read the Prefect API only.

Each reads what one agent published (its ``fta-status-<agent>`` and ``fta-storage-<agent>`` artifacts, the state of
its watch run, tagged ``agent:<agent>``) and prints the seed's shapes with ``--json``, or a readable form without.
Which agent: ``--agent NAME``, else this host's ``agent_name`` (``FTA_AGENT_NAME``, else the host's short name).
``fta agents`` reads every agent the server knows (``flows.api_state.known_agents`` says which) and judges each as
``fta health --agent NAME`` does, with one write check for them all (they share the server).

Which API, with which credential: ``PREFECT_API_URL``, else the local server of ``fta up`` (127.0.0.1,
``server_port``); ``PREFECT_API_AUTH_STRING``, else, for that local server only, the credential file in
``data_path`` (``--data-path``, else ``FTA_DATA_PATH``, else ``.env`` in the working folder, else ``fta-data``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from fta.credential import add_client_options
from fta.health import (
    CRITICAL,
    OK,
    UNKNOWN,
    WARNING,
    AgentHealth,
    Health,
    Observed,
    SiteHealth,
    WriteProbe,
    add_threshold_options,
    judge,
    judge_site,
    unknown,
)
from fta.settings import default_agent_name
from fta.views import TO_DO, files_view, status_view

STORAGE_EXIT = {"OK": 0, "WARNING": 1, "ERROR": 2}
MAX_AGENTS = 200  # judged by one ``fta agents``: three reads each, a few hundred requests at most


@contextlib.contextmanager
def local_api(data_path: str | None) -> Iterator[None]:
    """The API to read and its credential (see the module's text), for this process's Prefect client.

    Raises ``fta.credential.CredentialError`` (one line) when the credential file exists but cannot be read.
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, get_current_settings, temporary_settings

    from fta.credential import client_settings

    current = get_current_settings().api  # the environment's and the profile's, or a test's temporary ones
    auth = current.auth_string.get_secret_value() if current.auth_string is not None else None
    found = client_settings(data_path, current.url, auth)

    updates: dict[Any, Any] = {PREFECT_API_URL: found["PREFECT_API_URL"]}
    if "PREFECT_API_AUTH_STRING" in found:
        updates[PREFECT_API_AUTH_STRING] = found["PREFECT_API_AUTH_STRING"]
    with temporary_settings(updates=updates):
        yield


def this_agent() -> str:
    """This host's agent, as ``fta up`` here names it without an option: ``FTA_AGENT_NAME`` or the host's name."""
    return os.environ.get("FTA_AGENT_NAME", "").strip() or default_agent_name()


def add_agent_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--agent", default=None, metavar="NAME", help="the agent to read (default: this host's agent_name)"
    )


def _status_rows(agent: str | None) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
    from flows.api_state import read_status

    return read_status(agent or this_agent())


def _json(body: Any, out: TextIO) -> int:
    print(json.dumps(body, indent=2), file=out)
    return 0


def status(as_json: bool, out: TextIO, agent: str | None = None) -> int:
    view = status_view(*_status_rows(agent))
    if as_json:
        return _json(view, out)
    print(f"pending ({view['pendingFilesCount']}): {', '.join(view['pendingFiles']) or '-'}", file=out)
    for running in view["allInProgress"]:
        print(f"copying: {running['file']} {running['progressPercentage']}% since {running['startTime']}", file=out)
    if not view["allInProgress"]:
        print("copying: -", file=out)
    print("recently completed:", file=out)
    for done in view["recentlyCompleted"]:
        print(f"  {done['completedAt']}  {done['file']}", file=out)
    if not view["recentlyCompleted"]:
        print("  -", file=out)
    print("failed:", file=out)
    for failed in view["failedFiles"]:
        print(f"  {failed['failedAt']}  {failed['file']}: {failed['error']}", file=out)
    if not view["failedFiles"]:
        print("  -", file=out)
    return 0


def files(as_json: bool, out: TextIO, agent: str | None = None) -> int:
    rows, counts = _status_rows(agent)
    view = files_view(rows)
    unlisted = _unlisted(rows, counts)
    if as_json:
        return _json(view | ({"counts": counts, "unlisted": unlisted} if counts is not None else {}), out)
    print(f"{'status':<10} {'progress':>8} {'size':>14}  file", file=out)
    for row in view["files"]:
        print(f"{row['status']:<10} {row['copy_progress']:>7.1f}% {row['file_size']:>14}  {row['file_path']}", file=out)
    if unlisted:
        print(f"... and {unlisted} more files waiting, not listed (the status lists the first by path)", file=out)
    return 0


def _unlisted(rows: list[dict[str, Any]], counts: dict[str, int] | None) -> int:
    """Files still to do that the status table counts but does not list (a backlog: it lists the first ones)."""
    if counts is None:
        return 0
    return max(0, sum(counts.get(name, 0) for name in TO_DO) - sum(row.get("status") in TO_DO for row in rows))


def storage(as_json: bool, out: TextIO, agent: str | None = None) -> int:
    """The seed's storage object; exit 0 OK, 1 WARNING (the seed's 507), 2 ERROR (the seed's 503)."""
    from flows.api_state import read_table, storage_key

    rows, _ = read_table(storage_key(agent or this_agent()))
    if not rows:
        body: dict[str, Any] = {
            "sourceFreeGB": -1,
            "destinationFreeGB": -1,
            "status": "ERROR",
            "message": "No storage report yet.",
        }
    else:
        body = {
            key: rows[0][key] for key in ("sourceFreeGB", "destinationFreeGB", "status", "message") if key in rows[0]
        }
        if body.get("message") is None:
            body.pop("message", None)
    if as_json:
        print(json.dumps(body, indent=2), file=out)
    else:
        message = f" - {body['message']}" if body.get("message") else ""
        print(
            f"{body['status']}: source {body['sourceFreeGB']} GB free, destination {body['destinationFreeGB']} GB free"
            f"{message}",
            file=out,
        )
    return STORAGE_EXIT.get(str(body["status"]), 2)


def _judged(agent: str, probe: WriteProbe | None, warn_gb: float, crit_gb: float) -> tuple[Observed, Health]:
    """The verdict on ``agent``, from its state and the server's write check (``fta health`` and ``fta agents``)."""
    from flows.api_state import observe

    seen = observe(agent)
    seen.write_probe = probe
    return seen, judge(seen, warn_gb, crit_gb)


def _unreadable(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"cannot read the Prefect API: {type(exc).__name__}: {first}"


def health(warn_gb: float, crit_gb: float, out: TextIO, data_path: str | None = None, agent: str | None = None) -> int:
    """Nagios plugin: one line with perfdata; 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    try:
        with local_api(data_path):
            from flows.api_state import probe_write

            verdict: Health = _judged(agent or this_agent(), probe_write(), warn_gb, crit_gb)[1]
    except Exception as exc:  # the API cannot be read: the plugin does not know
        verdict = unknown(_unreadable(exc))
    print(verdict.line, file=out)
    return verdict.code


def agents(
    warn_gb: float,
    crit_gb: float,
    as_json: bool,
    out: TextIO,
    data_path: str | None = None,
    most: int = MAX_AGENTS,
) -> int:
    """Every agent the server knows, each judged as ``health`` judges one; exit with the worst (Nagios codes).

    An agent whose state cannot be read is UNKNOWN and the others are still judged; a server that cannot be read
    at all is UNKNOWN with the reason, as ``fta health`` says it.
    """
    try:
        with local_api(data_path):
            site = _site(warn_gb, crit_gb, most)
    except Exception as exc:
        site = SiteHealth(UNKNOWN, [], f"FTA AGENTS UNKNOWN - {_unreadable(exc)}")
    if as_json:
        print(json.dumps(site.as_json(), indent=2), file=out)
    else:
        print(site.text(), file=out)
    return site.code


def _site(warn_gb: float, crit_gb: float, most: int) -> SiteHealth:
    from flows.api_state import known_agents, probe_write

    names, cut = known_agents(most)
    probe = probe_write() if names else None  # one write tells for the whole server
    judged: list[AgentHealth] = []
    for name in names:
        try:
            seen, verdict = _judged(name, probe, warn_gb, crit_gb)
        except Exception as exc:  # this agent's state (a reply that is not what it publishes): judge the others
            first = str(exc).splitlines()[0] if str(exc) else ""
            judged.append(AgentHealth(name, unknown(f"its state cannot be read: {type(exc).__name__}: {first}")))
        else:
            judged.append(AgentHealth(name, verdict, seen))
    return judge_site(judged, more=most if cut else None)


def add_agents_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the agents as JSON")
    parser.add_argument(
        "--max-agents",
        type=int,
        default=MAX_AGENTS,
        metavar="N",
        help=f"judge at most N agents, the first by name; more known is a WARNING ({MAX_AGENTS})",
    )


def check_fta(argv: Sequence[str] | None = None) -> int:
    """The standalone Nagios plugin ``check_fta`` (same as ``fta health``)."""
    parser = argparse.ArgumentParser(prog="check_fta", description="Nagios check of the File Transfer Agent")
    add_threshold_options(parser)
    add_client_options(parser)
    add_agent_option(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        return 3  # plugin guidelines: bad usage is UNKNOWN
    return health(args.warning, args.critical, sys.stdout, args.data_path, args.agent)


def main() -> None:  # pragma: no cover - console script
    sys.exit(check_fta())


__all__ = ["CRITICAL", "OK", "WARNING", "agents", "check_fta", "files", "health", "status", "storage"]
