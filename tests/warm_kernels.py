"""Fill the Numba cache with the kernels that sensor farms and channels compile at start.

A sensor farm or channel process compiles its kernels before it declares itself ready:
with a cold cache (a clean clone) that took 24 s for a channel and 43 s for a sensor farm
on two busy cores, past the ready timeouts of the tests that start them. Run once before
such tests (``python -m tests.warm_kernels``; the root conftest does it), every later start
loads the compiled kernels from the cache in about a second.
"""

from __future__ import annotations

import time

from smtestbed.services._runtime.config import load_config
from smtestbed.services.channel.config import ChannelConfig
from smtestbed.services.channel.service import Channel
from smtestbed.services.sensorfarm.config import SensorFarmConfig
from smtestbed.services.sensorfarm.service import SensorFarm

SECURITY_MODES = (0, 5, 7)
WINDOW_S = 300.0


def warm_sensorfarms() -> None:
    """Build a small farm of each security mode and run one window, as a farm service does."""
    for security in SECURITY_MODES:
        overrides = {"security": str(security), "meters": "40", "interval_s": "60"}
        service = SensorFarm(
            load_config(SensorFarmConfig, "sensorfarm", env={}, overrides=overrides)
        )
        t0 = service.clock.now()
        service.farm.step(t0, t0 + WINDOW_S)


def warm_channel() -> None:
    """Run every channel kernel once, as a channel service does before it is ready."""
    Channel(load_config(ChannelConfig, "channel", env={}, overrides={})).model.warm_up()


def main() -> None:
    """Compile (or load) the kernels and say how long it took."""
    start = time.monotonic()
    warm_sensorfarms()
    warm_channel()
    print(f"Numba kernels of sensor farm and channel ready in {time.monotonic() - start:.1f} s")


if __name__ == "__main__":
    main()
