"""SML transport protocol version 1: escape sequences, padding and the file CRC.

Layout of one SML file::

    1B 1B 1B 1B  01 01 01 01      start sequence
    ...                            SML messages, then 0..n zero bytes of padding so
                                   that the end sequence sits on a 4-byte boundary
    1B 1B 1B 1B  1A nn c0 c1       end sequence: nn = padding count, c0 c1 = CRC-16/X-25
                                   over every byte before c0 (low byte first)

Escape sequences are recognised on 4-byte boundaries of the file, as libsml reads
them; four 1B bytes of data on such a boundary are sent twice.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from smtestbed.proto.sml.crc import crc16_x25_wire
from smtestbed.services._runtime.errors import ProtocolError

__all__ = ["ESCAPE", "START", "Unwrapped", "unwrap_file", "wrap_file"]

ESCAPE = b"\x1b\x1b\x1b\x1b"
START = ESCAPE + b"\x01\x01\x01\x01"
_END_TAG = 0x1A


@dataclass(frozen=True, slots=True, kw_only=True)
class Unwrapped:
    """The content of one SML file.

    Attributes:
        payload: the SML messages, unescaped, without padding.
        padding: the padding count from the end sequence.
        escapes: positions in ``payload`` where an escaped 1B1B1B1B begins.
        size: bytes of the file, start sequence to CRC.
    """

    payload: bytes
    padding: int
    escapes: tuple[int, ...]
    size: int

    def file_offset(self, pos: int) -> int:
        """Map a position in ``payload`` to the offset of that byte in the file."""
        return len(START) + pos + 4 * bisect_right(self.escapes, pos)


def unwrap_file(data: bytes) -> Unwrapped:
    """Check the framing and CRC of the SML file at the start of ``data``; unescape it.

    Bytes after the end sequence are ignored; ``Unwrapped.size`` tells where it ended.

    Raises:
        ProtocolError: no start sequence (``bad_start``), no end sequence
            (``truncated``), an unknown escape (``bad_escape``), bad padding
            (``bad_padding``) or a CRC mismatch (``bad_crc``).
    """
    if not data.startswith(START):
        raise ProtocolError("no SML start sequence 1B1B1B1B 01010101", reason="bad_start", offset=0)
    out, escapes, pos, search = bytearray(), [], len(START), len(START)
    while True:
        found = data.find(ESCAPE, search)
        if found < 0 or found + 8 > len(data):
            raise ProtocolError(
                "SML file has no end sequence", reason="truncated", offset=len(data)
            )
        if found % 4:
            search = found + 1
            continue
        out += data[pos:found]
        tag = data[found + 4 : found + 8]
        if tag == ESCAPE:
            escapes.append(len(out))
            out += ESCAPE
            pos = search = found + 8
        elif tag[0] == _END_TAG:
            return _finish(data, bytes(out), found, tuple(escapes))
        else:
            raise ProtocolError(
                f"unknown escape sequence 1B1B1B1B {tag.hex().upper()}",
                reason="bad_escape",
                offset=found,
            )


def _finish(data: bytes, out: bytes, end: int, escapes: tuple[int, ...]) -> Unwrapped:
    padding = data[end + 5]
    sent, computed = data[end + 6 : end + 8], crc16_x25_wire(data[: end + 6])
    if sent != computed:
        raise ProtocolError(
            f"bad SML file CRC: file says {sent.hex().upper()}, computed {computed.hex().upper()}",
            reason="bad_crc",
            offset=end + 6,
        )
    if padding > len(out) or any(out[len(out) - padding :]):
        raise ProtocolError(
            f"padding count {padding} does not match the zero bytes before the end sequence",
            reason="bad_padding",
            offset=end + 5,
        )
    return Unwrapped(
        payload=out[: len(out) - padding], padding=padding, escapes=escapes, size=end + 8
    )


def wrap_file(payload: bytes, *, padding: int | None = None) -> bytes:
    """Frame SML messages as one SML file: escape, pad, append end sequence and CRC.

    Args:
        payload: the encoded SML messages.
        padding: zero bytes to append; None for the fewest that align the end (0..3).

    Raises:
        ValueError: ``padding`` does not put the end sequence on a 4-byte boundary.
    """
    if padding is None:
        padding = -len(payload) % 4
    if (len(payload) + padding) % 4 or not 0 <= padding <= 255:
        raise ValueError(f"padding {padding} does not align {len(payload)} payload bytes")
    body = bytearray(START)
    for pos in range(0, len(payload), 4):
        block = payload[pos : pos + 4]
        body += ESCAPE + block if block == ESCAPE else block
    body += bytes(padding) + ESCAPE + bytes((_END_TAG, padding))
    return bytes(body + crc16_x25_wire(bytes(body)))
