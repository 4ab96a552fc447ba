"""``smtb sensorfarm serve-mbus``: wired M-Bus meters for outside masters.

Serves N meters drawn with :func:`population.generate` at primary addresses
FIRST..FIRST+N-1 (and their secondary addresses) on one line, reachable over
transparent M-Bus/TCP or a pseudo-terminal (8N1). Prints one line per meter
(primary address, secondary address, manufacturer, kind) and then
``serving N meters on URL``. Runs until SIGTERM or Ctrl-C.

Also runnable as ``python -m smtestbed.services.sensorfarm.cli_mbus``.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass

import click
from smtestbed.services._runtime.clock import SimClock
from smtestbed.services._runtime.commands import TestbedCommand
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.mbus_line import MbusLine
from smtestbed.services.sensorfarm.mbus_server import MbusPtyPort, MbusTcpServer
from smtestbed.services.sensorfarm.mbus_slave import MAX_PRIMARY_ADDRESS, MbusSlave
from smtestbed.services.sensorfarm.population import generate
from smtestbed.services.sensorfarm.schema import DEVICE_TYPE, Interface
from smtestbed.services.sensorfarm.wired_meters import wired_meters

__all__ = ["ServeOptions", "build_line", "parse_endpoint", "serve_mbus"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    """Validated options of ``serve-mbus``.

    Attributes:
        host: TCP address, "" for the pty.
        port: TCP port (0 = any free one).
        pty: serve on a pseudo-terminal instead of TCP.
        meters: number of meters, 1..251.
        seed: population seed.
        first_address: primary address of the first meter.
        records_per_telegram: split readouts after this many records (None: when full).
    """

    host: str = ""
    port: int = 0
    pty: bool = False
    meters: int = 1
    seed: int = 0
    first_address: int = 1
    records_per_telegram: int | None = None


def parse_endpoint(text: str) -> tuple[str, int]:
    """Parse ``HOST:PORT`` (port 0..65535).

    Raises:
        ConfigError: not HOST:PORT, or the port is out of range.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ConfigError(f"expected HOST:PORT, got {text!r}", key="--tcp")
    port = int(port_text)
    if port > 65535:
        raise ConfigError(f"port must be 0..65535, got {port}", key="--tcp")
    return host.strip("[]"), port


def _options(
    tcp: str | None, pty: bool, meters: int, seed: int, first: int, per: int | None
) -> ServeOptions:
    if (tcp is None) == (not pty):
        raise ConfigError("give exactly one of --tcp HOST:PORT and --pty", key="--tcp/--pty")
    if not 1 <= meters <= MAX_PRIMARY_ADDRESS + 1:
        raise ConfigError(f"must be 1..{MAX_PRIMARY_ADDRESS + 1}, got {meters}", key="--meters")
    if not 0 <= first <= MAX_PRIMARY_ADDRESS - meters + 1:
        last = first + meters - 1
        raise ConfigError(
            f"{meters} meters from {first} need addresses up to {last}; the last is "
            f"{MAX_PRIMARY_ADDRESS}",
            key="--first-address",
        )
    if per is not None and per < 1:
        raise ConfigError(f"must be at least 1, got {per}", key="--records-per-telegram")
    host, port = parse_endpoint(tcp) if tcp is not None else ("", 0)
    return ServeOptions(
        host=host,
        port=port,
        pty=pty,
        meters=meters,
        seed=seed,
        first_address=first,
        records_per_telegram=per,
    )


def build_line(options: ServeOptions, clock: SimClock) -> MbusLine:
    """Draw the meters and put one slave per meter on a new line."""
    pop = generate(options.meters, seed=options.seed, interface=Interface.WIRED_MBUS)
    meters = wired_meters(pop, clock=clock.now, first_address=options.first_address)
    slaves = [
        MbusSlave(
            meter,
            records_per_telegram=options.records_per_telegram,
            access_number=int(pop.access_number[row]),
        )
        for row, meter in enumerate(meters)
    ]
    return MbusLine(slaves)


def _announce(line: MbusLine, where: str) -> None:
    for slave in line.slaves:
        medium = slave.meter.medium
        kind = _KIND_NAMES.get(medium, f"medium 0x{medium:02X}")
        click.echo(
            f"{slave.primary_address:3d}  {slave.secondary_address}  "
            f"{slave.meter.manufacturer}  {kind}"
        )
    click.echo(f"serving {len(line.slaves)} meters on {where}")
    sys.stdout.flush()


_KIND_NAMES = {medium: kind.name.lower() for kind, medium in DEVICE_TYPE.items()}


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _serve(options: ServeOptions) -> None:
    line = build_line(options, SimClock("realtime"))
    if options.pty:
        with MbusPtyPort(line) as port:
            _announce(line, f"{port.path} (8N1)")
            await _until_stopped()
        return
    async with MbusTcpServer(line, host=options.host, port=options.port) as server:
        _announce(line, server.url)
        await _until_stopped()


class _OneLineCommand(TestbedCommand):
    """Report bad option values as one ``Error:`` line (exit code 1), not a usage block."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise click.ClickException(exc.format_message()) from exc


@click.command(name="serve-mbus", cls=_OneLineCommand)
@click.option("--tcp", metavar="HOST:PORT", help="serve transparent M-Bus/TCP here (port 0: any)")
@click.option("--pty", is_flag=True, help="serve on a new pseudo-terminal (8N1)")
@click.option("--meters", type=int, required=True, help="number of meters")
@click.option("--seed", type=int, default=0, show_default=True, help="population seed")
@click.option(
    "--first-address", type=int, default=1, show_default=True, help="first primary address"
)
@click.option(
    "--records-per-telegram", type=int, default=None, help="split readouts after this many records"
)
def serve_mbus(
    tcp: str | None,
    pty: bool,
    meters: int,
    seed: int,
    first_address: int,
    records_per_telegram: int | None,
) -> None:
    """Serve N simulated wired M-Bus meters to outside masters until stopped."""
    options = _options(tcp, pty, meters, seed, first_address, records_per_telegram)
    asyncio.run(_serve(options))


if __name__ == "__main__":
    serve_mbus(prog_name="smtb sensorfarm serve-mbus")
