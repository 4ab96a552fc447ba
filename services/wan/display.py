"""A consumer display on the gateway's HAN endpoint, and ``smtb display``.

The display connects with its own ``han-display`` certificate (CN
``display.<consumer>.han.test.example``; mutual TLS 1.2, SM-PKI profile)
and speaks :mod:`smtestbed.proto.han`, the WAN framing, through the same
client as the GWA (:class:`~smtestbed.services.wan.gwa.GwaClient`)::

    async with display_session(host, port, context, server_name) as display:
        latest = await display.call("latest")

The gateway answers only with the display's own consumer's data; asking for
another's raises :class:`~smtestbed.services.wan.gwa.WanRequestError` naming
the field (``meter`` or ``consumer``).

``smtb display`` prints the consumer's latest reading of each meter, one line
per value: ``METER  TIME(UTC)  QUANTITY  VALUE UNIT``, followed by
``  [time flagged]`` for a reading the gateway took while its clock deviated
beyond the legal limit (``flagged`` in the reply). Options may come from
``SMTB_DISPLAY_<OPTION>`` environment variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import click
from smtestbed.services._runtime import tls_options
from smtestbed.services._runtime.commands import TestbedCommand
from smtestbed.services._runtime.config import parse_host_port
from smtestbed.services.wan.gwa import GwaClient

__all__ = ["command", "display_session", "latest_lines"]


@contextlib.asynccontextmanager
async def display_session(
    host: str, port: int, context: ssl.SSLContext, server_name: str | None, timeout: float = 30.0
) -> AsyncIterator[GwaClient]:
    """Open a HAN session as a display; close it when the block ends."""
    async with GwaClient.connect(host, port, context, server_name, timeout=timeout) as client:
        yield client


def latest_lines(latest: dict[str, Any]) -> list[str]:
    """Return the lines ``smtb display`` prints for a ``latest`` result."""
    lines = [f"consumer {latest.get('consumer', '')}"]
    for reading in latest.get("readings", []):
        when = datetime.fromtimestamp(float(reading["t_sim"]), UTC).strftime("%Y-%m-%d %H:%M:%S")
        mark = "  [time flagged]" if reading.get("flagged") else ""
        for value in reading.get("values", []):
            lines.append(
                f"{reading['meter']}  {when}  {value['quantity']}  {value['value']} {value['unit']}"
                + mark
            )
    if len(lines) == 1:
        lines.append("no readings yet")
    return lines


@click.command(cls=TestbedCommand, context_settings={"auto_envvar_prefix": "SMTB_DISPLAY"})
@click.option("--gateway", required=True, help="the gateway's HAN endpoint HOST:PORT")
@tls_options.client_options("display TLS certificate (PEM)")
@click.option("--json", "as_json", is_flag=True, help="print the reply as JSON")
@click.option("--timeout", default=30.0, show_default=True, help="seconds per request")
def command(**opts: Any) -> None:
    """Show the consumer's latest readings from the gateway's HAN endpoint."""
    host, port = parse_host_port(str(opts["gateway"]), "gateway")
    context = tls_options.client_context(opts)
    result = asyncio.run(_latest(host, port, context, opts))
    if opts["as_json"]:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
    else:
        click.echo("\n".join(latest_lines(result)))


async def _latest(host: str, port: int, context: ssl.SSLContext, opts: dict[str, Any]) -> Any:
    name = opts["name"] or None
    async with display_session(host, port, context, name, opts["timeout"]) as display:
        return await display.call("latest")
