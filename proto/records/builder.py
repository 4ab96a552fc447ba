"""Build new data records for simulated meters from quantity, unit and value.

The VIF is chosen from the quantity (and unit where a quantity has several,
e.g. energy in "Wh" or "J"). For scaled quantities the power of ten is either
given or chosen as the largest one that represents the value exactly in an
integer/BCD field (for a real field: the one nearest to 10^0). Durations are
given in seconds and written in the largest of s/min/h/days that is exact.
The record is built as bytes and decoded again, so it is exactly what a
receiver will see.
"""

from __future__ import annotations

import math
from fractions import Fraction

from smtestbed.proto.records.decoder import decode_records
from smtestbed.proto.records.model import DATA_NIBBLES, DataType, Function, Record, Value
from smtestbed.proto.records.timestamps import Timestamp, encode_date, encode_datetime
from smtestbed.proto.records.values import encode_field
from smtestbed.proto.records.vif import PRIMARY, TABLES, TIME_FACTORS, VifEntry

_FUNCTION_BITS = {
    Function.INSTANTANEOUS: 0,
    Function.MAXIMUM: 1,
    Function.MINIMUM: 2,
    Function.ERROR_STATE: 3,
}
MAX_DIFE = 10


def encode_dib(
    *, data_type: DataType, function: Function, storage_number: int, tariff: int, subunit: int
) -> bytes:
    """Encode DIF and the DIFEs needed for storage number, tariff and subunit."""
    if min(storage_number, tariff, subunit) < 0:
        raise ValueError("storage number, tariff and subunit must not be negative")
    dif = DATA_NIBBLES[data_type] | (_FUNCTION_BITS[function] << 4) | ((storage_number & 1) << 6)
    storage, difes = storage_number >> 1, []
    while storage or tariff or subunit:
        difes.append((storage & 0x0F) | ((tariff & 0x03) << 4) | ((subunit & 1) << 6))
        storage, tariff, subunit = storage >> 4, tariff >> 2, subunit >> 1
    if len(difes) > MAX_DIFE:
        raise ValueError("storage number, tariff or subunit needs more than 10 DIFE")
    chain = [byte | 0x80 for byte in difes[:-1]] + difes[-1:]
    return bytes([dif | (0x80 if difes else 0), *chain])


def find_entry(quantity: str, unit: str | None = None) -> VifEntry:
    """Return the first VIF run for a quantity (and unit), primary table first."""
    for table in TABLES.values():
        for entry in table:
            if entry.quantity == quantity and (unit is None or entry.unit == unit):
                return entry
    raise ValueError(f"no VIF for quantity {quantity!r} with unit {unit!r}")


def new_record(
    *,
    quantity: str,
    value: Value,
    unit: str | None = None,
    data_type: DataType | None = None,
    exponent: int | None = None,
    function: Function = Function.INSTANTANEOUS,
    storage_number: int = 0,
    tariff: int = 0,
    subunit: int = 0,
) -> Record:
    """Build a record whose decoded value is ``value`` in ``unit``.

    Args:
        quantity: a quantity name of :mod:`smtestbed.proto.records.vif`.
        value: number in the normalised unit, Timestamp, text (LVAR) or bytes.
        unit: picks among runs of one quantity ("Wh" or "J", "m^3/h" or ...).
        data_type: coding of the data field; default from the value's type.
        exponent: power of ten of the VIF; default chosen as described above.
        function: DIF function field.
        storage_number: storage number (0 = current value).
        tariff: tariff number.
        subunit: subunit (device) number.

    Raises:
        ValueError: when the quantity, value or type cannot be encoded.
    """
    entry = find_entry(quantity, unit)
    kind = data_type or _default_type(entry, value)
    code = _choose_code(entry, value, kind, exponent)
    field = _field(entry, code, value, kind)
    dib = encode_dib(
        data_type=kind,
        function=function,
        storage_number=storage_number,
        tariff=tariff,
        subunit=subunit,
    )
    vib = bytes([code]) if entry.table == PRIMARY else bytes([entry.table, code])
    return decode_records(dib + vib + field).records[0]


def _default_type(entry: VifEntry, value: Value) -> DataType:
    if entry.kind == "date":
        return DataType.INT16
    if isinstance(value, str | bytes):
        return DataType.LVAR
    if isinstance(value, float) and entry.exponent is None and entry.kind != "time":
        return DataType.REAL32
    return DataType.INT32


def _choose_code(entry: VifEntry, value: Value, kind: DataType, exponent: int | None) -> int:
    if entry.kind == "time":
        return _time_code(entry, value)
    if entry.exponent is None:
        return entry.first
    choices = range(entry.exponent, entry.exponent + entry.last - entry.first + 1)
    if exponent is None:
        exponent = _best_exponent(choices, value, kind)
    if exponent not in choices:
        raise ValueError(f"{entry.quantity} has no VIF with exponent {exponent}")
    return entry.first + exponent - entry.exponent


def _best_exponent(choices: range, value: Value, kind: DataType) -> int:
    if not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a number")
    if kind is DataType.REAL32:
        return min(choices, key=abs)
    for candidate in reversed(choices):
        scaled = value / 10.0**candidate
        if math.isclose(scaled, round(scaled), rel_tol=1e-12, abs_tol=1e-9):
            return candidate
    return choices[0]


def _time_code(entry: VifEntry, value: Value) -> int:
    if not isinstance(value, int | float):
        raise ValueError(f"{value!r} is not a duration in seconds")
    for step in reversed(range(len(TIME_FACTORS))):
        if entry.first + step <= entry.last and value % TIME_FACTORS[step] == 0:
            return entry.first + step
    return entry.first


def _field(entry: VifEntry, code: int, value: Value, kind: DataType) -> bytes:
    if isinstance(value, Timestamp):
        if kind is DataType.INT16:
            return encode_date(value)
        return encode_datetime(value, size=6 if kind is DataType.INT48 else 4)
    if isinstance(value, int | float) and not isinstance(value, bool):
        factor, power = entry.scale(code)
        # Fractions keep 64-bit integers exact where floats would round them.
        scaled = Fraction(value) / factor / Fraction(10) ** power
        if kind is not DataType.REAL32:
            return encode_field(kind, round(scaled))
        return encode_field(kind, float(scaled))
    return encode_field(kind, value)
