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

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from smtestbed.proto import topics
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.commands import run_module, service_group
from smtestbed.services._runtime.config import ServiceConfig, doc
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services.wan.gateway_server import GatewayServer

__all__ = ["TimeService", "TimeServiceConfig", "answer", "group"]


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
        self.files = tls.TlsFiles(
            cert=Path(config.cert),
            key=Path(config.key),
            chain=tuple(Path(p) for p in config.chain),
            trust_roots=tuple(Path(p) for p in config.trust),
            crls=tuple(Path(p) for p in config.crls),
            groups=config.groups,
        )
        self.counts: Counter[str] = Counter()
        # CRL files are read at each handshake: a revocation counts from the next one.
        self.server = GatewayServer(
            config.listen,
            key="timeservice.listen",
            context=lambda: tls.reload_crls(self.files, server=True),
            handshake_timeout_s=config.handshake_timeout_s,
            idle_timeout_s=config.idle_timeout_s,
            handle=self._answer,
            malformed=lambda exc, peer: {"op": "error", "reason": "malformed", "detail": str(exc)},
            refused=self._tls_refused,
        )

    async def run(self, ready: Ready) -> None:
        """Listen for gateways and answer their time requests until cancelled."""
        tls.reload_crls(self.files, server=True)  # refuse bad TLS files before ready
        server = await self.server.start()
        try:
            await self.bus.publisher.wait_connected(2.0)
            ready.set()
            self.log.info("timeservice_listening", host=self.server.host, port=self.server.port)
            await server.serve_forever()
        finally:
            server.close()

    def _tls_refused(self, reason: str, where: str, message: str) -> None:
        self.counts[f"tls_refused_{reason}"] += 1
        body = {"timeservice": self.cfg.instance, "reason": reason, "peer": where}
        self.log.warning("tls_refused", message=message[:300], **body)
        self.bus.publish(topics.WAN_TLS_REFUSED, {**body, "message": message[:300]})

    async def _answer(self, message: dict[str, Any], peer: tls.Peer) -> dict[str, Any]:
        self.counts["requests"] += 1
        # Taken as late as possible: the gateway halves the round trip around it.
        return answer(message, self.clock.now() + self.cfg.skew_s)

    def counters(self) -> dict[str, int]:
        """Return sessions, requests and TLS refusals by reason."""
        return {**self.counts, "sessions": self.server.sessions}


group = service_group(TimeService, "Run a WAN time service gateways set their clocks from.")

if __name__ == "__main__":
    run_module(group)
