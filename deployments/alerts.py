"""Webhook alerts, built from Prefect's own automations and its ``Webhook`` block; created idempotently.

With ``alert_webhook_url`` set, ``fta up`` saves the Webhook block ``fta-alerts`` and (re)creates four automations,
each POSTing a small JSON object (``alert``, ``file``, ``reason``, ``time``) to it:

    fta: copy failed              a ``copy <path>`` task run enters Failed (its retries are spent)
    fta: destination unavailable  ``fta.destination.unavailable`` not followed by ``fta.destination.restored``
                                  within ``alert_destination_minutes``
    fta: storage low              ``fta.storage.low`` (the storage report emits it every minute while it lasts;
                                  the alert goes out at most once per ``alert_repeat_minutes`` and destination)
    fta: watch run crashed        a ``watch-folder`` flow run enters Crashed or Failed
Without the URL the four automations are removed, so alerts follow the configuration.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

from fta.settings import Settings

log = logging.getLogger("fta.alerts")

WEBHOOK_BLOCK = "fta-alerts"
PREFIX = "fta: "


def _payload(alert: str, file: str, reason: str) -> str:
    """A JSON template; Jinja fills it when the automation fires (``tojson`` quotes and escapes)."""
    return (
        "{"
        f'"alert": "{alert}", '
        f'"file": {{{{ ({file}) | tojson }}}}, '
        f'"reason": {{{{ ({reason}) | tojson }}}}, '
        '"time": "{{ event.occurred }}"'
        "}"
    )


def definitions(settings: Settings) -> dict[str, tuple[Any, str]]:
    """Automation name -> (trigger, payload template)."""
    from prefect.events.schemas.automations import EventTrigger, Posture

    destination = "event.resource['prefect.resource.name']"
    return {
        "copy failed": (
            EventTrigger(
                expect={"prefect.task-run.Failed"},
                match={"prefect.resource.name": "copy *"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            _payload(
                "copy failed",
                "event.resource['prefect.resource.name'][5:]",
                "event.resource['prefect.state-message']",
            ),
        ),
        "destination unavailable": (
            EventTrigger(
                after={"fta.destination.unavailable"},
                expect={"fta.destination.restored"},
                match={"prefect.resource.id": "fta.destination.*"},
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(minutes=settings.alert_destination_minutes),
            ),
            _payload(
                f"destination unavailable for more than {settings.alert_destination_minutes:g} min",
                destination,
                "'no fta.destination.restored since it became unavailable'",
            ),
        ),
        "storage low": (
            EventTrigger(
                expect={"fta.storage.low"},
                match={"prefect.resource.id": "fta.destination.*"},
                for_each={"prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=1,
                # A reactive trigger fires at once, then ignores its events until ``within`` has passed: a full
                # NAS alerts once an hour (by default), not at every one-minute storage report.
                within=timedelta(minutes=settings.alert_repeat_minutes),
            ),
            _payload(
                "storage low",
                destination,
                "'destination free ' ~ (event.payload.free_gb | string) ~ ' GB, below '"
                " ~ (event.payload.threshold_gb | string) ~ ' GB'",
            ),
        ),
        "watch run crashed": (
            EventTrigger(
                expect={"prefect.flow-run.Crashed", "prefect.flow-run.Failed"},
                match_related={"prefect.resource.role": "flow", "prefect.resource.name": "watch-folder"},
                posture=Posture.Reactive,
                threshold=1,
            ),
            _payload(
                "watch run crashed",
                "event.resource['prefect.resource.name']",
                "event.resource['prefect.state-message'] | default('')",
            ),
        ),
    }


def ensure_alerts(settings: Settings) -> list[str]:
    """Create (or replace) our automations; remove them when no webhook URL is configured. Names created."""
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.events.actions import CallWebhook
    from pydantic import SecretStr

    for name in definitions(settings):
        with contextlib.suppress(ValueError):  # not there yet
            existing = cast(Automation, Automation.read(name=PREFIX + name))
            existing.delete()
    if settings.alert_webhook_url is None:
        return []
    webhook = Webhook(method="POST", url=SecretStr(settings.alert_webhook_url.get_secret_value()))
    block_id = cast(UUID, webhook.save(WEBHOOK_BLOCK, overwrite=True))
    created = []
    for name, (trigger, payload) in definitions(settings).items():
        Automation(
            name=PREFIX + name,
            description="File Transfer Agent alert (made by fta up; edits are replaced at the next start)",
            trigger=trigger,
            actions=[CallWebhook(block_document_id=block_id, payload=payload)],
        ).create()
        created.append(PREFIX + name)
    log.info("alerts to the webhook: %s", ", ".join(created))
    return created
