"""The File Growth Simulator: writes files that grow in chunks over time, like a recorder does.

``fta simulate PATH --size 50MB --seconds 10 [--pause-at 40% --pause-seconds 5] [--count N]``
With ``--count N`` the files are ``PATH`` with ``-001``, ``-002``, ... before the extension, written side by side.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BufferedWriter
from pathlib import Path

_UNITS = {"": 1, "B": 1, "K": 1000, "KB": 1000, "KIB": 1024, "M": 10**6, "MB": 10**6, "MIB": 2**20}
_UNITS |= {"G": 10**9, "GB": 10**9, "GIB": 2**30}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")

Sleep = Callable[[float], None]
Progress = Callable[[int, int], None]


def parse_size(text: str) -> int:
    """``50MB`` -> 50_000_000, ``1GiB`` -> 1_073_741_824, ``4096`` -> 4096."""
    match = _SIZE_RE.match(text)
    unit = match.group(2).upper() if match else ""
    if not match or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (examples: 4096, 64KiB, 50MB, 1GiB)")
    return int(float(match.group(1)) * _UNITS[unit])


def parse_fraction(text: str) -> float:
    """``40%`` or ``0.4`` -> 0.4."""
    value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0 <= value <= 1:
        raise ValueError(f"not a fraction between 0 and 1 (or 0% and 100%): {text!r}")
    return value


def numbered(path: Path, count: int) -> list[Path]:
    if count == 1:
        return [path]
    width = max(3, len(str(count)))
    return [path.with_name(f"{path.stem}-{i:0{width}d}{path.suffix}") for i in range(1, count + 1)]


@dataclass(frozen=True)
class GrowthPlan:
    size: int
    seconds: float
    pause_at: float | None = None
    pause_seconds: float = 0.0
    ticks_per_second: float = 10.0

    @property
    def ticks(self) -> int:
        return max(1, round(self.seconds * self.ticks_per_second))

    def steps(self) -> list[tuple[int, float]]:
        """(size to reach, seconds to wait afterwards) for each write; the pause waits at ``pause_at``."""
        interval = self.seconds / self.ticks
        plan = [(self.size * tick // self.ticks, interval) for tick in range(1, self.ticks + 1)]
        if self.pause_at is not None:
            point = int(self.size * self.pause_at)
            before = [(target, wait) for target, wait in plan if target < point]
            after = [(target, wait) for target, wait in plan if target > point]
            plan = [*before, (point, self.pause_seconds), *after]
        last_target, _ = plan[-1]
        plan[-1] = (last_target, 0.0)
        return plan


def simulate(
    paths: list[Path],
    plan: GrowthPlan,
    sleep: Sleep = time.sleep,
    progress: Progress | None = None,
) -> None:
    """Grow every file in ``paths`` to ``plan.size`` bytes over ``plan.seconds`` (+ the pause), side by side."""
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
    handles = [path.open("xb") for path in paths]
    try:
        written = 0
        for target, wait in plan.steps():
            _grow(handles, written, target)
            written = max(written, target)
            if progress:
                progress(written * len(handles), plan.size * len(handles))
            if wait > 0:
                sleep(wait)
    finally:
        for handle in handles:
            handle.close()


def _grow(handles: list[BufferedWriter], offset: int, target: int) -> None:
    if target <= offset:
        return
    # Pseudo-random content seeded by position: a copy that drops, repeats or reorders a chunk fails verification.
    block = random.Random(offset).randbytes(target - offset)
    for handle in handles:
        handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
