"""One point of a load campaign: sensor farm -> channel -> gateway instance, in process.

Every window the farm builds its telegrams, the channel decides what receiver ``gw0`` hears
and the gateway instance ingests it (measurement processing, one store transaction, the
logs). The wall time of each stage is taken per window and counted once per frame in it,
so the percentiles are per frame. Accounting: every frame the channel delivered is accepted,
rejected with a reason, or a duplicate; ``lost`` counts the rest and must be 0.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.services.channel import physics
from smtestbed.services.channel.config import ChannelConfig, scene_from_config
from smtestbed.services.channel.model import ChannelModel
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.processing import received_frames
from smtestbed.services.gateway.schema import MeterEntry
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.population import Area, Population, generate

T0 = 19_676 * 86_400.0  # simulation start, s (2023-11-15 00:00 UTC)
STAGES = ("farm", "channel", "gateway", "end_to_end")
MODES = {"s1": physics.MODE_S1, "t1": physics.MODE_T1, "c1": physics.MODE_C1}


@dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """One setting of the sweep.

    Attributes:
        meters: number of meters.
        interval_s: mean send interval of each meter, s.
        mode: radio mode of every meter (``s1``, ``t1`` or ``c1``).
        capture: the channel lets the strongest of colliding frames through.
        noise: the channel adds receiver noise (off: pure collisions, the ALOHA case).
        duration_s: simulated time, s.
        window_s: length of one simulation window, s.
    """

    meters: int
    interval_s: float
    mode: str = "t1"
    capture: bool = False
    noise: bool = False
    duration_s: float = 60.0
    window_s: float = 10.0

    def label(self) -> str:
        """Return a short name: ``n200-i10-t1-cap``."""
        flags = ("-cap" if self.capture else "") + ("-noise" if self.noise else "")
        return f"n{self.meters}-i{self.interval_s:g}-{self.mode}{flags}"


@dataclass(slots=True)
class Tally:
    """Counts and per-frame stage times of one point."""

    offered: int = 0
    airtime_s: float = 0.0
    delivered: int = 0
    collided: int = 0
    corrupted: int = 0
    lost_to_noise: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    times: dict[str, list[tuple[float, int]]] = field(
        default_factory=lambda: {s: [] for s in STAGES}
    )

    @property
    def lost(self) -> int:
        """Return delivered frames the gateway neither accepted, rejected nor called duplicate."""
        return self.delivered - self.accepted - self.rejected - self.duplicates


def population(point: Point, seed: int) -> Population:
    """Return the point's meters: one mode, mode 5, all within 100 m of the receiver."""
    return generate(
        point.meters,
        seed=seed,
        modes={point.mode: 1.0},
        security=5,
        interval_s=point.interval_s,
        area=Area(width_m=100.0, height_m=100.0),
        start_s=T0,
    )


def channel(point: Point, seed: int) -> ChannelModel:
    """Return the channel of the point: one receiver amid the meters, no shadowing."""
    config = ChannelConfig(
        seed=seed,
        noise=point.noise,
        capture=point.capture,
        shadowing_sigma_db=0.0,
        receivers=({"name": "gw0", "x": 50.0, "y": 50.0},),
    )
    return ChannelModel(scene_from_config(config))


def gateway(pop: Population, folder: Path) -> GatewayInstance:
    """Open a gateway instance in ``folder`` with every meter of ``pop`` registered."""
    inst = GatewayInstance("gw0", folder, synchronous="NORMAL")
    for i in range(len(pop)):
        entry = MeterEntry(
            meter=f"{int(pop.ident[i]):08d}",
            manufacturer=decode_manufacturer(int(pop.manufacturer[i])),
            key=bytes(pop.key[i]),
            security=5,
        )
        inst.registry.add(entry, replace=True)
    return inst


def airtime(batch_offsets: Any, mode: int) -> float:
    """Return the summed air time of a batch's frames in ``mode``, s (channel physics)."""
    sizes = np.diff(np.frombuffer(batch_offsets, dtype=np.uint32))
    return float(sum(physics.airtime_s(mode, int(n)) for n in sizes))


