"""The gateway's wake-up service: a GWA-signed UDP packet makes the gateway call the GWA.

TR-03109-1: the gateway accepts no administration connection it did not set
up itself. A GWA that wants to administer it sends a wake-up packet
(:mod:`smtestbed.proto.wakeup`) to ``wakeup_listen``; the gateway checks it,
in this order, the first failure refusing it with its reason:

1. ``busy``: as many wake-up sessions as allowed are open;
2. ``malformed``: the bytes do not follow the layout;
3. ``wrong_gateway``: it is addressed to another gateway id (ours is the CN of
   our WAN TLS certificate);
4. ``stale``: its issue time is more than ``wakeup_window_s`` away from the
   gateway's clock (the simulation clock plus the WAN time sync's offset);
5. ``replayed``: its GWA used that nonce before (nonces are kept in SQLite,
   ``<data_dir>/<instance>/wakeup.sqlite``, for twice the window, so a
   restart does not reopen the door);
6. ``unknown_gwa``: no ``gwa_endpoints`` entry names its GWA;
7. ``wrong_role``: the certificate is no GWA signature certificate (subject
   OU ``GWA``, CN the packet's GWA id, key usage digitalSignature alone, no
   extended key usage);
8. ``bad_signature``: the signature does not verify under that certificate;
9. ``untrusted``, ``revoked``, ``expired``, ``not_yet_valid``,
   ``no_revocation_info``: path validation to ``wan_trust`` through
   ``wakeup_cas`` with the WAN CRLs (files and fetched), at wall time, the
   time TLS handshakes are checked at.

Each refusal is a ``wan.wakeup_refused`` event, a ``wakeup_refused`` entry in
the system log and a count per reason; nothing else changes (the nonce is
stored only for an accepted packet). An accepted packet is a
``wan.wakeup_accepted`` event; the gateway then opens mutual TLS, with its WAN
identity, to the address configured for that GWA (never one from the packet),
requires the server to be that GWA (role ``GWA``, CN the GWA id; dNSName
``server_name`` when set) and serves the GWA's requests on that connection
with the WAN endpoint's handlers until the GWA closes it or it stays idle
``wakeup_idle_s``. A failed call is ``wan.wakeup_failed`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import ssl
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from cryptography import x509
from smtestbed.proto import topics, wakeup, wan
from smtestbed.services._runtime import pki, tls
from smtestbed.services._runtime.config import parse_host_port
from smtestbed.services._runtime.errors import ConfigError, ProtocolError, TestbedError
from smtestbed.services.gateway import framed_tls
from smtestbed.services.gateway.config import GatewayConfig

__all__ = [
    "GWA_ROLE",
    "REASONS",
    "Administration",
    "GwaEndpoint",
    "NonceLog",
    "WakeupListener",
    "WakeupRefusedError",
    "parse_gwa_endpoints",
    "signature_role_fault",
]

GWA_ROLE = "GWA"
MAX_SESSIONS = 4
QUEUE = 256
REASONS = (
    "busy",
    "malformed",
    "wrong_gateway",
    "stale",
    "replayed",
    "unknown_gwa",
    "wrong_role",
    "bad_signature",
    *(str(s) for s in pki.ChainStatus if s not in (pki.ChainStatus.OK, pki.ChainStatus.INVALID)),
)
"""Every refusal reason (an invalid path counts as ``untrusted``)."""


Publisher = framed_tls.Publisher


class Administration(Protocol):
    """What the wake-up service needs of the WAN partition."""

    name: str

    def answer(self, request: wan.Request, peer: tls.Peer, where: str) -> wan.Reply:
        """Run one GWA request; never raises for bad input."""

    def client_context(self, check_hostname: bool) -> ssl.SSLContext:
        """Return a TLS client context with the gateway's current WAN identity and CRLs."""

    def crl_files(self) -> list[Path]:
        """Return the CRL files the WAN endpoint checks peers with."""

    def system_log(self, kind: str, fields: dict[str, Any]) -> None:
        """Append an entry to the instance's system log."""


