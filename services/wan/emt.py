"""The EMT service: an external market participant that receives TAF data from gateways.

It listens on ``listen`` for gateways, which connect out to it (the gateway
initiates every WAN connection). Each connection is upgraded to TLS here (so a
failed handshake is caught and reported, not lost inside asyncio; reading waits
for the upgrade, see :mod:`smtestbed.services._runtime.streams`): TLS 1.2 with
the SM-PKI profile of :mod:`smtestbed.services._runtime.tls`, client
certificate required, CRLs of the whole chain checked; CRL files changed on disk
count from the next handshake on. A refused handshake, or a client whose
certificate's role is not ``SMGW``, is a ``wan.tls_refused`` event.

On the connection the gateway sends signed deliveries (``proto/delivery.py``).
Each is checked (:mod:`.emt_verify`), stored (:mod:`.emt_store`, deduplicated by
gateway and queue id, meters bound to their gateway) and answered with the ids
now held; a refused batch is answered ``taf.refused`` with the reason and is an
``emt.delivery_refused`` event, an accepted one an ``emt.delivery_accepted`` event.
The records are readable on the bus with the ``emt.records`` request.

A gateway may also open a CLS proxy channel on the same endpoint (first
message ``cls.open`` naming the CLS device): see :mod:`.emt_cls`
(``emt.cls_received`` events, ``emt.cls_send`` requests).

Run it as ``smtb emt run`` or ``python -m smtestbed.services.wan.emt``.
"""

from __future__ import annotations

import ssl
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from smtestbed.proto import topics
from smtestbed.proto.delivery import Ack, BatchRefused, Refusal
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.commands import run_module, service_group
from smtestbed.services._runtime.config import ServiceConfig, doc
from smtestbed.services._runtime.errors import ConfigError, RequestError
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services._runtime.pki import TrustFiles
from smtestbed.services.wan.emt_cls import ClsChannels, EmtServer
from smtestbed.services.wan.emt_store import EmtStore
from smtestbed.services.wan.emt_verify import DeliveryRefusedError, verify_delivery

