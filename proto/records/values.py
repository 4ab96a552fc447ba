"""Data field codings of EN 13757-3: integers, BCD, real, LVAR.

- Integer (type B): little-endian two's complement, 1..8 bytes.
- BCD (type A): little-endian packed digits. A most significant nibble 0xF
  marks a negative number (its remaining digits are the magnitude). Other
  nibbles above 9 make the field invalid: it decodes to None.
- Real (type H): IEEE 754 single precision, little-endian.
- LVAR: one length byte, then 0x00..0xBF = that many ASCII characters sent
  last character first; 0xC0..0xC9 = positive BCD of (LVAR - 0xC0) bytes;
  0xD0..0xD9 = negative BCD; 0xE0..0xEF = binary of (LVAR - 0xE0) bytes;
  0xF0..0xF4 = binary number of 4 * (LVAR - 0xEC) bytes; 0xF5 = 48 bytes,
  0xF6 = 64 bytes. Other LVAR values are reserved.
"""

from __future__ import annotations

import struct

from smtestbed.proto.records.model import FIXED_LENGTHS, DataType, RawValue
from smtestbed.services._runtime.errors import ProtocolError

BCD_TYPES = frozenset({DataType.BCD2, DataType.BCD4, DataType.BCD6, DataType.BCD8, DataType.BCD12})
INT_TYPES = frozenset(
    {DataType.INT8, DataType.INT16, DataType.INT24, DataType.INT32, DataType.INT48, DataType.INT64}
)


def lvar_length(lvar: int, *, offset: int) -> int:
    """Return the number of data bytes after an LVAR byte.

    Raises:
        ProtocolError: ``reserved_lvar`` for LVAR values 0xDA..0xDF, 0xCA..0xCF, 0xF7..0xFF.
    """
    if lvar <= 0xBF:
        return lvar
    if 0xC0 <= lvar <= 0xC9 or 0xD0 <= lvar <= 0xD9:
        return lvar & 0x0F
    if 0xE0 <= lvar <= 0xEF:
        return lvar - 0xE0
    if 0xF0 <= lvar <= 0xF4:
        return 4 * (lvar - 0xEC)
    if lvar in (0xF5, 0xF6):
        return 48 if lvar == 0xF5 else 64
    raise ProtocolError(f"reserved LVAR value 0x{lvar:02X}", reason="reserved_lvar", offset=offset)


def field_length(data_type: DataType, data: bytes, pos: int, *, offset: int = 0) -> int:
    """Return the length of the data field starting at ``pos`` (LVAR byte included).

    ``offset`` is added to error offsets (position of ``data`` in a frame).

    Raises:
        ProtocolError: ``truncated`` when the LVAR byte is missing.
    """
    if data_type is not DataType.LVAR:
        return FIXED_LENGTHS[data_type]
    if pos >= len(data):
        raise ProtocolError(
            "premature end of record at LVAR", reason="truncated", offset=offset + pos
        )
    return 1 + lvar_length(data[pos], offset=offset + pos)


def decode_bcd(field: bytes) -> int | None:
    """Decode little-endian BCD with the 0xF negative convention; None if invalid."""
    digits = field[::-1].hex()
    negative = digits.startswith("f")
    if negative:
        digits = digits[1:]
    if not digits.isdigit():
        return None if digits else 0
    return -int(digits) if negative else int(digits)


def encode_bcd(value: int, size: int) -> bytes:
    """Encode ``value`` as ``size`` bytes of little-endian BCD (0xF sign for negatives)."""
    digits = size * 2
    if value < 0:
        if -value >= 10 ** (digits - 1):
            raise ValueError(f"{value} does not fit {digits - 1} BCD digits and a sign")
        return bytes.fromhex(f"f{-value:0{digits - 1}d}")[::-1]
    if value >= 10**digits:
        raise ValueError(f"{value} does not fit {digits} BCD digits")
    return bytes.fromhex(f"{value:0{digits}d}")[::-1]


def decode_field(data_type: DataType, field: bytes) -> RawValue:
    """Decode a data field (LVAR byte included) into its raw value."""
    if data_type in INT_TYPES:
        return int.from_bytes(field, "little", signed=True)
    if data_type in BCD_TYPES:
        return decode_bcd(field)
    if data_type is DataType.REAL32:
        return float(struct.unpack("<f", field)[0])
    if data_type is DataType.LVAR:
        return _decode_lvar(field[0], field[1:])
    return None


def _decode_lvar(lvar: int, body: bytes) -> RawValue:
    if lvar <= 0xBF:
        return body[::-1].decode("latin-1")
    if lvar <= 0xC9:
        return decode_bcd(body)
    if lvar <= 0xD9:
        magnitude = decode_bcd(body)
        return None if magnitude is None else -magnitude
    return body


def encode_field(data_type: DataType, raw: RawValue) -> bytes:
    """Encode a raw value as a data field of ``data_type`` (LVAR byte included).

    LVAR takes ``str`` (text), ``bytes`` (binary, up to 15 bytes: 0xE0 + n) or
    ``int`` (BCD: 0xC0/0xD0 + n).
    """
    size = FIXED_LENGTHS.get(data_type)
    if data_type in INT_TYPES and isinstance(raw, int) and size is not None:
        if not -(2 ** (8 * size - 1)) <= raw < 2 ** (8 * size - 1):
            raise ValueError(f"{raw} does not fit {data_type}")
        return raw.to_bytes(size, "little", signed=True)
    if data_type in BCD_TYPES and isinstance(raw, int) and size is not None:
        return encode_bcd(raw, size)
    if data_type is DataType.REAL32 and isinstance(raw, int | float):
        try:
            return struct.pack("<f", raw)
        except OverflowError as exc:
            raise ValueError(f"{raw} does not fit real32") from exc
    if data_type is DataType.LVAR:
        return _encode_lvar(raw)
    if size == 0 and raw is None:
        return b""
    raise ValueError(f"cannot encode {raw!r} as {data_type}")


def _encode_lvar(raw: RawValue) -> bytes:
    if isinstance(raw, str):
        text = raw.encode("latin-1")[::-1]
        if len(text) > 0xBF:
            raise ValueError("LVAR text longer than 191 characters")
        return bytes([len(text)]) + text
    if isinstance(raw, bytes):
        if len(raw) > 15:
            raise ValueError("LVAR binary longer than 15 bytes")
        return bytes([0xE0 + len(raw)]) + raw
    if isinstance(raw, int):
        digits = len(str(abs(raw)))
        size = (digits + 1) // 2
        return bytes([(0xD0 if raw < 0 else 0xC0) + size]) + encode_bcd(abs(raw), size)
    raise ValueError(f"cannot encode {raw!r} as LVAR")
