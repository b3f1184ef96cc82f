"""The status artifact is published off the loop's thread: the newest table wins and the last one is never lost."""

from __future__ import annotations

import contextvars
import threading
import uuid
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


def test_the_thread_calls_done_as_it_ends() -> None:
    ended: list[str] = []
    publisher = StatusPublisher(lambda rows, description: None, lambda: ended.append(marker.get()))
    marker.set("flow-run-context")
    publisher.offer([], "one")
    assert publisher.close(timeout=30)
    assert ended == ["flow-run-context"]


def test_a_version_is_created_once_then_updated_in_place_and_a_slow_pruning_holds_up_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Publications replace the rows of the run's version; one gone meanwhile is created again, and each version
    created prunes the old ones in a thread of its own: publications go on while it is under way, and a pruning due
    meanwhile is not lost."""
    created: list[str] = []
    updated: list[str] = []
    prunings: list[str] = []
    release, pruning = threading.Event(), threading.Event()
    ids = iter([uuid.uuid4(), uuid.uuid4()])

    def create(rows: list[Row], key: str, description: str) -> uuid.UUID:
        created.append(description)
        return next(ids)

    def update(client: Any, artifact: uuid.UUID, rows: list[Row], description: str) -> bool:
        updated.append(description)
        return description != "table 3"  # deleted meanwhile

    def prune(key: str) -> int:
        prunings.append(f"{key} {marker.get()}")
        pruning.set()
        release.wait(30)  # a hundred deletions on a busy server
        return 0

    monkeypatch.setattr(status_publisher, "create_table_artifact", create)
    monkeypatch.setattr(status_publisher, "update_table", update)
    monkeypatch.setattr(status_publisher, "prune_versions", prune)
    marker.set("flow-run-context")
    write = status_publisher.StatusArtifactWriter("cam")
    write([{"n": 0}], "table 0")  # creates the version, prunes
    assert pruning.wait(30)  # under way in its own thread, and stuck
    for n in range(1, 5):
        write([{"n": n}], f"table {n}")
    assert created == ["table 0", "table 3"]
    assert updated == ["table 1", "table 2", "table 3", "table 4"]
    assert prunings == ["fta-status-cam flow-run-context"]
    assert not write.join(0.05)
    release.set()
    assert write.join(30)
    assert prunings == ["fta-status-cam flow-run-context"] * 2  # the one due meanwhile: once more, after it
    write.close()
