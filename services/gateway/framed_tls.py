"""The gateway's TLS endpoints: accept, handshake, framed JSON requests (``proto.wan``).

The WAN and HAN partitions differ in who may ask what; how they listen does
not. :class:`FramedTlsListener` owns the listening socket and the sessions: it
does each handshake itself (``connect_accepted_socket``), so that a failed one
can be reported with its reason, then reads request frames and writes the
replies its ``answer`` callback returns, until the peer closes.

The gateway's connections out (CLS channels to EMTs, TAF delivery, time sync,
wake-up calls to a GWA) open mutual TLS with :func:`connect` and fail with a
:class:`ConnectFailedError` naming the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

from smtestbed.proto import wan
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.config import parse_host_port
from smtestbed.services._runtime.errors import ConfigError, PeerError
from smtestbed.services.gateway.config import GatewayConfig

Answer = Callable[[wan.Request, tls.Peer, str], wan.Reply]
Refused = Callable[[str, str, str], None]
"""Called with (reason, peer address, message) for a refused handshake."""
Connected = Callable[[tls.Peer, str], None]
"""Called with (peer, peer address) after a handshake."""


class Publisher(Protocol):
    """Where events go (the service's bus client)."""

    def publish(self, kind: str, body: Any) -> Any:
        """Publish one event."""


class Endpoint(Protocol):
    """Where a connection out goes (``server_name``: the name to check, "" for none)."""

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def server_name(self) -> str: ...


class ConnectFailedError(PeerError):
    """A connection out of the gateway failed, or its peer answered wrongly.

    Attributes:
        reason: short cause (``tls_config``, a TLS refusal reason, ``unreachable``,
            ``wrong_role``, or one the caller names).
        detail: what went wrong, for logs and events.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def wan_client_files(cfg: GatewayConfig) -> tls.TlsFiles:
    """Return the gateway's WAN TLS identity for connections out; unreadable files are a
    ConfigError (checked now, at start)."""
    files = tls.TlsFiles(
        cert=Path(cfg.wan_cert),
        key=Path(cfg.wan_key),
        chain=tuple(Path(p) for p in cfg.wan_chain),
        trust_roots=tuple(Path(p) for p in cfg.wan_trust),
        crls=tuple(Path(p) for p in cfg.wan_crls),
        groups=cfg.wan_groups,
    )
    tls.reload_crls(files, server=False)
    return files


E = TypeVar("E", bound=ConnectFailedError)


def files_context(files: tls.TlsFiles) -> Callable[[bool], ssl.SSLContext]:
    """Return a client context maker for :func:`connect` that re-reads the CRLs each time."""
    return lambda check_hostname: tls.reload_crls(
        files, server=False, check_hostname=check_hostname
    )


async def connect(
    endpoint: Endpoint,
    context: Callable[[bool], ssl.SSLContext],
    *,
    timeout_s: float,
    role: str | None,
    error: type[E],
    limit: int = 2**16,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, tls.Peer]:
    """Open mutual TLS to ``endpoint``; check the server's role when ``role`` is given.

    Raises:
        E: ``tls_config`` (the gateway's own TLS files), a TLS refusal reason,
            ``unreachable`` or ``wrong_role``.
    """
    try:
        ssl_context = context(bool(endpoint.server_name))
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                endpoint.host,
                endpoint.port,
                ssl=ssl_context,
                server_hostname=endpoint.server_name or None,
                limit=limit,
            ),
            timeout_s,
        )
    except ConfigError as exc:
        raise error("tls_config", str(exc)) from exc
    except (ssl.SSLError, TimeoutError) as exc:
        raise error(tls.refusal_reason(exc), str(exc) or type(exc).__name__) from exc
    except OSError as exc:
        raise error("unreachable", str(exc)) from exc
    peer = tls.peer_of(writer.get_extra_info("ssl_object"))
    if role is not None and peer.role != role:
        await close(writer)
        detail = f"server {peer.common_name!r} has role {peer.role!r}, not {role}"
        raise error("wrong_role", detail)
    return reader, writer, peer


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a connection, waiting a second at most for the peer."""
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


def error_reply(ident: int, message: str, field: str) -> wan.Reply:
    """Return a failed reply naming ``field``."""
    return wan.Reply(id=ident, ok=False, error=message, field=field)


def encode_reply(reply: wan.Reply) -> bytes:
    """Frame a reply; a result that cannot be sent becomes an error reply."""
    try:
        return wan.encode(reply.to_map())
    except (TypeError, ValueError, wan.FrameError) as exc:
        return wan.encode(error_reply(reply.id, f"result cannot be sent: {exc}", "").to_map())


class FramedTlsListener:
    """Listen on ``listen`` (HOST:PORT) and serve framed requests over TLS.

    Args:
        listen: HOST:PORT (port 0: any free port; see :attr:`port` after :meth:`listen`).
        key: the setting named in errors about ``listen``.
        context: returns the server context to use for the next handshake.
        answer: turns one request into its reply; must not raise for bad input.
        on_refused: told about each failed handshake.
        on_connected: told about each successful handshake.
    """

    def __init__(
        self,
        listen: str,
        *,
        key: str,
        context: Callable[[], ssl.SSLContext | None],
        handshake_timeout_s: float,
        answer: Answer,
        on_refused: Refused,
        on_connected: Connected,
        backlog: int = 64,
    ) -> None:
        self.host, self.port = parse_host_port(listen, key)
        self._key = key
        self._context = context
        self._timeout = handshake_timeout_s
        self._answer = answer
        self._on_refused = on_refused
        self._on_connected = on_connected
        self._backlog = backlog
        self.listener: socket.socket | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    def listen(self) -> int:
        """Open the listening socket; return the bound port."""
        try:
            self.listener = socket.create_server((self.host, self.port), backlog=self._backlog)
        except OSError as exc:
            raise ConfigError(f"cannot listen: {exc}", key=self._key) from exc
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        return self.port

    async def accept_forever(self) -> None:
        """Accept connections until cancelled; each runs as its own task."""
        assert self.listener is not None
        loop = asyncio.get_running_loop()
        while True:
            conn, address = await loop.sock_accept(self.listener)
            task = asyncio.create_task(self._connection(conn, f"{address[0]}:{address[1]}"))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def close(self) -> None:
        """Stop listening and end the open sessions."""
        if self.listener is not None:
            self.listener.close()
        for task in self.tasks:
            task.cancel()

    async def _connection(self, conn: socket.socket, where: str) -> None:
        streams = await self._handshake(conn, where)
        if streams is None:
            return
        reader, writer, peer = streams
        try:
            await self._session(reader, writer, peer, where)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the peer went away between or during requests; nothing was half-done
        finally:
            await close(writer)

    async def _handshake(
        self, conn: socket.socket, where: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, tls.Peer] | None:
        context = self._context()
        assert context is not None
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=wan.HEADER + wan.MAX_FRAME)
        protocol = asyncio.StreamReaderProtocol(reader)
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol, conn, ssl=context, ssl_handshake_timeout=self._timeout
            )
        except (ssl.SSLError, OSError, TimeoutError, EOFError) as exc:
            conn.close()
            self._on_refused(tls.refusal_reason(exc), where, str(exc))
            return None
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        peer = tls.peer_of(writer.get_extra_info("ssl_object"))
        self._on_connected(peer, where)
        return reader, writer, peer

    async def _session(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: tls.Peer,
        where: str,
    ) -> None:
        while True:
            try:
                header = await reader.readexactly(wan.HEADER)
            except asyncio.IncompleteReadError:
                return  # the peer closed the connection between requests
            try:
                body = await reader.readexactly(wan.frame_length(header))
                request = wan.decode_request(body)
            except wan.FrameError as exc:
                reply = wan.Reply(id=0, ok=False, error=str(exc), field="frame")
                writer.write(wan.encode(reply.to_map()))
                await writer.drain()
                return
            writer.write(encode_reply(self._answer(request, peer, where)))
            await writer.drain()
