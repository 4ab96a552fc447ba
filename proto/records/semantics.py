"""Give a decoded data field its meaning: quantity, unit and scaled value.

The VIB is read as: VIF; for 0xFD/0xFB the next byte selects a code in that
extension table; for 0x7C/0xFC a length byte and the unit text (sent last
character first) follow; all further VIFEs are orthogonal. After a
manufacturer-specific VIF (0x7F/0xFF) or orthogonal VIFE 0x7F the rest of the
VIB is manufacturer-specific and left uninterpreted.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.proto.records.model import DataType, RawValue, Value
from smtestbed.proto.records.timestamps import Timestamp, decode_date, decode_datetime
from smtestbed.proto.records.vif import EXT_FB, EXT_FD, PRIMARY, VifEntry, lookup
from smtestbed.proto.records.vife import orthogonal_exponent, orthogonal_names

_EXTENSIONS = (EXT_FB, EXT_FD)


@dataclass(frozen=True, slots=True, kw_only=True)
class Meaning:
    """What a record measures and its value in the normalised unit."""

    value: Value
    unit: str
    quantity: str
    description: str
    vife: tuple[int, ...]


def interpret(vib: bytes, data_type: DataType, raw: RawValue, field: bytes) -> Meaning:
    """Interpret a well-formed VIB for a data field decoded as ``raw``."""
    vif = vib[0]
    if vif & 0x7F == 0x7C:
        return _plain_text(vib, raw)
    if vif & 0x7F == 0x7F:
        return Meaning(
            value=raw,
            unit="",
            quantity="manufacturer_specific",
            description="Manufacturer specific",
            vife=(),
        )
    table, code, rest = PRIMARY, vif & 0x7F, vib[1:]
    if vif in _EXTENSIONS and rest:
        table, code, rest = vif, rest[0] & 0x7F, rest[1:]
    vife = tuple(byte & 0x7F for byte in rest)
    entry = lookup(table, code)
    if entry is None:
        return Meaning(
            value=raw, unit="", quantity="reserved", description="Reserved VIF", vife=vife
        )
    value = _scaled(entry, code, data_type, raw, field, vife)
    return Meaning(
        value=value,
        unit=entry.unit,
        quantity=entry.quantity,
        description=_describe(entry, vife),
        vife=vife,
    )


def _plain_text(vib: bytes, raw: RawValue) -> Meaning:
    length = vib[1]
    unit = vib[2 : 2 + length][::-1].decode("latin-1")
    vife = tuple(byte & 0x7F for byte in vib[2 + length :])
    value: Value = raw
    if isinstance(raw, int | float):
        value = scale(raw, orthogonal_exponent(vife))
    return Meaning(
        value=value,
        unit=unit,
        quantity="plain_text_unit",
        description=", ".join((f"Unit {unit!r}", *orthogonal_names(vife))),
        vife=vife,
    )


def _describe(entry: VifEntry, vife: tuple[int, ...]) -> str:
    names = orthogonal_names(vife)
    return ", ".join((entry.description, *names))


def _scaled(
    entry: VifEntry,
    code: int,
    data_type: DataType,
    raw: RawValue,
    field: bytes,
    vife: tuple[int, ...],
) -> Value:
    if entry.kind in ("date", "datetime"):
        return _timestamp(entry, data_type, raw, field)
    if not isinstance(raw, int | float) or (entry.exponent is None and entry.kind != "time"):
        return raw
    factor, exponent = entry.scale(code)
    exponent += orthogonal_exponent(vife)
    return scale(raw * factor, exponent)


def scale(number: int | float, exponent: int) -> int | float:
    """Return ``number * 10**exponent``; exact int for exponent >= 0 and int input."""
    power: int = 10 ** abs(exponent)
    if exponent >= 0:
        return number * power
    # Dividing by an exact power of ten rounds better than multiplying by 1e-n.
    return number / power


def _timestamp(entry: VifEntry, data_type: DataType, raw: RawValue, field: bytes) -> Value:
    if data_type is DataType.INT16:
        return decode_date(field)
    if entry.kind == "datetime" and data_type in (DataType.INT32, DataType.INT48):
        return decode_datetime(field)
    return raw


__all__ = ["Meaning", "Timestamp", "interpret", "scale"]
