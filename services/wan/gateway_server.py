"""A WAN party's TLS server for gateways: handshake, role check, framed JSON session.

The EMT and the time service both listen for gateways the same way: the TLS
handshake on an upgradable stream (so no early ClientHello is lost), only
peers with the gateway role (subject OU ``SMGW``) admitted, each refusal
reported, then length-framed JSON messages (``proto.delivery``) answered one
by one until the gateway hangs up or stays silent for ``idle_timeout_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from smtestbed.proto.delivery import encode_frame, read_message
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.config import parse_host_port
from smtestbed.services._runtime.errors import ConfigError, ProtocolError
from smtestbed.services._runtime.streams import start_upgradable_server

GATEWAY_ROLE = "SMGW"

Handle = Callable[[dict[str, Any], tls.Peer], Awaitable[dict[str, Any]]]
"""Answers one message of an admitted gateway."""
Malformed = Callable[[ProtocolError, tls.Peer], dict[str, Any]]
"""The last reply to a gateway whose stream is out of step (then the connection ends)."""
Refused = Callable[[str, str, str], None]
"""Told (reason, peer address, message) for each refused handshake or role."""


class GatewayServer:
    """Listen on ``listen`` (HOST:PORT) for gateways; see the module docstring."""

    def __init__(
        self,
        listen: str,
        *,
        key: str,
        context: Callable[[], ssl.SSLContext],
        handshake_timeout_s: float,
        idle_timeout_s: float,
        handle: Handle,
        malformed: Malformed,
        refused: Refused,
    ) -> None:
        self.host, self.port = parse_host_port(listen, key)
        self._context = context
        self._handshake_timeout = handshake_timeout_s
        self._idle_timeout = idle_timeout_s
        self._handle = handle
        self._malformed = malformed
        self._refused = refused
        self.sessions = 0

    async def start(self) -> asyncio.Server:
        """Start listening; the caller serves and closes the returned server."""
        return await start_upgradable_server(self._connection, self.host, self.port)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        where = f"{addr[0]}:{addr[1]}" if addr else "?"
        try:
            peer = await self._handshake(writer, where)
            if peer is not None:
                await self._session(reader, writer, peer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the gateway went away; what it sent before was answered or not taken
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _handshake(self, writer: asyncio.StreamWriter, where: str) -> tls.Peer | None:
        try:
            context = self._context()
            await asyncio.wait_for(writer.start_tls(context), self._handshake_timeout)
        except (
            ssl.SSLError,
            OSError,
            TimeoutError,
            asyncio.IncompleteReadError,
            ConfigError,
        ) as exc:
            self._refused(tls.refusal_reason(exc), where, str(exc))
            return None
        peer = tls.peer_of(writer.get_extra_info("ssl_object"))
        if peer.role != GATEWAY_ROLE:
            self._refused("wrong_role", where, f"{peer.common_name!r} has role {peer.role!r}")
            return None
        self.sessions += 1
        return peer

    async def _session(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: tls.Peer
    ) -> None:
        while True:
            try:
                message = await asyncio.wait_for(read_message(reader), self._idle_timeout)
            except asyncio.IncompleteReadError:
                return  # the gateway closed the connection between messages
            except ProtocolError as exc:  # the stream is out of step: answer, then hang up
                writer.write(encode_frame(self._malformed(exc, peer)))
                await writer.drain()
                return
            writer.write(encode_frame(await self._handle(message, peer)))
            await asyncio.wait_for(writer.drain(), self._idle_timeout)
