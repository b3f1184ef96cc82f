"""prefect.yaml and the deployments ``fta up`` serves agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deployments.serve import REPORT_INTERVAL_SECONDS, build_deployments

ROOT = Path(__file__).resolve().parent.parent


YAML_AGENT = "{{ $FTA_AGENT_NAME }}"  # prefect deploy fills it from its environment


def served(agent: str = "ingest-01") -> dict[str, dict[str, Any]]:
    """The deployments ``fta up`` serves, by their flow."""
    table = {}
    for deployment in build_deployments(agent):
        module, _, function = deployment.entrypoint.rpartition(".")
        schedules = [s.schedule.interval.total_seconds() for s in deployment.schedules or []]
        table[deployment.flow_name] = {
            "name": deployment.name,
            "tags": deployment.tags,
            "entrypoint": f"{module.replace('.', '/')}.py:{function}",
            "parameters": deployment.parameters,
            "intervals": schedules,
        }
    return table


def declared() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {
        item["entrypoint"]: {
            "name": item["name"],
            "tags": item["tags"],
            "entrypoint": item["entrypoint"],
            "parameters": item["parameters"],
            "intervals": [float(s["interval"]) for s in item.get("schedules", [])],
        }
        for item in config["deployments"]
    }


def test_prefect_yaml_matches_the_served_deployments() -> None:
    ours = {spec["entrypoint"]: spec for spec in served(YAML_AGENT).values()}
    theirs = declared()
    assert set(ours) == set(theirs)
    for name, spec in theirs.items():
        assert {key: ours[name][key] for key in spec} == spec
        assert (ROOT / spec["entrypoint"].split(":")[0]).is_file()


def test_every_deployment_is_named_after_its_agent_and_tagged_with_it() -> None:
    for agent in ("ingest-01", "ingest-02"):
        ours = served(agent)
        assert set(ours) == {"watch-folder", "transfer-once", "storage-report"}
        assert all(spec["name"] == agent and spec["tags"] == [f"agent:{agent}"] for spec in ours.values())
    assert served()["storage-report"]["intervals"] == [float(REPORT_INTERVAL_SECONDS)]


def test_service_files_only_use_real_settings_and_the_declared_pool() -> None:
    import re

    from fta.settings import ENV_PREFIX, Settings

    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    manifests = list(yaml.safe_load_all((ROOT / "deployments" / "k8s" / "fta-worker.yaml").read_text()))
    assert {doc["kind"] for doc in manifests} == {"ConfigMap", "Secret", "Deployment"}
    used = set()
    for doc in manifests:
        used |= {key for key in {**doc.get("data", {}), **doc.get("stringData", {})} if key.startswith(ENV_PREFIX)}
    dockerfile = (ROOT / "deployments" / "Dockerfile").read_text()
    unit = (ROOT / "deployments" / "systemd" / "fta.service").read_text()
    used |= set(re.findall(r"\b(FTA_[A-Z_]+)=", dockerfile + unit))
    assert used and used <= known  # an unknown FTA_ key would stop the agent at start (exit 2)
    pool = yaml.safe_load((ROOT / "prefect.yaml").read_text())["definitions"]["work_pool"]
    worker = next(doc for doc in manifests if doc["kind"] == "Deployment")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[command.index("--pool") + 1] == pool["name"]
    # the worker takes its own host's queue only, named after its agent as `prefect deploy` names it, and never
    # creates the pool (a pool it made would have Prefect's open template, not deployments/process-pool.json)
    env = {item["name"]: item["value"] for item in container["env"]}
    assert {key for key in env if key.startswith(ENV_PREFIX)} <= known
    agent = env["FTA_AGENT_NAME"]
    assert pool["work_queue_name"] == YAML_AGENT
    assert command[command.index("--work-queue") + 1] == agent
    assert "--no-create-pool-if-not-found" in command
    assert re.search(r"^ExecStart=\S+/fta up$", unit, re.M)
    assert re.search(r"^HEALTHCHECK .*fta health", dockerfile, re.M | re.S)


def test_runs_started_through_the_api_may_only_narrow_the_work() -> None:
    """The served deployments pass no settings, and their flows take none: only a subfolder and a name pattern."""
    from prefect.utilities.callables import parameter_schema

    from flows.storage_report import storage_report
    from flows.transfer_once import transfer_once
    from flows.watch_folder import watch_folder

    assert {name: spec["parameters"] for name, spec in served().items()} == {
        "watch-folder": {},
        "transfer-once": {},
        "storage-report": {},
    }
    accepted = {flow.name: set(parameter_schema(flow.fn).properties) for flow in (transfer_once, watch_folder)}
    assert accepted == {
        "transfer-once": {"subfolder", "pattern"},
        "watch-folder": {"subfolder", "pattern", "max_cycles"},
    }
    assert set(parameter_schema(storage_report.fn).properties) == set()
