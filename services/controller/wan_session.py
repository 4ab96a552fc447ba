"""One request of a WAN party over the gateway's mutual-TLS endpoint, as it went.

The controller plays the gateway administrator (or another WAN party) with that
party's certificate from the run folder: it opens TLS 1.2 to the gateway's
``wan_listen``, sends one request of :mod:`smtestbed.proto.wan` and reads the
reply. A refused handshake is not an error here but an outcome: the answer says
whether the session held, why not, and what the gateway replied.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import Any

from smtestbed.proto import wan
from smtestbed.services._runtime import tls


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one WAN request went."""

    connected: bool  # the TLS session held until the reply
    reason: str = ""  # why not (handshake refusal, closed, timeout)
    peer: str = ""  # the gateway certificate's common name
    ok: bool = False  # the gateway answered ok: true
    result: Any = None
    error: str = ""
    field: str = ""

    def to_map(self) -> dict[str, Any]:
        """Return the outcome as the operation's answer."""
        return {
            "connected": self.connected,
            "reason": self.reason,
            "peer": self.peer,
            "ok": self.ok,
            "result": self.result,
            "error": self.error,
            "field": self.field,
        }


async def request(
    host: str,
    port: int,
    context: ssl.SSLContext,
    message: dict[str, Any],
    *,
    timeout_s: float,
) -> Outcome:
    """Connect, send ``message`` (``op``, ``params``) with id 1, return how it went."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=None), timeout_s
        )
    except (ssl.SSLError, OSError, TimeoutError) as exc:
        return Outcome(connected=False, reason=tls.refusal_reason(exc))
    peer = tls.peer_of(writer.get_extra_info("ssl_object")).common_name
    try:
        writer.write(wan.encode({"id": 1, **message}))
        await writer.drain()
        reply = await asyncio.wait_for(_read_reply(reader), timeout_s)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as exc:
        # With TLS 1.2 the client's handshake ends before the gateway has checked the
        # client certificate: a refusal shows as a connection closed without a reply.
        return Outcome(connected=False, reason=tls.refusal_reason(exc), peer=peer)
    except TimeoutError:
        return Outcome(connected=False, reason="timeout", peer=peer)
    except wan.FrameError as exc:
        return Outcome(connected=True, peer=peer, error=str(exc), field="frame")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(writer.wait_closed(), 1.0)
    return Outcome(
        connected=True,
        peer=peer,
        ok=reply.ok,
        result=reply.result,
        error=reply.error,
        field=reply.field,
    )


async def _read_reply(reader: asyncio.StreamReader) -> wan.Reply:
    header = await reader.readexactly(wan.HEADER)
    body = await reader.readexactly(wan.frame_length(header))
    return wan.decode_reply(body)
