"""Logging inside the flows: the same lines reach the console, the log file and the Prefect UI, once each.

Prefect configures the console (a handler on the root logger) when it is imported; we add the rotating file and
syslog handlers on the root logger (``fta.logsetup``), and for the length of a flow run give the ``fta`` loggers
Prefect's API handler the way ``PREFECT_LOGGING_EXTRA_LOGGERS`` would, so a deployment's worker needs no extra
environment for it. Outside a run the API handler is removed again (it would warn about lines without a run).

Prefect's own line for every task run that ends well ("Finished in state Completed(...)") is left out during the
run: the audit line of ``copy_file`` says the same and more, and each line is a record the server must store (with
thousands of small files, a quarter of the agent's logging work). Task runs that fail, crash or are cancelled are
still logged by Prefect (at WARNING and above).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flows.prefect_internals import api_log_handlers
from fta.logsetup import configure_logging
from fta.settings import Settings


@contextmanager
def flow_logging(settings: Settings) -> Iterator[None]:
    configure_logging(settings, console=False)
    ours = logging.getLogger("fta")
    added = [h for h in api_log_handlers() if h not in ours.handlers]
    for handler in added:
        ours.addHandler(handler)
    task_runs = logging.getLogger("prefect.task_runs")
    level = task_runs.level
    task_runs.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        task_runs.setLevel(level)
        for handler in added:
            ours.removeHandler(handler)
