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
from typing import Any, Protocol

from smtestbed.proto import topics, wan
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.clock import SimClock
from smtestbed.services._runtime.errors import ConfigError, RequestError, TestbedError
from smtestbed.services.gateway import api, crl_fetch, framed_tls
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.instance import GatewayInstance

__all__ = ["ADMIN_ROLE", "Handler", "Publisher", "WanServer"]

ADMIN_ROLE = "GWA"
Handler = Callable[[GatewayInstance, dict[str, Any], Envelope], Any]


class Publisher(Protocol):
    """Where events go (the service's bus client)."""

    def publish(self, kind: str, body: Any) -> Any:
        """Publish one event."""


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
    ) -> None:
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
        self.endpoint = framed_tls.FramedTlsListener(
            cfg.wan_listen,
            key="gateway.wan_listen",
            context=lambda: self.context,
            handshake_timeout_s=cfg.wan_handshake_timeout_s,
            answer=self.answer,
            on_refused=self._refuse,
            on_connected=self._connected,
            backlog=128,
        )
        self.refused: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    @property
    def host(self) -> str:
        """Return the address listened on."""
        return self.endpoint.host

    @property
    def port(self) -> int:
        """Return the port listened on (the bound one after :meth:`start`)."""
        return self.endpoint.port

    # -- life ---------------------------------------------------------------

    async def start(self) -> None:
        """Fetch the CRLs, build the TLS context and start listening."""
        if self.cfg.wan_crl_urls:
            await self.crls.fetch()
        self.context = self.build_context()
        self.endpoint.listen()
        self.log.info("wan_listening", host=self.host, port=self.port)

    async def run(self) -> None:
        """Accept connections and refresh the CRLs until cancelled."""
        await asyncio.gather(self.endpoint.accept_forever(), self.crls.run_forever(self._rebuild))

    def _rebuild(self) -> None:
        self.context = self.build_context()

    def close(self) -> None:
        """Stop listening and end the open sessions."""
        self.endpoint.close()

    def counters(self) -> dict[str, int]:
        """Return the WAN counters (refusals per reason, sessions, requests)."""
        out = {f"wan_refused_{k}": v for k, v in self.refused.items()}
        out["wan_refused"] = sum(self.refused.values())
        out["wan_crl_updates"] = self.crls.updates
        return {**out, **{f"wan_{k}": v for k, v in self.counts.items()}}

    # -- TLS and CRLs ---------------------------------------------------------

    def build_context(self) -> ssl.SSLContext:
        """Return a server context with the current CRL files."""
        cfg = self.cfg
        if not cfg.wan_cert or not cfg.wan_key or not cfg.wan_trust:
            raise ConfigError("wan_listen needs wan_cert, wan_key and wan_trust", key="gateway")
        fetched = self.crls.files()
        return tls.server_context(
            Path(cfg.wan_cert),
            Path(cfg.wan_key),
            [Path(p) for p in cfg.wan_chain],
            [Path(p) for p in cfg.wan_trust],
            [*(Path(p) for p in cfg.wan_crls), *fetched],
            groups=cfg.wan_groups,
        )

    # -- connections -----------------------------------------------------------

    def _connected(self, peer: tls.Peer, where: str) -> None:
        self.counts["sessions"] += 1
        self._system_log(
            "wan_connected", {"peer": where, "role": peer.role, "subject": peer.common_name}
        )

    def _refuse(self, reason: str, where: str, message: str) -> None:
        self.refused[reason] += 1
        body = {"gateway": self.name, "reason": reason, "peer": where, "message": message[:300]}
        self.log.warning("wan_tls_refused", **body)
        self.bus.publish(topics.WAN_TLS_REFUSED, {**body, "t_sim": self.clock.now()})
        self._system_log("tls_refused", body)

    def _system_log(self, kind: str, fields: dict[str, Any]) -> None:
        self.instances[self.name].logs.system.append(kind, fields, t_sim=self.clock.now())

    # -- requests ---------------------------------------------------------------

    def answer(self, request: wan.Request, peer: tls.Peer, where: str) -> wan.Reply:
        """Check the peer's role and run one request; never raises for bad input."""
        self.counts["requests"] += 1
        if peer.role != ADMIN_ROLE:
            return self._admin_refused(request, peer, where)
        method = wan.OPS.get(request.op)
        if method is None:
            known = ", ".join(wan.OPS)
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
        self._system_log("wan_admin_refused", body)
        message = f"role {role} may not administer this gateway (only {ADMIN_ROLE})"
        return framed_tls.error_reply(request.id, message, "role")


def _base64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise RequestError("must be the bundle as a base64 string", field="bundle")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise RequestError("is not valid base64", field="bundle") from None
