"""A CLS device on the HAN: its proxy channel to its EMT through the gateway, and ``smtb cls``.

The device connects to the gateway's HAN endpoint with its own ``han-cls``
certificate (mutual TLS 1.2, SM-PKI profile), asks for its channel to ``emt``
and then exchanges opaque data frames with that EMT (:mod:`smtestbed.proto.cls`);
the gateway relays them unchanged::

    async with ClsChannel.open(host, port, context, server_name, emt="emt-1") as channel:
        await channel.send(b"status?")
        command = await channel.receive()

A refused channel raises :class:`ChannelRefusedError` naming the field
(``cls``: none configured for this device, ``emt``: another EMT or the EMT
not reachable, ``role``); a refused handshake or a closed channel raises
:class:`ChannelClosedError`.

``smtb cls connect`` opens the channel, sends each ``--send HEX`` frame, then
prints each of ``--receive N`` frames from the EMT as hex, one per line.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from typing import Any

import click
from smtestbed.proto import wan
from smtestbed.proto.cls import CHANNEL_OP, encode_data, read_data
from smtestbed.services._runtime import tls, tls_options
from smtestbed.services._runtime.commands import TestbedCommand
from smtestbed.services._runtime.config import parse_host_port
from smtestbed.services._runtime.errors import PeerError, ProtocolError

__all__ = ["ChannelClosedError", "ChannelRefusedError", "ClsChannel", "group"]


class ChannelRefusedError(PeerError):
    """The gateway refused the channel.

    Attributes:
        field: what was refused (``cls``, ``emt``, ``role``, ``op``, ``frame``).
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


class ChannelClosedError(PeerError):
    """The TLS connection failed, or the gateway closed the channel.

    Attributes:
        reason: short reason (see :data:`smtestbed.services._runtime.tls.REASONS`, ``closed``).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ClsChannel:
    """One open proxy channel (after the gateway accepted it)."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, emt: str, number: int
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.emt = emt
        self.number = number

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        host: str,
        port: int,
        context: ssl.SSLContext,
        server_name: str | None,
        *,
        emt: str,
        timeout: float = 30.0,
    ) -> AsyncIterator[ClsChannel]:
        """Connect, ask for the channel to ``emt``; close it when the block ends."""
        reader, writer = await _connect(host, port, context, server_name, timeout)
        try:
            result = await _request_channel(reader, writer, emt, timeout)
            yield cls(reader, writer, emt=str(result.get("emt")), number=int(result["channel"]))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def send(self, data: bytes) -> None:
        """Send one data frame (1 byte to 16 MiB; the gateway may allow less)."""
        self.writer.write(encode_data(data))
        await self.writer.drain()

    async def receive(self, timeout: float = 30.0) -> bytes:
        """Return the next data frame from the EMT.

        Raises:
            ChannelClosedError: the channel ended.
            TimeoutError: nothing came within ``timeout`` s.
        """
        try:
            return await asyncio.wait_for(read_data(self.reader), timeout)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            raise ChannelClosedError("the gateway closed the channel", reason="closed") from exc


async def _connect(
    host: str, port: int, context: ssl.SSLContext, server_name: str | None, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=context, server_hostname=server_name, limit=2**16
            ),
            timeout,
        )
    except (ssl.SSLError, TimeoutError, OSError) as exc:
        reason = tls.refusal_reason(exc)
        raise ChannelClosedError(f"cannot reach {host}:{port}: {exc}", reason=reason) from exc


async def _request_channel(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, emt: str, timeout: float
) -> dict[str, Any]:
    request = {"id": 1, "op": CHANNEL_OP, "params": {"emt": emt}}
    try:
        writer.write(wan.encode(request))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(wan.HEADER), timeout)
        reply = wan.decode_reply(await reader.readexactly(wan.frame_length(header)))
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
        # a handshake the gateway refused shows here: TLS 1.2 ends it after our Finished
        message = f"the gateway closed the connection: {exc}"
        raise ChannelClosedError(message, reason="closed") from exc
    except wan.FrameError as exc:
        raise ChannelClosedError(f"bad reply from the gateway: {exc}", reason="protocol") from exc
    if not reply.ok:
        raise ChannelRefusedError(reply.error, field=reply.field)
    result = reply.result
    if not isinstance(result, dict) or not isinstance(result.get("channel"), int):
        raise ChannelClosedError(f"bad channel reply: {str(result)[:200]}", reason="protocol")
    return result


@click.group()
def group() -> None:
    """A CLS device on the HAN: talk to its EMT through the gateway's proxy channel."""


@group.command(cls=TestbedCommand, context_settings={"auto_envvar_prefix": "SMTB_CLS"})
@click.option("--gateway", required=True, help="the gateway's HAN endpoint HOST:PORT")
@tls_options.client_options("CLS TLS certificate (PEM, han-cls)")
@click.option("--emt", required=True, help="the EMT to reach (as configured at the gateway)")
@click.option("--send", "frames", multiple=True, help="a data frame to send, as hex")
@click.option("--receive", default=0, show_default=True, help="frames to wait for and print")
@click.option("--timeout", default=30.0, show_default=True, help="seconds per step")
def connect(**opts: Any) -> None:
    """Open the proxy channel, send the --send frames, print --receive frames as hex."""
    host, port = parse_host_port(str(opts["gateway"]), "gateway")
    try:
        frames = [bytes.fromhex(f) for f in opts["frames"]]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--send") from exc
    context = tls_options.client_context(opts)
    for line in asyncio.run(_exchange(host, port, context, frames, opts)):
        click.echo(line)


async def _exchange(
    host: str, port: int, context: ssl.SSLContext, frames: list[bytes], opts: dict[str, Any]
) -> list[str]:
    name, timeout = opts["name"] or None, float(opts["timeout"])
    lines = []
    async with ClsChannel.open(host, port, context, name, emt=opts["emt"], timeout=timeout) as ch:
        lines.append(f"channel {ch.number} to {ch.emt}")
        for frame in frames:
            try:
                await ch.send(frame)
            except ProtocolError as exc:
                raise click.BadParameter(str(exc), param_hint="--send") from exc
        for _ in range(int(opts["receive"])):
            lines.append((await ch.receive(timeout)).hex())
    return lines
