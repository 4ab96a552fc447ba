"""``smtb sensorfarm run|show-config|serve-mbus|emit``."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.proto.wmbus.link import strip_crcs_a
from smtestbed.services._runtime.commands import TestbedCommand, config_options, service_group
from smtestbed.services._runtime.config import load_config, parse_assignments
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.cli_mbus import serve_mbus
from smtestbed.services.sensorfarm.config import SensorFarmConfig
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.population import Population, generate, parse_mix
from smtestbed.services.sensorfarm.schema import Interface
from smtestbed.services.sensorfarm.service import SensorFarm, build_population

group = service_group(SensorFarm, "Run the sensor farm (simulated meters on the simulation plane).")
group.add_command(serve_mbus)


def emit_telegrams(pop: Population, count: int, *, seed: int) -> list[tuple[float, bytes]]:
    """Run the farm until ``count`` telegrams were sent; return (time s, frame) in time order."""
    farm = Farm(pop, seed=seed)
    window = float(np.min(pop.interval_s)) / 4 if len(pop) else 1.0
    out: list[tuple[float, bytes]] = []
    t0 = 0.0
    while len(out) < count:
        batch = farm.step(t0, t0 + window)
        times = batch.columns["t_start"].tolist()
        out += sorted(zip(times, (bytes(f) for f in batch), strict=True))
        t0 += window
    return out[:count]


@group.command("emit", cls=TestbedCommand)
@click.option("--meters", type=int, required=True, help="number of meters")
@click.option("--count", type=int, required=True, help="number of telegrams to print")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--security", type=click.Choice(["0", "5", "7"]), default="5", show_default=True)
@click.option("--mix", default="electricity=0.4,gas=0.1,water=0.3,heat=0.2", show_default=True)
@click.option(
    "--interval-s", type=float, default=900.0, show_default=True, help="mean sending interval, s"
)
@click.option(
    "--keys",
    "keys_file",
    type=click.Path(path_type=Path),
    required=True,
    help="write the meters' keys here (CSV: id,manufacturer,key_hex)",
)
@click.option(
    "--wmbusmeters",
    "sim_file",
    type=click.Path(path_type=Path),
    default=None,
    help="also write the telegrams as a wmbusmeters simulation file",
)
def emit(
    meters: int,
    count: int,
    seed: int,
    security: str,
    mix: str,
    interval_s: float,
    keys_file: Path,
    sim_file: Path | None,
) -> None:
    """Print COUNT wireless telegrams as hex lines (link-layer CRCs included)."""
    if meters < 1 or count < 0:
        raise ConfigError("--meters must be >= 1 and --count >= 0", key="meters")
    if not (math.isfinite(interval_s) and interval_s > 0):
        raise ConfigError(f"--interval-s must be a number > 0, got {interval_s}", key="interval_s")
    pop = generate(
        meters, seed=seed, mix=parse_mix(mix), security=int(security), interval_s=interval_s
    )
    telegrams = emit_telegrams(pop, count, seed=seed)
    # files first: a file that cannot be written fails the command before anything is printed
    _write("keys", lambda: write_keys(pop, keys_file))
    if sim_file is not None:
        _write("wmbusmeters", lambda: write_wmbusmeters(pop, telegrams, sim_file))
    for _, frame in telegrams:
        click.echo(frame.hex().upper())


def _write(option: str, write: Callable[[], None]) -> None:
    try:
        write()
    except OSError as exc:
        raise ConfigError(f"cannot write the --{option} file: {exc}", key=option) from exc


def write_keys(pop: Population, path: Path) -> None:
    """Write ``id,manufacturer,key_hex`` for every meter."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "manufacturer", "key_hex"])
        for i in range(len(pop)):
            writer.writerow(
                [
                    f"{int(pop.ident[i]):08d}",
                    decode_manufacturer(int(pop.manufacturer[i])),
                    bytes(pop.key[i]).hex().upper(),
                ]
            )


def write_wmbusmeters(pop: Population, telegrams: list[tuple[float, bytes]], path: Path) -> None:
    """Write a wmbusmeters simulation file: ``telegram=|HEX|+SECONDS`` per telegram.

    The frames are written as a receiving dongle delivers them (link-layer
    CRCs removed); the meters and keys are listed as comments above them.
    """
    lines = ["# smtestbed sensorfarm emit: meters (id manufacturer key)"]
    lines += [
        f"# {int(pop.ident[i]):08d} {decode_manufacturer(int(pop.manufacturer[i]))} "
        f"{bytes(pop.key[i]).hex().upper()}"
        for i in range(len(pop))
    ]
    start = telegrams[0][0] if telegrams else 0.0
    lines += [
        f"telegram=|{strip_crcs_a(frame).hex().upper()}|+{int(t - start)}" for t, frame in telegrams
    ]
    path.write_text("\n".join(lines) + "\n")


@group.command("registry", cls=TestbedCommand)
@config_options
@click.option(
    "--gateway",
    "gateways",
    multiple=True,
    default=("gw0",),
    show_default=True,
    help="gateway instance the meters are registered at (repeat: round robin)",
)
@click.option(
    "--tafs",
    default="taf1;taf2;taf6;taf7",
    show_default=True,
    help="tariff use cases assigned, separated by ';'",
)
@click.option("--emt", default="emt-a", show_default=True, help="market participant of the data")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="CSV file to write")
def registry(
    config_file: Path | None,
    instance: str | None,
    assignments: tuple[str, ...],
    log_level: str | None,
    gateways: tuple[str, ...],
    tafs: str,
    emt: str,
    out: Path,
) -> None:
    """Write the gateway registry (CSV) of the population this configuration simulates."""
    cfg = load_config(
        SensorFarmConfig, "sensorfarm", path=config_file, overrides=parse_assignments(assignments)
    )
    pop = build_population(cfg, 0.0)
    wireless = [i for i in range(len(pop)) if pop.interface[i] == Interface.WIRELESS]
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(REGISTRY_HEADER)
        for n, i in enumerate(wireless):
            writer.writerow(
                [
                    gateways[n % len(gateways)],
                    f"{int(pop.ident[i]):08d}",
                    decode_manufacturer(int(pop.manufacturer[i])),
                    bytes(pop.key[i]).hex() if pop.security[i] else "",
                    int(pop.security[i]),
                    tafs,
                    f"consumer-{n:05d}",
                    emt,
                ]
            )
    click.echo(f"{len(wireless)} meters -> {out}", err=True)


REGISTRY_HEADER = (
    "gateway",
    "meter",
    "manufacturer",
    "key_hex",
    "security",
    "tafs",
    "consumer",
    "emt",
)
