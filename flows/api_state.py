"""The agent's state as published in the Prefect API: read back by the storage report and the ``fta`` commands.

No side channel: everything comes from artifacts with stable keys and the flow runs' states, each of one agent
(its ``agent_name`` in the key, ``fta-status-<agent>``, and the tag ``agent:<agent>`` on its runs: several agents
share a server); the health check
also makes one write of its own (``probe_write``), since a server that cannot write still answers every read.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import VariableCreate
from prefect.client.schemas.filters import (
    ArtifactCollectionFilter,
    ArtifactCollectionFilterKey,
    ArtifactFilter,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import DeploymentStatus, StateType
from prefect.client.schemas.sorting import ArtifactCollectionSort, ArtifactSort, DeploymentSort
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

from fta.health import Observed, WriteProbe
from fta.settings import AGENT_NAME_FORM, agent_tag
from fta.views import TO_DO, counts_from_text

WATCH_FLOW_NAME = "watch-folder"
PROBE_PREFIX = "fta-health-probe-"
PROBE_TIMEOUT_SECONDS = 10.0  # per request; a healthy write and its read back take well under a second
PROBE_RETRIES = 1  # one more try (2 s later) for a busy SQLite's 503, not Prefect's five, which take a minute
PROBE_LEFT_SECONDS = 600.0  # another check's probe younger than this may be in use (agents sharing a server)
VERSIONS_KEPT = 100  # of each keyed artifact: the newest is the state, a few before it are history enough
CONFIG_BLOCK_TYPE = "fta-transfer-config"  # blocks.transfer_config.TransferConfig's slug (no import of blocks/ here)
AGENTS_PAGE = 200  # rows per request while listing the agents (the API's own largest page)


def status_key(agent: str) -> str:
    """The key of the agent's status table (one row per file)."""
    return f"fta-status-{agent}"


def storage_key(agent: str) -> str:
    """The key of the agent's storage report (the seed's storage object)."""
    return f"fta-storage-{agent}"


def health_key(agent: str) -> str:
    """The key of the health verdict the agent's storage report publishes."""
    return f"fta-health-{agent}"


def read_status(agent: str) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
    """The rows of ``agent``'s status table and the counts of every file its description gives (None: none given,
    a table from an older agent: its rows are all its files)."""
    rows, _, description = _read_artifact(status_key(agent))
    return rows, counts_from_text(description)


ENDED = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


class KeptClient:
    """One Prefect sync client, entered at the first request and kept open until ``close``: a client made per request
    builds a TLS context each time (even for ``http://``), which cost a busy watch run a tenth of its CPU at two
    questions a second. One thread asks at a time."""

    def __init__(self, timeout: float = 30.0) -> None:
        self._timeout = timeout
        self._client: Any = None  # entered, until ``close``

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer of one request to the API (an HTTP error raised: Prefect's client raises on 4xx and 5xx)."""
        if self._client is None:
            self._client = get_client(httpx_settings={"timeout": self._timeout}, sync_client=True).__enter__()
        response: httpx.Response = self._client.request(method, path, **kwargs)
        response.raise_for_status()
        return response

    def close(self) -> None:
        """Close the client (a later request opens another)."""
        client, self._client = self._client, None
        if client is not None:
            client.__exit__(None, None, None)


class CopyRecord:
    """What the server has recorded of one flow run's copies, asked through one kept client (``KeptClient``)."""

    def __init__(self, flow_run_id: uuid.UUID, timeout: float = 30.0) -> None:
        self.flow_run_id = flow_run_id
        self._client = KeptClient(timeout)

    def ended_copies(self) -> int:
        """How many ``copy ...`` task runs of the flow run the server has recorded in a final state."""
        body = {
            "flow_runs": {"id": {"any_": [str(self.flow_run_id)]}},
            "task_runs": {"name": {"like_": "copy "}, "state": {"type": {"any_": list(ENDED)}}},
        }
        return int(self._post("/task_runs/count", body))

    def newest_event(self, window: float) -> datetime | None:
        """When the newest task-run event of the flow run that the server has stored occurred, looked for in the
        last ``window`` seconds only (a watch run lives for months; the window keeps the query small). None: none
        there."""
        now = datetime.now(UTC)
        body = {
            "filter": {
                "occurred": {"since": (now - timedelta(seconds=window)).isoformat(), "until": now.isoformat()},
                "event": {"prefix": ["prefect.task-run."]},
                "related": {"id": [f"prefect.flow-run.{self.flow_run_id}"]},
                "order": "DESC",
            },
            "limit": 1,
        }
        events = self._post("/events/filter", body).get("events") or []
        return datetime.fromisoformat(events[0]["occurred"]) if events else None

    def close(self) -> None:
        """Close the client (a later question opens another)."""
        self._client.close()

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        """The JSON answer of one POST to the API (an HTTP error raised)."""
        return self._client.request("POST", path, json=body).json()


def update_table(client: KeptClient, artifact_id: uuid.UUID, rows: list[dict[str, Any]], description: str) -> bool:
    """Replace the rows and description of the table artifact ``artifact_id`` in place; False when it is gone.

    ``PATCH /artifacts/{id}`` changes the artifact and, while it is its key's latest version, the key's collection:
    no new version, nothing to prune, no event. A new version per publication (``create_table_artifact``) made the
    server store the whole table three times a second under load (the version, the collection and the collection's
    "updated" event), and a pruning deleted the versions one request each. Prefect's own ``update_artifact`` would
    also emit an event carrying the whole table.
    """
    body = {"data": json.dumps(rows), "description": description}
    try:
        client.request("PATCH", "/artifacts/{id}", path_params={"id": artifact_id}, json=body)
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code == 404:
            return False
        raise
    return True


def read_table(key: str) -> tuple[list[dict[str, Any]], datetime | None]:
    """Rows of the latest table artifact with ``key`` and when it was written (([], None) when there is none)."""
    rows, written, _ = _read_artifact(key)
    return rows, written


def _read_artifact(key: str) -> tuple[list[dict[str, Any]], datetime | None, str | None]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.UPDATED_DESC, limit=1
        )
    if not found:
        return [], None, None
    artifact = found[0]
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    written = artifact.updated or artifact.created
    return (list(data) if isinstance(data, list) else []), written, artifact.description


