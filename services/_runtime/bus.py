"""Bus sockets: events through the broker, batches on PUSH/PULL.

Events: a :class:`Publisher` (PUB) connects to the broker's XSUB endpoint, a
:class:`Subscription` (SUB) to its XPUB endpoint. Each publisher numbers its
events per kind, so a subscriber that filters by topic still sees a gap as a
gap (:class:`GapTracker`). Batches of frames go point to point on
PUSH/PULL with high-water marks, so a slow consumer slows the producer down
instead of losing frames. Requests and replies live in ``requests.py``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio
from smtestbed.proto import topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.envelope import Envelope, EnvelopeError, check_event_frames, pack
from smtestbed.services._runtime.config import ServiceConfig
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services._runtime.logging import get_logger

# A subscriber's last subscription is a topic of its own under READY_PREFIX; the broker
# answers it with a one-frame message of that topic once it has passed the subscriber's
# subscriptions on to the publishers (see Subscription.wait_connected).
READY_PREFIX = b"bus.ready."
EVENT_HWM = 100_000
BATCH_HWM = 64


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    """Where the broker listens.

    Attributes:
        pub: XSUB endpoint; publishers connect here.
        sub: XPUB endpoint; subscribers connect here.
        rpc: ROUTER endpoint; requesters and services connect here.
    """

    pub: str
    sub: str
    rpc: str

    @classmethod
    def from_config(cls, config: ServiceConfig) -> Endpoints:
        """Take the endpoints from a service configuration."""
        return cls(pub=config.bus_pub, sub=config.bus_sub, rpc=config.bus_rpc)


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """A received event: its envelope and any raw frames after it."""

    envelope: Envelope
    frames: tuple[bytes, ...] = ()

    @property
    def kind(self) -> str:
        """Return the topic."""
        return self.envelope.kind

    @property
    def body(self) -> Any:
        """Return the payload."""
        return self.envelope.body

    def batch(self) -> FrameBatch:
        """Interpret a batch event's raw frames (offsets, data, columns)."""
        return FrameBatch.from_wire(self.body, self.frames)


class SeqCounter:
    """Per-kind event numbering of one publisher (starting at 0)."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def take(self, kind: str) -> int:
        """Return the next number for ``kind``."""
        seq = self._next.get(kind, 0)
        self._next[kind] = seq + 1
        return seq


@dataclass(slots=True)
class GapTracker:
    """Detect lost events from the per-(src, kind) sequence numbers.

    Attributes:
        gaps: how many times a sequence jumped forward.
        missed: how many events the jumps skipped in total.
        restarts: how many times a sequence went back (a publisher restarted or a replay).
    """

    gaps: int = 0
    missed: int = 0
    restarts: int = 0
    _last: dict[tuple[str, str], int] = field(default_factory=dict)

    def observe(self, src: str, kind: str, seq: int) -> int:
        """Record one event; return how many events were skipped before it."""
        key = (src, kind)
        last = self._last.get(key)
        self._last[key] = seq
        if last is None:
            return 0
        if seq <= last:
            self.restarts += 1
            return 0
        skipped = seq - last - 1
        if skipped:
            self.gaps += 1
            self.missed += skipped
        return skipped


class RejectReporter:
    """Count, log and publish rejected input without flooding the bus.

    At most ``per_second`` events and log lines leave per second; the rest are
    counted and reported as ``suppressed`` with the next one that leaves.
    """

    def __init__(self, emit: Callable[[dict[str, Any]], object], *, per_second: int = 20) -> None:
        self._emit = emit
        self._limit = per_second
        self._window = 0
        self._sent = 0
        self._suppressed = 0
        self.counts: dict[str, int] = {}
        self._log = get_logger(component="reject")

    @property
    def total(self) -> int:
        """Return how many inputs were rejected."""
        return sum(self.counts.values())

    def report(self, reason: str, message: str, *, where: str, peer: str = "") -> None:
        """Account one rejected input."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = int(time.monotonic())
        if now != self._window:
            self._window, self._sent = now, 0
        if self._sent >= self._limit:
            self._suppressed += 1
            return
        self._sent += 1
        body = {
            "reason": reason,
            "message": message,
            "where": where,
            "peer": peer,
            "suppressed": self._suppressed,
            "total": self.total,
        }
        self._suppressed = 0
        self._log.warning("input_rejected", **body)
        self._emit(body)


