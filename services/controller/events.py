"""The controller's log of bus events: bounded, indexed, waitable, written as JSON lines.

Every event but the simulation plane's batches (``sim.*``) is kept with an index
that grows by one per event. :meth:`EventLog.mark` returns the index the next
event will get, so ``mark = log.mark(); act(); await log.wait_event(kind, since=mark)``
cannot miss an event that the act caused, however fast it arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Event, Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.errors import RequestError

DEFAULT_CAPACITY = 100_000
_MISSING = object()


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggedEvent:
    """One event as the controller keeps it."""

    index: int
    kind: str
    src: str
    seq: int
    t_sim: float
    t_wall: float
    body: Any

    def to_map(self) -> dict[str, Any]:
        """Return the event as the JSON-lines object (and the API's reply)."""
        return {
            "index": self.index,
            "kind": self.kind,
            "src": self.src,
            "seq": self.seq,
            "t_sim": self.t_sim,
            "t_wall": self.t_wall,
            "body": self.body,
        }


def event_prefixes() -> list[str]:
    """Return subscription prefixes covering every event area except ``sim``."""
    areas = {kind.split(".")[0] for kind in topics.EVENTS}
    return sorted(f"{area}." for area in areas - {"sim"})


def lookup(body: Any, dotted: str) -> Any:
    """Return the value at ``a.b.c`` in nested maps (list items by number); _MISSING if absent."""
    value = body
    for part in dotted.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def matches(event: LoggedEvent, kind: str, match: Mapping[str, Any]) -> bool:
    """Return True when ``event`` has ``kind`` and every dotted key equals its value."""
    if event.kind != kind:
        return False
    return all(lookup(event.body, key) == want for key, want in match.items())


class EventLog:
    """Bounded in-memory log of the bus events one subscription receives."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._events: deque[LoggedEvent] = deque(maxlen=capacity)
        self._next = 0
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self, bus: BusClient) -> None:
        """Subscribe and begin logging; returns once the broker forwards our subscriptions."""
        sub = bus.subscribe(event_prefixes())
        await sub.wait_connected()
        self._task = asyncio.create_task(self._receive(sub), name="controller-events")

    async def stop(self) -> None:
        """Stop logging."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _receive(self, sub: Subscription) -> None:
        while True:
            await self.add(await sub.recv())

    async def add(self, event: Event) -> LoggedEvent:
        """Append one received event and wake the waiters."""
        env = event.envelope
        logged = LoggedEvent(
            index=self._next,
            kind=env.kind,
            src=env.src,
            seq=env.seq,
            t_sim=env.t_sim,
            t_wall=env.t_wall,
            body=env.body,
        )
        self._next += 1
        self._events.append(logged)
        async with self._changed:
            self._changed.notify_all()
        return logged

    def mark(self) -> int:
        """Return the index the next event will get."""
        return self._next

    def since(self, since: int = 0, kind: str = "", limit: int = 10_000) -> list[LoggedEvent]:
        """Return events with index >= ``since`` (of ``kind`` if given), oldest first."""
        self._check_since(since)
        out = [e for e in self._events if e.index >= since and (not kind or e.kind == kind)]
        return out[:limit]

    def _check_since(self, since: int) -> None:
        oldest = self._events[0].index if self._events else self._next
        if since < oldest and since < self._next:
            raise RequestError(
                f"events from {since} were dropped from the bounded log (oldest kept: {oldest})",
                field="since",
            )
        if since > self._next:
            raise RequestError(f"{since} is past the current mark {self._next}", field="since")

    async def wait_event(
        self, kind: str, match: Mapping[str, Any], *, timeout_s: float, since: int
    ) -> LoggedEvent | None:
        """Return the first event after ``since`` matching; None after ``timeout_s`` s."""
        self._check_since(since)
        deadline = time.monotonic() + timeout_s
        seen = since
        while True:
            for event in self._events:
                if event.index >= seen and matches(event, kind, match):
                    return event
            seen = self._next
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            async with self._changed:
                if self._next == seen:  # nothing arrived since the scan
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), left)

    def write_jsonl(self, path: Path, since: int = 0) -> int:
        """Write events from ``since`` as JSON lines; return how many were written."""
        path.parent.mkdir(parents=True, exist_ok=True)
        events = [e for e in self._events if e.index >= since]
        with path.open("w", encoding="utf-8") as handle:
            for e in events:
                row = {k: v for k, v in e.to_map().items() if k != "index"}
                handle.write(json.dumps(row, default=_jsonable, sort_keys=True) + "\n")
        return len(events)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)
