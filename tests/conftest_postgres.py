"""The ``postgres`` fixture (a pytest plugin loaded from conftest): a throwaway cluster per test, or a skip that
says why PostgreSQL cannot be used on this machine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.postgres import PostgresCluster, why_not_usable


@pytest.fixture
def postgres() -> Iterator[PostgresCluster]:
    reason = why_not_usable()
    if reason is not None:
        pytest.skip(reason)
    cluster = PostgresCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
