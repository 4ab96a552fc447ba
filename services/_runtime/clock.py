"""The simulation clock: realtime, scaled or stepped.

``realtime``: simulation time runs with wall time from ``start``.
``scaled``: it runs ``scale`` times as fast as wall time.
``stepped``: it stands still until :meth:`SimClock.advance_to` moves it;
sleepers wake exactly when their time is reached, so a stepped run gives the
same result however fast the host is.

The clock reads ``start`` at wall time ``epoch`` (default: when it is made).
Processes given the same ``start`` and ``epoch`` read the same time in every
mode but ``stepped``; ``smtb up`` hands its own start to all its services.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable

from smtestbed.services._runtime.errors import ConfigError

MODES = ("realtime", "scaled", "stepped")


class SimClock:
    """Simulation time in s since the Unix epoch."""

    def __init__(
        self,
        mode: str = "realtime",
        *,
        scale: float = 1.0,
        start: float | None = None,
        epoch: float | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"unknown clock mode {mode!r}", key="clock_mode")
        if mode == "scaled" and not scale > 0:
            raise ConfigError(f"scale must be > 0, got {scale}", key="clock_scale")
        self.mode = mode
        self.scale = scale if mode == "scaled" else 1.0
        self._wall = wall
        self._wall0 = epoch if epoch else wall()
        self._start = start if start else self._wall0
        self._stepped_now = self._start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._tie = itertools.count()

    @property
    def epoch(self) -> float:
        """Wall time at which this clock read its start."""
        return self._wall0

    def now(self) -> float:
        """Return the current simulation time."""
        if self.mode == "stepped":
            return self._stepped_now
        return self._start + self.scale * (self._wall() - self._wall0)

    def advance_to(self, t_sim: float) -> None:
        """Move a stepped clock to ``t_sim`` and wake everyone due by then."""
        if self.mode != "stepped":
            raise ConfigError(f"advance_to needs a stepped clock, this one is {self.mode}")
        if t_sim < self._stepped_now:
            raise ConfigError(f"clock cannot go back from {self._stepped_now} to {t_sim}")
        self._stepped_now = t_sim
        while self._sleepers and self._sleepers[0][0] <= t_sim:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    def advance(self, dt: float) -> None:
        """Move a stepped clock forward by ``dt`` s."""
        self.advance_to(self._stepped_now + dt)

    async def sleep_until(self, t_sim: float) -> None:
        """Return once simulation time has reached ``t_sim``."""
        if self.mode != "stepped":
            delay = (t_sim - self.now()) / self.scale
            if delay > 0:
                await asyncio.sleep(delay)
            return
        if t_sim <= self._stepped_now:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (t_sim, next(self._tie), fut))
        await fut

    async def sleep(self, dt: float) -> None:
        """Sleep ``dt`` simulated seconds."""
        await self.sleep_until(self.now() + dt)