class WakeupRefusedError(TestbedError):
    """A wake-up packet failed a check (``reason`` one of :data:`REASONS`)."""

    def __init__(self, reason: str, detail: str, gwa: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.gwa = gwa


@dataclass(frozen=True, slots=True, kw_only=True)
class GwaEndpoint:
    """Where the gateway calls one GWA after its wake-up."""

    gwa: str
    host: str
    port: int
    server_name: str = ""


def parse_gwa_endpoints(tables: Sequence[dict[str, Any]]) -> dict[str, GwaEndpoint]:
    """Read ``gwa_endpoints`` tables by GWA id; a wrong one is a ConfigError naming it."""
    out: dict[str, GwaEndpoint] = {}
    for k, table in enumerate(tables):
        key = f"gateway.gwa_endpoints[{k}]"
        gwa, url = table.get("gwa"), table.get("url")
        unknown = set(table) - {"gwa", "url", "server_name"}
        if unknown or not isinstance(gwa, str) or not gwa or not isinstance(url, str):
            raise ConfigError("needs gwa and url (and only server_name besides)", key=key)
        parts = urlsplit(url)
        if parts.scheme != "tls" or not parts.hostname or parts.port is None:
            raise ConfigError(f"url must be tls://HOST:PORT, got {url!r}", key=key)
        if gwa in out:
            raise ConfigError(f"names GWA {gwa!r} twice", key="gateway.gwa_endpoints")
        name = str(table.get("server_name", ""))
        out[gwa] = GwaEndpoint(gwa=gwa, host=parts.hostname, port=parts.port, server_name=name)
    return out


class NonceLog:
    """The nonces of accepted wake-ups per GWA, in SQLite, kept for ``keep_s``."""

    def __init__(self, path: Path, keep_s: float) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS seen (gwa TEXT NOT NULL, nonce BLOB NOT NULL,"
            " issued REAL NOT NULL, PRIMARY KEY (gwa, nonce))"
        )
        self.keep_s = keep_s

    def seen(self, gwa: str, nonce: bytes) -> bool:
        """Tell whether ``gwa`` used ``nonce`` in an accepted packet."""
        row = self.db.execute("SELECT 1 FROM seen WHERE gwa = ? AND nonce = ?", (gwa, nonce))
        return row.fetchone() is not None

    def add(self, gwa: str, nonce: bytes, issued: float, now: float) -> None:
        """Record an accepted packet's nonce; forget those older than ``keep_s``."""
        with self.db:
            self.db.execute("DELETE FROM seen WHERE issued < ?", (now - self.keep_s,))
            self.db.execute("INSERT INTO seen VALUES (?, ?, ?)", (gwa, nonce, issued))

    def close(self) -> None:
        """Close the database."""
        self.db.close()


def signature_role_fault(cert: x509.Certificate, gwa: str) -> str:
    """Return "" if ``cert`` is the signature certificate of GWA ``gwa``, else what is wrong."""
    if pki.role(cert) != GWA_ROLE:
        return f"subject OU is {pki.role(cert)!r}, not {GWA_ROLE!r}"
    if pki.common_name(cert) != gwa:
        return f"certificate CN {pki.common_name(cert)!r} is not the GWA id {gwa!r}"
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "no key usage"
    if not usage.digital_signature or usage.key_agreement:
        return "key usage is not digitalSignature alone"
    with contextlib.suppress(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        return "has an extended key usage (a TLS certificate)"
    return ""


class _Datagrams(asyncio.DatagramProtocol):
    """Queue each datagram with its sender; count what does not fit."""

    def __init__(self, queue: asyncio.Queue[tuple[bytes, str]]) -> None:
        self.queue = queue
        self.dropped = 0

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            self.queue.put_nowait((data, f"{addr[0]}:{addr[1]}"))
        except asyncio.QueueFull:
            self.dropped += 1


class WakeupListener:
    """Receive wake-up packets for the WAN instance and call the GWA back."""

    def __init__(
        self,
        cfg: GatewayConfig,
        admin: Administration,
        *,
        gateway_id: str,
        bus: Publisher,
        now: Callable[[], float],
        log: Any,
    ) -> None:
        self.cfg = cfg
        self.admin = admin
        self.gateway_id = gateway_id
        self.bus = bus
        self.now = now
        self.log = log
        self.host, self.port = parse_host_port(cfg.wakeup_listen, "gateway.wakeup_listen")
        if not cfg.wakeup_window_s > 0:
            raise ConfigError("must be > 0", key="gateway.wakeup_window_s")
        self.gwas: Mapping[str, GwaEndpoint] = parse_gwa_endpoints(cfg.gwa_endpoints)
        if not self.gwas:
            raise ConfigError("wakeup_listen needs gwa_endpoints", key="gateway.gwa_endpoints")
        folder = Path(cfg.data_dir) / admin.name
        self.nonces = NonceLog(folder / "wakeup.sqlite", 2 * cfg.wakeup_window_s)
        self.queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue(QUEUE)
        self.protocol = _Datagrams(self.queue)
        self.transport: asyncio.DatagramTransport | None = None
        self.sessions: set[asyncio.Task[None]] = set()
        self.refused: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self._trust: pki.TrustFiles | None = None
        self._trust_crls: tuple[Path, ...] = ()

    async def start(self) -> None:
        """Bind the UDP port (port 0: any free one, see :attr:`port`)."""
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: self.protocol, local_addr=(self.host, self.port)
            )
        except OSError as exc:
            raise ConfigError(f"cannot listen: {exc}", key="gateway.wakeup_listen") from exc
        self.transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        self.log.info("wakeup_listening", host=self.host, port=self.port)

    async def run(self) -> None:
        """Check packets one at a time until cancelled."""
        while True:
            data, where = await self.queue.get()
            await self.receive(data, where)

    def close(self) -> None:
        """Stop listening, end the sessions, close the nonce log."""
        if self.transport is not None:
            self.transport.close()
        for task in self.sessions:
            task.cancel()
        self.nonces.close()

    def counters(self) -> dict[str, int]:
        """Return refusals per reason, acceptances, calls and dropped datagrams."""
        out = {f"wakeup_refused_{k}": v for k, v in self.refused.items()}
        out["wakeup_refused"] = sum(self.refused.values())
        out["wakeup_dropped"] = self.protocol.dropped
        return {**out, **{f"wakeup_{k}": v for k, v in self.counts.items()}}

    # -- checking ---------------------------------------------------------------

    async def receive(self, data: bytes, where: str) -> None:
        """Check one datagram; accept it and call the GWA, or report the refusal."""
        try:
            packet = await self.verify(data)
        except WakeupRefusedError as exc:
            self._refuse(exc, where)
            return
        self.nonces.add(packet.gwa, packet.nonce, packet.issued, self.now())
        self._accepted(packet, where)
        task = asyncio.create_task(self.call(packet, self.gwas[packet.gwa]))
        self.sessions.add(task)
        task.add_done_callback(self.sessions.discard)

    async def verify(self, data: bytes) -> wakeup.WakeupPacket:
        """Return the packet if it passes every check of the module docstring."""
        if len(self.sessions) >= MAX_SESSIONS:
            raise WakeupRefusedError("busy", f"{len(self.sessions)} wake-up sessions open")
        try:
            packet = wakeup.decode(data)
        except ProtocolError as exc:
            raise WakeupRefusedError("malformed", str(exc)) from exc
        self._check_claims(packet)
        cert = packet.certificate
        fault = signature_role_fault(cert, packet.gwa)
        if fault:
            raise WakeupRefusedError("wrong_role", fault, packet.gwa)
        if not wakeup.signature_valid(packet):
            raise WakeupRefusedError("bad_signature", "signature does not verify", packet.gwa)
        await self._check_path(cert, packet.gwa)
        return packet

    def _check_claims(self, packet: wakeup.WakeupPacket) -> None:
        gwa = packet.gwa
        if packet.gateway != self.gateway_id:
            detail = f"addressed to {packet.gateway!r}, this is {self.gateway_id!r}"
            raise WakeupRefusedError("wrong_gateway", detail, gwa)
        skew = packet.issued - self.now()
        if abs(skew) > self.cfg.wakeup_window_s:
            window = self.cfg.wakeup_window_s
            detail = f"issued {skew:+.0f} s from the gateway's time (window {window} s)"
            raise WakeupRefusedError("stale", detail, gwa)
        if self.nonces.seen(gwa, packet.nonce):
            raise WakeupRefusedError("replayed", f"nonce {packet.nonce.hex()} seen before", gwa)
        if gwa not in self.gwas:
            raise WakeupRefusedError("unknown_gwa", f"no gwa_endpoints entry for {gwa!r}", gwa)

    async def _check_path(self, cert: x509.Certificate, gwa: str) -> None:
        try:
            trust = self._trust_files()
            trust.refresh()
        except ConfigError as exc:
            raise WakeupRefusedError("no_revocation_info", str(exc), gwa) from exc
        verdict = await pki.check_chain(
            cert,
            intermediates=trust.intermediates,
            trust_roots=trust.roots,
            crls=trust.crls,
            at=datetime.now(UTC),
        )
        if not verdict.ok:
            status = verdict.status
            reason = "untrusted" if status == pki.ChainStatus.INVALID else str(status)
            raise WakeupRefusedError(reason, verdict.detail, gwa)

    def _trust_files(self) -> pki.TrustFiles:
        # The fetched CRL files appear after the first fetch; TrustFiles re-reads changed ones.
        crls = (*(Path(p) for p in self.cfg.wan_crls), *self.admin.crl_files())
        if self._trust is None or self._trust_crls != crls:
            self._trust = pki.TrustFiles(
                trust_roots=[Path(p) for p in self.cfg.wan_trust],
                intermediates=[Path(p) for p in self.cfg.wakeup_cas],
                crls=crls,
            )
            self._trust_crls = crls
        return self._trust

    # -- reporting --------------------------------------------------------------

    def _refuse(self, exc: WakeupRefusedError, where: str) -> None:
        self.refused[exc.reason] += 1
        body = {
            "gateway": self.admin.name,
            "reason": exc.reason,
            "gwa": exc.gwa,
            "peer": where,
            "message": exc.detail[:300],
        }
        self.log.warning("wakeup_refused", **body)
        self.bus.publish(topics.WAN_WAKEUP_REFUSED, {**body, "t_sim": self.now()})
        self.admin.system_log("wakeup_refused", body)

    def _accepted(self, packet: wakeup.WakeupPacket, where: str) -> None:
        self.counts["accepted"] += 1
        endpoint = self.gwas[packet.gwa]
        body = {
            "gateway": self.admin.name,
            "gwa": packet.gwa,
            "peer": where,
            "issued": packet.issued,
            "nonce": packet.nonce.hex(),
            "calls": f"{endpoint.host}:{endpoint.port}",
        }
        self.log.info("wakeup_accepted", **body)
        self.bus.publish(topics.WAN_WAKEUP_ACCEPTED, {**body, "t_sim": self.now()})
        self.admin.system_log("wakeup_accepted", body)

    def _failed(self, endpoint: GwaEndpoint, reason: str, message: str) -> None:
        self.counts["calls_failed"] += 1
        body = {
            "gateway": self.admin.name,
            "gwa": endpoint.gwa,
            "reason": reason,
            "calls": f"{endpoint.host}:{endpoint.port}",
            "message": message[:300],
        }
        self.log.warning("wakeup_failed", **body)
        self.bus.publish(topics.WAN_WAKEUP_FAILED, {**body, "t_sim": self.now()})
        self.admin.system_log("wakeup_failed", body)

    # -- calling the GWA ------------------------------------------------------------

    async def call(self, packet: wakeup.WakeupPacket, endpoint: GwaEndpoint) -> None:
        """Connect out to ``endpoint`` and serve the GWA's requests on that connection."""
        self.counts["calls"] += 1
        streams = await self._connect(packet, endpoint)
        if streams is None:
            return
        reader, writer, peer = streams
        where = f"{endpoint.host}:{endpoint.port}"
        self.admin.system_log(
            "wan_connected", {"peer": where, "role": peer.role, "subject": peer.common_name}
        )
        try:
            served = await self._serve(reader, writer, peer, where)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            self._failed(endpoint, tls.refusal_reason(exc), str(exc) or type(exc).__name__)
            return
        finally:
            await framed_tls.close(writer)
        self.counts["sessions"] += 1
        self.log.info("wakeup_session_ended", gwa=packet.gwa, requests=served)

    async def _connect(
        self, packet: wakeup.WakeupPacket, endpoint: GwaEndpoint
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, tls.Peer] | None:
        try:
            reader, writer, peer = await framed_tls.connect(
                endpoint,
                self.admin.client_context,
                timeout_s=self.cfg.wan_handshake_timeout_s,
                role=None,
                error=framed_tls.ConnectFailedError,
                limit=wan.HEADER + wan.MAX_FRAME,
            )
        except framed_tls.ConnectFailedError as exc:
            self._failed(endpoint, exc.reason, exc.detail)
            return None
        if peer.role != GWA_ROLE or peer.common_name != packet.gwa:
            writer.close()
            detail = f"server is {peer.common_name!r} ({peer.role!r}), not GWA {packet.gwa!r}"
            self._failed(endpoint, "wrong_peer", detail)
            return None
        return reader, writer, peer

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: tls.Peer,
        where: str,
    ) -> int:
        """Answer requests until the GWA closes or stays idle; return how many were served."""
        idle = self.cfg.wakeup_idle_s
        served = 0
        while True:
            try:
                header = await asyncio.wait_for(reader.readexactly(wan.HEADER), idle)
            except (TimeoutError, asyncio.IncompleteReadError):
                return served  # idle, or the GWA closed between requests
            try:
                length = wan.frame_length(header)
                body = await asyncio.wait_for(reader.readexactly(length), idle)
                request = wan.decode_request(body)
            except (wan.FrameError, TimeoutError) as exc:
                reply = framed_tls.error_reply(0, str(exc) or "frame incomplete", "frame")
                writer.write(wan.encode(reply.to_map()))
                await writer.drain()
                return served
            writer.write(framed_tls.encode_reply(self.admin.answer(request, peer, where)))
            await writer.drain()
            served += 1
