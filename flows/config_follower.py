"""Follows an edited configuration (the TransferConfig block) while a watch runs: no restart needed.

An edit is read at each poll and either taken whole or not at all: an invalid edit or an unreachable API keeps
the settings in force. New paths need care. Copies under way (and their retries) belong to the old paths and the
old source's lock, so new paths wait until they have ended (``switch_due``: the loop submits nothing meanwhile),
and a new source another run on this machine moves is refused, once per edit, keeping the old paths and lock.
What a taken edit sets off is decided here (``Reactions``): another copy limit replaces the thread pool, another
shared limit is set on the server, new paths get their stale temp files removed, and another destination ends the
waits for room (the room was measured on the old one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from fta.logsetup import configure_logging
from fta.settings import Settings
from fta.source_hold import SourceHold

log = logging.getLogger("fta.loop")


@dataclass(frozen=True)
class Reactions:
    """What the rest of the loop does when an edit is taken (in this order: ``take`` first)."""

    take: Callable[[Settings], None]  # rebuild everything built from the settings
    rotate_pool: Callable[[], None]
    set_shared_limit: Callable[[Settings], None]
    remove_stale_temps: Callable[[], None]
    end_room_waits: Callable[[], None]


class ConfigFollower:
    def __init__(
        self,
        settings: Settings,
        reload: Callable[[], Settings] | None,
        hold: SourceHold,
        copies_under_way: Callable[[], int],
        reactions: Reactions,
    ) -> None:
        self.settings = settings
        self.switch_due = False  # new paths wait for the copies under way to end
        self._reload = reload
        self._hold = hold
        self._copies_under_way = copies_under_way
        self._reactions = reactions
        self._refused: Settings | None = None  # the last edit refused because its source was taken

    def follow(self) -> bool:
        """Read the configuration again and take it if it changed and can be taken now; True when taken."""
        if self._reload is None:
            return False
        try:
            fresh = self._reload()
        except Exception as exc:  # an invalid edit or an unreachable API keeps the settings in force
            log.warning("configuration not reloaded, the current one stays in force: %s", exc)
            return False
        if fresh == self.settings:
            self.switch_due = False
            return False
        moved = fresh.source_path != self.settings.source_path or (
            fresh.destination_path != self.settings.destination_path
        )
        if moved and (self._wait_for_copies() or not self._take_paths(fresh)):
            return False
        self.switch_due = False
        changed = [name for name in Settings.model_fields if getattr(fresh, name) != getattr(self.settings, name)]
        log.info("configuration changed: %s", ", ".join(changed))
        old, self.settings = self.settings, fresh
        self._react(old, fresh)
        return True

    def _wait_for_copies(self) -> bool:
        """True while copies under way keep the new paths waiting (said once per switch)."""
        under_way = self._copies_under_way()
        if not under_way:
            self.switch_due = False
            return False
        if not self.switch_due:
            log.info("configuration changed; %d copies under way end before the new paths apply", under_way)
        self.switch_due = True
        return True

    def _take_paths(self, fresh: Settings) -> bool:
        """Hold the new paths' source lock; False (the edit refused, said once per edit) when another run has it."""
        holder = self._hold.move(fresh.source_path, fresh.destination_path)
        if holder is None:
            self._refused = None
            return True
        if fresh != self._refused:  # once per edit, not at every poll
            log.warning(
                "configuration not reloaded, the current one stays in force: %s is being moved by another run"
                " on this machine (%s)",
                fresh.source_path,
                holder,
            )
            self._refused = fresh
        return False

    def _react(self, old: Settings, fresh: Settings) -> None:
        react = self._reactions
        react.take(fresh)
        configure_logging(fresh, console=False)
        if fresh.max_concurrent_copies != old.max_concurrent_copies:
            react.rotate_pool()
        if fresh.shared_limit != old.shared_limit or fresh.shared_limit_tag != old.shared_limit_tag:
            react.set_shared_limit(fresh)
        if fresh.destination_path != old.destination_path or fresh.source_path != old.source_path:
            react.remove_stale_temps()
        if fresh.destination_path != old.destination_path:
            react.end_room_waits()
