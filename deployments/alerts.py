"""Webhook alerts, built from Prefect's own automations and its ``Webhook`` block; created idempotently.

With ``alert_webhook_url`` set, ``fta up`` saves the Webhook block ``fta-alerts-<agent>`` and (re)creates four
automations of the agent (``agent_name``), each POSTing a small JSON object (``alert``, ``agent``, ``file``,
``reason``, ``time``) to it:

    fta <agent>: copy failed              a ``copy <path>`` task run tagged ``agent:<agent>`` enters Failed (its
                                          retries are spent)
    fta <agent>: destination unavailable  ``fta.destination.unavailable`` of ``fta.destination.<agent>`` not followed
                                          by ``fta.destination.restored`` within ``alert_destination_minutes``
    fta <agent>: storage low              ``fta.storage.low`` of ``fta.destination.<agent>`` (the storage report emits
                                          it every minute while it lasts; the alert goes out at most once per
                                          ``alert_repeat_minutes``)
    fta <agent>: watch run crashed        a ``watch-folder`` flow run tagged ``agent:<agent>`` enters Crashed or Failed
Without the URL the four automations are removed, so alerts follow the configuration. Agents sharing a server never
replace each other's; the automations of a single-host install from before (``fta: ...``) are removed.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

from fta.settings import Settings, agent_tag

log = logging.getLogger("fta.alerts")

LEGACY_PREFIX = "fta: "  # the automations' names before agents had names of their own
ALERT_NAMES = ("copy failed", "destination unavailable", "storage low", "watch run crashed")  # after the prefix


def webhook_block(agent: str) -> str:
    return f"fta-alerts-{agent}"


def prefix(agent: str) -> str:
    """The start of the names of ``agent``'s automations."""
    return f"fta {agent}: "


def _payload(alert: str, agent: str, file: str, reason: str) -> str:
    """A JSON template; Jinja fills it when the automation fires (``tojson`` quotes and escapes). ``agent`` is an
    agent name (letters, digits, dashes: nothing to escape)."""
    return (
        "{"
        f'"alert": "{alert}", '
        f'"agent": "{agent}", '
        f'"file": {{{{ ({file}) | tojson }}}}, '
        f'"reason": {{{{ ({reason}) | tojson }}}}, '
        '"time": "{{ event.occurred }}"'
        "}"
    )


def definitions(settings: Settings) -> dict[str, tuple[Any, str]]:
    """Automation name (after the agent's prefix) -> (trigger, payload template), all of this agent only."""
    from prefect.events.schemas.automations import EventTrigger, Posture

    agent = settings.agent_name
    destination = "event.resource['prefect.resource.name']"
    own_destination = {"prefect.resource.id": f"fta.destination.{agent}"}
    own_run = {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{agent_tag(agent)}"}
    return {
        "copy failed": (
            EventTrigger(
                expect={"prefect.task-run.Failed"},
                match={"prefect.resource.name": "copy *"},
                match_related=own_run,
                posture=Posture.Reactive,
                threshold=1,
            ),
            _payload(
                "copy failed",
                agent,
                "event.resource['prefect.resource.name'][5:]",
                "event.resource['prefect.state-message']",
            ),
        ),
        "destination unavailable": (
            EventTrigger(
                after={"fta.destination.unavailable"},
                expect={"fta.destination.restored"},
                match=own_destination,
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(minutes=settings.alert_destination_minutes),
            ),
            _payload(
                f"destination unavailable for more than {settings.alert_destination_minutes:g} min",
                agent,
                destination,
                "'no fta.destination.restored since it became unavailable'",
            ),
        ),
        "storage low": (
            EventTrigger(
                expect={"fta.storage.low"},
                match=own_destination,
                posture=Posture.Reactive,
                threshold=1,
                # A reactive trigger fires at once, then ignores its events until ``within`` has passed: a full
                # NAS alerts once an hour (by default), not at every one-minute storage report.
                within=timedelta(minutes=settings.alert_repeat_minutes),
            ),
            _payload(
                "storage low",
                agent,
                destination,
                "'destination free ' ~ (event.payload.free_gb | string) ~ ' GB, below '"
                " ~ (event.payload.threshold_gb | string) ~ ' GB'",
            ),
        ),
        "watch run crashed": (
            EventTrigger(
                expect={"prefect.flow-run.Crashed", "prefect.flow-run.Failed"},
                match_related=[{"prefect.resource.role": "flow", "prefect.resource.name": "watch-folder"}, own_run],
                posture=Posture.Reactive,
                threshold=1,
            ),
            _payload(
                "watch run crashed",
                agent,
                "event.resource['prefect.resource.name']",
                "event.resource['prefect.state-message'] | default('')",
            ),
        ),
    }


def _remove(name: str) -> None:
    from prefect.automations import Automation

    with contextlib.suppress(ValueError):  # not there
        cast(Automation, Automation.read(name=name)).delete()


def ensure_alerts(settings: Settings) -> list[str]:
    """Create (or replace) this agent's automations; remove them when no webhook URL is configured. Names created."""
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.events.actions import CallWebhook
    from pydantic import SecretStr

    own = prefix(settings.agent_name)
    for name in definitions(settings):
        _remove(LEGACY_PREFIX + name)  # they matched every agent on the server
        _remove(own + name)
    if settings.alert_webhook_url is None:
        return []
    webhook = Webhook(method="POST", url=SecretStr(settings.alert_webhook_url.get_secret_value()))
    block_id = cast(UUID, webhook.save(webhook_block(settings.agent_name), overwrite=True))
    created = []
    for name, (trigger, payload) in definitions(settings).items():
        Automation(
            name=own + name,
            description="File Transfer Agent alert (made by fta up; edits are replaced at the next start)",
            trigger=trigger,
            actions=[CallWebhook(block_document_id=block_id, payload=payload)],
        ).create()
        created.append(own + name)
    log.info("alerts to the webhook: %s", ", ".join(created))
    return created
