"""prefect.yaml and the deployments ``fta up`` serves agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deployments.serve import REPORT_INTERVAL_SECONDS, build_deployments

ROOT = Path(__file__).resolve().parent.parent


def served() -> dict[str, dict[str, Any]]:
    table = {}
    for deployment in build_deployments():
        module, _, function = deployment.entrypoint.rpartition(".")
        schedules = [s.schedule.interval.total_seconds() for s in deployment.schedules or []]
        table[deployment.name] = {
            "entrypoint": f"{module.replace('.', '/')}.py:{function}",
            "parameters": deployment.parameters,
            "intervals": schedules,
            "flow": deployment.flow_name,
        }
    return table


def declared() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {
        item["name"]: {
            "entrypoint": item["entrypoint"],
            "parameters": item["parameters"],
            "intervals": [float(s["interval"]) for s in item.get("schedules", [])],
        }
        for item in config["deployments"]
    }


def test_prefect_yaml_matches_the_served_deployments() -> None:
    ours, theirs = served(), declared()
    assert set(ours) == set(theirs) == {"agent", "manual", "every-minute"}
    for name, spec in theirs.items():
        assert {key: ours[name][key] for key in spec} == spec
        assert (ROOT / spec["entrypoint"].split(":")[0]).is_file()
    assert {name: spec["flow"] for name, spec in ours.items()} == {
        "agent": "watch-folder",
        "manual": "transfer-once",
        "every-minute": "storage-report",
    }
    assert ours["every-minute"]["intervals"] == [float(REPORT_INTERVAL_SECONDS)]
