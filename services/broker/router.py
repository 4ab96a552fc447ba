"""The request router: a ROUTER socket that passes requests to services by name.

It also keeps the registry current from HELLO, HB and BYE messages and
answers the requests addressed to the broker itself (``broker.status``,
``service.ping``). Framing: ``proto.rpc``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import msgpack
import zmq
import zmq.asyncio
from smtestbed.proto import rpc, topics
from smtestbed.proto.envelope import Envelope, EnvelopeError, pack
from smtestbed.services._runtime.bus import RejectReporter
from smtestbed.services.broker.registry import ALIVE, DEAD, Registry

Publish = Callable[[str, Any], object]


class Router:
    """Route requests and replies; maintain the registry."""

    def __init__(
        self,
        sock: zmq.asyncio.Socket,
        registry: Registry,
        *,
        name: str,
        publish: Publish,
        rejects: RejectReporter,
        status: Callable[[], dict[str, Any]],
    ) -> None:
        self._sock = sock
        self.registry = registry
        self._name = name
        self._publish = publish
        self._rejects = rejects
        self._status = status
        self.routed = 0
        self.refused = 0

    async def serve_forever(self) -> None:
        """Handle messages until cancelled."""
        while True:
            frames = await self._sock.recv_multipart()
            await self._dispatch(frames)

    async def _dispatch(self, frames: list[bytes]) -> None:
        peer = frames[0]
        if len(frames) < 3 or frames[1] != rpc.TAG:
            self._reject(peer, "bad_frame", f"{len(frames) - 1} frame(s) without the tag")
            return
        cmd, args = frames[2], frames[3:]
        if cmd == rpc.REQ and len(args) == 3:
            await self._request(peer, args[0], args[1], args[2])
        elif cmd == rpc.REP and len(args) == 3:
            await self._sock.send_multipart([args[0], rpc.TAG, rpc.REP, args[1], args[2]])
        elif cmd == rpc.HB and len(args) == 1:
            await self._heartbeat(peer, args[0])
        elif cmd == rpc.HELLO and len(args) == 2:
            self._hello(peer, args[0], args[1])
        elif cmd == rpc.BYE and len(args) == 1:
            self._bye(peer, args[0])
        else:
            self._reject(peer, "bad_command", f"command {cmd[:16]!r} with {len(args)} argument(s)")

    async def _request(self, client: bytes, service: bytes, req_id: bytes, wire: bytes) -> None:
        name = service.decode(errors="replace")
        if name == self._name:
            await self._answer_own(client, req_id, wire)
            return
        entry = self.registry.get(name)
        if entry is None or entry.state not in (ALIVE,):
            self.refused += 1
            if entry is None:
                code, msg = "unknown_service", f"no service named {name!r} is registered"
            elif entry.state == DEAD:
                code, msg = "service_dead", f"service {name!r} is dead (missed heartbeats)"
            else:
                code, msg = "service_dead", f"service {name!r} has stopped"
            body = msgpack.packb({"code": code, "message": msg})
            await self._sock.send_multipart([client, rpc.TAG, rpc.ERR, req_id, body])
            return
        self.routed += 1
        await self._sock.send_multipart([entry.identity, rpc.TAG, rpc.REQ, client, req_id, wire])

    async def _answer_own(self, client: bytes, req_id: bytes, wire: bytes) -> None:
        try:
            env = Envelope.from_wire(wire)
        except EnvelopeError as exc:
            self._reject(client, exc.reason, str(exc))
            body = rpc.error_reply("bad_request", str(exc))
        else:
            if env.kind == topics.BROKER_STATUS:
                body = rpc.ok_reply(self._status())
            elif env.kind == topics.SERVICE_PING:
                body = rpc.ok_reply({"name": self._name, "service": "broker", "pid": os.getpid()})
            else:
                body = rpc.error_reply("unknown_method", f"the broker does not answer {env.kind}")
        reply = pack(topics.RPC_REPLY, self._name, 0, time.time(), time.time(), body)
        await self._sock.send_multipart([client, rpc.TAG, rpc.REP, req_id, reply])

    async def _heartbeat(self, peer: bytes, name: bytes) -> None:
        entry = self.registry.beat(name.decode(errors="replace"))
        if entry is None or entry.identity != peer:
            await self._sock.send_multipart([peer, rpc.TAG, rpc.WHO])

    def _hello(self, peer: bytes, name: bytes, raw: bytes) -> None:
        try:
            info = rpc.ServiceInfo.from_map(msgpack.unpackb(raw))
        except Exception as exc:  # any garbage in the announcement
            self._reject(peer, "bad_hello", f"announcement unreadable: {exc}")
            return
        if info.name.encode() != name or name != peer:
            self._reject(peer, "bad_hello", f"announced name {info.name!r} differs from identity")
            return
        entry = self.registry.announce(peer, info)
        self._publish(
            topics.BROKER_SERVICE_UP,
            {**info.to_map(), "starts": entry.starts, "restarts": entry.starts - 1},
        )

    def _bye(self, peer: bytes, name: bytes) -> None:
        entry = self.registry.bye(name.decode(errors="replace"))
        if entry is not None and entry.identity == peer:
            self._publish(topics.BROKER_SERVICE_GONE, {"name": entry.info.name})

    def _reject(self, peer: bytes, reason: str, message: str) -> None:
        self._rejects.report(
            reason, message, where="broker/router", peer=peer.decode(errors="replace")
        )
