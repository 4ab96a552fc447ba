"""The WAN time service: the legal time source gateways set their clocks from.

It listens on ``listen`` for gateways, which connect out to it (the gateway
initiates every WAN connection), like the EMT: TLS 1.2 with the SM-PKI profile
of :mod:`smtestbed.services._runtime.tls`, client certificate required, CRLs of
the whole chain checked at each handshake. Its own certificate is a ``gwa-tls``
one (the time source belongs to the gateway administrator), so gateways accept
it as role ``GWA``. A refused handshake, or a client whose certificate's role is
not ``SMGW``, is a ``wan.tls_refused`` event.

Frames are those of ``proto/delivery.py`` (4-byte big-endian length, then a JSON
object). The one request is ``{"op": "time"}``; the reply is
``{"op": "time", "t": <simulation time, s since the Unix epoch>}``, the service's
simulation clock plus ``skew_s`` (a wrong time source, for tests). Anything else
is answered ``{"op": "error", "reason": ..., "detail": ...}``; a frame that
breaks the stream's framing is answered, then the connection is closed.

Run it as ``smtb timeservice run`` or ``python -m smtestbed.services.wan.timeservice``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from smtestbed.proto import topics
from smtestbed.proto.delivery import encode_frame, read_message
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.commands import run_module, service_group
from smtestbed.services._runtime.config import ServiceConfig, doc
from smtestbed.services._runtime.errors import ConfigError, ProtocolError
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services._runtime.streams import start_upgradable_server

__all__ = ["TimeService", "TimeServiceConfig", "answer", "group"]

GATEWAY_ROLE = "SMGW"


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeServiceConfig(ServiceConfig):
    """Settings of one time service (``[timeservice]`` table, ``SMTB_TIMESERVICE_*``)."""

    listen: str = doc("127.0.0.1:8800", "TLS endpoint HOST:PORT the gateways ask")
    cert: str = doc("", "time service TLS certificate (PEM, gwa-tls)")
    key: str = doc("", "its private key (PEM)")
    chain: tuple[str, ...] = doc((), "CA certificates sent after cert (PEM)")
    trust: tuple[str, ...] = doc((), "trust anchors (SM-PKI root, PEM)")
    crls: tuple[str, ...] = doc((), "CRL files (PEM) of the root and the sub-CAs")
    groups: tuple[str, ...] = doc(tls.BRAINPOOL_GROUPS, "ECDHE groups (and P-256/P-384)")
    skew_s: float = doc(0.0, "added to every answered time, s (a wrong source, for tests)")
    handshake_timeout_s: float = doc(10.0, "wall time a TLS handshake may take, s")
    idle_timeout_s: float = doc(60.0, "wall time a connection may stay silent, s")


def parse_listen(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT``."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"must be HOST:PORT, got {value!r}", key="timeservice.listen")
    return host, int(port)


def answer(message: dict[str, Any], now: float) -> dict[str, Any]:
    """Return the reply to one request, ``now`` being the time to tell (s)."""
    if message.get("op") != "time":
        return {"op": "error", "reason": "unknown_op", "detail": f"op {message.get('op')!r}"}
    return {"op": "time", "t": now}


class TimeService(Service):
    """Tell authenticated gateways the time."""

    service: ClassVar[str] = "timeservice"
    config_class: ClassVar[type[ServiceConfig]] = TimeServiceConfig

    def __init__(self, config: TimeServiceConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.host, self.port = parse_listen(config.listen)
        self.files = tls.TlsFiles(
            cert=Path(config.cert),
            key=Path(config.key),
            chain=tuple(Path(p) for p in config.chain),
            trust_roots=tuple(Path(p) for p in config.trust),
            crls=tuple(Path(p) for p in config.crls),
            groups=config.groups,
        )
        self.counts: Counter[str] = Counter()

    async def run(self, ready: Ready) -> None:
        """Listen for gateways and answer their time requests until cancelled."""
        tls.reload_crls(self.files, server=True)  # refuse bad TLS files before ready
        server = await start_upgradable_server(self._connection, self.host, self.port)
        try:
            await self.bus.publisher.wait_connected(2.0)
            ready.set()
            self.log.info("timeservice_listening", host=self.host, port=self.port)
            await server.serve_forever()
        finally:
            server.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        addr = writer.get_extra_info("peername")
        where = f"{addr[0]}:{addr[1]}" if addr else "?"
        try:
            if await self._handshake(writer, where):
                await self._session(reader, writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass  # the gateway went away
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _handshake(self, writer: asyncio.StreamWriter, where: str) -> bool:
        try:
            # CRL files are read at each handshake: a revocation counts from the next one.
            context = tls.reload_crls(self.files, server=True)
            await asyncio.wait_for(writer.start_tls(context), self.cfg.handshake_timeout_s)
        except (ssl.SSLError, OSError, TimeoutError, ConfigError) as exc:
            self._tls_refused(tls.refusal_reason(exc), where, str(exc))
            return False
        peer = tls.peer_of(writer.get_extra_info("ssl_object"))
        if peer.role != GATEWAY_ROLE:
            self._tls_refused("wrong_role", where, f"{peer.common_name!r} has role {peer.role!r}")
            return False
        self.counts["sessions"] += 1
        return True

    def _tls_refused(self, reason: str, where: str, message: str) -> None:
        self.counts[f"tls_refused_{reason}"] += 1
        body = {"timeservice": self.cfg.instance, "reason": reason, "peer": where}
        self.log.warning("tls_refused", message=message[:300], **body)
        self.bus.publish(topics.WAN_TLS_REFUSED, {**body, "message": message[:300]})

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                message = await asyncio.wait_for(read_message(reader), self.cfg.idle_timeout_s)
            except asyncio.IncompleteReadError:
                return  # the gateway closed the connection between requests
            except ProtocolError as exc:  # the stream is out of step: answer, then hang up
                writer.write(
                    encode_frame({"op": "error", "reason": "malformed", "detail": str(exc)})
                )
                await writer.drain()
                return
            self.counts["requests"] += 1
            # Taken as late as possible: the gateway halves the round trip around it.
            writer.write(encode_frame(answer(message, self.clock.now() + self.cfg.skew_s)))
            await asyncio.wait_for(writer.drain(), self.cfg.idle_timeout_s)

    def counters(self) -> dict[str, int]:
        """Return sessions, requests and TLS refusals by reason."""
        return dict(self.counts)


group = service_group(TimeService, "Run a WAN time service gateways set their clocks from.")

if __name__ == "__main__":
    run_module(group)