def prune_versions(key: str, keep: int | None = None, batch: int = 200) -> int:
    """Delete all but the newest ``keep`` versions of the artifact ``key``; how many were deleted.

    Prefect keeps every version of a keyed artifact as long as its flow run exists, and the watch run lives for
    months: the status table, published at every scan while a recording grows, added a version per scan (four
    recordings written around the clock: ~14,000 versions and 100 MB or more a day in the server's database).
    """
    keep = VERSIONS_KEPT if keep is None else keep
    deleted = 0
    with get_client(sync_client=True) as client:
        while True:
            old = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                sort=ArtifactSort.CREATED_DESC,
                offset=keep,
                limit=batch,
            )
            for artifact in old:
                client.delete_artifact(artifact.id)
            deleted += len(old)
            if len(old) < batch:
                return deleted


def age_seconds(moment: datetime | None, now: datetime | None = None) -> float | None:
    if moment is None:
        return None
    now = now or datetime.now(UTC)
    return (now - moment.astimezone(UTC)).total_seconds()


def watch_is_running(agent: str) -> bool:
    """Is a ``watch-folder`` flow run of ``agent`` (its tag) Running, and alive?

    A run stays Running in the API for good when its machine dies or its agent is killed (``kill -9``): nobody is
    left to report its end. A served run (``fta up``) lives as long as what serves it, whose runner polls its
    deployments every few seconds; the server marks a deployment NOT_READY once it has not been polled for a while
    (``PREFECT_SERVER_SERVICES_FOREMAN_DEPLOYMENT_LAST_POLLED_TIMEOUT_SECONDS``, 60 s): its runs are then dead.
    A run without a deployment (``fta watch``) is taken at its state's word.
    """
    with get_client(sync_client=True) as client:
        runs = agent_watch_runs(client, agent, [StateType.RUNNING], limit=5)
        return any(run.deployment_id is None or _served(client, run.deployment_id) for run in runs)


def agent_watch_runs(client: Any, agent: str, states: list[StateType], limit: int) -> list[Any]:
    """``agent``'s ``watch-folder`` flow runs (its tag) in one of ``states``, at most ``limit``."""
    return list(
        client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[WATCH_FLOW_NAME])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
                tags=FlowRunFilterTags(all_=[agent_tag(agent)]),
            ),
            limit=limit,
        )
    )


def _served(client: Any, deployment_id: uuid.UUID) -> bool:
    """Is the deployment still polled by its runner (not NOT_READY)? A deployment gone serves nothing."""
    try:
        deployment = client.read_deployment(deployment_id)
    except ObjectNotFound:
        return False
    return bool(deployment.status != DeploymentStatus.NOT_READY)


def probe_write(timeout: float = PROBE_TIMEOUT_SECONDS, clock: Callable[[], float] = time.monotonic) -> WriteProbe:
    """Write a new record (a Prefect variable with a name of its own), read it back and delete it.

    A new row each time, so the write needs room the database may not have; refused means the server answered with
    an error, did not answer within ``timeout``, or did not give the value back. An unreachable server raises (the
    check cannot know anything then). A probe left behind by a delete that failed is deleted by the next probe.
    """
    name = f"{PROBE_PREFIX}{uuid.uuid4().hex[:16]}"
    value = datetime.now(UTC).isoformat()
    started = clock()
    refused: str | None = None
    with (
        temporary_settings({PREFECT_CLIENT_MAX_RETRIES: PROBE_RETRIES}),
        get_client(httpx_settings={"timeout": timeout}, sync_client=True) as client,
    ):
        try:
            client.create_variable(VariableCreate(name=name, value=value))
            back = client.read_variable_by_name(name)
            if back is None or back.value != value:
                refused = "a new record did not read back"
        except PrefectHTTPStatusError as exc:
            refused = f"HTTP {exc.response.status_code} {exc.response.reason_phrase}"
        except httpx.TimeoutException:
            refused = f"a write had no answer within {timeout:g} s"
        seconds = clock() - started
        if refused is None:
            _remove_probes(client, name)  # after the timing: only the write and its read back are the probe
    return WriteProbe(refused=refused, seconds=seconds)


