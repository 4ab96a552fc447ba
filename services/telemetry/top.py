"""``smtb top``: the testbed at a glance in the terminal (rich Live).

It is a bus client of its own: it subscribes to every event and polls
``broker.status``, folds both into an :class:`Aggregator` exactly as the
telemetry service does, and redraws twice a second. ``seconds`` bounds the
run; when the output is not a terminal, the last picture is printed once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints, Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.errors import PeerError
from smtestbed.services.telemetry import view
from smtestbed.services.telemetry.aggregate import Aggregator

_STATE_COLOURS = {"alive": "green", "dead": "red", "stopped": "yellow"}


def services_table(agg: Aggregator, note: str) -> Table:
    """Return one row per service instance: state, restarts, events published."""
    table = Table(title=f"services ({note})", title_justify="left")
    for col in ("name", "service", "state", "restarts", "events"):
        table.add_column(col, justify="right" if col in ("restarts", "events") else "left")
    for row in view.services(agg):
        colour = _STATE_COLOURS.get(row["state"], "white")
        table.add_row(
            row["name"],
            row["service"],
            f"[{colour}]{row['state']}[/]",
            str(row["restarts"]),
            str(row["events"]),
        )
    return table


def flow_table(agg: Aggregator) -> Table:
    """Return meters, channel, gateway and certificate totals in one table."""
    m, ch, gw, ca = view.meters(agg), view.channel(agg), view.gateway(agg), view.certificates(agg)
    table = Table(title="traffic", title_justify="left")
    for col in ("stage", "counts"):
        table.add_column(col)
    table.add_row("meters", f"{m['meters']} meters, {m['sent']} sent, {m['skipped']} skipped")
    table.add_row(
        "channel",
        f"{ch['offered']} offered, {ch['delivered']} delivered, {ch['collided']} collided, "
        f"{ch['corrupted']} corrupted, {ch['lost_to_noise']} lost",
    )
    reasons = ", ".join(f"{k} {v}" for k, v in gw["by_reason"].items()) or "-"
    table.add_row("gateway", f"{gw['accepted']} accepted, {gw['rejected']} rejected ({reasons})")
    table.add_row(
        "certificates",
        f"{ca['issued']} issued, {ca['revoked']} revoked, {ca['crls']} CRLs, "
        f"{ca['refused']} refused",
    )
    return table


def picture(agg: Aggregator, note: str) -> RenderableType:
    """Return the whole screen: services, then traffic."""
    return Group(services_table(agg, note), flow_table(agg))


async def _consume(sub: Subscription, agg: Aggregator) -> None:
    while True:
        event = await sub.recv()
        env = event.envelope
        agg.observe(env.kind, env.src, env.body, env.t_wall)


async def _status(client: BusClient, agg: Aggregator, timeout: float) -> str:
    try:
        agg.apply_status(
            await client.request("broker", topics.BROKER_STATUS, timeout=timeout, retries=0)
        )
    except PeerError as exc:
        return f"broker not answering: {exc}"
    return f"{agg.events_total} events seen"


async def watch(
    endpoints: Endpoints, *, seconds: float | None, interval: float, console: Console
) -> Aggregator:
    """Show the testbed until ``seconds`` have passed (None: until cancelled)."""
    agg = Aggregator()
    client = BusClient(endpoints, name="top")
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        sub = client.subscribe()
        with contextlib.suppress(TimeoutError):
            await sub.wait_connected(min(2.0, seconds or 2.0))
        consumer = asyncio.create_task(_consume(sub, agg))
        note = await _status(client, agg, interval)
        with Live(picture(agg, note), console=console, refresh_per_second=2) as live:
            while deadline is None or time.monotonic() < deadline:
                left = interval if deadline is None else deadline - time.monotonic()
                await asyncio.sleep(max(0.0, min(interval, left)))
                note = await _status(client, agg, interval)
                live.update(picture(agg, note))
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    finally:
        client.close()
    return agg
