"""Telegrams as an attacker on the radio records them, and their replay (``meter.replay``).

:class:`Recorder` keeps the frames of the last windows exactly as the farm sent them
(after any corruption), bounded by :data:`HISTORY_BYTES` of frame data: the newest
window is always kept, older ones are dropped first. ``meter.replay`` copies a meter's
last telegrams out of it and :class:`ReplayQueue` sends them again, byte-identical,
from the meter's position and with its power, once the simulation clock reaches the
time asked for. The meter itself does not change: its counters, access number and
schedule go on as before.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

HISTORY_BYTES = 4 << 20
"""Frame data (bytes) kept for replays; a busy farm remembers fewer windows."""
GUARD_S = 0.01
"""Gap between two replayed telegrams of one request, s (they must not collide)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """One telegram as sent: the sending meter's row, its start (s), ACC and bytes."""

    row: int
    t_sent: float
    access_number: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class _Window:
    meter: npt.NDArray[np.int64]
    t_start: npt.NDArray[np.float64]
    access_number: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.uint32]
    data: npt.NDArray[np.uint8]


class Recorder:
    """The frames of the last windows, newest last (see the module docstring)."""

    def __init__(self, budget: int = HISTORY_BYTES) -> None:
        self.budget = budget
        self._windows: deque[_Window] = deque()
        self._bytes = 0

    def add(
        self,
        meter: npt.NDArray[np.int64],
        t_start: npt.NDArray[np.float64],
        access_number: npt.NDArray[np.uint8],
        offsets: npt.NDArray[np.uint32],
        data: npt.NDArray[np.uint8],
    ) -> None:
        """Keep one window's frames (the arrays are kept, not copied: never change them)."""
        if not len(meter):
            return
        self._windows.append(_Window(meter, t_start, access_number, offsets, data))
        self._bytes += int(data.nbytes)
        while len(self._windows) > 1 and self._bytes > self.budget:
            self._bytes -= int(self._windows.popleft().data.nbytes)

    @property
    def windows(self) -> int:
        """Return how many windows with frames are kept."""
        return len(self._windows)

    def last(self, row: int, count: int) -> list[Recorded]:
        """Return meter ``row``'s last ``count`` kept telegrams, oldest first (maybe fewer)."""
        found: list[Recorded] = []
        for w in reversed(self._windows):
            for j in np.flatnonzero(w.meter == row)[::-1]:
                start, end = int(w.offsets[j]), int(w.offsets[j + 1])
                found.append(
                    Recorded(
                        row=row,
                        t_sent=float(w.t_start[j]),
                        access_number=int(w.access_number[j]),
                        frame=w.data[start:end].tobytes(),
                    )
                )
                if len(found) == count:
                    return found[::-1]
        return found[::-1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Replay:
    """A recorded telegram due to be sent again at ``due`` (s)."""

    due: float
    telegram: Recorded


class ReplayQueue:
    """Telegrams waiting to be sent again, by due time."""

    def __init__(self) -> None:
        self._queue: list[Replay] = []
        self.sent = 0

    def __len__(self) -> int:
        return len(self._queue)

    def schedule(self, telegrams: list[Recorded], at: float, airtime_s: float) -> list[Replay]:
        """Queue ``telegrams`` one after another from ``at`` (s); return the entries."""
        entries = [
            Replay(due=at + k * (airtime_s + GUARD_S), telegram=t) for k, t in enumerate(telegrams)
        ]
        self._queue = sorted([*self._queue, *entries], key=lambda r: r.due)
        return entries

    def due(self, t0: float, t1: float) -> list[tuple[float, Recorded]]:
        """Take the replays due before ``t1``; each with its send time, no earlier than t0."""
        now = [r for r in self._queue if r.due < t1]
        self._queue = [r for r in self._queue if r.due >= t1]
        self.sent += len(now)
        return [(max(r.due, t0), r.telegram) for r in now]
