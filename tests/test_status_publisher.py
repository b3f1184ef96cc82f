"""The status artifact is published off the loop's thread: the newest table wins and the last one is never lost."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import pytest

from flows import status_publisher
from flows.status_publisher import StatusPublisher

Row = dict[str, Any]
marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="none")


def test_a_slow_publish_never_holds_up_offers_and_the_newest_table_wins() -> None:
    published: list[str] = []
    release = threading.Event()

    def publish(rows: list[Row], description: str) -> None:
        release.wait(30)  # the API is slow
        published.append(description)

    publisher = StatusPublisher(publish)
    for n in range(5):
        publisher.offer([{"n": n}], f"table {n}")  # returns at once although the first publish is stuck
    release.set()
    assert publisher.close(timeout=30)
    assert published[-1] == "table 4"
    assert len(published) <= 2  # the first one (already under way) and the newest; the others were superseded


def test_close_publishes_the_last_table_and_a_failing_api_is_survived() -> None:
    published: list[str] = []

    def publish(rows: list[Row], description: str) -> None:
        if description == "broken":
            raise ConnectionError("API down")
        published.append(f"{description} {marker.get()}")

    marker.set("flow-run-context")
    publisher = StatusPublisher(publish)
    publisher.offer([], "broken")
    publisher.offer([], "last")
    assert publisher.close(timeout=30)
    assert published[-1] == "last flow-run-context"  # published in a copy of the offering thread's context


def test_close_without_any_offer_is_immediate() -> None:
    assert StatusPublisher(lambda rows, description: None).close(timeout=0.1)


def test_a_slow_pruning_never_holds_up_a_publication_and_one_due_meanwhile_runs_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Publications go on while old versions are being deleted; a pruning due meanwhile is not lost."""
    created: list[str] = []
    prunings: list[str] = []
    release, pruning = threading.Event(), threading.Event()

    def prune(key: str) -> int:
        prunings.append(f"{key} {marker.get()}")
        pruning.set()
        release.wait(30)  # a hundred deletions on a busy server
        return 0

    monkeypatch.setattr(
        status_publisher, "create_table_artifact", lambda rows, key, description: created.append(description)
    )
    monkeypatch.setattr(status_publisher, "prune_versions", prune)
    monkeypatch.setattr(status_publisher, "PRUNE_EVERY", 2)
    marker.set("flow-run-context")
    write = status_publisher.StatusArtifactWriter("cam")
    write([{"n": 0}], "table 0")  # a pruning due after the 1st
    assert pruning.wait(30)  # under way in its own thread, and stuck
    for n in range(1, 5):  # due again after the 3rd and the 5th
        write([{"n": n}], f"table {n}")
    assert created == [f"table {n}" for n in range(5)]
    assert prunings == ["fta-status-cam flow-run-context"]
    assert not write.join(0.05)
    release.set()
    assert write.join(30)
    assert prunings == ["fta-status-cam flow-run-context"] * 2  # those due meanwhile: once more, after it
