"""The service registry: who announced itself, who is alive, who is dead.

A service is alive while its heartbeats come; after ``liveness`` missed
intervals it is dead until it beats or announces again. ``starts`` counts
announcements by a new process, so a restarted service shows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from smtestbed.proto.rpc import ServiceInfo

ALIVE, DEAD, STOPPED = "alive", "dead", "stopped"


@dataclass(slots=True)
class Entry:
    """What the broker knows of one service instance."""

    info: ServiceInfo
    identity: bytes
    state: str
    since: float
    last_seen: float
    starts: int = 1

    def to_map(self, now: float, wall_offset: float) -> dict[str, Any]:
        """Return the status row of this entry (times as wall clock)."""
        return {
            **self.info.to_map(),
            "state": self.state,
            "since": self.since + wall_offset,
            "last_seen_s": round(now - self.last_seen, 3),
            "starts": self.starts,
            "restarts": self.starts - 1,
        }


class Registry:
    """Service entries by instance name."""

    def __init__(self, *, liveness: int = 3, now: Callable[[], float] = time.monotonic) -> None:
        self.liveness = liveness
        self._now = now
        self._entries: dict[str, Entry] = {}

    def announce(self, identity: bytes, info: ServiceInfo) -> Entry:
        """Register or refresh a service; a new pid counts as a restart."""
        now = self._now()
        entry = self._entries.get(info.name)
        if entry is None:
            entry = Entry(info=info, identity=identity, state=ALIVE, since=now, last_seen=now)
            self._entries[info.name] = entry
            return entry
        if entry.info.pid != info.pid:
            entry.starts += 1
        if entry.state != ALIVE or entry.info.pid != info.pid:
            entry.since = now
        entry.info, entry.identity, entry.state, entry.last_seen = info, identity, ALIVE, now
        return entry

    def beat(self, name: str) -> Entry | None:
        """Record a heartbeat; None when the name is unknown (it must announce)."""
        entry = self._entries.get(name)
        if entry is None or entry.state == STOPPED:
            return None
        entry.last_seen = self._now()
        if entry.state == DEAD:
            entry.state, entry.since = ALIVE, entry.last_seen
        return entry

    def bye(self, name: str) -> Entry | None:
        """Mark a service stopped on purpose."""
        entry = self._entries.get(name)
        if entry is not None:
            entry.state, entry.since = STOPPED, self._now()
        return entry

    def reap(self) -> list[Entry]:
        """Mark services dead whose heartbeats stopped; return the newly dead."""
        now = self._now()
        dead = []
        for entry in self._entries.values():
            limit = self.liveness * entry.info.heartbeat_s
            if entry.state == ALIVE and now - entry.last_seen > limit:
                entry.state, entry.since = DEAD, now
                dead.append(entry)
        return dead

    def get(self, name: str) -> Entry | None:
        """Return the entry of ``name``, if any."""
        return self._entries.get(name)

    def snapshot(self) -> list[dict[str, Any]]:
        """Return every entry as a status row, sorted by name."""
        now = self._now()
        offset = time.time() - now
        return [self._entries[n].to_map(now, offset) for n in sorted(self._entries)]
