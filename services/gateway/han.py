"""The gateway's HAN partition: consumer displays and the service technician over mutual TLS.

A second TLS endpoint (``han_listen``), separate from the WAN one, with its
own certificate, trust anchors and CRL files (``han_*`` settings). As on the
WAN, each connection's handshake runs through ``connect_accepted_socket``
(SM-PKI TLS profile, client certificate required, CRLs of the whole chain
checked); a refused handshake is a ``han.tls_refused`` event with its reason,
a ``han_tls_refused`` system-log entry and a count per reason.

After the handshake the client speaks :mod:`smtestbed.proto.han` (the WAN
framing). The role is the client certificate's subject OU:

- ``DISPLAY``: its CN ``display.<consumer>.han.test.example`` names the one
  consumer whose meters' readings, TAF data and consumer log it may read;
- ``TECHNICIAN``: diagnostics only (counters; no readings, no keys).

- ``CLS``: a controllable local system; it gets no requests, only its proxy
  channel to its EMT (:mod:`.cls_proxy`).

Every refused request (an operation not for the role, another consumer's
meter or consumer id, a CLS channel not configured or to another EMT) is
answered with an error naming the field, written to the system log as
``han_access_refused`` and published as ``han.access_refused`` with the
reason. A meter of another consumer and an unregistered one get the same
answer, so a display cannot probe which meters exist.

Readings carry ``flagged``: true when the time sync flagged them (taken while
the gateway's clock deviated beyond the limit, :mod:`.timesync`).

CRLs come from files (``han_crls``) and/or from the CA's URLs (``han_crl_urls``),
fetched at start and every ``han_crl_every_s`` of simulated time
(:mod:`.crl_fetch`, as on the WAN); each fetch makes a new TLS context for the
next handshakes, so a display revoked at the CA is refused after the next fetch.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from smtestbed.proto import cls, han, topics, wan
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.clock import SimClock
from smtestbed.services._runtime.errors import ConfigError, RequestError, TestbedError
from smtestbed.services.gateway import api, cls_proxy, crl_fetch, framed_tls, timesync, unsafe
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.logchain import read_entries
from smtestbed.services.gateway.schema import MeterEntry, Reading

__all__ = ["Diagnostics", "HanServer", "Publisher"]

Diagnostics = Callable[[], dict[str, Any]]
"""Returns the service's LMN line and WAN counters for the technician."""


Publisher = framed_tls.Publisher


class AccessRefusedError(RequestError):
    """A HAN client asked for data its role or consumer may not read."""

    @property
    def reason(self) -> str:
        """Return the refusal's reason for events and logs."""
        return "role" if self.field == "role" else "not_own_data"


