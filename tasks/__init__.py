"""Thin Prefect ``@task`` wrappers around the core: names, retries, artifacts and logging, nothing else."""
