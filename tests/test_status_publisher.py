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


def test_the_table_is_published_again_each_second_while_files_are_to_do_and_not_when_idle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A loop holding its copies changes nothing on the board for seconds: the table's time must still say it is
    current. Nothing to do: no publication a second for months."""
    from prefect import flow

    from fta.board import TransferBoard
    from fta.stability import FileSig, StabilityTracker
    from tests.conftest import FakeClock

    offered: list[str] = []

    class Recorder:
        """Stands for the publishing thread: what the loop hands over."""

        def __init__(self, publish: Any, done: Any = None) -> None:
            pass

        def offer(self, rows: list[Row], description: str) -> None:
            offered.append(description)

        def close(self, timeout: float = 10.0) -> bool:
            return True

    monkeypatch.setattr(status_publisher, "StatusPublisher", Recorder)
    clock = FakeClock()
    board = TransferBoard(StabilityTracker(1.0, clock=clock), clock=clock)
    status = status_publisher.BoardStatus(board, clock, publish=lambda rows, text: None)

    def look(seconds: float) -> int:
        """Tables handed over in ``seconds``, the loop asking every 0.25 s."""
        before = len(offered)
        for _ in range(int(seconds / 0.25)):
            clock.advance(0.25)
            status.publish()
        return len(offered) - before

    @flow
    def in_a_flow_run() -> tuple[int, int, int]:
        board.observe({"cam/a.mxf": FileSig(10, 1, 1)})
        clock.advance(1.0)
        board.observe({"cam/a.mxf": FileSig(10, 1, 1)})  # Ready: to do, and then unchanged
        held = look(5.0)
        board.queued("cam/a.mxf")
        board.copying("cam/a.mxf")
        board.completed("cam/a.mxf", "/dst/cam/a.mxf")
        ending = look(1.0)  # the completion
        idle = look(5.0)
        return held, ending, idle

    held, ending, idle = in_a_flow_run()
    assert held == 5  # one a second although nothing changed
    assert ending == 1
    assert idle == 0