@dataclass(frozen=True, slots=True, kw_only=True)
class PointResult:
    """The measured figures of one point (see :meth:`to_row`)."""

    point: Point
    tally: Tally
    wall_s: float

    @property
    def offered_load(self) -> float:
        """Return G: air time sent per second of simulated time (Erlang)."""
        return self.tally.airtime_s / self.point.duration_s

    @property
    def success(self) -> float:
        """Return the fraction of sent frames the receiver heard."""
        t = self.tally
        return t.delivered / t.offered if t.offered else 0.0

    def percentiles(self) -> dict[str, float]:
        """Return p50 and p99 of each stage's wall time per frame, ms."""
        out: dict[str, float] = {}
        for stage in STAGES:
            rows = self.tally.times[stage]
            values = np.repeat([t for t, _ in rows], [n for _, n in rows]) if rows else [0.0]
            p50, p99 = np.percentile(values, [50, 99])
            out[f"{stage}_p50_ms"] = round(float(p50) * 1e3, 3)
            out[f"{stage}_p99_ms"] = round(float(p99) * 1e3, 3)
        return out

    def to_row(self) -> dict[str, Any]:
        """Return one flat row: the point, the counts, G, success and the latencies."""
        t, p = self.tally, self.point
        return {
            "label": p.label(),
            "meters": p.meters,
            "interval_s": p.interval_s,
            "mode": p.mode,
            "capture": p.capture,
            "noise": p.noise,
            "offered": t.offered,
            "offered_load_g": round(self.offered_load, 5),
            "delivered": t.delivered,
            "collided": t.collided,
            "lost_to_noise": t.lost_to_noise,
            "corrupted": t.corrupted,
            "accepted": t.accepted,
            "rejected": t.rejected,
            "duplicates": t.duplicates,
            "lost": t.lost,
            "success": round(self.success, 5),
            "aloha": round(physics.aloha_success(self.offered_load), 5),
            **self.percentiles(),
            "reasons": dict(t.reasons),
            "wall_s": round(self.wall_s, 3),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Chain:
    """The three stages of one point."""

    farm: Farm
    channel: ChannelModel
    gateway: GatewayInstance
    mode: int


def step(chain: Chain, t0: float, t1: float, tally: Tally) -> None:
    """Run one window [t0, t1) through the three stages and count it."""
    t_a = time.perf_counter()
    sent = chain.farm.step(t0, t1)
    t_b = time.perf_counter()
    heard = chain.channel.process(sent)
    t_c = time.perf_counter()
    result = chain.gateway.ingest(list(received_frames(heard.batch)))
    t_d = time.perf_counter()
    c = heard.counters
    tally.offered += sent.count
    tally.airtime_s += airtime(sent.offsets, chain.mode)
    tally.delivered += heard.batch.count
    tally.collided += int(c["collided"])
    tally.lost_to_noise += int(c["lost_to_noise"])
    tally.corrupted += int(c["corrupted"])
    tally.accepted += len(result.accepted)
    tally.rejected += len(result.rejected)
    tally.duplicates += result.duplicates
    tally.reasons.update(str(r.reason) for r in result.rejected)
    for stage, seconds, frames in (
        ("farm", t_b - t_a, sent.count),
        ("channel", t_c - t_b, sent.count),
        ("gateway", t_d - t_c, heard.batch.count),
        ("end_to_end", t_d - t_a, heard.batch.count),
    ):
        if frames:
            tally.times[stage].append((seconds, frames))


def run_point(point: Point, *, seed: int, folder: Path) -> PointResult:
    """Run one point over ``point.duration_s`` of simulated time; its store lives in ``folder``."""
    pop = population(point, seed)
    inst = gateway(pop, folder)
    model = channel(point, seed)
    model.warm_up()
    chain = Chain(farm=Farm(pop, seed=seed), channel=model, gateway=inst, mode=MODES[point.mode])
    tally = Tally()
    start = time.perf_counter()
    try:
        t0, end = T0, T0 + point.duration_s
        while t0 < end:
            t1 = min(t0 + point.window_s, end)
            step(chain, t0, t1, tally)
            t0 = t1
    finally:
        inst.close()
    return PointResult(point=point, tally=tally, wall_s=time.perf_counter() - start)
