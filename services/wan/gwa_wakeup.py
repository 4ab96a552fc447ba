"""The GWA's side of the wake-up: send the signed packet, take the gateway's call.

A gateway opens no port for administration (TR-03109-1): the GWA sends it a
wake-up packet (:mod:`smtestbed.proto.wakeup`) signed with the GWA's signature
key, and the gateway, once it has checked the packet, connects to the address
it has configured for this GWA. :class:`CallListener` is that address: a TLS
1.2 server with the GWA's TLS certificate that requires the gateway's client
certificate (SM-PKI chain and CRLs checked by OpenSSL), takes only a peer of
role ``SMGW`` whose CN is the gateway id the packet named, and hands the
connection over as a :class:`~smtestbed.services.wan.gwa.GwaClient`: the GWA
sends its requests on it as on a connection it opened itself::

    async with CallListener("127.0.0.1:9443", context, gateway=GW) as calls:
        send_wakeup(("127.0.0.1", 9444), gateway=GW, gwa=GWA, key=key, certificate=cert)
        gwa = await calls.next_call(timeout=10.0)
        log = await gwa.call("read_log", {"log": "system"})
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.proto import wakeup, wan
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.config import parse_host_port
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.wan.gwa import GwaClient, WanConnectionError

__all__ = ["SMGW_ROLE", "CallListener", "send_wakeup"]

SMGW_ROLE = "SMGW"


def send_wakeup(
    target: tuple[str, int],
    *,
    gateway: str,
    gwa: str,
    key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
    issued: float | None = None,
    nonce: bytes | None = None,
) -> bytes:
    """Sign a wake-up packet for ``gateway`` and send it as one UDP datagram; return it.

    ``issued`` defaults to the wall clock; ``nonce`` to 16 fresh random bytes.
    """
    packet = wakeup.sign(
        gateway=gateway,
        gwa=gwa,
        issued=time.time() if issued is None else issued,
        nonce=os.urandom(wakeup.NONCE_BYTES) if nonce is None else nonce,
        key=key,
        certificate=certificate,
    )
    send_datagram(target, packet)
    return packet


def send_datagram(target: tuple[str, int], data: bytes) -> None:
    """Send ``data`` to ``target`` (HOST, PORT) as one UDP datagram."""
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, target)


class CallListener:
    """Listen on ``listen`` (HOST:PORT) for the gateway's call after a wake-up.

    Args:
        listen: where the gateway's ``gwa_endpoints`` entry points (port 0: any free one).
        context: a server context with the GWA's TLS identity (``tls.server_context``).
        gateway: the gateway id (certificate CN) whose call is taken.
        timeout: seconds per request on a taken call.
    """

    def __init__(
        self, listen: str, context: ssl.SSLContext, *, gateway: str, timeout: float = 30.0
    ) -> None:
        self.host, self.port = parse_host_port(listen, "listen")
        self.context = context
        self.gateway = gateway
        self.timeout = timeout
        self.calls: asyncio.Queue[GwaClient] = asyncio.Queue()
        self.refused: list[str] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> CallListener:
        try:
            self.server = await asyncio.start_server(
                self._connected,
                self.host,
                self.port,
                ssl=self.context,
                ssl_handshake_timeout=10.0,
                limit=wan.HEADER + wan.MAX_FRAME,
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen: {exc}", key="listen") from exc
        self.port = int(self.server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = tls.peer_of(writer.get_extra_info("ssl_object"))
        if peer.role != SMGW_ROLE or peer.common_name != self.gateway:
            self.refused.append(f"{peer.common_name} ({peer.role})")
            writer.close()
            return
        self.writers.append(writer)
        await self.calls.put(GwaClient(reader, writer, peer, self.timeout))

    async def next_call(self, timeout: float) -> GwaClient:
        """Return the next call of the gateway; raise WanConnectionError after ``timeout`` s."""
        try:
            return await asyncio.wait_for(self.calls.get(), timeout)
        except TimeoutError as exc:
            message = f"gateway {self.gateway} did not call within {timeout} s"
            raise WanConnectionError(message, reason="timeout") from exc
