"""Sensor farm settings."""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.services._runtime.config import ServiceConfig, choice, doc


@dataclass(frozen=True, slots=True, kw_only=True)
class SensorFarmConfig(ServiceConfig):
    """Population, time window and where frame batches go."""

    meters: int = doc(1000, "number of generated meters (ignored with population_file)")
    mix: str = doc("electricity=0.4,gas=0.1,water=0.3,heat=0.2", "share of each meter kind")
    security: int = doc(5, "security mode of generated meters: 0, 5 or 7")
    interval_s: float = doc(900.0, "mean sending interval of generated meters, s")
    area_m: float = doc(2000.0, "side of the square the meters stand in, m")
    seed: int = doc(1, "seed of every random draw")
    population_file: str = doc("", "TOML or CSV file with one meter per row (empty: generate)")
    window_s: float = doc(1.0, "simulated time per window, s")
    step_control: str = choice(
        "free",
        "free",
        "request",
        help="stepped clock: run by itself (free) or only on sensorfarm.advance (request)",
    )
    output: str = doc("tcp://127.0.0.1:7710", "where frame batches go (PUSH, to the channel)")
    bind_output: bool = doc(False, "bind the output endpoint instead of connecting")
    mbus_tcp: str = doc("", "serve the wired meters as M-Bus slaves on HOST:PORT (empty: off)")
