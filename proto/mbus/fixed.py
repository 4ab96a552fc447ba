"""Fixed data structure of wired M-Bus (CI 0x73, EN 13757-3 annex / EN 1434-3).

Layout after CI (16 bytes): ID(4, BCD, LSB first) access(1) status(1)
medium/unit(2) counter1(4) counter2(4). Status bit 7 clear: BCD counters;
set: binary (unsigned little-endian). Unit code 0x3E ("same but historic")
means counter 2 is a historic value in counter 1's unit.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.proto.mbus.header import decode_ident, encode_ident
from smtestbed.proto.records.semantics import scale
from smtestbed.proto.records.values import decode_bcd
from smtestbed.services._runtime.errors import ProtocolError

FIXED_SIZE = 16
BINARY_COUNTERS = 0x80
SAME_BUT_HISTORIC = 0x3E

_PREFIXES = ("", "10 ", "100 ")
_RUNS: tuple[tuple[int, str, str, int, tuple[str, ...]], ...] = (
    (0x02, "energy", "Wh", 0, ("Wh", "kWh", "MWh")),
    (0x0B, "energy", "J", 3, ("kJ", "MJ", "GJ")),
    (0x14, "power", "W", 0, ("W", "kW", "MW")),
    (0x1D, "power", "J/h", 3, ("kJ/h", "MJ/h", "GJ/h")),
    (0x26, "volume", "m^3", -6, ("ml", "l", "m^3")),
    (0x2F, "volume_flow", "m^3/h", -6, ("ml/h", "l/h", "m^3/h")),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedUnit:
    """Meaning of a 6-bit unit code of the fixed structure."""

    code: int
    label: str
    quantity: str
    unit: str
    exponent: int


def fixed_unit(code: int) -> FixedUnit:
    """Return the meaning of a fixed-structure unit code (0..63)."""
    for first, quantity, unit, exponent, labels in _RUNS:
        if first <= code < first + 9:
            step = code - first
            label = _PREFIXES[step % 3] + labels[step // 3]
            return FixedUnit(
                code=code, label=label, quantity=quantity, unit=unit, exponent=exponent + step
            )
    special = {
        0x00: ("h,m,s", "time"),
        0x01: ("D,M,Y", "date"),
        0x38: ("°C 10^-3", "temperature"),
        0x39: ("units for HCA", "hca_units"),
        SAME_BUT_HISTORIC: ("same but historic", "historic"),
        0x3F: ("without units", "dimensionless"),
    }
    label, quantity = special.get(code, ("reserved", "reserved"))
    return FixedUnit(
        code=code,
        label=label,
        quantity=quantity,
        unit="°C" if code == 0x38 else "",
        exponent=-3 if code == 0x38 else 0,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedCounter:
    """One counter of the fixed structure.

    Attributes:
        data: the 4 counter bytes as received.
        raw: the counter unscaled (None when BCD digits are invalid).
        unit: the unit code's meaning (for a historic counter 2: counter 1's unit).
        value: the counter in ``unit.unit``.
        historic: counter 2 marked "same but historic".
    """

    data: bytes
    raw: int | None
    unit: FixedUnit
    value: int | float | None
    historic: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FixedData:
    """CI 0x73 payload."""

    ident: str
    access_number: int
    status: int
    medium: int
    unit_codes: tuple[int, int]
    counters: tuple[FixedCounter, FixedCounter]


def decode_fixed_data(body: bytes, *, offset: int = 0) -> FixedData:
    """Decode the 16 bytes after CI 0x73.

    Raises:
        ProtocolError: ``truncated`` / ``trailing_bytes`` when not exactly 16 bytes.
    """
    if len(body) != FIXED_SIZE:
        reason = "truncated" if len(body) < FIXED_SIZE else "trailing_bytes"
        raise ProtocolError(
            f"fixed data must be 16 bytes, got {len(body)}",
            reason=reason,
            offset=offset + len(body),
        )
    status = body[5]
    codes = (body[6] & 0x3F, body[7] & 0x3F)
    binary = bool(status & BINARY_COUNTERS)
    first = _counter(body[8:12], fixed_unit(codes[0]), binary=binary)
    second_unit = fixed_unit(codes[1])
    historic = codes[1] == SAME_BUT_HISTORIC
    second = _counter(
        body[12:16], first.unit if historic else second_unit, binary=binary, historic=historic
    )
    return FixedData(
        ident=decode_ident(body[0:4]),
        access_number=body[4],
        status=status,
        medium=((body[6] & 0xC0) >> 6) | ((body[7] & 0xC0) >> 4),
        unit_codes=codes,
        counters=(first, second),
    )


def _counter(data: bytes, unit: FixedUnit, *, binary: bool, historic: bool = False) -> FixedCounter:
    raw = int.from_bytes(data, "little") if binary else decode_bcd(data)
    value = None if raw is None else scale(raw, unit.exponent)
    return FixedCounter(data=bytes(data), raw=raw, unit=unit, value=value, historic=historic)


def encode_fixed_data(fixed: FixedData) -> bytes:
    """Encode the 16 bytes after CI 0x73 (counters from their stored bytes)."""
    unit_bytes = bytes(
        [
            fixed.unit_codes[0] | ((fixed.medium & 0x03) << 6),
            fixed.unit_codes[1] | ((fixed.medium & 0x0C) << 4),
        ]
    )
    return (
        encode_ident(fixed.ident)
        + bytes([fixed.access_number, fixed.status])
        + unit_bytes
        + fixed.counters[0].data
        + fixed.counters[1].data
    )
