"""TAF delivery: the gateway pushes its EMT queue, signed, to each EMT over mutual TLS.

For each configured EMT endpoint (``emt_endpoints``: ``{emt, url = "tls://HOST:PORT",
server_name}``) an :class:`EmtSender` takes the oldest undelivered records of that
EMT from the instance's store (``Store.pending``), signs them as one batch with the
gateway's signature certificate (``smgw-sig``; format in ``proto/delivery.py``) and
sends them on a TLS 1.2 connection the gateway opens with its TLS certificate
(``smgw-tls``, the WAN settings). The EMT answers with the ids it holds; only those
are marked delivered (``Store.ack``), so what is not acknowledged stays queued in
SQLite, across restarts too, and is sent again.

The server must present an ``EMT`` certificate of the SM-PKI with current CRLs (the
CRL files are read again at each connection), and its dNSName must be
``server_name`` when one is configured. A refused batch or a failed connection is a
``gateway.emt_delivery_failed`` event; the sender then waits ``retry_s``, doubling up
to ``retry_max_s`` (wall time), and tries again. Records the EMT refused one by one
(``meter_not_of_gateway``) are left queued but not offered again until the service
restarts, so they cannot hold up the records behind them.

Each acknowledged batch is a ``gateway.emt_delivered`` event and an ``emt_delivered``
entry in the system log; each record of a meter with a consumer is a ``data_sent``
entry in that consumer's log (which data went to whom, and when).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.proto import topics
from smtestbed.proto.delivery import (
    Ack,
    BatchContent,
    DeliveredRecord,
    SignedBatch,
    decode_reply,
    encode_frame,
    read_message,
    sign_batch,
)
from smtestbed.services._runtime import pki, tls
from smtestbed.services._runtime.errors import ConfigError, ProtocolError
from smtestbed.services.gateway import framed_tls
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.store import QueuedRecord

Publisher = framed_tls.Publisher

__all__ = [
    "DeliveryFailedError",
    "EmtEndpoint",
    "EmtSender",
    "Publisher",
    "Signer",
    "Timing",
    "load_signer",
    "parse_endpoints",
    "senders",
    "sign_records",
]

EMT_ROLE = "EMT"


class DeliveryFailedError(framed_tls.ConnectFailedError):
    """A delivery did not get through: the EMT refused it, or the connection failed.

    Attributes:
        reason: short cause (a refusal reason of the EMT, a TLS reason, ``unreachable``).
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class EmtEndpoint:
    """Where one EMT takes its TAF data."""

    emt: str
    host: str
    port: int
    server_name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """The gateway's signature key and its certificate chain (own certificate first)."""

    key: ec.EllipticCurvePrivateKey
    chain: tuple[x509.Certificate, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Batch size and waits of a sender (wall seconds)."""

    batch: int = 500
    retry_s: float = 1.0
    retry_max_s: float = 60.0
    poll_s: float = 2.0
    io_timeout_s: float = 10.0


def parse_endpoints(tables: Sequence[dict[str, Any]]) -> tuple[EmtEndpoint, ...]:
    """Read ``emt_endpoints`` tables; a wrong one is a ConfigError naming it."""
    out = []
    for k, table in enumerate(tables):
        key = f"gateway.emt_endpoints[{k}]"
        emt, url = table.get("emt"), table.get("url")
        unknown = set(table) - {"emt", "url", "server_name"}
        if unknown or not isinstance(emt, str) or not emt or not isinstance(url, str):
            raise ConfigError("needs emt and url (and only server_name besides)", key=key)
        parts = urlsplit(url)
        if parts.scheme != "tls" or not parts.hostname or parts.port is None:
            raise ConfigError(f"url must be tls://HOST:PORT, got {url!r}", key=key)
        name = str(table.get("server_name", ""))
        out.append(EmtEndpoint(emt=emt, host=parts.hostname, port=parts.port, server_name=name))
    if len({e.emt for e in out}) != len(out):
        raise ConfigError("names an EMT twice", key="gateway.emt_endpoints")
    return tuple(out)


def load_signer(cert: Path, key: Path, chain: Sequence[Path] = ()) -> Signer:
    """Read the signature certificate (maybe followed by its CAs), its key and more CAs."""
    certs = [*pki.read_certificates(cert), *(c for p in chain for c in pki.read_certificates(p))]
    private = pki.read_private_key(key)
    if certs[0].public_key() != private.public_key():
        raise ConfigError(f"{key} is not the key of {cert}", key="gateway.sig_key")
    return Signer(key=private, chain=tuple(certs))


def sign_records(
    gateway: str, emt: str, records: Sequence[QueuedRecord], signer: Signer, *, sent: float
) -> SignedBatch:
    """Return queue records as one batch for ``emt``, signed by the gateway."""
    items = tuple(
        DeliveredRecord(
            id=r.id, taf=str(r.taf), meter=r.meter, payload=r.payload, created=float(r.created)
        )
        for r in records
    )
    content = BatchContent(gateway=gateway, emt=emt, sent=sent, records=items)
    return sign_batch(content, signer.key, signer.chain)


class EmtSender:
    """Deliver one instance's queue for one EMT, for as long as the service runs."""

    def __init__(
        self,
        instance: GatewayInstance,
        endpoint: EmtEndpoint,
        *,
        signer: Signer,
        tls_files: tls.TlsFiles,
        bus: framed_tls.Publisher,
        clock: Callable[[], float],
        timing: Timing | None = None,
    ) -> None:
        self.instance = instance
        self.endpoint = endpoint
        self.signer = signer
        self.tls_files = tls_files
        self.bus = bus
        self.clock = clock
        self.timing = timing or Timing()
        self.refused: set[int] = set()
        self.delivered = 0
        self.failures = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Make an idle sender look at the queue now (new records were queued)."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Deliver, wait, deliver again; back off after each failure."""
        delay = self.timing.retry_s
        while True:
            try:
                await self.deliver_pending()
            except DeliveryFailedError as exc:
                self.failures += 1
                self._failed(exc, delay)
                await asyncio.sleep(delay)
                delay = min(2 * delay, self.timing.retry_max_s)
                continue
            delay = self.timing.retry_s
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.timing.poll_s)

    async def deliver_pending(self) -> int:
        """Send every deliverable queued record on one connection; return how many were acked.

        Raises:
            DeliveryFailedError: the connection failed or the EMT refused a batch.
        """
        records = self._next_batch()
        if not records:
            return 0
        reader, writer = await self._connect()
        acked = 0
        try:
            while records:
                acked += await self._exchange(reader, writer, records)
                records = self._next_batch()
        finally:
            await framed_tls.close(writer)
        return acked

    def _next_batch(self) -> list[QueuedRecord]:
        emt, size = self.endpoint.emt, self.timing.batch
        pending = self.instance.store.pending(emt, size + len(self.refused))
        return [r for r in pending if r.id not in self.refused][:size]

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer, _ = await framed_tls.connect(
            self.endpoint,
            framed_tls.files_context(self.tls_files),
            timeout_s=self.timing.io_timeout_s,
            role=EMT_ROLE,
            error=DeliveryFailedError,
        )
        return reader, writer

    async def _exchange(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        records: list[QueuedRecord],
    ) -> int:
        batch = sign_records(
            self.instance.name, self.endpoint.emt, records, self.signer, sent=time.time()
        )
        try:
            writer.write(encode_frame(batch.to_map()))
            await asyncio.wait_for(writer.drain(), self.timing.io_timeout_s)
            raw = await asyncio.wait_for(read_message(reader), self.timing.io_timeout_s)
            reply = decode_reply(raw)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise DeliveryFailedError("connection_lost", str(exc) or type(exc).__name__) from exc
        except ProtocolError as exc:
            raise DeliveryFailedError("bad_reply", str(exc)) from exc
        if not isinstance(reply, Ack):
            raise DeliveryFailedError(reply.reason, reply.detail)
        return self._acknowledged(records, reply)

    def _acknowledged(self, records: list[QueuedRecord], ack: Ack) -> int:
        sent = {r.id: r for r in records}
        ids = [i for i in ack.accepted if i in sent]
        count = self.instance.store.ack(self.endpoint.emt, ids)
        self.refused.update(i for i, _ in ack.refused if i in sent)
        self.delivered += count
        body = {
            "gateway": self.instance.name,
            "emt": self.endpoint.emt,
            "acknowledged": count,
            "ids": [min(ids), max(ids)] if ids else [],
            "refused": [{"id": i, "reason": r} for i, r in ack.refused],
        }
        self.bus.publish(topics.GATEWAY_EMT_DELIVERED, body)
        self._log(body, [sent[i] for i in ids])
        return count

    def _log(self, body: dict[str, Any], records: list[QueuedRecord]) -> None:
        now = self.clock()
        logs = self.instance.logs
        logs.system.append("emt_delivered", body, t_sim=now)
        for record in records:
            entry = self.instance.registry.get(record.meter)
            if entry is not None and entry.consumer:
                fields = {"emt": record.emt, "taf": str(record.taf), "meter": record.meter}
                logs.consumer(entry.consumer).append("data_sent", fields, t_sim=now)

    def _failed(self, exc: DeliveryFailedError, delay: float) -> None:
        body = {
            "gateway": self.instance.name,
            "emt": self.endpoint.emt,
            "reason": exc.reason,
            "detail": exc.detail[:300],
            "retry_in_s": delay,
        }
        self.bus.publish(topics.GATEWAY_EMT_DELIVERY_FAILED, body)
        self.instance.logs.system.append("emt_delivery_failed", body, t_sim=self.clock())


