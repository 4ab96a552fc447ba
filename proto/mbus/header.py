"""Identification fields shared by wired M-Bus headers: ID, manufacturer, medium.

- ID: 4 bytes BCD, least significant byte first (8 digits).
- Manufacturer: 2 bytes little-endian, three letters of 5 bits each
  (A = 1 .. Z = 26): value = (c1 - 64) * 1024 + (c2 - 64) * 32 + (c3 - 64).
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.services._runtime.errors import ProtocolError

VARIABLE_HEADER_SIZE = 12


@dataclass(frozen=True, slots=True, kw_only=True)
class SlaveInfo:
    """The 12-byte header of variable data (CI 0x72).

    Layout: ID(4, BCD, LSB first) manufacturer(2, LE) version(1) medium(1)
    access number(1) status(1) signature(2, LE).

    Attributes:
        ident: the 8 ID digits as a string (hex digits when not valid BCD).
        manufacturer: three-letter FLAG code.
        manufacturer_code: the 16-bit value the letters come from.
        version: device version/generation.
        medium: device type code (0x07 water, 0x04 heat, ...).
        access_number: incremented by the slave per response.
        status: status byte (bits 1..0 application status, 2 power low, ...).
        signature: 16-bit signature, 0 when unused.
    """

    ident: str
    manufacturer: str
    manufacturer_code: int
    version: int
    medium: int
    access_number: int
    status: int
    signature: int = 0


def decode_ident(data: bytes) -> str:
    """Return the digits of a BCD ID field (LSB first) as a string."""
    return data[::-1].hex().upper()


def encode_ident(ident: str) -> bytes:
    """Encode 8 ID digits (hex digits allowed for wildcards) LSB first."""
    if len(ident) != 8:
        raise ValueError(f"ID must have 8 digits, got {ident!r}")
    return bytes.fromhex(ident)[::-1]


def decode_manufacturer(code: int) -> str:
    """Return the three FLAG letters of a manufacturer code (bit 15 ignored)."""
    return "".join(chr(((code >> shift) & 0x1F) + 64) for shift in (10, 5, 0))


def encode_manufacturer(letters: str) -> int:
    """Return the manufacturer code of three letters A..Z."""
    if len(letters) != 3 or not all("A" <= ch <= "Z" for ch in letters.upper()):
        raise ValueError(f"manufacturer must be three letters, got {letters!r}")
    first, second, third = (ord(ch) - 64 for ch in letters.upper())
    return (first << 10) | (second << 5) | third


def decode_slave_info(data: bytes, *, offset: int = 0) -> SlaveInfo:
    """Decode the 12-byte variable data header.

    Raises:
        ProtocolError: ``truncated`` when fewer than 12 bytes are given.
    """
    if len(data) < VARIABLE_HEADER_SIZE:
        raise ProtocolError(
            f"variable data header too short: {len(data)} of 12 bytes",
            reason="truncated",
            offset=offset + len(data),
        )
    code = int.from_bytes(data[4:6], "little")
    return SlaveInfo(
        ident=decode_ident(data[0:4]),
        manufacturer=decode_manufacturer(code),
        manufacturer_code=code,
        version=data[6],
        medium=data[7],
        access_number=data[8],
        status=data[9],
        signature=int.from_bytes(data[10:12], "little"),
    )


def encode_slave_info(info: SlaveInfo) -> bytes:
    """Encode the 12-byte variable data header (manufacturer from ``manufacturer_code``)."""
    return (
        encode_ident(info.ident)
        + info.manufacturer_code.to_bytes(2, "little")
        + bytes([info.version, info.medium, info.access_number, info.status])
        + info.signature.to_bytes(2, "little")
    )


def slave_info(
    *,
    ident: str,
    manufacturer: str,
    version: int,
    medium: int,
    access_number: int = 0,
    status: int = 0,
) -> SlaveInfo:
    """Build a header for a simulated slave from its letters and numbers."""
    return SlaveInfo(
        ident=ident,
        manufacturer=manufacturer.upper(),
        manufacturer_code=encode_manufacturer(manufacturer),
        version=version,
        medium=medium,
        access_number=access_number,
        status=status,
    )
