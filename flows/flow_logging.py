"""Logging inside the flows: the same lines reach the console, the log file and the Prefect UI, once each.

Prefect configures the console (a handler on the root logger) when it is imported; we add the rotating file and
syslog handlers on the root logger (``fta.logsetup``), and give the ``fta`` loggers Prefect's API handler the way
``PREFECT_LOGGING_EXTRA_LOGGERS`` would, so a deployment's worker needs no extra environment for it.
"""

from __future__ import annotations

import logging

from fta.logsetup import configure_logging
from fta.settings import Settings


def setup_flow_logging(settings: Settings) -> None:
    configure_logging(settings, console=False)
    ours = logging.getLogger("fta")
    for handler in logging.getLogger("prefect.extra").handlers:
        if handler not in ours.handlers:
            ours.addHandler(handler)
