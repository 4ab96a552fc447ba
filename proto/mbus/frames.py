"""Wired M-Bus link layer (EN 13757-2): the four telegram formats.

Byte layouts:

- single character: ``E5``
- short frame: ``10 C A CS 16``
- control frame: ``68 03 03 68 C A CI CS 16``
- long frame: ``68 L L 68 C A CI data... CS 16`` with L = 3 + len(data)
  (3..255) and CS = sum of C, A, CI and data modulo 256.

A control frame is a long frame without data; :func:`parse_frame` returns it as
:class:`ControlFrame` so that ``68 03 03 68`` never yields an empty long frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.services._runtime.errors import ProtocolError

ACK_BYTE = 0xE5
SHORT_START = 0x10
LONG_START = 0x68
STOP = 0x16
MAX_DATA = 252
"""Longest data part of a long frame: L = 255 minus C, A and CI."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """Single character E5: acknowledgement."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ShortFrame:
    """Short frame: control field and address only (SND_NKE, REQ_UD2, ...)."""

    c: int
    a: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlFrame:
    """Control frame: a long frame with C, A, CI and no data."""

    c: int
    a: int
    ci: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LongFrame:
    """Long frame: C, A, CI and 1..252 data bytes."""

    c: int
    a: int
    ci: int
    data: bytes


Frame = Ack | ShortFrame | ControlFrame | LongFrame


def checksum(body: bytes) -> int:
    """Return the M-Bus checksum: arithmetic sum of ``body`` modulo 256."""
    return sum(body) & 0xFF


def encode_ack() -> bytes:
    """Encode the single character acknowledgement."""
    return bytes([ACK_BYTE])


def encode_short(c: int, a: int) -> bytes:
    """Encode a short frame ``10 C A CS 16``."""
    body = bytes([c, a])
    return bytes([SHORT_START]) + body + bytes([checksum(body), STOP])


def encode_control(c: int, a: int, ci: int) -> bytes:
    """Encode a control frame ``68 03 03 68 C A CI CS 16``."""
    return _encode_long_body(bytes([c, a, ci]))


def encode_long(c: int, a: int, ci: int, data: bytes) -> bytes:
    """Encode a long frame ``68 L L 68 C A CI data CS 16``.

    Raises:
        ValueError: when ``data`` is empty or longer than 252 bytes.
    """
    if not 1 <= len(data) <= MAX_DATA:
        raise ValueError(f"long frame data must be 1..{MAX_DATA} bytes, got {len(data)}")
    return _encode_long_body(bytes([c, a, ci]) + data)


def _encode_long_body(body: bytes) -> bytes:
    length = len(body)
    head = bytes([LONG_START, length, length, LONG_START])
    return head + body + bytes([checksum(body), STOP])


def encode_frame(frame: Frame) -> bytes:
    """Encode any frame kind."""
    if isinstance(frame, Ack):
        return encode_ack()
    if isinstance(frame, ShortFrame):
        return encode_short(frame.c, frame.a)
    if isinstance(frame, ControlFrame):
        return encode_control(frame.c, frame.a, frame.ci)
    return encode_long(frame.c, frame.a, frame.ci, frame.data)


def parse_frame(data: bytes) -> Frame:
    """Parse exactly one frame.

    Raises:
        ProtocolError: ``truncated``, ``bad_start``, ``bad_length``,
            ``bad_checksum``, ``missing_stop`` or ``trailing_bytes``.
    """
    frame, size = _parse_prefix(data)
    if size < len(data):
        raise ProtocolError(
            f"{len(data) - size} bytes after the end of the frame",
            reason="trailing_bytes",
            offset=size,
        )
    return frame


def frame_size(data: bytes) -> int | None:
    """Return the size of the frame that starts ``data``, or None if more bytes are needed.

    Raises:
        ProtocolError: ``bad_start`` or ``bad_length`` when no frame can start here.
    """
    if not data:
        return None
    start = data[0]
    if start == ACK_BYTE:
        return 1
    if start == SHORT_START:
        return 5
    if start != LONG_START:
        raise ProtocolError(f"no frame starts with 0x{start:02X}", reason="bad_start", offset=0)
    if len(data) < 4:
        return None
    _check_long_head(data)
    return data[1] + 6


def _check_long_head(data: bytes) -> None:
    if data[1] != data[2]:
        raise ProtocolError(
            f"L fields differ (0x{data[1]:02X} and 0x{data[2]:02X})", reason="bad_length", offset=2
        )
    if data[1] < 3:
        raise ProtocolError(f"L field {data[1]} is below 3", reason="bad_length", offset=1)
    if data[3] != LONG_START:
        raise ProtocolError("second start byte 0x68 missing", reason="bad_start", offset=3)


def _parse_prefix(data: bytes) -> tuple[Frame, int]:
    size = frame_size(data)
    if size is None or len(data) < size:
        have = len(data)
        raise ProtocolError(
            f"frame truncated: {have} of {size or 'at least 4'} bytes",
            reason="truncated",
            offset=have,
        )
    if size == 1:
        return Ack(), 1
    body = bytes(data[1:3]) if size == 5 else bytes(data[4 : size - 2])
    if data[size - 2] != checksum(body):
        raise ProtocolError(
            f"checksum 0x{data[size - 2]:02X} should be 0x{checksum(body):02X}",
            reason="bad_checksum",
            offset=size - 2,
        )
    if data[size - 1] != STOP:
        raise ProtocolError("stop byte 0x16 missing", reason="missing_stop", offset=size - 1)
    return _build(body, size), size


def _build(body: bytes, size: int) -> Frame:
    if size == 5:
        return ShortFrame(c=body[0], a=body[1])
    if len(body) == 3:
        return ControlFrame(c=body[0], a=body[1], ci=body[2])
    return LongFrame(c=body[0], a=body[1], ci=body[2], data=body[3:])


def split_frames(buffer: bytes) -> tuple[tuple[Frame, ...], bytes]:
    """Take the complete frames off the front of a serial/TCP byte stream.

    Bytes that cannot start a valid frame (noise, a frame with a bad checksum)
    are dropped one at a time, so a good frame after garbage is still found;
    masters treat such noise as a collision and retry.

    Returns:
        The frames found and the unconsumed tail (an incomplete frame).
    """
    frames: list[Frame] = []
    pos = 0
    while pos < len(buffer):
        view = buffer[pos:]
        try:
            size = frame_size(view)
            if size is None or size > len(view):
                break
            frame, size = _parse_prefix(view[:size])
        except ProtocolError:
            pos += 1
            continue
        frames.append(frame)
        pos += size
    return tuple(frames), bytes(buffer[pos:])
