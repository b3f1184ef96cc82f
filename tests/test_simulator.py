"""The File Growth Simulator, with an injected sleep (never really waiting)."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest

from fta.simulator import GrowthPlan, numbered, parse_fraction, parse_size, simulate
from tests.conftest import write


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4096", 4096),
        ("0", 0),
        ("12B", 12),
        ("64KiB", 65536),
        ("64kib", 65536),
        ("1.5K", 1500),
        ("2KB", 2000),
        ("50MB", 50_000_000),
        (" 2 mb ", 2_000_000),
        ("3MiB", 3 * 2**20),
        ("1G", 10**9),
        ("1GiB", 2**30),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "5XB", "-5", "1e3", "MB", "5 M B", "1TB", "1,5MB"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"), [("40%", 0.4), ("0.4", 0.4), ("0", 0.0), ("0%", 0.0), ("1", 1.0), ("100%", 1.0)]
)
def test_parse_fraction(text: str, expected: float) -> None:
    assert parse_fraction(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["150%", "-0.1", "1.01", "-1%", "abc", "%", ""])
def test_parse_fraction_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_fraction(text)


def test_numbered(tmp_path: Path) -> None:
    path = tmp_path / "clip.mxf"
    assert numbered(path, 1) == [path]
    assert numbered(path, 3) == [tmp_path / "clip-001.mxf", tmp_path / "clip-002.mxf", tmp_path / "clip-003.mxf"]
    many = numbered(path, 1000)
    assert (many[0].name, many[-1].name) == ("clip-0001.mxf", "clip-1000.mxf")
    assert len(set(many)) == 1000
    assert [p.name for p in numbered(tmp_path / "raw", 2)] == ["raw-001", "raw-002"]


def test_steps_grow_to_size_and_end_without_waiting() -> None:
    plan = GrowthPlan(size=1000, seconds=1.0)
    steps = plan.steps()
    assert len(steps) == plan.ticks == 10
    targets = [target for target, _ in steps]
    assert targets == sorted(targets) and len(set(targets)) == len(targets)
    assert targets[-1] == 1000
    assert steps[-1][1] == 0.0
    assert all(wait == pytest.approx(0.1) for _, wait in steps[:-1])
    assert sum(wait for _, wait in steps) == pytest.approx(0.9)


def test_steps_with_sizes_not_divisible_by_ticks() -> None:
    steps = GrowthPlan(size=1001, seconds=0.7, ticks_per_second=10).steps()
    assert len(steps) == 7
    assert steps[-1] == (1001, 0.0)
    assert all(b > a for (a, _), (b, _) in pairwise(steps))


@pytest.mark.parametrize(("pause_at", "point"), [(0.4, 400), (0.45, 450), (0.05, 50)])
def test_pause_step_sits_exactly_at_pause_at(pause_at: float, point: int) -> None:
    steps = GrowthPlan(size=1000, seconds=1.0, pause_at=pause_at, pause_seconds=5.0).steps()
    assert steps.count((point, 5.0)) == 1
    index = steps.index((point, 5.0))
    assert all(target < point for target, _ in steps[:index])
    assert all(target > point for target, _ in steps[index + 1 :])
    assert [wait for _, wait in steps].count(5.0) == 1
    assert steps[-1] == (1000, 0.0)


def test_pause_at_the_start_leaves_an_empty_file_waiting() -> None:
    steps = GrowthPlan(size=100, seconds=0.5, pause_at=0.0, pause_seconds=3.0).steps()
    assert steps[0] == (0, 3.0)
    assert steps[-1] == (100, 0.0)


def test_zero_seconds_is_one_write() -> None:
    assert GrowthPlan(size=4096, seconds=0).steps() == [(4096, 0.0)]


def test_simulate_grows_files_side_by_side(tmp_path: Path) -> None:
    paths = numbered(tmp_path / "out" / "clip.mxf", 3)
    plan = GrowthPlan(size=10_000, seconds=1.0, pause_at=0.4, pause_seconds=5.0)
    sleeps: list[float] = []
    seen: list[int] = []

    def sizes() -> list[int]:
        return [p.stat().st_size for p in paths]

    def sleep(seconds: float) -> None:
        on_disk = sizes()
        assert len(set(on_disk)) == 1  # all files grow together
        assert on_disk[0] == seen[-1]  # the progress callback saw what is on disk
        sleeps.append(seconds)

    def progress(done: int, total: int) -> None:
        on_disk = sizes()
        assert len(set(on_disk)) == 1
        assert not seen or on_disk[0] >= seen[-1]
        assert done == on_disk[0] * len(paths)
        assert total == plan.size * len(paths)
        seen.append(on_disk[0])

    simulate(paths, plan, sleep=sleep, progress=progress)
    steps = plan.steps()
    assert sleeps == [wait for _, wait in steps if wait > 0]
    assert 5.0 in sleeps
    assert seen == [target for target, _ in steps]
    assert sizes() == [10_000] * 3
    contents = {p.read_bytes() for p in paths}
    assert len(contents) == 1  # the same bytes in every file


def test_content_is_not_constant(tmp_path: Path) -> None:
    path = tmp_path / "clip.mxf"
    simulate([path], GrowthPlan(size=20_000, seconds=0.2), sleep=lambda seconds: None)
    data = path.read_bytes()
    assert len(data) == 20_000
    assert data.count(0) < len(data) // 10
    assert data[:1000] != data[1000:2000]
    assert data[:2000] != data[2000:4000]  # two chunks written at different offsets differ


def test_simulate_without_progress_and_with_pause_at_start(tmp_path: Path) -> None:
    path = tmp_path / "clip.mxf"
    sizes_at_sleep: list[int] = []
    plan = GrowthPlan(size=300, seconds=0.3, pause_at=0.0, pause_seconds=2.0)
    simulate([path], plan, sleep=lambda seconds: sizes_at_sleep.append(path.stat().st_size))
    assert sizes_at_sleep[0] == 0  # created empty, then paused
    assert sizes_at_sleep == sorted(sizes_at_sleep)
    assert path.stat().st_size == 300


def test_simulate_never_overwrites(tmp_path: Path) -> None:
    existing = write(tmp_path / "clip.mxf", b"keep me")
    with pytest.raises(FileExistsError):
        simulate([existing], GrowthPlan(size=10, seconds=0), sleep=lambda seconds: None)
    assert existing.read_bytes() == b"keep me"
