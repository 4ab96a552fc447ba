"""The event proxy: XSUB (publishers) -> validation -> XPUB (subscribers).

It runs in a thread of its own with blocking sockets, because every event of
the testbed passes through it and an event loop per message would halve the
rate. An event whose frames or envelope are wrong is dropped, counted, and
reported as a ``bus.rejected`` event published from here.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import zmq
from smtestbed.proto import topics
from smtestbed.proto.envelope import EnvelopeError, pack, validate_event
from smtestbed.services._runtime.bus import READY_PREFIX, RejectReporter, SeqCounter
from smtestbed.services._runtime.errors import ServiceError

INPROC = "inproc://smtb-broker-events"
# A subscription the broker keeps for itself, so that every publisher gets at
# least one subscription message on connecting and knows the broker is there.
SENTINEL_TOPIC = b"~broker"
DRAIN = 4096


class EventProxy(threading.Thread):
    """Forward events between the bus's XSUB and XPUB sockets."""

    def __init__(
        self, ctx: zmq.Context[Any], *, pub: str, sub: str, src: str, validate: bool = True
    ) -> None:
        super().__init__(name="event-proxy", daemon=True)
        self._ctx, self._pub, self._sub = ctx, pub, sub
        self._validate = validate
        self._src = src
        self._halt = threading.Event()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._seq = SeqCounter()
        self._xpub: zmq.Socket[Any] | None = None
        self.rejects = RejectReporter(self._publish_rejected)
        self.forwarded = 0
        self.forwarded_bytes = 0

    def start_and_wait(self, timeout: float = 5.0) -> None:
        """Start the thread; raise ServiceError when it cannot bind."""
        self.start()
        if not self._started.wait(timeout):
            raise ServiceError("event proxy did not start")
        if self._error is not None:
            raise ServiceError(f"event proxy cannot bind: {self._error}") from self._error

    def stop(self) -> None:
        """Ask the thread to end and wait for it."""
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)

    def run(self) -> None:
        try:
            xsub, xpub = self._bind()
        except zmq.ZMQError as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            self._loop(xsub, xpub)
        finally:
            xsub.close(linger=0)
            xpub.close(linger=0)

    def _bind(self) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
        xsub: zmq.Socket[Any] = zmq.Socket(self._ctx, zmq.XSUB)
        xpub: zmq.Socket[Any] = zmq.Socket(self._ctx, zmq.XPUB)
        for sock in (xsub, xpub):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
        try:
            xsub.bind(self._pub)
            xsub.bind(INPROC)
            xpub.bind(self._sub)
        except zmq.ZMQError:
            xsub.close(linger=0)
            xpub.close(linger=0)
            raise
        xsub.send(b"\x01" + SENTINEL_TOPIC)
        self._xpub = xpub
        return xsub, xpub

    def _loop(self, xsub: zmq.Socket[Any], xpub: zmq.Socket[Any]) -> None:
        poller = zmq.Poller()
        poller.register(xsub, zmq.POLLIN)
        poller.register(xpub, zmq.POLLIN)
        while not self._halt.is_set():
            ready = dict(poller.poll(100))
            if xpub in ready:
                self._pass_subscriptions(xpub, xsub)
            if xsub in ready:
                self._pump(xsub, xpub)

    @staticmethod
    def _pass_subscriptions(xpub: zmq.Socket[Any], xsub: zmq.Socket[Any]) -> None:
        while True:
            try:
                message = xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            xsub.send(message)
            if message[:1] == b"\x01" and message[1:].startswith(READY_PREFIX):
                # the subscriber's own topic, subscribed last: its subscriptions are all
                # on their way to the publishers now
                xpub.send(message[1:])

    def _pump(self, xsub: zmq.Socket[Any], xpub: zmq.Socket[Any]) -> None:
        # Frame by frame rather than recv_multipart: the topic and envelope
        # are copied (small, validated), raw payload frames after them are
        # passed on without a copy (frame batches are large).
        recv, send = xsub.recv, xpub.send
        more, validate = zmq.SNDMORE, self._validate
        for _ in range(DRAIN):
            try:
                topic = recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not xsub.rcvmore:
                self.rejects.report("frames", "event has 1 frame, needs >= 2", where="broker/proxy")
                continue
            wire = recv()
            extra = [recv(copy=False) for _ in iter(lambda: xsub.rcvmore, False)]
            if validate:
                try:
                    validate_event(topic, wire)
                except EnvelopeError as exc:
                    self.rejects.report(exc.reason, str(exc), where="broker/proxy")
                    continue
            send(topic, more)
            send(wire, more if extra else 0)
            size = len(topic) + len(wire)
            for i, frame in enumerate(extra, 1):
                send(frame, more if i < len(extra) else 0, copy=False)
                size += len(frame.buffer)
            self.forwarded += 1
            self.forwarded_bytes += size

    def _publish_rejected(self, body: dict[str, Any]) -> None:
        if self._xpub is None:
            return
        kind = topics.BUS_REJECTED
        wire = pack(kind, self._src, self._seq.take(kind), time.time(), time.time(), body)
        self._xpub.send_multipart([kind.encode(), wire])
