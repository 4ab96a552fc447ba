"""Wireless M-Bus link layer (EN 13757-4): header and the CRC blocks of frame formats A and B.

A telegram "without CRCs" (as receiving dongles deliver it) is ``L C M(2) A(6) CI ...`` where
L counts the bytes after L. On air the link layer inserts CRCs (2 bytes, MSB first):

Format A (L counts bytes after L without CRCs)::

    block 1: L C M(2) A(6)            10 bytes + CRC
    block 2..: 16 bytes each + CRC    the last block holds (L - 9) mod 16 bytes (if not 0)

Format B (L counts all bytes after L including CRCs)::

    block 1+2: L C M A CI ...         up to 126 bytes, one CRC over all of them
    block 3:   the rest               up to 126 bytes + CRC (only if the frame is longer)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from smtestbed.proto.wmbus.crc import (
    BlockLayout,
    block_layout,
    crc16,
    crc16_span,
    first_bad_block,
)
from smtestbed.proto.wmbus.fields import MeterAddress, c_field_name
from smtestbed.services._runtime.errors import ProtocolError

HEADER_SIZE = 10  # L C M(2) A(6)
BLOCK_SIZE = 16  # format A data bytes per block after block 1
B_FIRST_SIZE = 126  # format B: data bytes of block 1 + block 2
MAX_B_LENGTH = 255


class FrameFormat(enum.StrEnum):
    """Link-layer frame format (EN 13757-4)."""

    A = "A"
    B = "B"


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkHeader:
    """The first 10 bytes of a telegram: ``L C M(2) A(6)``.

    Attributes:
        length: the L-field as in the CRC-less form (bytes after L, CRCs not counted).
        c_field: the C-field (``SND_NR`` 0x44 for a normal meter telegram).
        address: M-field and A-field of the sender.
    """

    length: int
    c_field: int
    address: MeterAddress

    @property
    def c_name(self) -> str:
        """Name of the C-field (``SND_NR``, ...)."""
        return c_field_name(self.c_field)

    def to_bytes(self) -> bytes:
        """Return the 10 header bytes."""
        return bytes((self.length, self.c_field)) + self.address.link_order()


def decode_link_header(data: bytes) -> LinkHeader:
    """Decode the link header of a telegram without CRCs and check its L-field.

    Raises:
        ProtocolError: fewer than 10 bytes (``truncated``) or L is not ``len(data) - 1``
            (``bad_length``).
    """
    if len(data) < HEADER_SIZE:
        raise ProtocolError(
            f"telegram of {len(data)} bytes is shorter than the 10-byte link header",
            reason="truncated",
            offset=len(data),
        )
    if data[0] != len(data) - 1:
        raise ProtocolError(
            f"L-field says {data[0]} bytes follow, {len(data) - 1} do",
            reason="bad_length",
            offset=0,
        )
    return _link_header(data[:HEADER_SIZE])


@lru_cache(maxsize=4096)
def _link_header(head: bytes) -> LinkHeader:
    # A receiver hears the same meters over and over; the header is immutable, so one
    # object per distinct header serves every telegram of that meter and length.
    return LinkHeader(
        length=head[0], c_field=head[1], address=MeterAddress.from_link_order(head, 2)
    )


def _check_block(frame: bytes, start: int, end: int, number: int) -> None:
    """Raise ``bad_crc`` unless the CRC at ``frame[end:end+2]`` covers ``frame[start:end]``."""
    if end + 2 > len(frame):
        raise ProtocolError(
            f"frame ends inside block {number}", reason="truncated", offset=len(frame)
        )
    found = frame[end] << 8 | frame[end + 1]
    wanted = crc16_span(frame, start, end)
    if found != wanted:
        raise ProtocolError(
            f"CRC of block {number} is 0x{found:04X}, computed 0x{wanted:04X}",
            reason="bad_crc",
            offset=end,
        )


@lru_cache(maxsize=256)
def _a_blocks(length: int) -> tuple[tuple[int, int], ...]:
    """Return (start, end) of each data block after block 1 of a format A frame."""
    blocks, pos, left = [], HEADER_SIZE + 2, length - (HEADER_SIZE - 1)
    while left > 0:
        take = min(left, BLOCK_SIZE)
        blocks.append((pos, pos + take))
        pos, left = pos + take + 2, left - take
    return tuple(blocks)


@lru_cache(maxsize=256)
def _a_layout(length: int) -> BlockLayout:
    """Return the block layout of a whole format A frame whose L-field is ``length``."""
    rest = (length - (HEADER_SIZE - 1)) % BLOCK_SIZE
    sizes = (BLOCK_SIZE,) * ((length - (HEADER_SIZE - 1)) // BLOCK_SIZE) + ((rest,) if rest else ())
    return block_layout((HEADER_SIZE, *sizes))


def _join_a(frame: bytes, layout: BlockLayout) -> bytes:
    return b"".join([frame[start:end] for start, end in layout.spans])


class _FormatACheck:
    """Check format A block CRCs in pure Python until numba pays for its load, then compiled.

    Importing numba and loading the cached kernel takes about half a second, ten times what a
    one-shot decode costs; the compiled check saves about 3 us per frame. So the first frames
    go through the one-``unpack`` Python check and a long-running decoder switches over.
    """

    __slots__ = ("_left", "run")

    def __init__(self, python_frames: int) -> None:
        self._left = python_frames
        self.run: Callable[[bytes], tuple[int, bytes]] = self._python

    def _python(self, frame: bytes) -> tuple[int, bytes]:
        self._left -= 1  # a lost update between threads only delays the switch
        if self._left <= 0:
            self.load()
        layout = _a_layout(frame[0])
        bad = first_bad_block(frame, layout)
        return bad, (b"" if bad else _join_a(frame, layout))

    def load(self) -> None:
        from smtestbed.proto.wmbus.crc_kernel import strip_format_a  # imports numba

        self.run = strip_format_a


_A_CHECK = _FormatACheck(python_frames=256)


def load_crc_kernel() -> None:
    """Switch the format A CRC check to the compiled kernel now.

    Otherwise that happens after the first 256 format A frames. A long-running decoder calls
    this at start-up so the load (about 0.5 s, seconds when compiling the first time) does
    not stall a telegram.
    """
    _A_CHECK.load()


def strip_crcs_a_batch(frames: list[bytes]) -> list[bytes | None]:
    """Check and remove the block CRCs of many format A frames in one compiled call.

    Returns:
        Per frame what :func:`strip_crcs_a` returns, or None where it raises (call it for
        that frame to learn why).
    """
    from smtestbed.proto.wmbus.crc_kernel import strip_format_a_batch  # imports numba

    return strip_format_a_batch(frames)


def format_a_size(length: int) -> int:
    """Return the on-air size of a format A frame whose L-field is ``length``."""
    rest = length - (HEADER_SIZE - 1)
    return HEADER_SIZE + 2 + rest + 2 * (-(-rest // BLOCK_SIZE))


def add_crcs_a(data: bytes) -> bytes:
    """Insert format A block CRCs into a telegram without CRCs (L unchanged).

    Raises:
        ProtocolError: the telegram is shorter than its header or L does not fit its size.
    """
    decode_link_header(data)
    out = bytearray(data[:HEADER_SIZE])
    out += crc16(out).to_bytes(2, "big")
    view = memoryview(data)
    for start in range(HEADER_SIZE, len(data), BLOCK_SIZE):
        block = view[start : start + BLOCK_SIZE]
        out += block
        out += crc16(block).to_bytes(2, "big")
    return bytes(out)


def strip_crcs_a(frame: bytes) -> bytes:
    """Check and remove the block CRCs of a format A frame.

    Raises:
        ProtocolError: ``bad_crc`` naming the block, ``truncated`` when the frame ends inside
            a block, ``bad_length`` when the L-field does not match the frame size.
    """
    if not frame:
        raise ProtocolError("empty frame", reason="truncated", offset=0)
    length = frame[0]
    if length < HEADER_SIZE - 1:
        raise ProtocolError(
            f"L-field {length} is shorter than a header", reason="bad_length", offset=0
        )
    size = format_a_size(length)
    if len(frame) == size:
        bad, data = _A_CHECK.run(frame)
        if not bad:
            return data
    _check_block(frame, 0, HEADER_SIZE, 1)
    if len(frame) > size:
        raise ProtocolError(
            f"format A frame with L={length} has {size} bytes, got {len(frame)}",
            reason="bad_length",
            offset=0,
        )
    parts = [frame[:HEADER_SIZE]]
    for number, (start, end) in enumerate(_a_blocks(length), 2):
        _check_block(frame, start, end, number)
        parts.append(frame[start:end])
    return b"".join(parts)


def add_crcs_b(data: bytes) -> bytes:
    """Turn a telegram without CRCs into a format B frame (L rewritten to count CRCs).

    Raises:
        ProtocolError: the telegram does not fit format B (more than 251 bytes after L) or
            its L-field is wrong.
    """
    decode_link_header(data)
    size = len(data)
    crcs = 2 if size <= B_FIRST_SIZE else 4
    if size - 1 + crcs > MAX_B_LENGTH:
        raise ProtocolError(
            f"{size} bytes do not fit a format B frame", reason="too_long", offset=0
        )
    out = bytearray(data[:B_FIRST_SIZE])
    out[0] = size - 1 + crcs
    out += crc16(out).to_bytes(2, "big")
    if size > B_FIRST_SIZE:
        tail = data[B_FIRST_SIZE:]
        out += tail + crc16(tail).to_bytes(2, "big")
    return bytes(out)


def strip_crcs_b(frame: bytes) -> bytes:
    """Check and remove the CRCs of a format B frame; L is rewritten to the CRC-less count.

    Raises:
        ProtocolError: ``bad_crc`` naming the block, ``truncated``, or ``bad_length``.
    """
    if not frame:
        raise ProtocolError("empty frame", reason="truncated", offset=0)
    length = frame[0]
    if length < HEADER_SIZE + 1:
        raise ProtocolError(
            f"L-field {length} is too short for format B", reason="bad_length", offset=0
        )
    if len(frame) != length + 1:
        reason = "truncated" if len(frame) < length + 1 else "bad_length"
        raise ProtocolError(
            f"format B L-field says {length} bytes follow, {len(frame) - 1} do",
            reason=reason,
            offset=min(len(frame), length + 1),
        )
    if length + 1 <= B_FIRST_SIZE + 2:
        _check_block(frame, 0, length - 1, 2)
        out = bytearray(frame[: length - 1])
    else:
        _check_block(frame, 0, B_FIRST_SIZE, 2)
        if length + 1 < B_FIRST_SIZE + 2 + 3:
            raise ProtocolError("format B block 3 is empty", reason="bad_length", offset=0)
        _check_block(frame, B_FIRST_SIZE + 2, length - 1, 3)
        out = bytearray(frame[:B_FIRST_SIZE]) + frame[B_FIRST_SIZE + 2 : length - 1]
    out[0] = len(out) - 1
    return bytes(out)


def detect_format(frame: bytes) -> FrameFormat:
    """Guess the frame format from the L-field, the size and the first CRC.

    A frame whose size fits format A and whose first block carries a valid CRC is format A;
    otherwise format B, whose own checks then name the fault.
    """
    if _fits_a(frame):
        crc = frame[HEADER_SIZE] << 8 | frame[HEADER_SIZE + 1]
        if crc == crc16_span(frame, 0, HEADER_SIZE):
            return FrameFormat.A
    return FrameFormat.B


def strip_crcs(frame: bytes, frame_format: FrameFormat | None = None) -> tuple[bytes, FrameFormat]:
    """Check and remove link-layer CRCs of format A or B (detected when not given).

    Returns:
        The telegram without CRCs (L counts the bytes after L) and the frame format.
    """
    if frame_format is None and _fits_a(frame):
        bad, data = _A_CHECK.run(frame)
        if bad == 0:
            return data, FrameFormat.A
        frame_format = FrameFormat.B if bad == 1 else FrameFormat.A
    fmt = detect_format(frame) if frame_format is None else frame_format
    data = strip_crcs_a(frame) if fmt is FrameFormat.A else strip_crcs_b(frame)
    return data, fmt


def _fits_a(frame: bytes) -> bool:
    """Tell whether the size of ``frame`` is that of a format A frame with its L-field."""
    return len(frame) >= HEADER_SIZE + 2 and len(frame) == format_a_size(frame[0])


def add_crcs(data: bytes, frame_format: FrameFormat = FrameFormat.A) -> bytes:
    """Insert link-layer CRCs into a telegram without CRCs, in format A or B."""
    return add_crcs_a(data) if frame_format is FrameFormat.A else add_crcs_b(data)
