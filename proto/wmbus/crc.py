"""CRC-16 of the wireless M-Bus link layer (EN 13757-4).

Polynomial 0x3D65, initial value 0, no bit reflection, result complemented. On air the
CRC follows its block most significant byte first. Check value for b"123456789": 0xC2B7.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

POLY = 0x3D65


def _byte_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ POLY) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return tuple(table)


_T8 = _byte_table()


def byte_table() -> tuple[int, ...]:
    """Return the 256-entry byte table: ``T[i]`` is the CRC register after shifting in ``i``."""
    return _T8


def _word_table() -> tuple[int, ...]:
    # A 16-bit register shifts out completely after two bytes, so the update for a whole
    # big-endian word w is T16[crc ^ w]: half the Python loop iterations of a byte table.
    table = [0] * 65536
    for word in range(65536):
        crc = _T8[word >> 8]
        table[word] = ((crc << 8) & 0xFFFF) ^ _T8[(crc >> 8) ^ (word & 0xFF)]
    return tuple(table)


_T16 = _word_table()
_WORDS = [struct.Struct(f">{n}H") for n in range(129)]


def crc16(data: bytes | bytearray | memoryview) -> int:
    """Return the EN 13757-4 CRC of ``data`` (complemented, as sent on air)."""
    size = len(data)
    pairs = size >> 1
    crc = 0
    if pairs < len(_WORDS):
        words = _WORDS[pairs].unpack_from(data)
    else:
        words = struct.unpack_from(f">{pairs}H", data)
    for word in words:
        crc = _T16[crc ^ word]
    if size & 1:
        crc = ((crc << 8) & 0xFFFF) ^ _T8[(crc >> 8) ^ data[size - 1]]
    return crc ^ 0xFFFF


def crc16_span(data: bytes, start: int, end: int) -> int:
    """Return the CRC of ``data[start:end]`` without slicing (hot path of the link layer)."""
    pairs = (end - start) >> 1
    crc = 0
    table = _T16
    words = _WORDS[pairs] if pairs < len(_WORDS) else struct.Struct(f">{pairs}H")
    for word in words.unpack_from(data, start):
        crc = table[crc ^ word]
    if (end - start) & 1:
        crc = ((crc << 8) & 0xFFFF) ^ _T8[(crc >> 8) ^ data[end - 1]]
    return crc ^ 0xFFFF


@dataclass(frozen=True, slots=True)
class BlockLayout:
    """Where the CRC'd blocks of a frame lie, for checking them all with one ``unpack``.

    Attributes:
        words: unpacks the whole frame as, per block, its big-endian 16-bit words, its odd
            last byte if any, then its CRC.
        plan: per block, the index of its first word, of its CRC and whether a byte is odd.
        spans: per block, (start, end) of its data bytes in the frame.
    """

    words: struct.Struct
    plan: tuple[tuple[int, int, bool], ...]
    spans: tuple[tuple[int, int], ...]


@lru_cache(maxsize=512)
def block_layout(sizes: tuple[int, ...]) -> BlockLayout:
    """Return the layout of consecutive blocks of ``sizes`` data bytes, each + a 2-byte CRC."""
    fmt, plan, spans, word, pos = [">"], [], [], 0, 0
    for size in sizes:
        pairs, odd = size >> 1, bool(size & 1)
        fmt.append(f"{pairs}H{'B' if odd else ''}H")
        plan.append((word, word + pairs + odd, odd))
        spans.append((pos, pos + size))
        word, pos = word + pairs + odd + 1, pos + size + 2
    return BlockLayout(struct.Struct("".join(fmt)), tuple(plan), tuple(spans))


def first_bad_block(data: bytes, layout: BlockLayout) -> int:
    """Return the 1-based number of the first block whose CRC fails, 0 when all match.

    ``data`` must be exactly ``layout.words.size`` bytes long.
    """
    words = layout.words.unpack(data)
    table = _T16
    for number, (first, check, odd) in enumerate(layout.plan, 1):
        crc = 0
        for word in words[first : check - odd]:
            crc = table[crc ^ word]
        if odd:
            crc = ((crc << 8) & 0xFFFF) ^ _T8[(crc >> 8) ^ words[check - 1]]
        if crc ^ 0xFFFF != words[check]:
            return number
    return 0
