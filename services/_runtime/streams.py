"""A TCP server whose connections a handler upgrades to TLS itself.

Servers that upgrade with ``StreamWriter.start_tls`` (to catch a failed
handshake themselves and report why) must not read before the upgrade: bytes
the stream has already taken from the socket are not handed to the TLS layer,
so a ClientHello that arrived before the handler ran would be lost and the
handshake would hang. :func:`start_upgradable_server` pauses reading on each
new connection; ``start_tls`` resumes it on the TLS layer, which then reads the
ClientHello from the socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

__all__ = ["start_upgradable_server"]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class _PausedProtocol(asyncio.StreamReaderProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.ReadTransport):
            transport.pause_reading()
        super().connection_made(transport)


async def start_upgradable_server(handler: Handler, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port``; ``handler`` gets each connection with reading paused.

    The handler's first step must be ``await writer.start_tls(context)``.
    """
    loop = asyncio.get_running_loop()

    def factory() -> asyncio.StreamReaderProtocol:
        return _PausedProtocol(asyncio.StreamReader(), handler)

    return await loop.create_server(factory, host, port)
