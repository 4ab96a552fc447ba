"""The simulation clock in its three modes."""

from __future__ import annotations

import asyncio

import pytest
from smtestbed.services._runtime.clock import SimClock
from smtestbed.services._runtime.errors import ConfigError


class FakeWall:
    """A wall clock the test moves by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_realtime_follows_the_wall_clock_from_start() -> None:
    """Realtime: sim time advances 1 s per wall second from the given start."""
    wall = FakeWall()
    clock = SimClock("realtime", start=5000.0, wall=wall)
    wall.t += 2.5
    assert clock.now() == 5002.5


def test_scaled_runs_k_times_as_fast() -> None:
    """Scaled by 60: one wall second is one simulated minute."""
    wall = FakeWall()
    clock = SimClock("scaled", scale=60.0, start=0.0 + 1.0, wall=wall)
    wall.t += 2.0
    assert clock.now() == 121.0


def test_clocks_sharing_an_epoch_agree_whenever_they_were_made() -> None:
    """Two scaled clocks made 30 wall seconds apart read the same time given one epoch."""
    wall = FakeWall()
    first = SimClock("scaled", scale=60.0, start=7200.0, epoch=wall.t, wall=wall)
    wall.t += 30.0
    late = SimClock("scaled", scale=60.0, start=7200.0, epoch=first.epoch, wall=wall)
    alone = SimClock("scaled", scale=60.0, start=7200.0, wall=wall)
    wall.t += 1.0
    assert late.now() == first.now() == 7200.0 + 31 * 60
    assert alone.now() == 7200.0 + 60  # without the epoch it starts when it is made


def test_stepped_stands_still_until_advanced_and_wakes_sleepers_in_order() -> None:
    """Stepped: sleepers wake exactly when their time is reached, in time order."""

    async def scenario() -> list[tuple[str, float]]:
        clock = SimClock("stepped", start=100.0)
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, until: float) -> None:
            await clock.sleep_until(until)
            woke.append((name, clock.now()))

        tasks = [
            asyncio.create_task(sleeper(n, t)) for n, t in (("c", 130), ("a", 110), ("b", 120))
        ]
        await asyncio.sleep(0.01)
        assert woke == []
        clock.advance(15)
        await asyncio.sleep(0.01)
        clock.advance_to(130)
        await asyncio.gather(*tasks)
        return woke

    assert asyncio.run(scenario()) == [("a", 115.0), ("b", 130.0), ("c", 130.0)]


def test_stepped_clock_refuses_to_go_back() -> None:
    """Time never runs backwards."""
    clock = SimClock("stepped", start=10.0)
    with pytest.raises(ConfigError, match="cannot go back"):
        clock.advance_to(5.0)


def test_only_a_stepped_clock_can_be_advanced_and_modes_are_checked() -> None:
    """advance_to on a realtime clock and an unknown mode are configuration errors."""
    with pytest.raises(ConfigError, match="stepped"):
        SimClock("realtime").advance(1.0)
    with pytest.raises(ConfigError, match="unknown clock mode"):
        SimClock("warp")
    with pytest.raises(ConfigError, match="scale must be > 0"):
        SimClock("scaled", scale=0.0)
