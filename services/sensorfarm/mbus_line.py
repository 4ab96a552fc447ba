"""A wired M-Bus line: several slaves on one byte stream, with collisions.

The master's bytes reach every slave; every slave that answers a frame does
so at the same moment, and the master receives what the bus makes of the
overlapping replies.

Collision model. Slaves talk to the master by current modulation: a mark
(1 bit, and the idle line) draws the quiescent current, a space (0 bit)
draws 11-20 mA more. The master reads a space whenever the current is raised,
so when several slaves send at once it reads a 0 wherever any of them sends
a 0: the line is a wired AND. Replies start together at the same baud rate,
so their UART characters line up (start bits 0, stop bits 1) and the master
receives the bitwise AND of the replies byte by byte; past the end of a
shorter reply that slave is idle (all 1s), so the tail of the longest reply
comes through unchanged. Identical replies (``E5`` from two slaves) are
indistinguishable from one, as on a real bus; different telegrams almost
always fail the checksum or the framing, which masters report as a collision.

Byte stream. :class:`FrameAssembler` cuts frames out of the stream like a
slave's UART receiver: bytes that cannot start a frame and frames with a bad
checksum are dropped (no answer), and an incomplete frame is thrown away once
the line has been idle for ``idle_timeout`` seconds, so a garbled start never
blocks the next request.

Interruption. :meth:`MbusLine.interrupt` cuts the line: nothing reaches the
slaves and nothing comes back until :meth:`MbusLine.restore`. The slaves keep
their state (addresses, selection, counters), as battery-powered meters do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from smtestbed.proto.mbus import Frame, split_frames
from smtestbed.services.sensorfarm.mbus_slave import MbusSlave

IDLE_BYTE = 0xFF
DEFAULT_IDLE_TIMEOUT = 0.2
"""Seconds of silence after which a partial frame is discarded."""


def collide(replies: Sequence[bytes]) -> bytes:
    """Return what the master receives when all ``replies`` are sent at once.

    The bitwise AND of the replies, each padded with idle bytes (0xFF) to the
    longest one; one reply comes through unchanged, none gives no bytes.
    """
    if len(replies) <= 1:
        return replies[0] if replies else b""
    size = max(len(reply) for reply in replies)
    out = bytearray([IDLE_BYTE]) * size
    for reply in replies:
        for index, byte in enumerate(reply):
            out[index] &= byte
    return bytes(out)


class FrameAssembler:
    """Cut master frames out of a byte stream (one per connection or port).

    Args:
        idle_timeout: seconds of silence after which a partial frame is dropped.
        clock: monotonic time in seconds.
    """

    def __init__(
        self,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._buffer = b""
        self._last_byte_at = 0.0
        self.bytes_discarded = 0

    def push(self, data: bytes) -> tuple[Frame, ...]:
        """Add received bytes; return the frames they complete."""
        now = self._clock()
        if self._buffer and now - self._last_byte_at > self._idle_timeout:
            self.discard()
        self._last_byte_at = now
        frames, self._buffer = split_frames(self._buffer + data)
        return frames

    def discard(self) -> None:
        """Drop a partial frame (idle timeout, line cut)."""
        self.bytes_discarded += len(self._buffer)
        self._buffer = b""


class MbusLine:
    """Slaves sharing one M-Bus line (see the module docstring for the model).

    Args:
        slaves: the slaves on the line.
        idle_timeout: see :class:`FrameAssembler`.
        clock: monotonic time in seconds.
    """

    def __init__(
        self,
        slaves: Iterable[MbusSlave] = (),
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slaves = list(slaves)
        self._idle_timeout = idle_timeout
        self._clock = clock
        self._assembler = self.assembler()
        self._interrupted = False
        self.frames_received = 0
        self.replies_sent = 0
        self.collisions = 0

    @property
    def slaves(self) -> tuple[MbusSlave, ...]:
        """Return the slaves on the line."""
        return tuple(self._slaves)

    @property
    def interrupted(self) -> bool:
        """Tell whether the line is cut."""
        return self._interrupted

    def add(self, slave: MbusSlave) -> None:
        """Connect another slave to the line."""
        self._slaves.append(slave)

    def interrupt(self) -> None:
        """Cut the line: the slaves hear nothing and answer nothing."""
        self._interrupted = True
        self._assembler.discard()

    def restore(self) -> None:
        """Reconnect a cut line."""
        self._interrupted = False

    def assembler(self) -> FrameAssembler:
        """Return a new frame assembler with this line's idle timeout and clock."""
        return FrameAssembler(idle_timeout=self._idle_timeout, clock=self._clock)

    def feed(self, data: bytes, assembler: FrameAssembler | None = None) -> bytes:
        """Put master bytes on the line; return the bytes the master gets back.

        Args:
            data: bytes from the master, any chunking.
            assembler: the stream state of this master's connection (default:
                the line's own, for a line with one master).
        """
        receiver = assembler or self._assembler
        if self._interrupted:
            receiver.discard()
            return b""
        return b"".join(self.transact(frame) for frame in receiver.push(data))

    def transact(self, frame: Frame) -> bytes:
        """Deliver one frame to every slave; return the (possibly collided) answer."""
        if self._interrupted:
            return b""
        self.frames_received += 1
        replies = [reply for slave in self._slaves if (reply := slave.handle(frame)) is not None]
        if replies:
            self.replies_sent += 1
        if len(replies) > 1:
            self.collisions += 1
        return collide(replies)

    def counters(self) -> dict[str, int]:
        """Return the line's counters (frames, replies, collisions)."""
        return {
            "frames_received": self.frames_received,
            "replies_sent": self.replies_sent,
            "collisions": self.collisions,
            "bytes_discarded": self._assembler.bytes_discarded,
        }
