"""The gateway's WAN partition: GWA administration over mutual TLS.

A TCP server on ``wan_listen`` accepts each connection and does its TLS
handshake through ``connect_accepted_socket`` (so that a failed one raises
here, and no ClientHello can be read before TLS is in place): the SM-PKI
profile of :mod:`smtestbed.services._runtime.tls`, client certificate
required, CRLs of the whole chain checked. Each refused handshake is a
``wan.tls_refused`` event with its reason and the peer's address, a
``tls_refused`` entry in the system log and a count per reason.

After the handshake the peer speaks the framed JSON protocol of
:mod:`smtestbed.proto.wan`. Only a peer whose certificate's role (subject OU)
is ``GWA`` may administer; any other gets an error naming its role for each
request, and each attempt is a ``wan.admin_refused`` event and a log entry.
Every operation runs the same handler as the gateway's bus request of the
same name (:data:`smtestbed.proto.wan.OPS`).

CRLs come from files (``wan_crls``) and/or are fetched from the CA's
``GET /crl/<name>.crl`` URLs (``wan_crl_urls``) at start and then every
``wan_crl_every_s`` of simulated time (:mod:`.crl_fetch`); a new TLS context is
built after each fetch and serves the next handshakes.

With ``wakeup_listen`` the partition also takes GWA wake-up packets
(:mod:`.wakeup`) and, for an accepted one, calls the configured GWA and
serves it with the same handlers on that connection; ``wan_listen`` may then be
empty (no listening TCP endpoint at all, as TR-03109-1 asks). The GWA may
rotate the gateway's TLS and signature certificates through the CA
(:mod:`.rotation`, operations ``cert_request`` and ``cert_install``); the
installed TLS certificate serves the next handshakes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ssl
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from smtestbed.proto import topics, wan
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime import pki, tls
from smtestbed.services._runtime.clock import SimClock
from smtestbed.services._runtime.errors import ConfigError, RequestError, TestbedError
from smtestbed.services.gateway import (
    api,
    certstore,
    crl_fetch,
    framed_tls,
    rotation,
    unsafe,
    wakeup,
)
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.instance import GatewayInstance

__all__ = ["ADMIN_ROLE", "Handler", "Publisher", "WanServer"]

ADMIN_ROLE = "GWA"
Handler = Callable[[GatewayInstance, dict[str, Any], Envelope], Any]


Publisher = framed_tls.Publisher


class WanServer:
    """The WAN endpoint of one gateway service (its instance ``wan_instance``)."""

    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        handlers: Mapping[str, Handler],
        instances: Mapping[str, GatewayInstance],
        bus: Publisher,
        clock: SimClock,
        log: Any,
        now: Callable[[], float] | None = None,
        on_rotated: Callable[[str, certstore.Identity], None] | None = None,
    ) -> None:
        """Set up the partition; ``now`` is the gateway's time (wake-up freshness)."""
        self.cfg = cfg
        self.handlers = handlers
        self.instances = instances
        self.bus = bus
        self.clock = clock
        self.log = log
        self.name = cfg.wan_instance or cfg.instances[0]
        if self.name not in cfg.instances:
            raise ConfigError(f"no instance {self.name!r}", key="gateway.wan_instance")
        self.crls = crl_fetch.CrlFetcher(
            cfg.wan_crl_urls,
            Path(cfg.data_dir) / self.name / "wan-crl",
            key="gateway.wan_crl_urls",
            every_s=cfg.wan_crl_every_s,
            topic=topics.WAN_CRL_UPDATED,
            gateway=self.name,
            clock=clock,
            bus=bus,
            log=log,
        )
        self.context: ssl.SSLContext | None = None
        self.now = now or clock.now
        self.on_rotated = on_rotated
        self.certs = certstore.CertStore.of(cfg, self.name)
        self.rotation = rotation.CertRotation(
            self.certs,
            gateway=self.name,
            trust=self._rotation_trust,
            probe=self._probe,
            apply=self._apply,
            bus=bus,
            log=log,
            system_log=self.system_log,
        )
        self.wakeup: wakeup.WakeupListener | None = None
        self.endpoint = (
            None
            if not cfg.wan_listen
            else framed_tls.FramedTlsListener(
                cfg.wan_listen,
                key="gateway.wan_listen",
                context=lambda: self.context,
                handshake_timeout_s=cfg.wan_handshake_timeout_s,
                answer=self.answer,
                on_refused=self._refuse,
                on_connected=self._connected,
                backlog=128,
            )
        )
        self.refused: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    @property
    def host(self) -> str:
        """Return the address listened on ("" without ``wan_listen``)."""
        return self.endpoint.host if self.endpoint else ""

    @property
    def port(self) -> int:
        """Return the port listened on (the bound one after :meth:`start`; 0 if none)."""
        return self.endpoint.port if self.endpoint else 0

    # -- life ---------------------------------------------------------------

    async def start(self) -> None:
        """Fetch the CRLs, build the TLS context and start listening."""
        if self.cfg.wan_crl_urls:
            await self.crls.fetch()
        self.context = self.build_context()
        if self.endpoint is not None:
            self.endpoint.listen()
            self.log.info("wan_listening", host=self.host, port=self.port)
        if self.cfg.wakeup_listen:
            identity = self.certs.current("tls")
            assert identity is not None  # build_context checked it
            gateway_id = pki.common_name(pki.read_certificates(identity.cert)[0])
            self.wakeup = wakeup.WakeupListener(
                self.cfg, self, gateway_id=gateway_id, bus=self.bus, now=self.now, log=self.log
            )
            await self.wakeup.start()
        for which in certstore.PROFILES:  # what an earlier run installed serves from the start
            identity = self.certs.current(which)
            if self.certs.installed(which) and identity and self.on_rotated:
                self.on_rotated(which, identity)

    async def run(self) -> None:
        """Accept connections and wake-ups, and refresh the CRLs, until cancelled."""
        await asyncio.gather(
            self.endpoint.accept_forever() if self.endpoint else asyncio.sleep(0),
            self.wakeup.run() if self.wakeup else asyncio.sleep(0),
            self.crls.run_forever(self._rebuild),
        )

    def _rebuild(self) -> None:
        self.context = self.build_context()

    def close(self) -> None:
        """Stop listening and end the open sessions."""
        if self.endpoint is not None:
            self.endpoint.close()
        if self.wakeup is not None:
            self.wakeup.close()

    def counters(self) -> dict[str, int]:
        """Return the WAN counters (refusals per reason, sessions, requests)."""
        out = {f"wan_refused_{k}": v for k, v in self.refused.items()}
        out["wan_refused"] = sum(self.refused.values())
        out["wan_crl_updates"] = self.crls.updates
        out["wan_certs_rotated"] = self.rotation.rotated
        out["wan_certs_refused"] = self.rotation.refused
        out.update(self.wakeup.counters() if self.wakeup else {})
        return {**out, **{f"wan_{k}": v for k, v in self.counts.items()}}

    # -- TLS and CRLs ---------------------------------------------------------

    def build_context(self, identity: certstore.Identity | None = None) -> ssl.SSLContext:
        """Return a server context with the current TLS identity (or ``identity``) and CRLs."""
        ctx = tls.server_context(*self._tls_files(identity), groups=self.cfg.wan_groups)
        return unsafe.tls_context(ctx, self.instances[self.name].skipped)

    def client_context(self, check_hostname: bool) -> ssl.SSLContext:
        """Return a client context with the current TLS identity and CRLs (wake-up calls)."""
        files = self._tls_files(None)
        ctx = tls.client_context(*files, groups=self.cfg.wan_groups, check_hostname=check_hostname)
        return unsafe.tls_context(ctx, self.instances[self.name].skipped)

    def _tls_files(
        self, identity: certstore.Identity | None
    ) -> tuple[Path, Path, list[Path], list[Path], list[Path]]:
        cfg = self.cfg
        identity = identity or self.certs.current("tls")
        if identity is None or not cfg.wan_trust:
            raise ConfigError("the WAN needs wan_cert, wan_key and wan_trust", key="gateway")
        chain = list(identity.chain) or [Path(p) for p in cfg.wan_chain]
        trust = [Path(p) for p in cfg.wan_trust]
        return identity.cert, identity.key, chain, trust, self.crl_files()

    def crl_files(self) -> list[Path]:
        """Return the CRL files peers are checked with (configured and fetched)."""
        return [*(Path(p) for p in self.cfg.wan_crls), *self.crls.files()]

    # -- certificate rotation ----------------------------------------------------

    def _rotation_trust(self) -> certstore.Trust:
        cfg = self.cfg
        return certstore.Trust(
            roots=tuple(Path(p) for p in cfg.wan_trust),
            intermediates=tuple(Path(p) for p in cfg.wan_chain),
            crls=tuple(self.crl_files()),
        )

    def _probe(self, which: str, identity: certstore.Identity) -> None:
        if which == "tls":
            self.build_context(identity)
        else:
            key = pki.read_private_key(identity.key)
            if pki.read_certificates(identity.cert)[0].public_key() != key.public_key():
                raise ConfigError(f"{identity.key} is not the key of {identity.cert}")

    def _apply(self, which: str, identity: certstore.Identity) -> None:
        if which == "tls":
            self.context = self.build_context()
        if self.on_rotated is not None:
            self.on_rotated(which, identity)

    # -- connections -----------------------------------------------------------

    def _connected(self, peer: tls.Peer, where: str) -> None:
        self.counts["sessions"] += 1
        unsafe.count_revoked(self.instances[self.name].skipped, peer, self.crl_files())
        self.system_log(
            "wan_connected", {"peer": where, "role": peer.role, "subject": peer.common_name}
        )

    def _refuse(self, reason: str, where: str, message: str) -> None:
        self.refused[reason] += 1
        body = {"gateway": self.name, "reason": reason, "peer": where, "message": message[:300]}
        self.log.warning("wan_tls_refused", **body)
        self.bus.publish(topics.WAN_TLS_REFUSED, {**body, "t_sim": self.clock.now()})
        self.system_log("tls_refused", body)

    def system_log(self, kind: str, fields: dict[str, Any]) -> None:
        """Append an entry to the WAN instance's system log."""
        self.instances[self.name].logs.system.append(kind, fields, t_sim=self.clock.now())

    # -- requests ---------------------------------------------------------------

    def answer(self, request: wan.Request, peer: tls.Peer, where: str) -> wan.Reply:
        """Check the peer's role and run one request; never raises for bad input."""
        self.counts["requests"] += 1
        if peer.role != ADMIN_ROLE:
            return self._admin_refused(request, peer, where)
        if request.op in rotation.OPS:
            return self._rotate(request, peer)
        method = wan.OPS.get(request.op)
        if method is None:
            known = ", ".join((*wan.OPS, *rotation.OPS))
            return framed_tls.error_reply(
                request.id, f"unknown operation {request.op!r} ({known})", "op"
            )
        try:
            result = self._call(method, dict(request.params), peer)
        except RequestError as exc:
            return framed_tls.error_reply(request.id, str(exc), exc.field)
        except TestbedError as exc:
            return framed_tls.error_reply(request.id, str(exc), "")
        return wan.Reply(id=request.id, ok=True, result=result)

    def _rotate(self, request: wan.Request, peer: tls.Peer) -> wan.Reply:
        try:
            result = self.rotation.handle(request.op, dict(request.params), peer.common_name)
        except RequestError as exc:
            return framed_tls.error_reply(request.id, str(exc), exc.field)
        except TestbedError as exc:
            return framed_tls.error_reply(request.id, str(exc), "")
        return wan.Reply(id=request.id, ok=True, result=result)

    def _call(self, method: str, params: dict[str, Any], peer: tls.Peer) -> Any:
        params.setdefault("gateway", self.name)
        if method == topics.GATEWAY_PUSH_UPDATE:
            params["bundle"] = _base64(params.get("bundle"))
        src = f"wan:{peer.common_name}"
        env = Envelope(
            kind=method, src=src, seq=0, t_sim=self.clock.now(), t_wall=time.time(), body=None
        )
        return self.handlers[method](api.pick(self.instances, params), params, env)

    def _admin_refused(self, request: wan.Request, peer: tls.Peer, where: str) -> wan.Reply:
        self.counts["admin_refused"] += 1
        role = peer.role or "none"
        body = {
            "gateway": self.name,
            "op": request.op,
            "role": role,
            "subject": peer.common_name,
            "peer": where,
        }
        self.log.warning("wan_admin_refused", **body)
        self.bus.publish(topics.WAN_ADMIN_REFUSED, {**body, "t_sim": self.clock.now()})
        self.system_log("wan_admin_refused", body)
        message = f"role {role} may not administer this gateway (only {ADMIN_ROLE})"
        return framed_tls.error_reply(request.id, message, "role")


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise RequestError("must be the bundle as a base64 string", field="bundle")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise RequestError("is not valid base64", field="bundle") from None
