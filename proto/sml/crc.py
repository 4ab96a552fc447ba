"""CRC-16/X-25 as SML uses it for the file end sequence and every SML_Message."""

from __future__ import annotations

__all__ = ["crc16_x25", "crc16_x25_wire"]


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_x25(data: bytes) -> int:
    """Compute CRC-16/X-25 (poly 0x1021 reflected, init 0xFFFF, xorout 0xFFFF).

    The check value of b"123456789" is 0x906E.
    """
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _TABLE[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def crc16_x25_wire(data: bytes) -> bytes:
    """Return the CRC of ``data`` as the 2 bytes SML puts on the wire (low byte first).

    Meters send the X-25 value least significant byte first both in the file end
    sequence and in the ``crc16`` field of an SML_Message (where the Unsigned16 thus
    reads byte-swapped).
    """
    return crc16_x25(data).to_bytes(2, "little")
