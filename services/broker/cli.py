"""``smtb broker``, ``smtb status`` and ``smtb bus tap|record|replay``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import click
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints, Event
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.commands import (
    TestbedCommand,
    TestbedGroup,
    client_config,
    service_group,
)
from smtestbed.services._runtime.errors import RequestTimeoutError
from smtestbed.services.broker import recorder
from smtestbed.services.broker.service import Broker

group = service_group(Broker, "Run the bus broker (event proxy, request router, registry).")


def _endpoints(config_file: Path | None, assignments: tuple[str, ...]) -> Endpoints:
    return Endpoints.from_config(client_config(config_file, assignments))


_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML configuration file ([common] table)",
)
_set_option = click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="override a bus setting, e.g. bus_rpc=tcp://127.0.0.1:7703",
)


async def fetch_status(endpoints: Endpoints, timeout: float) -> dict[str, Any]:
    """Ask the broker for its status."""
    client = BusClient(endpoints, name="status")
    try:
        result: dict[str, Any] = await client.request(
            "broker", topics.BROKER_STATUS, timeout=timeout, retries=1
        )
        return result
    finally:
        client.close()


@click.command(cls=TestbedCommand)
@_config_option
@_set_option
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
@click.option("--timeout", default=3.0, show_default=True, help="seconds to wait for the broker")
@click.option(
    "--wait",
    "wait_for",
    multiple=True,
    metavar="NAME",
    help="wait (up to --timeout) until service NAME is alive; repeatable",
)
def status(
    config_file: Path | None,
    assignments: tuple[str, ...],
    as_json: bool,
    timeout: float,
    wait_for: tuple[str, ...],
) -> None:
    """List the services registered with the broker and whether they are alive."""
    endpoints = _endpoints(config_file, assignments)
    if wait_for:
        result = asyncio.run(wait_alive(endpoints, set(wait_for), timeout))
    else:
        result = asyncio.run(fetch_status(endpoints, timeout))
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    from rich.console import Console
    from rich.table import Table

    b = result["broker"]
    table = Table(
        title=f"broker {b['name']} (pid {b['pid']}, up {b['uptime_s']:.0f} s, "
        f"{b['events_forwarded']} events, "
        f"{sum(b['events_rejected'].values())} rejected)"
    )
    for col in ("name", "service", "state", "pid", "restarts", "last seen", "version"):
        table.add_column(col)
    colours = {"alive": "green", "dead": "red", "stopped": "yellow"}
    for s in result["services"]:
        state = f"[{colours.get(s['state'], 'white')}]{s['state']}[/]"
        table.add_row(
            s["name"],
            s["service"],
            state,
            str(s["pid"]),
            str(s["restarts"]),
            f"{s['last_seen_s']:.1f} s ago",
            s["version"],
        )
    Console().print(table)


async def wait_alive(endpoints: Endpoints, names: set[str], timeout: float) -> dict[str, Any]:
    """Poll the broker until every service in ``names`` is alive; return the status."""
    deadline = time.monotonic() + timeout
    missing = set(names)
    while True:
        left = deadline - time.monotonic()
        try:
            result = await fetch_status(endpoints, max(0.2, min(1.0, left)))
            alive = {s["name"] for s in result["services"] if s["state"] == "alive"}
            missing = names - alive
            if not missing:
                return result
        except RequestTimeoutError:
            pass
        if left <= 0:
            raise RequestTimeoutError(
                f"not alive within {timeout:g} s: {', '.join(sorted(missing))}"
            )
        await asyncio.sleep(0.2)


@click.group(cls=TestbedGroup)
def bus() -> None:
    """Tap, record and replay events on the bus."""


def _format(event: Event) -> str:
    env = event.envelope
    stamp = (
        time.strftime("%H:%M:%S", time.localtime(env.t_wall)) + f".{int(env.t_wall % 1 * 1000):03d}"
    )
    body = json.dumps(env.body, default=repr, separators=(",", ":"))
    extra = f" +{len(event.frames)} raw frame(s)" if event.frames else ""
    return f"{stamp} {env.kind:<24} {env.src}#{env.seq} {body}{extra}"


@bus.command("tap")
@click.argument("topics_", metavar="[TOPIC]...", nargs=-1)
@_config_option
@_set_option
@click.option("--count", type=int, default=None, help="stop after this many events")
@click.option("--seconds", type=float, default=None, help="stop after this many seconds")
@click.option("--json", "as_json", is_flag=True, help="one JSON object a line")
def tap(
    topics_: tuple[str, ...],
    config_file: Path | None,
    assignments: tuple[str, ...],
    count: int | None,
    seconds: float | None,
    as_json: bool,
) -> None:
    """Print live events whose topic starts with one of TOPIC (all when none)."""

    def sink(event: Event) -> None:
        if as_json:
            env = event.envelope
            line = json.dumps(
                {
                    "kind": env.kind,
                    "src": env.src,
                    "seq": env.seq,
                    "t_sim": env.t_sim,
                    "t_wall": env.t_wall,
                    "body": env.body,
                },
                default=repr,
            )
        else:
            line = _format(event)
        click.echo(line)
        sys.stdout.flush()

    endpoints = _endpoints(config_file, assignments)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(recorder.tap(endpoints, topics_, sink, count=count, seconds=seconds))


@bus.command("record")
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("topics_", metavar="[TOPIC]...", nargs=-1)
@_config_option
@_set_option
@click.option("--count", type=int, default=None, help="stop after this many events")
@click.option("--seconds", type=float, default=None, help="stop after this many seconds")
def record(
    file: Path,
    topics_: tuple[str, ...],
    config_file: Path | None,
    assignments: tuple[str, ...],
    count: int | None,
    seconds: float | None,
) -> None:
    """Write every event (or those of TOPIC...) to FILE until Ctrl-C or a limit."""
    endpoints = _endpoints(config_file, assignments)
    try:
        written = asyncio.run(
            recorder.record(endpoints, file, topics_, count=count, seconds=seconds)
        )
    except KeyboardInterrupt:
        written = -1
    if written >= 0:
        click.echo(f"recorded {written} events to {file}", err=True)


@bus.command("replay")
@click.argument("file", type=click.Path(path_type=Path))
@_config_option
@_set_option
@click.option(
    "--speed",
    type=float,
    default=1.0,
    show_default=True,
    help="time factor (2 = twice as fast, 0 = as fast as possible)",
)
def replay(
    file: Path, config_file: Path | None, assignments: tuple[str, ...], speed: float
) -> None:
    """Publish the events of FILE again, in order and with their original timing."""
    sent = asyncio.run(recorder.replay(_endpoints(config_file, assignments), file, speed=speed))
    click.echo(f"replayed {sent} events from {file}", err=True)
