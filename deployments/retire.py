"""``fta retire --agent NAME``: remove from the server what an ingest host that is gone for good kept there.

A site's server keeps every agent's own things (see the README, "One server, many agents"). When a host leaves,
they stay: ``fta agents`` would list it as stopped (CRITICAL) for ever, its storage report's schedule would wait for
a runner that never comes, and its alerts would wait for events. This removes, of the one agent named:

    its deployments      watch-folder/<agent>, transfer-once/<agent>, storage-report/<agent> (Prefect deletes their
                         scheduled runs with them)
    its work queue       ``<agent>`` of the pool ``fta-process``, where the worker path (``prefect.yaml``) puts them
    its alerts           the automations ``fta <agent>: ...`` and the Webhook block ``fta-alerts-<agent>``
    its configuration    the TransferConfig block ``<agent>``, when it is this agent's (its ``agent_name``)
    what it published    every version of the artifacts ``fta-status-<agent>``, ``fta-storage-<agent>``,
                         ``fta-health-<agent>``

and closes (Crashed, "the agent was retired") a watch run of its that was left Running by a host that died. Its
flow and task runs stay as history, until the server's clean-up removes ended flow runs (after 90 days).

It refuses an agent whose watch is running (stop it first: ``systemctl disable --now fta`` on that host) and a name
the server does not know, each with one line and exit 2, and removes nothing then. Another agent's things are never
touched: every name read is the agent's own, never a pattern.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from fta.settings import AGENT_NAME_FORM

DEPLOYMENTS = ("watch-folder", "transfer-once", "storage-report")
ARTIFACT_ROUNDS = 20  # pages of versions deleted per artifact key at most (each key keeps at most 100 versions)
PAGE = 200
WORK_POOL = "fta-process"  # prefect.yaml's pool: each agent's deployments go to the queue named after it


def retire(agent: str, out: TextIO, data_path: str | None = None, err: TextIO | None = None) -> int:
    """Remove ``agent``'s things from the server; the exit code (0 removed, 2 refused, 1 the API failed)."""
    from deployments.operator_commands import local_api
    from flows.api_state import watch_is_running

    err = err if err is not None else sys.stderr
    if not AGENT_NAME_FORM.fullmatch(agent):
        print(f"fta: {agent!r} is not an agent name (lowercase letters, digits and dashes)", file=err)
        return 2
    try:
        with local_api(data_path):
            if watch_is_running(agent):
                print(f"fta: cannot retire {agent}: its watch is running; stop that agent first", file=err)
                return 2
            removed = remove_agent(agent)
    except Exception as exc:  # the API unreachable or refusing: one line, nothing claimed
        print(f"fta: cannot retire {agent}: {type(exc).__name__}: {exc}".splitlines()[0], file=err)
        return 1
    if not removed:
        print(f"fta: the server knows no agent {agent} (fta agents lists them); nothing removed", file=err)
        return 2
    for line in removed:
        print(f"removed {line}", file=out)
    print(f"{agent} retired: its flow and task runs stay as history until the server's clean-up", file=out)
    return 0


def remove_agent(agent: str) -> list[str]:
    """Remove the agent's things; what was removed, one readable line each (empty: nothing was there)."""
    from prefect.client.orchestration import get_client

    removed: list[str] = []
    with get_client(sync_client=True) as client:
        removed += _automations(client, agent)  # first: closing a stale run below must not alert
        removed += _stale_watch_runs(client, agent)
        removed += _deployments(client, agent)
        removed += _work_queue(client, agent)
        removed += _blocks(client, agent)
        removed += _artifacts(client, agent)
    return removed


def _deployments(client: Any, agent: str) -> list[str]:
    from prefect.exceptions import ObjectNotFound

    removed = []
    for flow in DEPLOYMENTS:
        try:
            deployment = client.read_deployment_by_name(f"{flow}/{agent}")
        except ObjectNotFound:
            continue
        client.delete_deployment(deployment.id)
        removed.append(f"deployment {flow}/{agent}")
    return removed


def _work_queue(client: Any, agent: str) -> list[str]:
    """The worker path's queue named after the agent in the pool of ``prefect.yaml`` (none with ``fta up``)."""
    from prefect.exceptions import ObjectNotFound

    try:
        queue = client.read_work_queue_by_name(name=agent, work_pool_name=WORK_POOL)
    except ObjectNotFound:
        return []
    client.delete_work_queue_by_id(queue.id)
    return [f"work queue {agent} of the pool {WORK_POOL}"]


def _automations(client: Any, agent: str) -> list[str]:
    from deployments.alerts import ALERT_NAMES, prefix

    removed = []
    for name in ALERT_NAMES:
        for automation in client.read_automations_by_name(prefix(agent) + name):
            client.delete_automation(automation.id)
            removed.append(f"automation {automation.name!r}")
    return removed


def _blocks(client: Any, agent: str) -> list[str]:
    """Its TransferConfig block (when it carries this agent's name, or none from before names) and its Webhook."""
    from deployments.alerts import webhook_block
    from flows.api_state import CONFIG_BLOCK_TYPE

    removed = []
    config = _block(client, CONFIG_BLOCK_TYPE, agent)
    if config is not None and config.data.get("agent_name") in (agent, None):
        client.delete_block_document(config.id)
        removed.append(f"block {CONFIG_BLOCK_TYPE}/{agent}")
    hook = _block(client, "webhook", webhook_block(agent))
    if hook is not None:
        client.delete_block_document(hook.id)
        removed.append(f"block webhook/{webhook_block(agent)}")
    return removed


def _block(client: Any, slug: str, name: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_block_document_by_name(name, block_type_slug=slug, include_secrets=False)
    except ObjectNotFound:
        return None


def _artifacts(client: Any, agent: str) -> list[str]:
    from flows.api_state import health_key, status_key, storage_key

    removed = []
    for key in (status_key(agent), storage_key(agent), health_key(agent)):
        versions = _delete_versions(client, key)
        if versions:
            removed.append(f"artifact {key} ({versions} versions)")
    return removed


def _delete_versions(client: Any, key: str) -> int:
    """Delete every version of the artifact ``key``, a page at a time, at most ``ARTIFACT_ROUNDS`` pages; how many."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keyed = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
    count = 0
    for _ in range(ARTIFACT_ROUNDS):
        page = client.read_artifacts(artifact_filter=keyed, limit=PAGE)
        for artifact in page:
            client.delete_artifact(artifact.id)
        count += len(page)
        if len(page) < PAGE:
            break
    return count


def _stale_watch_runs(client: Any, agent: str) -> list[str]:
    """Close the agent's watch runs still open (left by a host that died: its watch is not running)."""
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    from flows.api_state import agent_watch_runs

    open_states = [StateType.RUNNING, StateType.PENDING, StateType.SCHEDULED]
    open_runs = agent_watch_runs(client, agent, open_states, limit=PAGE)
    for run in open_runs:
        client.set_flow_run_state(run.id, Crashed(message="the agent was retired"), force=True)
    return [f"open watch run {run.name} (now Crashed)" for run in open_runs]