class HanServer:
    """The HAN endpoint of one gateway service (its instance ``han_instance``)."""

    def __init__(
        self,
        cfg: GatewayConfig,
        *,
        instances: Mapping[str, GatewayInstance],
        bus: Publisher,
        clock: SimClock,
        log: Any,
        diagnostics: Diagnostics,
    ) -> None:
        self.cfg = cfg
        self.name = cfg.han_instance or cfg.instances[0]
        if self.name not in instances:
            raise ConfigError(f"no instance {self.name!r}", key="gateway.han_instance")
        self.inst = instances[self.name]
        self.bus = bus
        self.clock = clock
        self.log = log
        self.diagnostics = diagnostics
        self.context: ssl.SSLContext | None = None
        self.crls = crl_fetch.CrlFetcher(
            cfg.han_crl_urls,
            Path(cfg.data_dir) / self.name / "han-crl",
            key="gateway.han_crl_urls",
            every_s=cfg.han_crl_every_s,
            topic=topics.HAN_CRL_UPDATED,
            gateway=self.name,
            clock=clock,
            bus=bus,
            log=log,
        )
        self.cls = cls_proxy.ClsProxy(
            cfg, self.inst, bus=bus, clock=clock.now, log=log, refused=self._access_refused
        )
        self.endpoint = cls_proxy.HanListener(
            cfg.han_listen,
            channel=self.cls.serve,
            key="gateway.han_listen",
            context=lambda: self.context,
            handshake_timeout_s=cfg.han_handshake_timeout_s,
            answer=self.answer,
            on_refused=self._refuse_tls,
            on_connected=self._connected,
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
        if self.cfg.han_crl_urls:
            await self.crls.fetch()
        self.context = self.build_context()
        self.endpoint.listen()
        self.log.info("han_listening", host=self.host, port=self.port)

    async def run(self) -> None:
        """Accept connections and refresh the CRLs until cancelled."""
        await asyncio.gather(self.endpoint.accept_forever(), self.crls.run_forever(self._rebuild))

    def _rebuild(self) -> None:
        self.context = self.build_context()

    def close(self) -> None:
        """Stop listening and end the open sessions."""
        self.endpoint.close()

    def counters(self) -> dict[str, int]:
        """Return the HAN counters (refused handshakes per reason, sessions, requests)."""
        out = {f"han_tls_refused_{k}": v for k, v in self.refused.items()}
        out["han_tls_refused"] = sum(self.refused.values())
        out["han_crl_updates"] = self.crls.updates
        out |= {f"han_cls_{k}": v for k, v in self.cls.counts.items()}
        return {**out, **{f"han_{k}": v for k, v in self.counts.items()}}

    def build_context(self) -> ssl.SSLContext:
        """Return the HAN server context (own certificate, HAN trust anchors and CRLs)."""
        cfg = self.cfg
        if not cfg.han_cert or not cfg.han_key or not cfg.han_trust:
            raise ConfigError("han_listen needs han_cert, han_key and han_trust", key="gateway")
        ctx = tls.server_context(
            Path(cfg.han_cert),
            Path(cfg.han_key),
            [Path(p) for p in cfg.han_chain],
            [Path(p) for p in cfg.han_trust],
            self.crl_files(),
            groups=cfg.wan_groups,
        )
        return unsafe.tls_context(ctx, self.inst.skipped)

    def crl_files(self) -> list[Path]:
        """Return the CRL files HAN clients are checked with (configured and fetched)."""
        return [*(Path(p) for p in self.cfg.han_crls), *self.crls.files()]

    # -- connections -----------------------------------------------------------

    def _connected(self, peer: tls.Peer, where: str) -> None:
        self.counts["sessions"] += 1
        unsafe.count_revoked(self.inst.skipped, peer, self.crl_files())
        fields = {"peer": where, "role": peer.role, "subject": peer.common_name}
        self._system_log("han_connected", fields)

    def _refuse_tls(self, reason: str, where: str, message: str) -> None:
        self.refused[reason] += 1
        body = {"gateway": self.name, "reason": reason, "peer": where, "message": message[:300]}
        self.log.warning("han_tls_refused", **body)
        self.bus.publish(topics.HAN_TLS_REFUSED, {**body, "t_sim": self.clock.now()})
        self._system_log("han_tls_refused", body)

    def _system_log(self, kind: str, fields: dict[str, Any]) -> None:
        self.inst.logs.system.append(kind, fields, t_sim=self.clock.now())

    # -- requests ---------------------------------------------------------------

    def answer(self, request: wan.Request, peer: tls.Peer, where: str) -> wan.Reply:
        """Check the client's role and consumer and run one request; never raises for bad input."""
        self.counts["requests"] += 1
        params = dict(request.params)
        try:
            result = self._dispatch(request.op, params, peer)
        except AccessRefusedError as exc:
            self._access_refused(request, peer, where, exc)
            return framed_tls.error_reply(request.id, str(exc), exc.field)
        except RequestError as exc:
            return framed_tls.error_reply(request.id, str(exc), exc.field)
        except TestbedError as exc:
            return framed_tls.error_reply(request.id, str(exc), "")
        return wan.Reply(id=request.id, ok=True, result=result)

    def _dispatch(self, op: str, params: dict[str, Any], peer: tls.Peer) -> Any:
        if op == cls.CHANNEL_OP:
            role = peer.role or "none"
            raise AccessRefusedError(f"role {role} may not open a CLS channel", field="role")
        if op not in (*han.DISPLAY_OPS, *han.TECHNICIAN_OPS):
            known = ", ".join((*han.DISPLAY_OPS, *han.TECHNICIAN_OPS))
            raise RequestError(f"unknown operation {op!r} ({known})", field="op")
        if peer.role == han.TECHNICIAN_ROLE and op in han.TECHNICIAN_OPS:
            return self._diagnostics()
        consumer = han.consumer_of(peer.common_name) if peer.role == han.DISPLAY_ROLE else ""
        if not consumer or op not in han.DISPLAY_OPS:
            role = peer.role or "none"
            raise AccessRefusedError(f"role {role} may not use {op!r} on the HAN", field="role")
        asked = params.get("consumer", consumer)
        if asked != consumer:
            raise AccessRefusedError(f"{asked!r} is not this display's consumer", field="consumer")
        return self._display_op(op, params, consumer)

    def _display_op(self, op: str, params: dict[str, Any], consumer: str) -> Any:
        if op == "meters":
            return [api.entry_map(e) for e in self._own_meters(consumer)]
        if op == "readings":
            meter = self._own_meter(params, consumer).meter
            rows = self.inst.store.readings(
                meter,
                api.number(params, "t0", None),
                api.number(params, "t1", None),
                limit=api.count(params, "limit", 1000, 100_000),
            )
            return self._reading_maps(rows)
        if op == "latest":
            return {"consumer": consumer, "readings": self._latest(consumer)}
        if op == "taf_data":
            return self._taf_data(params, consumer)
        return self._consumer_log(params, consumer)

    def _own_meters(self, consumer: str) -> list[MeterEntry]:
        return [e for e in self.inst.registry.all() if e.consumer == consumer]

    def _own_meter(self, params: dict[str, Any], consumer: str) -> MeterEntry:
        meter = api.text(params, "meter")
        entry = self.inst.registry.get(meter)
        if entry is None or entry.consumer != consumer:
            # the same answer for a foreign and an unknown meter: nothing to probe
            raise AccessRefusedError(f"meter {meter!r} is not a meter of {consumer}", field="meter")
        return entry

    def _latest(self, consumer: str) -> list[dict[str, Any]]:
        out = []
        for entry in self._own_meters(consumer):
            state = self.inst.store.state(entry.meter)
            if state is None:
                continue
            rows = self.inst.store.readings(entry.meter, state.t_sim, None, limit=100)
            out += self._reading_maps(rows[-1:])
        return out

    def _reading_maps(self, rows: list[tuple[int, Reading]]) -> list[dict[str, Any]]:
        flagged = timesync.flagged_ids(self.inst.store, [rid for rid, _ in rows])
        return [{**api.reading_map(rid, r), "flagged": rid in flagged} for rid, r in rows]

    def _taf_data(self, params: dict[str, Any], consumer: str) -> list[dict[str, Any]]:
        if "meter" in params:
            meters = [self._own_meter(params, consumer).meter]
        else:
            meters = [e.meter for e in self._own_meters(consumer)]
        limit = api.count(params, "limit", 100, 10_000)
        out: list[dict[str, Any]] = []
        for meter in meters:
            rows = self.inst.store.query(
                "SELECT id, emt, taf, meter, payload, created FROM emt_queue "
                "WHERE meter = ? ORDER BY id DESC LIMIT ?",
                (meter, limit),
            )
            keys = ("id", "emt", "taf", "meter", "payload", "created")
            out += [{**dict(zip(keys, r, strict=True)), "payload": json.loads(r[4])} for r in rows]
        return out

    def _consumer_log(self, params: dict[str, Any], consumer: str) -> dict[str, Any]:
        name = f"consumer-{consumer}"
        if consumer not in self.inst.logs.consumer_ids():
            return {"log": name, "entries": [], "public_key": self.inst.key.fingerprint}
        log = self.inst.logs.consumer(consumer)
        start = api.count(params, "from_seq", 1, 2**62) - 1 if "from_seq" in params else 0
        limit = api.count(params, "limit", 1000, 100_000)
        rows = [e.to_json() for e in read_entries(log.path) if e.seq >= start]
        return {"log": name, "entries": rows[:limit], "public_key": self.inst.key.fingerprint}

    def _diagnostics(self) -> dict[str, Any]:
        inst = self.inst
        return {
            "gateway": inst.name,
            "meters": len(inst.registry),
            "stored": inst.store.count(),
            **inst.counters.to_map(),
            **self.diagnostics(),
            "han": self.counters(),
        }

    def _access_refused(
        self,
        request: wan.Request,
        peer: tls.Peer,
        where: str,
        exc: AccessRefusedError | cls_proxy.ChannelRefusedError,
    ) -> None:
        self.counts["access_refused"] += 1
        body = {
            "gateway": self.name,
            "op": request.op,
            "field": exc.field,
            "reason": exc.reason,
            "asked": _asked(request.params, exc.field),
            "role": peer.role or "none",
            "subject": peer.common_name,
            "peer": where,
        }
        self.log.warning("han_access_refused", **body)
        self.bus.publish(topics.HAN_ACCESS_REFUSED, {**body, "t_sim": self.clock.now()})
        self._system_log("han_access_refused", body)


def _asked(params: Mapping[str, Any], field: str) -> str:
    value = params.get(field, "") if field in ("meter", "consumer", "emt") else ""
    return str(value)[:64]
