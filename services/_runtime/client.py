"""The bus as one service sees it: publish, subscribe, request, answer."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import zmq.asyncio
from smtestbed.proto import rpc, topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.services._runtime.bus import (
    Endpoints,
    Publisher,
    RejectReporter,
    Subscription,
)
from smtestbed.services._runtime.clock import SimClock
from smtestbed.services._runtime.requests import Handler, RpcPeer
from smtestbed.services._runtime.version import VERSION


class BusClient:
    """Sockets of one participant: a publisher, subscriptions and an RPC peer.

    Args:
        endpoints: where the broker listens.
        name: instance name; requests are routed to it when ``service`` is given.
        service: the kind of service, or None for an anonymous client (CLI, tests).
        clock: the simulation clock stamping ``t_sim``.
        heartbeat_s: heartbeat interval announced to the broker.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        *,
        name: str,
        service: str | None = None,
        clock: SimClock | None = None,
        heartbeat_s: float = 1.0,
        ctx: zmq.asyncio.Context | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.clock = clock or SimClock()
        self.ctx = ctx or zmq.asyncio.Context()
        self._own_ctx = ctx is None
        self.publisher = Publisher(self.ctx, endpoints.pub, src=name, now_sim=self.clock.now)
        self.rejects = RejectReporter(
            lambda body: self.publisher.publish(topics.BUS_REJECTED, body)
        )
        info = None
        if service is not None:
            info = rpc.ServiceInfo(
                name=name,
                service=service,
                pid=os.getpid(),
                heartbeat_s=heartbeat_s,
                version=VERSION,
            )
        self.rpc = RpcPeer(
            self.ctx, endpoints.rpc, info=info, now_sim=self.clock.now, on_reject=self._rpc_reject
        )
        self.name = name if service is not None else self.rpc.name
        self._subs: list[Subscription] = []

    def publish(self, kind: str, body: Any = None, *, t_sim: float | None = None) -> int:
        """Publish an event; return its sequence number."""
        return self.publisher.publish(kind, body, t_sim=t_sim)

    def publish_batch(self, kind: str, batch: FrameBatch, *, t_sim: float | None = None) -> int:
        """Publish a frame batch through the broker."""
        return self.publisher.publish_batch(kind, batch, t_sim=t_sim)

    def subscribe(self, prefixes: Sequence[str] = ()) -> Subscription:
        """Open a subscription to events whose kind starts with one of ``prefixes``."""
        sub = Subscription(self.ctx, self.endpoints.sub, prefixes, on_reject=self._sub_reject)
        self._subs.append(sub)
        return sub

    def handle(self, method: str, handler: Handler) -> None:
        """Answer ``method`` requests with ``handler``."""
        self.rpc.handle(method, handler)

    async def request(
        self,
        service: str,
        method: str,
        params: Any = None,
        *,
        timeout: float = 3.0,
        retries: int = 1,
    ) -> Any:
        """Send a request through the broker and return the result."""
        return await self.rpc.request(service, method, params, timeout=timeout, retries=retries)

    def _sub_reject(self, reason: str, message: str) -> None:
        self.rejects.report(reason, message, where=f"{self.name}/sub")

    def _rpc_reject(self, reason: str, message: str, peer: str) -> None:
        self.rejects.report(reason, message, where=f"{self.name}/rpc", peer=peer)

    def counters(self) -> dict[str, int]:
        """Return the bus counters of this participant."""
        return {
            "events_sent": self.publisher.sent,
            "events_received": sum(s.received for s in self._subs),
            "events_rejected": self.rejects.total,
            "sequence_gaps": sum(s.gaps.gaps for s in self._subs),
            "events_missed": sum(s.gaps.missed for s in self._subs),
            "requests_served": self.rpc.served,
        }

    def close(self) -> None:
        """Close every socket (linger 0) and the context if this client made it."""
        for sub in self._subs:
            sub.close()
        self.publisher.close()
        self.rpc.close()
        if self._own_ctx:
            self.ctx.term()
