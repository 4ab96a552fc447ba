"""The broker service: event proxy, request router, registry."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, ClassVar

import zmq
import zmq.asyncio
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Publisher, RejectReporter
from smtestbed.services._runtime.errors import ServiceError
from smtestbed.services._runtime.lifecycle import Ready, Service
from smtestbed.services._runtime.version import VERSION
from smtestbed.services.broker.config import BrokerConfig
from smtestbed.services.broker.proxy import INPROC, EventProxy
from smtestbed.services.broker.registry import Registry
from smtestbed.services.broker.router import Router


class Broker(Service):
    """The bus of the testbed; every other service connects to it."""

    service: ClassVar[str] = "broker"
    config_class: ClassVar[type[BrokerConfig]] = BrokerConfig
    uses_bus: ClassVar[bool] = False

    def __init__(self, config: BrokerConfig) -> None:
        super().__init__(config)
        self.cfg = config
        self._started = time.monotonic()
        self._proxy: EventProxy | None = None
        self._router: Router | None = None

    async def run(self, ready: Ready) -> None:
        """Bind the three endpoints, then route until cancelled."""
        ctx = zmq.Context()
        actx = zmq.asyncio.Context.shadow(ctx)
        proxy = EventProxy(
            ctx,
            pub=self.cfg.bus_pub,
            sub=self.cfg.bus_sub,
            src=self.cfg.instance,
            validate=self.cfg.validate,
        )
        self._proxy = proxy
        proxy.start_and_wait()
        publisher = Publisher(ctx, INPROC, src=self.cfg.instance, now_sim=self.clock.now)
        sock = actx.socket(zmq.ROUTER)
        try:
            self._router = self._make_router(sock, publisher)
            ready.set()
            await asyncio.gather(self._router.serve_forever(), self._reap(publisher))
        finally:
            sock.close(linger=0)
            publisher.close()
            proxy.stop()
            ctx.term()

    def _make_router(self, sock: zmq.asyncio.Socket, publisher: Publisher) -> Router:
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        try:
            sock.bind(self.cfg.bus_rpc)
        except zmq.ZMQError as exc:
            raise ServiceError(f"cannot bind {self.cfg.bus_rpc}: {exc}") from exc
        rejects = RejectReporter(lambda body: publisher.publish(topics.BUS_REJECTED, body))
        return Router(
            sock,
            Registry(liveness=self.cfg.liveness),
            name=self.cfg.instance,
            publish=publisher.publish,
            rejects=rejects,
            status=self.status,
        )

    async def _reap(self, publisher: Publisher) -> None:
        assert self._router is not None
        while True:
            await asyncio.sleep(self.cfg.reap_interval_s)
            publisher.poll_connected()
            for entry in self._router.registry.reap():
                self.log.warning("service_dead", name=entry.info.name, pid=entry.info.pid)
                publisher.publish(
                    topics.BROKER_SERVICE_DEAD, {"name": entry.info.name, "pid": entry.info.pid}
                )

    def status(self) -> dict[str, Any]:
        """Return the broker's status: itself, its counters and the registry."""
        assert self._proxy is not None
        assert self._router is not None
        return {
            "broker": {
                "name": self.cfg.instance,
                "pid": os.getpid(),
                "version": VERSION,
                "uptime_s": round(time.monotonic() - self._started, 3),
                "events_forwarded": self._proxy.forwarded,
                "bytes_forwarded": self._proxy.forwarded_bytes,
                "events_rejected": dict(self._proxy.rejects.counts),
                "requests_routed": self._router.routed,
                "requests_refused": self._router.refused,
            },
            "services": self._router.registry.snapshot(),
        }

    def counters(self) -> dict[str, int]:
        """Return the broker's counters."""
        if self._proxy is None or self._router is None:
            return {}
        return {
            "events_forwarded": self._proxy.forwarded,
            "events_rejected": self._proxy.rejects.total,
            "requests_routed": self._router.routed,
        }
