"""Prefect flows: ``watch_folder`` (long-running), ``transfer_once`` (one sweep), ``storage_report`` (scheduled).

Flows orchestrate the core (``fta``) through the thin task wrappers in ``tasks/``; they hold no transfer logic.
"""
