"""``smtb telemetry run|show-config|top`` and ``smtb top``."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import click
from rich.console import Console
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.commands import TestbedCommand, client_config, service_group
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.telemetry.service import Telemetry
from smtestbed.services.telemetry.top import watch

group = service_group(
    Telemetry, "Run the telemetry service (MQTT bridge, Prometheus /metrics, web dashboard)."
)


@click.command(cls=TestbedCommand)
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML configuration file ([common] table)",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a bus setting, e.g. bus_rpc=tcp://127.0.0.1:7703",
)
@click.option("--seconds", type=float, default=None, help="stop after this many seconds")
@click.option("--interval", type=float, default=1.0, show_default=True, help="redraw period, s")
def top(
    config_file: Path | None, assignments: tuple[str, ...], seconds: float | None, interval: float
) -> None:
    """Show services, meters, channel, gateways and certificates live in the terminal."""
    if interval <= 0 or (seconds is not None and seconds <= 0):
        raise ConfigError("--seconds and --interval must be > 0")
    endpoints = Endpoints.from_config(client_config(config_file, assignments))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(watch(endpoints, seconds=seconds, interval=interval, console=Console()))


group.add_command(top)
