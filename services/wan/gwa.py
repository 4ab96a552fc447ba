"""The gateway administrator's (GWA) client for a gateway's WAN endpoint.

It connects with the GWA's TLS certificate (mutual TLS 1.2, SM-PKI profile,
gateway certificate and its CRLs checked) and sends requests of the framed
JSON protocol in :mod:`smtestbed.proto.wan`, one at a time::

    async with GwaClient.connect(host, port, context, server_name) as gwa:
        await gwa.call("add_meter", {"meter": "12345678", "key": "00..0f"})

A reply with ``ok: false`` raises :class:`WanRequestError` naming the field;
a refused handshake or a connection the gateway closed raises
:class:`WanConnectionError`.

:func:`rotate_certificate` renews one of the gateway's certificates through the
CA on such a session: the gateway makes a key pair and a CSR (``cert_request``),
the GWA has the CA's HTTP API issue it (``POST /issue`` with an enrolment token
bound to the profile and the gateway's name), and pushes the certificate back
(``cert_install``), which the gateway checks before it uses it. A session the
gateway opened after a wake-up (:mod:`.gwa_wakeup`) works the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from smtestbed.proto import wan
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.errors import PeerError

__all__ = [
    "CaRefusedError",
    "GwaClient",
    "WanConnectionError",
    "WanRequestError",
    "rotate_certificate",
]


class WanConnectionError(PeerError):
    """The TLS connection to the gateway failed or was closed by it.

    Attributes:
        reason: short reason (see :data:`smtestbed.services._runtime.tls.REASONS`).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class WanRequestError(PeerError):
    """The gateway answered a request with an error.

    Attributes:
        field: the parameter at fault (``role`` when the certificate may not administer).
    """

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)  # the gateway's message already names the field
        self.field = field


class CaRefusedError(PeerError):
    """The CA did not issue the gateway's certificate (its message names the field)."""


@dataclass(slots=True)
class GwaClient:
    """One open administration connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: tls.Peer
    timeout: float = 30.0
    next_id: int = 1

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        host: str,
        port: int,
        context: ssl.SSLContext,
        server_name: str | None,
        *,
        timeout: float = 30.0,
    ) -> AsyncIterator[GwaClient]:
        """Open a TLS connection to ``host:port``; close it when the block ends."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=context, server_hostname=server_name),
                timeout,
            )
        except (ssl.SSLError, OSError, TimeoutError) as exc:
            reason = tls.refusal_reason(exc)
            raise WanConnectionError(f"{host}:{port}: {reason}: {exc}", reason=reason) from exc
        client = cls(reader, writer, tls.peer_of(writer.get_extra_info("ssl_object")), timeout)
        try:
            yield client
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def call(self, op: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and return its result; raise on an error reply."""
        ident, self.next_id = self.next_id, self.next_id + 1
        message = {"id": ident, "op": op, "params": params or {}}
        try:
            self.writer.write(wan.encode(message))
            await self.writer.drain()
            reply = await asyncio.wait_for(self._read_reply(), self.timeout)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
            # With TLS 1.2 the client finishes its handshake before the gateway has
            # checked the client certificate: a refusal shows up as a closed connection.
            reason = tls.refusal_reason(exc)
            raise WanConnectionError(
                f"gateway closed the connection: {reason}", reason=reason
            ) from exc
        except TimeoutError as exc:
            raise WanConnectionError(f"no reply within {self.timeout} s", reason="timeout") from exc
        if reply.id != ident and reply.id != 0:
            raise WanConnectionError(f"reply to {reply.id}, expected {ident}", reason="protocol")
        if not reply.ok:
            raise WanRequestError(reply.error, field=reply.field)
        return reply.result

    async def _read_reply(self) -> wan.Reply:
        header = await self.reader.readexactly(wan.HEADER)
        try:
            body = await self.reader.readexactly(wan.frame_length(header))
            return wan.decode_reply(body)
        except wan.FrameError as exc:
            raise WanConnectionError(f"bad reply: {exc}", reason="protocol") from exc


async def rotate_certificate(
    gwa: GwaClient, which: str, *, ca_url: str, token: str, timeout: float = 30.0
) -> dict[str, Any]:
    """Renew the gateway's ``which`` certificate (``tls`` or ``sig``) through the CA.

    Returns:
        The gateway's report: ``serial``, ``previous_serial``, ``subject``, ``not_after``.

    Raises:
        WanRequestError: the gateway refused the request or the certificate.
        CaRefusedError: the CA refused to issue (a wrong token, for instance).
    """
    request = await gwa.call("cert_request", {"which": which})
    issued = await _issue(ca_url, request["csr"], request["profile"], token, timeout)
    params = {"which": which, "certificate": issued["certificate"], "chain": issued["chain"]}
    result: dict[str, Any] = await gwa.call("cert_install", params)
    return result


async def _issue(ca_url: str, csr: str, profile: str, token: str, timeout: float) -> Any:
    url = ca_url.rstrip("/") + "/issue"
    body = {"csr": csr, "profile": profile, "token": token}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(url, json=body) as response,
        ):
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise CaRefusedError(f"{url}: {exc or type(exc).__name__}") from exc
    if response.status != 201 or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else answer
        field = answer.get("field") if isinstance(answer, dict) else ""
        raise CaRefusedError(f"{url}: HTTP {response.status}: {field}: {error}")
    return answer