def closing(sock: zmq.Socket[Any]) -> None:
    """Close a socket at once, dropping unsent messages (linger 0)."""
    sock.close(linger=0)


class Publisher:
    """Publish events to the broker (connected to its XSUB endpoint).

    The socket is an XPUB so that the publisher learns when the broker has
    passed it the subscriptions (the broker always holds one of its own):
    :meth:`wait_connected` then guarantees that no early event is dropped
    for want of a subscription, the usual ZeroMQ slow-joiner loss.
    """

    def __init__(
        self,
        ctx: zmq.Context[Any],
        endpoint: str,
        *,
        src: str,
        now_sim: Callable[[], float],
        hwm: int = EVENT_HWM,
    ) -> None:
        self.src = src
        self._now_sim = now_sim
        self._seq = SeqCounter()
        self._sock: zmq.Socket[Any] = zmq.Socket(ctx, zmq.XPUB)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(endpoint)
        self._connected = False
        self.sent = 0

    def poll_connected(self) -> bool:
        """Take pending subscription messages; return True once the broker is there."""
        while self._sock.poll(0):
            self._sock.recv()
            self._connected = True
        return self._connected

    async def wait_connected(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the broker; return whether it came."""
        deadline = time.monotonic() + timeout
        while not self.poll_connected():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def publish(
        self,
        kind: str,
        body: Any = None,
        *,
        t_sim: float | None = None,
        frames: Sequence[bytes | memoryview] = (),
    ) -> int:
        """Publish one event; return its sequence number."""
        seq = self._seq.take(kind)
        t_sim = self._now_sim() if t_sim is None else t_sim
        wire = pack(kind, self.src, seq, t_sim, time.time(), body)
        if frames:
            self._sock.send_multipart([kind.encode(), wire, *frames], copy=False)
        else:
            self._sock.send_multipart([kind.encode(), wire])
        self.sent += 1
        return seq

    def publish_batch(self, kind: str, batch: FrameBatch, *, t_sim: float | None = None) -> int:
        """Publish a frame batch as envelope + offsets + data frames."""
        return self.publish(kind, batch.header(), t_sim=t_sim, frames=batch.wire_frames())

    def send_raw(self, frames: Sequence[bytes]) -> None:
        """Send frames exactly as given (replay of recorded events)."""
        self._sock.send_multipart(list(frames))

    def close(self) -> None:
        """Close the socket."""
        closing(self._sock)


class Subscription:
    """Receive validated events from the broker (SUB on its XPUB endpoint).

    Malformed events are dropped, counted and handed to ``on_reject``;
    sequence gaps are counted in :attr:`gaps`.
    """

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        prefixes: Sequence[str] = (),
        *,
        on_reject: Callable[[str, str], None] | None = None,
        hwm: int = EVENT_HWM,
    ) -> None:
        self._sock = ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        for prefix in prefixes or ("",):
            self._sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self._ready_topic = READY_PREFIX + uuid.uuid4().hex.encode()
        self._sock.setsockopt(zmq.SUBSCRIBE, self._ready_topic)
        self._sock.connect(endpoint)
        self._prefixes = tuple(prefixes)
        self._on_reject = on_reject
        self._connected = False
        self.gaps = GapTracker()
        self.received = 0
        self.rejected = 0

    async def wait_connected(self, timeout: float = 5.0) -> None:
        """Wait until the broker passed our subscriptions on to the publishers.

        ZeroMQ subscriptions travel from the subscriber through the broker to each
        publisher; events published before they arrive are dropped at the publisher.
        Our last subscription is a topic of our own that the broker answers only after
        forwarding the earlier ones, so after this returns, events that publishers send
        in reaction to anything we do next reach us.
        """
        deadline = time.monotonic() + timeout
        while not self._connected:
            left = deadline - time.monotonic()
            if left <= 0 or not await self._sock.poll(left * 1000):
                raise TimeoutError(f"no answer from the broker within {timeout} s")
            await self._take()

    async def recv(self) -> Event:
        """Return the next valid event."""
        while True:
            event = await self._take()
            if event is not None:
                return event

    async def recv_raw(self) -> list[bytes]:
        """Return the next message's frames without validation (recorder)."""
        while True:
            frames = await self._sock.recv_multipart()
            if not self._is_control(frames):
                return list(frames)

    async def _take(self) -> Event | None:
        frames = await self._sock.recv_multipart()
        if self._is_control(frames):
            return None
        try:
            env = check_event_frames(frames)
        except EnvelopeError as exc:
            self.rejected += 1
            if self._on_reject is not None:
                self._on_reject(exc.reason, str(exc))
            return None
        if not topics.matches(env.kind, self._prefixes):
            return None  # an event outside our prefixes (a wider subscription of ours)
        self.received += 1
        self.gaps.observe(env.src, env.kind, env.seq)
        return Event(envelope=env, frames=tuple(frames[2:]))

    def _is_control(self, frames: list[bytes]) -> bool:
        if len(frames) != 1 or not frames[0].startswith(READY_PREFIX):
            return False
        if frames[0] == self._ready_topic:
            self._connected = True
        return True  # ours, or another subscriber's answer seen through a wide subscription

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self.recv()

    def close(self) -> None:
        """Close the socket."""
        closing(self._sock)


def attach(sock: zmq.Socket[Any], endpoint: str, *, bind: bool) -> None:
    """Bind or connect ``sock``; on failure close it and raise ConfigError naming the endpoint.

    An unclosed socket would keep its context from terminating, so a service that
    cannot bind (address in use, bad endpoint) would hang on its way out instead of
    exiting with the reason.
    """
    try:
        (sock.bind if bind else sock.connect)(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        raise ConfigError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {exc}") from exc


class BatchPusher:
    """Send frame batches to one stage of the simulation plane (PUSH)."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        *,
        src: str,
        bind: bool = False,
        hwm: int = BATCH_HWM,
    ) -> None:
        self.src = src
        self._seq = SeqCounter()
        self._sock = ctx.socket(zmq.PUSH)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        attach(self._sock, endpoint, bind=bind)

    async def send(
        self, batch: FrameBatch, *, t_sim: float, kind: str = topics.FRAME_BATCH
    ) -> None:
        """Send a batch; waits (back-pressure) while the receiver's queue is full."""
        wire = pack(kind, self.src, self._seq.take(kind), t_sim, time.time(), batch.header())
        await self._sock.send_multipart([kind.encode(), wire, *batch.wire_frames()], copy=False)

    def close(self) -> None:
        """Close the socket."""
        closing(self._sock)


class BatchPuller:
    """Receive frame batches (PULL); malformed messages are counted and skipped."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        *,
        bind: bool = True,
        hwm: int = BATCH_HWM,
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        self._sock = ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, hwm)
        self._sock.setsockopt(zmq.LINGER, 0)
        attach(self._sock, endpoint, bind=bind)
        self._on_reject = on_reject
        self.gaps = GapTracker()
        self.rejected = 0

    async def recv(self) -> tuple[Envelope, FrameBatch]:
        """Return the next valid batch with its envelope."""
        while True:
            frames = await self._sock.recv_multipart(copy=False)
            raw = [f.buffer for f in frames]
            try:
                env = check_event_frames([bytes(f) for f in raw[:2]])
                batch = FrameBatch.from_wire(env.body, raw[2:])
            except EnvelopeError as exc:
                self.rejected += 1
                if self._on_reject is not None:
                    self._on_reject(exc.reason, str(exc))
                continue
            self.gaps.observe(env.src, env.kind, env.seq)
            return env, batch

    def close(self) -> None:
        """Close the socket."""
        closing(self._sock)
