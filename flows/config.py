"""Where a flow run's settings come from. Never from its parameters: a run started through the API only narrows.

- A run the agent serves (``fta up``, or a worker of ``prefect.yaml``'s pool) reads the ``TransferConfig`` block
  its serving process names: ``FTA_CONFIG_BLOCK`` in that process's environment, inherited by its flow-run
  processes (``fta up`` sets it to the agent's ``agent_name``; unset, a worker's runs read the block named
  after ``FTA_AGENT_NAME``, else after the host's short name). A run's parameters cannot name another block,
  and a served run's job variables do not reach its environment (Prefect's runner starts served flows with its
  own environment only).
- ``fta watch`` / ``fta once`` and other in-process callers hand their settings over in this process
  (``settings_in_process`` / ``run_in_process``): nothing of them is sent to the API, no secret shows in the UI.
- The same callers may hand over the run's stop switch (``stop_in_process``, ``run_in_process(stop=...)``): the
  run's loop stops when they pull it, even before the loop has started.

The copier's byte I/O (``fta.copy_io.CopyIO``) is handed over the same way (``copy_io_in_process``): a caller that
runs a flow in its own process puts a different disk under the loop's copies (a slow, corrupting or pausing one in
the tests) without the flow taking it as a parameter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from blocks.transfer_config import TransferConfig
from fta.copy_io import CopyIO
from fta.settings import Settings, agent_tag, default_agent_name, load_settings
from fta.stop_switch import StopSwitch

BLOCK_ENV = "FTA_CONFIG_BLOCK"

_handed_over: ContextVar[Settings | str | None] = ContextVar("fta_settings_in_process", default=None)
_copy_io: ContextVar[CopyIO | None] = ContextVar("fta_copy_io_in_process", default=None)
R = TypeVar("R")
T = TypeVar("T")


def config_block_name() -> str:
    """The TransferConfig block of this serving process (and so of its flow runs)."""
    named = os.environ.get(BLOCK_ENV, "").strip() or os.environ.get("FTA_AGENT_NAME", "").strip()
    return named or default_agent_name()


def block_settings(name: str) -> Settings:
    block = cast(TransferConfig, TransferConfig.load(name))
    return load_settings(block.settings_values())


def resolve_settings(config: Mapping[str, Any] | None, config_block: str | None) -> Settings:
    """Settings from a block, overridden by ``config``: for the agent's own process (``fta up``), never a run's."""
    values: dict[str, Any] = {}
    if config_block:
        values.update(cast(TransferConfig, TransferConfig.load(config_block)).settings_values())
    values.update(config or {})
    return load_settings(values)


def run_settings() -> tuple[Settings, Callable[[], Settings] | None]:
    """This flow run's settings, and how to read them again (None: they never change during the run)."""
    handed = _handed_over.get()
    if isinstance(handed, Settings):
        return handed, None
    name = handed or config_block_name()
    return block_settings(name), lambda: block_settings(name)


@contextmanager
def _handed(var: ContextVar[T | None], value: T) -> Iterator[None]:
    """``value`` is what flows started in this context (same thread) find in ``var``; the one before, after it."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)


def settings_in_process(settings: Settings | str) -> AbstractContextManager[None]:
    """Flows started in this context (same thread) run on ``settings`` (or the block of that name, read again
    every cycle), which never leave this process."""
    return _handed(_handed_over, settings)


def copy_io_in_process(io: CopyIO) -> AbstractContextManager[None]:
    """The copies of flows started in this context (same thread) move their bytes through ``io``."""
    return _handed(_copy_io, io)


def copy_io() -> CopyIO | None:
    """The byte I/O handed over by ``copy_io_in_process`` (None: the copier's own, the operating system's)."""
    return _copy_io.get()


def run_in_process(
    flow: Callable[..., R], config: Settings | str | Mapping[str, Any], stop: StopSwitch | None = None, **call: Any
) -> R:
    """Call ``flow`` here on ``config``: settings, a TransferConfig block's name, or setting values (as for
    ``load_settings``). ``stop``: the run's stop switch (``stop.request()`` from any thread ends the run cleanly).
    ``call``: its parameters (``subfolder``, ``pattern``, ``max_cycles``), ``return_state``."""
    from prefect import tags

    settings = config if isinstance(config, Settings | str) else load_settings(config)
    agent = (settings if isinstance(settings, Settings) else block_settings(settings)).agent_name
    with (
        settings_in_process(settings),
        stop_in_process(stop) if stop is not None else nullcontext(),
        tags(agent_tag(agent)),  # the run is the agent's, as its deployment's runs are
    ):
        return flow(**call)


# -- the run's stop switch, handed over in process ------------------------------------------------------------------

_stop_handed_over: ContextVar[StopSwitch | None] = ContextVar("fta_stop_in_process", default=None)


def stop_in_process(stop: StopSwitch) -> AbstractContextManager[None]:
    """Flows started in this context (same thread) stop when ``stop`` is pulled (elsewhere they make their own)."""
    return _handed(_stop_handed_over, stop)


def handed_stop() -> StopSwitch | None:
    """The stop switch handed over for this flow run, if any (``flows.watch_folder.stop_on_sigterm`` takes it)."""
    return _stop_handed_over.get()