__all__ = ["EmtConfig", "EmtService", "group"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EmtConfig(ServiceConfig):
    """Settings of one EMT (``[emt]`` table, ``SMTB_EMT_*`` environment)."""

    name: str = doc("", "market participant name the gateways address (default: instance)")
    listen: str = doc("127.0.0.1:8700", "TLS endpoint HOST:PORT the gateways deliver to")
    data_dir: str = doc("smtb-data/emt", "folder of the store (<instance>.sqlite)")
    cert: str = doc("", "EMT TLS certificate (PEM, emt-tls)")
    key: str = doc("", "its private key (PEM)")
    chain: tuple[str, ...] = doc((), "CA certificates sent after cert (PEM)")
    trust: tuple[str, ...] = doc((), "trust anchors (SM-PKI root, PEM)")
    intermediates: tuple[str, ...] = doc((), "sub-CA certificates signers may leave out (PEM)")
    crls: tuple[str, ...] = doc((), "CRL files (PEM) of the root and the sub-CAs")
    groups: tuple[str, ...] = doc(tls.BRAINPOOL_GROUPS, "ECDHE groups (and P-256/P-384)")
    handshake_timeout_s: float = doc(10.0, "wall time a TLS handshake may take, s")
    idle_timeout_s: float = doc(300.0, "wall time a connection may stay silent, s")
    meter_gateways: tuple[dict[str, Any], ...] = doc(
        (), "meters per gateway: {gateway = CN of its certificate, meters = [ids]}"
    )


def parse_bindings(tables: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """Return meter -> gateway CN from ``meter_gateways``."""
    out: dict[str, str] = {}
    for k, table in enumerate(tables):
        gateway, meters = table.get("gateway"), table.get("meters")
        if not isinstance(gateway, str) or not isinstance(meters, list):
            raise ConfigError("needs gateway and meters", key=f"emt.meter_gateways[{k}]")
        for meter in meters:
            if out.setdefault(str(meter), gateway) != gateway:
                raise ConfigError(f"meter {meter} under two gateways", key="emt.meter_gateways")
    return out


class EmtService(Service):
    """Receive, check and keep the TAF data gateways deliver."""

    service: ClassVar[str] = "emt"
    config_class: ClassVar[type[ServiceConfig]] = EmtConfig

    def __init__(self, config: EmtConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self.name = config.name or config.instance
        self.bindings = parse_bindings(config.meter_gateways)
        self.files = tls.TlsFiles(
            cert=Path(config.cert),
            key=Path(config.key),
            chain=tuple(Path(p) for p in config.chain),
            trust_roots=tuple(Path(p) for p in config.trust),
            crls=tuple(Path(p) for p in config.crls),
            groups=config.groups,
        )
        self.counts: Counter[str] = Counter()
        self._context: ssl.SSLContext | None = None
        self._crl_stamp: tuple[tuple[int, int], ...] = ()
        self._store: EmtStore | None = None
        self._trust: TrustFiles | None = None
        self.channels = ClsChannels(
            self.name, publish=lambda kind, body: self.bus.publish(kind, body), log=self.log
        )
        self.server = EmtServer(
            config.listen,
            channels=self.channels,
            key="emt.listen",
            context=self._tls_context,
            handshake_timeout_s=config.handshake_timeout_s,
            idle_timeout_s=config.idle_timeout_s,
            handle=self._deliver,
            malformed=lambda exc, peer: self._refused(
                Refusal.MALFORMED, str(exc), peer.common_name
            ),
            refused=self._tls_refused,
        )

    async def run(self, ready: Ready) -> None:
        """Open the store, listen for gateways and serve ``emt.records`` until cancelled."""
        self._trust = TrustFiles(
            trust_roots=self.files.trust_roots,
            intermediates=[Path(p) for p in self.cfg.intermediates],
            crls=self.files.crls,
        )
        self._tls_context()  # refuse bad TLS files before ready
        self._store = EmtStore(Path(self.cfg.data_dir) / f"{self.cfg.instance}.sqlite")
        server = await self.server.start()
        try:
            self.bus.handle(topics.EMT_RECORDS, self._records)
            self.bus.handle(topics.EMT_CLS_SEND, self.channels.send)
            await self.bus.publisher.wait_connected(2.0)
            ready.set()
            self.log.info(
                "emt_listening", name=self.name, host=self.server.host, port=self.server.port
            )
            await server.serve_forever()
        finally:
            server.close()
            self._store.close()

    def _tls_context(self) -> ssl.SSLContext:
        stamp = tuple(_stamp(p) for p in self.files.crls)
        if self._context is None or stamp != self._crl_stamp:
            self._context = tls.reload_crls(self.files, server=True)
            self._crl_stamp = stamp
        return self._context

    def _tls_refused(self, reason: str, where: str, message: str) -> None:
        self.counts[f"tls_refused_{reason}"] += 1
        body = {"emt": self.name, "reason": reason, "peer": where, "message": message[:300]}
        self.log.warning("tls_refused", **body)
        self.bus.publish(topics.WAN_TLS_REFUSED, body)

    async def _deliver(self, message: dict[str, Any], peer: tls.Peer) -> dict[str, Any]:
        assert self._store is not None
        assert self._trust is not None
        try:
            verified = await verify_delivery(
                message,
                trust=self._trust,
                emt=self.name,
                peer=peer.common_name,
                at=datetime.now(UTC),
            )
        except DeliveryRefusedError as exc:
            return self._refused(exc.reason, exc.detail, peer.common_name)
        outcome = self._store.accept(verified, received=time.time(), bindings=self.bindings)
        self.counts["batches_accepted"] += 1
        self.counts["records_new"] += outcome.new
        body = {
            "emt": self.name,
            "gateway": verified.gateway,
            "records": len(verified.content.records),
            "new": outcome.new,
            "refused": [{"id": i, "reason": r} for i, r in outcome.refused],
        }
        self.bus.publish(topics.EMT_DELIVERY_ACCEPTED, body)
        return Ack(accepted=outcome.accepted, refused=outcome.refused).to_map()

    def _refused(self, reason: Refusal, detail: str, gateway: str) -> dict[str, Any]:
        self.counts[f"refused_{reason}"] += 1
        body = {"emt": self.name, "gateway": gateway, "reason": str(reason), "detail": detail[:300]}
        self.log.warning("delivery_refused", **body)
        self.bus.publish(topics.EMT_DELIVERY_REFUSED, body)
        return BatchRefused(reason=str(reason), detail=detail[:300]).to_map()

    async def _records(self, params: Any, env: Envelope) -> Any:
        p = params if isinstance(params, dict) else {}
        filters = {k: p.get(k) for k in ("gateway", "meter", "taf")}
        for key, value in filters.items():
            if value is not None and not isinstance(value, str):
                raise RequestError("must be a string", field=key)
        limit = p.get("limit", 1000)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= 100_000:
            raise RequestError("must be an integer 1..100000", field="limit")
        assert self._store is not None
        return self._store.records(**filters, limit=limit)

    def counters(self) -> dict[str, int]:
        """Return sessions, accepted batches, new records and refusals by reason."""
        cls_counts = {f"cls_{k}": v for k, v in self.channels.counts.items()}
        return {**self.counts, **cls_counts, "sessions": self.server.sessions}


def _stamp(path: Path) -> tuple[int, int]:
    try:
        info = path.stat()
    except OSError as exc:
        raise ConfigError(f"cannot read CRL file {path}: {exc}", key="emt.crls") from exc
    return (info.st_mtime_ns, info.st_size)


group = service_group(EmtService, "Run an EMT: receive signed TAF data from gateways over TLS.")

if __name__ == "__main__":
    run_module(group)