def _remove_probes(client: Any, own: str) -> None:
    """Delete this probe's variable and those earlier probes could not delete (the server refused that too).

    Another check's probe is only taken once it is old: checks of several agents sharing a server run at the same
    minute, and deleting one between its write and its read back would make that check see a lost write.
    """
    try:
        client.delete_variable_by_name(own)
        for variable in client.read_variables():
            old = (age_seconds(variable.created) or 0.0) > PROBE_LEFT_SECONDS
            if variable.name.startswith(PROBE_PREFIX) and old:
                client.delete_variable_by_name(variable.name)
    except Exception:  # left for a later probe; the write itself was recorded, which is what the check asks
        return


def observe(
    agent: str, storage: dict[str, Any] | None = None, report_age: float | None = None, probe: bool = False
) -> Observed:
    """What the health verdict of ``agent`` needs; ``storage`` given (a report just made) or read from its latest.

    ``probe``: also write a record and read it back (``probe_write``), for a check made from outside the agent.
    """
    if storage is None:
        rows, written = read_table(storage_key(agent))
        storage, report_age = (rows[0] if rows else None), age_seconds(written)
    status_rows, counts = read_status(agent)
    if counts is None:  # a table from an older agent: one row per file
        counts = dict(Counter(str(row.get("status")) for row in status_rows))
    return Observed(
        storage=storage,
        report_age_seconds=report_age,
        watch_running=watch_is_running(agent),
        pending=sum(counts.get(name, 0) for name in TO_DO),
        failed=counts.get("Failed", 0),
        write_probe=probe_write() if probe else None,
    )


def known_agents(most: int) -> tuple[list[str], bool]:
    """The agents this server knows, by name, at most ``most`` of them; True when there may be more.

    Known: the name of a ``watch-folder/<agent>`` deployment, the suffix of an ``fta-status-<agent>`` or
    ``fta-storage-<agent>`` artifact, the ``agent_name`` of a TransferConfig block; the union of the four, each a
    valid agent name. An agent stays known until its deployments, artifacts and block are deleted (retired), so
    one that stopped is seen as stopped, not forgotten. Every source is read in name order, at most ``most + 1``
    rows of it: the first ``most`` names of the union are then exactly the first ``most`` of all.
    """
    names: set[str] = set()
    full = False
    with get_client(sync_client=True) as client:
        for source in (
            _deployed(client),
            _published(client, status_key("")),
            _published(client, storage_key("")),
            _configured(client),
        ):
            for rows, name in enumerate(source, start=1):
                if AGENT_NAME_FORM.fullmatch(name):
                    names.add(name)
                if rows > most:
                    full = True
                    break
    ordered = sorted(names)
    return ordered[:most], full or len(ordered) > most


def _pages(read: Callable[[int, int], list[Any]]) -> Iterator[Any]:
    """Rows of ``read(offset, limit)``, a page at a time, until a page comes back short (the caller stops early)."""
    offset = 0
    while True:
        page = read(offset, AGENTS_PAGE)
        yield from page
        if len(page) < AGENTS_PAGE:
            return
        offset += len(page)


def _deployed(client: Any) -> Iterator[str]:
    """Names of the ``watch-folder`` deployments (``watch-folder/<agent>``), in name order."""
    flows = FlowFilter(name=FlowFilterName(any_=[WATCH_FLOW_NAME]))
    for deployment in _pages(
        lambda offset, limit: client.read_deployments(
            flow_filter=flows, sort=DeploymentSort.NAME_ASC, offset=offset, limit=limit
        )
    ):
        yield str(deployment.name)


def _published(client: Any, prefix: str) -> Iterator[str]:
    """Agents of the artifact keys ``<prefix><agent>``, one per key (its latest version), in key order."""
    keys = ArtifactCollectionFilter(key=ArtifactCollectionFilterKey(like_=prefix))  # the server: key contains it
    for collection in _pages(
        lambda offset, limit: client.read_latest_artifacts(
            artifact_filter=keys, sort=ArtifactCollectionSort.KEY_ASC, offset=offset, limit=limit
        )
    ):
        if collection.key.startswith(prefix):
            yield collection.key[len(prefix) :]


def _configured(client: Any) -> Iterator[str]:
    """``agent_name`` of each TransferConfig block, in block name order (secrets not read).

    The client's own block reads either ignore the block type or page nothing, hence the filter route itself.
    """

    def read(offset: int, limit: int) -> list[Any]:
        body = {
            "block_types": {"slug": {"any_": [CONFIG_BLOCK_TYPE]}},
            "sort": "NAME_ASC",
            "offset": offset,
            "limit": limit,
            "include_secrets": False,
        }
        return list(client.request("POST", "/block_documents/filter", json=body).json())

    for document in _pages(read):
        name = (document.get("data") or {}).get("agent_name")
        if isinstance(name, str):
            yield name