def senders(
    cfg: GatewayConfig,
    instances: Mapping[str, GatewayInstance],
    *,
    bus: framed_tls.Publisher,
    clock: Callable[[], float],
) -> list[EmtSender]:
    """Return a sender per ``emt_endpoints`` entry for the WAN instance (none if unset).

    The WAN instance (``wan_instance``, else the first) delivers: its TLS identity is
    the WAN settings (``wan_cert``, ``wan_key``, ``wan_chain``, ``wan_trust``,
    ``wan_crls``, ``wan_groups``), its signature ``sig_cert``/``sig_key``/``sig_chain``.
    """
    endpoints = parse_endpoints(cfg.emt_endpoints)
    if not endpoints:
        return []
    if not (cfg.sig_cert and cfg.sig_key and cfg.wan_cert and cfg.wan_key):
        raise ConfigError(
            "emt_endpoints need sig_cert, sig_key, wan_cert and wan_key", key="gateway"
        )
    name = cfg.wan_instance or cfg.instances[0]
    if name not in instances:
        raise ConfigError(f"no instance {name!r}", key="gateway.wan_instance")
    signer = load_signer(Path(cfg.sig_cert), Path(cfg.sig_key), [Path(p) for p in cfg.sig_chain])
    files = framed_tls.wan_client_files(cfg)
    timing = Timing(
        batch=cfg.emt_batch,
        retry_s=cfg.emt_retry_s,
        retry_max_s=cfg.emt_retry_max_s,
        poll_s=cfg.emt_poll_s,
        io_timeout_s=cfg.wan_handshake_timeout_s,
    )
    return [
        EmtSender(
            instances[name], ep, signer=signer, tls_files=files, bus=bus, clock=clock, timing=timing
        )
        for ep in endpoints
    ]
