"""Requests and replies through the broker's ROUTER (framing in ``proto.rpc``).

One :class:`RpcPeer` per process holds a DEALER socket. It sends requests
(with a timeout shared by all attempts and a retry on silence), answers the
requests the broker forwards to it, announces the service and sends
heartbeats. A retried request carries the same id; a service answers a
duplicate from its reply cache instead of running the handler twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import zmq
import zmq.asyncio
from smtestbed.proto import rpc, topics
from smtestbed.proto.envelope import Envelope, EnvelopeError, pack
from smtestbed.services._runtime.errors import (
    PeerError,
    RemoteError,
    RequestTimeoutError,
    ServiceUnavailableError,
    TestbedError,
    UnknownServiceError,
)
from smtestbed.services._runtime.logging import get_logger

Handler = Callable[[Any, Envelope], Awaitable[Any]]
RejectSink = Callable[[str, str, str], None]

_ERR_TYPES: dict[str, type[PeerError]] = {
    "unknown_service": UnknownServiceError,
    "service_dead": ServiceUnavailableError,
}
REPLY_CACHE = 1024


class RpcPeer:
    """A DEALER connection to the broker: client, and service when announced."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        *,
        info: rpc.ServiceInfo | None,
        now_sim: Callable[[], float],
        on_reject: RejectSink | None = None,
    ) -> None:
        self.info = info
        self.name = info.name if info else f"~client-{uuid.uuid4().hex[:12]}"
        self.endpoint = endpoint
        self._now_sim = now_sim
        self._on_reject = on_reject
        self._sock = ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.IDENTITY, self.name.encode())
        self._sock.connect(endpoint)
        self._pending: dict[bytes, asyncio.Future[Any]] = {}
        self._handlers: dict[str, Handler] = {}
        self._replies: OrderedDict[tuple[bytes, bytes], list[bytes]] = OrderedDict()
        self._running: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._reader: asyncio.Task[None] | None = None
        self.served = 0
        self._log = get_logger(component="rpc")

    def handle(self, method: str, handler: Handler) -> None:
        """Answer requests for ``method`` with ``handler(params, envelope)``."""
        if not topics.is_known(method):
            raise TestbedError(f"request method {method!r} is not defined in proto.topics")
        self._handlers[method] = handler

    async def announce(self) -> None:
        """Register this service with the broker (HELLO)."""
        if self.info is not None:
            body = msgpack.packb(self.info.to_map(), use_bin_type=True)
            await self._sock.send_multipart([rpc.TAG, rpc.HELLO, self.name.encode(), body])

    async def register(self, *, attempt_s: float = 2.0) -> None:
        """Announce this service; return once the broker routes requests to it.

        HELLO has no answer, so a ``service.ping`` to this service's own name follows it
        on the same socket: the broker handles the two in order, and the ping coming back
        through the broker proves the registration. Both are sent again while the broker
        stays silent (not started yet).

        Args:
            attempt_s: time to wait for the ping of one attempt, s.

        Raises:
            UnknownServiceError, ServiceUnavailableError: the broker refused the announcement.
        """
        while True:
            await self.announce()
            try:
                await self.request(self.name, topics.SERVICE_PING, timeout=attempt_s, retries=0)
            except RemoteError:
                return  # this service answered (without a ping handler): it is routed
            except RequestTimeoutError:
                self._log.warning("broker_silent", endpoint=self.endpoint, waited_s=attempt_s)
                continue
            return

    async def heartbeat_forever(self) -> None:
        """Send a heartbeat every ``heartbeat_s`` until cancelled."""
        assert self.info is not None
        while True:
            await self._sock.send_multipart([rpc.TAG, rpc.HB, self.name.encode()])
            await asyncio.sleep(self.info.heartbeat_s)

    async def bye(self) -> None:
        """Tell the broker this service stops on purpose."""
        if self.info is not None:
            await self._sock.send_multipart([rpc.TAG, rpc.BYE, self.name.encode()])

    async def request(
        self,
        service: str,
        method: str,
        params: Any = None,
        *,
        timeout: float = 3.0,
        retries: int = 1,
    ) -> Any:
        """Send a request and return the result.

        Args:
            service: instance name of the service that answers.
            method: request name from ``proto.topics``.
            params: the request body.
            timeout: total time for all attempts, s.
            retries: extra attempts after a silent one.

        Raises:
            UnknownServiceError, ServiceUnavailableError: the broker could not route it.
            RemoteError: the service answered with an error.
            RequestTimeoutError: no answer within ``timeout``.
        """
        req_id = uuid.uuid4().bytes
        self._seq += 1
        wire = pack(method, self.name, self._seq, self._now_sim(), time.time(), params)
        frames = [rpc.TAG, rpc.REQ, service.encode(), req_id, wire]
        attempts = retries + 1
        self.start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending[req_id] = fut
        try:
            for _ in range(attempts):
                await self._sock.send_multipart(frames)
                done, _pending = await asyncio.wait({fut}, timeout=timeout / attempts)
                if done:
                    return fut.result()
        finally:
            self._pending.pop(req_id, None)
        raise RequestTimeoutError(
            f"no reply from {service!r} to {method} within {timeout:g} s ({attempts} attempts);"
            f" the service is busy or the broker at {self.endpoint} is unreachable"
        )

    def start(self) -> None:
        """Start receiving replies and forwarded requests (idempotent)."""
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._receive_forever(), name=f"rpc-{self.name}")

    async def _receive_forever(self) -> None:
        try:
            while True:
                frames = await self._sock.recv_multipart()
                self._dispatch(frames)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log.exception("rpc_receiver_failed")
            raise
        finally:
            for task in list(self._running):
                task.cancel()

    def _dispatch(self, frames: list[bytes]) -> None:
        if len(frames) < 2 or frames[0] != rpc.TAG:
            self._reject("bad_frame", f"{len(frames)} frame(s) without the {rpc.TAG!r} tag")
            return
        cmd, args = frames[1], frames[2:]
        if cmd == rpc.REP and len(args) == 2:
            self._on_reply(args[0], args[1])
        elif cmd == rpc.ERR and len(args) == 2:
            self._on_error(args[0], args[1])
        elif cmd == rpc.REQ and len(args) == 3:
            task = asyncio.create_task(self._serve(args[0], args[1], args[2]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        elif cmd == rpc.WHO:
            asyncio.create_task(self.announce())  # noqa: RUF006 - fire and forget, one frame
        else:
            self._reject("bad_command", f"command {cmd[:16]!r} with {len(args)} argument(s)")

    def _on_reply(self, req_id: bytes, wire: bytes) -> None:
        fut = self._pending.get(req_id)
        if fut is None or fut.done():
            return  # late reply to an attempt we already gave up on
        try:
            env = Envelope.from_wire(wire)
            body = env.body
            if not isinstance(body, dict) or "ok" not in body:
                raise EnvelopeError("reply body lacks 'ok'", reason="bad_reply")
        except EnvelopeError as exc:
            fut.set_exception(exc)
            self._reject(exc.reason, str(exc))
            return
        if body["ok"]:
            fut.set_result(body.get("result"))
        else:
            fut.set_exception(RemoteError(str(body.get("message")), code=str(body.get("code"))))

    def _on_error(self, req_id: bytes, raw: bytes) -> None:
        fut = self._pending.get(req_id)
        if fut is None or fut.done():
            return
        try:
            body = msgpack.unpackb(raw)
            code, message = str(body["code"]), str(body["message"])
        except Exception:  # a broken ERR is still an error for the caller
            code, message = "bad_error", f"unreadable error from the broker: {raw[:64]!r}"
        fut.set_exception(_ERR_TYPES.get(code, PeerError)(message))

    async def _serve(self, client: bytes, req_id: bytes, wire: bytes) -> None:
        key = (client, req_id)
        cached = self._replies.get(key)
        if cached is None:
            body = await self._answer(wire, client)
            reply = pack(topics.RPC_REPLY, self.name, 0, self._now_sim(), time.time(), body)
            cached = [rpc.TAG, rpc.REP, client, req_id, reply]
            self._replies[key] = cached
            while len(self._replies) > REPLY_CACHE:
                self._replies.popitem(last=False)
        await self._sock.send_multipart(cached)

    async def _answer(self, wire: bytes, client: bytes) -> dict[str, Any]:
        try:
            env = Envelope.from_wire(wire)
        except EnvelopeError as exc:
            self._reject(exc.reason, str(exc), peer=client.decode(errors="replace"))
            return rpc.error_reply("bad_request", str(exc))
        handler = self._handlers.get(env.kind)
        if handler is None:
            return rpc.error_reply("unknown_method", f"{self.name} does not answer {env.kind}")
        self.served += 1
        try:
            return rpc.ok_reply(await handler(env.body, env))
        except TestbedError as exc:
            return rpc.error_reply(type(exc).__name__, str(exc))
        except Exception as exc:
            self._log.exception("request_failed", method=env.kind)
            return rpc.error_reply("internal", f"{type(exc).__name__}: {exc}")

    def _reject(self, reason: str, message: str, *, peer: str = "") -> None:
        if self._on_reject is not None:
            self._on_reject(reason, message, peer)

    def close(self) -> None:
        """Stop receiving, close the socket and fail the requests still waiting."""
        if self._reader is not None:
            self._reader.cancel()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(PeerError("connection closed"))
        self._sock.close(linger=0)
