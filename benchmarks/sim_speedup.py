"""Simulated-time speed-up of sensor farm + channel in stepped mode.

Run: ``.venv/bin/python benchmarks/sim_speedup.py``.

The farm and the channel model run window after window in one process (no
sockets: the bus throughput is measured by ``benchmarks/bus.py``), as fast as
the host allows. Speed-up = simulated seconds / wall seconds. Meters send
every 15 minutes and stand in a square with one receiver per km^2.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from smtestbed.services.channel.config import ChannelConfig, scene_from_config
from smtestbed.services.channel.model import ChannelModel
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.population import Area, generate

INTERVAL_S = 900.0
WINDOW_S = 60.0


def _scene(side_m: float, seed: int) -> ChannelModel:
    per_side = max(1, round(side_m / 1000.0))
    step = side_m / per_side
    receivers = tuple(
        {"name": f"gw{i}-{j}", "x": (i + 0.5) * step, "y": (j + 0.5) * step}
        for i in range(per_side)
        for j in range(per_side)
    )
    model = ChannelModel(scene_from_config(ChannelConfig(seed=seed, receivers=receivers)))
    model.warm_up()
    return model


def measure(meters: int, sim_s: float, *, seed: int = 1) -> dict[str, float]:
    """Run ``sim_s`` simulated seconds of ``meters`` meters; return rates and counts."""
    side = 1000.0 * math.sqrt(meters / 25_000.0)  # 25 000 meters per km^2 (dense city)
    pop = generate(meters, seed=seed, interval_s=INTERVAL_S, area=Area(width_m=side, height_m=side))
    farm = Farm(pop, seed=seed)
    channel = _scene(side, seed)
    farm.step(0.0, 1.0)  # load the kernels before the clock starts
    start = time.perf_counter()
    t, frames, delivered = 1.0, 0, 0
    while t < 1.0 + sim_s:
        batch = farm.step(t, t + WINDOW_S)
        result = channel.process(batch)
        frames += batch.count
        delivered += result.batch.count
        t += WINDOW_S
    wall = time.perf_counter() - start
    return {
        "speedup": sim_s / wall,
        "wall_s": wall,
        "frames": frames,
        "delivered": delivered,
        "receivers": len(channel.names),
    }


def run(scale: float = 1.0) -> list[dict[str, Any]]:
    """Return the benchmark rows for ``benchmarks/sim.py``."""
    rows = []
    for meters, sim_s, target in ((100_000, 3600.0, ">= 1000x"), (1_000_000, 1800.0, ">= 100x")):
        n = max(1000, int(meters * scale))
        r = measure(n, sim_s)
        rows.append(
            {
                "case": f"farm + channel, {n:,} meters, 15 min interval, {WINDOW_S:g} s windows, "
                f"{r['receivers']} receivers ({r['frames']:,} frames)",
                "unit": "x real time",
                "rate": r["speedup"],
                "reference": None,
                "numpy": None,
                "target": target,
            }
        )
    return rows


if __name__ == "__main__":
    for row in run(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0):
        print(f"{row['case']}: {row['rate']:,.0f} {row['unit']} (target {row['target']})")
