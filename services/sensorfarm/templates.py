"""Data records each meter kind sends, as records (slow path) and byte templates (kernels).

Every kind sends one record per used value column, chosen as OMS meters of that medium do
(DIF/VIF in hex, integers little-endian two's complement)::

    electricity  04 03 int32 energy A+ in Wh
                 04 83 3C int32 energy A- in Wh (VIFE 0x3C: accumulation of negative flow)
                 04 2B int32 active power in W
    gas          04 13 int32 volume in 0.001 m^3
    water        04 13 int32 volume in 0.001 m^3
                 04 3B int32 volume flow in 0.001 m^3/h
    heat         04 06 int32 energy in kWh
                 04 13 int32 volume in 0.001 m^3
                 04 3B int32 volume flow in 0.001 m^3/h
                 02 5A int16 flow temperature in 0.1 °C
                 02 5E int16 return temperature in 0.1 °C

Conversion of a value ``v`` (in the column's unit) to the raw integer ``r`` of its record
with decimal exponent ``e`` (the record then reads ``r * 10^e``):

- counters (``COUNTER_COLUMNS``) round down, ``r = floor(v * 10^-e)``, so that a counter
  never reads higher than the true value and never goes backwards between telegrams;
- other values round to nearest, halves up: ``r = floor(v * 10^-e + 0.5)``;
- ``v * 10^-e`` is computed in float64 as ``v * mul / div`` with ``mul = 10^max(0, -e)``
  and ``div = 10^max(0, e)`` — the compiled builder does the same operations, so both
  give the same integer;
- ``r`` wraps to the field's size (two's complement), as a meter's register rolls over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import cache

import numpy as np
import numpy.typing as npt
from smtestbed.proto.records import DataType, Record, decode_records, new_record
from smtestbed.proto.records.model import FIXED_LENGTHS
from smtestbed.services.sensorfarm.schema import COUNTER_COLUMNS, N_VALUES, MeterKind

VIFE_NEGATIVE_ACCUMULATION = 0x3C


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordSpec:
    """How one value column is sent as a data record.

    Attributes:
        column: the value column (index into a meter's ``N_VALUES`` values).
        quantity: record quantity name (:mod:`smtestbed.proto.records.vif`).
        unit: normalised unit of the quantity ("Wh", "m^3", "W", "m^3/h", "°C").
        data_type: integer coding of the data field.
        exponent: decimal exponent of the VIF: the record reads ``raw * 10^exponent``.
        vife: orthogonal VIFEs after the VIF (extension bits are set when encoding).
    """

    column: int
    quantity: str
    unit: str
    data_type: DataType
    exponent: int
    vife: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        """Size of the data field in bytes."""
        return FIXED_LENGTHS[self.data_type]

    @property
    def scale(self) -> tuple[float, float]:
        """Return ``(mul, div)`` with ``raw ~ value * mul / div``."""
        return float(10 ** max(0, -self.exponent)), float(10 ** max(0, self.exponent))


def _spec(
    column: int,
    quantity: str,
    unit: str,
    exponent: int,
    *,
    data_type: DataType = DataType.INT32,
    vife: tuple[int, ...] = (),
) -> RecordSpec:
    return RecordSpec(
        column=column,
        quantity=quantity,
        unit=unit,
        data_type=data_type,
        exponent=exponent,
        vife=vife,
    )


RECORD_SPECS: dict[MeterKind, tuple[RecordSpec, ...]] = {
    MeterKind.ELECTRICITY: (
        _spec(0, "energy", "Wh", 0),
        _spec(1, "energy", "Wh", 0, vife=(VIFE_NEGATIVE_ACCUMULATION,)),
        _spec(2, "power", "W", 0),
    ),
    MeterKind.GAS: (_spec(0, "volume", "m^3", -3),),
    MeterKind.WATER: (
        _spec(0, "volume", "m^3", -3),
        _spec(1, "volume_flow", "m^3/h", -3),
    ),
    MeterKind.HEAT: (
        _spec(0, "energy", "Wh", 3),
        _spec(1, "volume", "m^3", -3),
        _spec(2, "volume_flow", "m^3/h", -3),
        _spec(3, "flow_temperature", "°C", -1, data_type=DataType.INT16),
        _spec(4, "return_temperature", "°C", -1, data_type=DataType.INT16),
    ),
}
"""The records of each kind, in the order they are sent."""


def is_counter(kind: MeterKind, column: int) -> bool:
    """Tell whether a value column of a kind is a counter (rounded down)."""
    return column in COUNTER_COLUMNS[kind]


def raw_value(spec: RecordSpec, value: float, *, counter: bool) -> int:
    """Return the signed integer a record sends for ``value`` (rules in the module docstring).

    Raises:
        ValueError: ``value`` is not finite.
    """
    if not math.isfinite(value):
        raise ValueError(f"value {value!r} of column {spec.column} is not finite")
    mul, div = spec.scale
    scaled = float(value) * mul / div
    raw = math.floor(scaled) if counter else math.floor(scaled + 0.5)
    half = 1 << (8 * spec.size - 1)
    return (raw + half) % (2 * half) - half


def _record(spec: RecordSpec, raw: int) -> Record:
    value: int | float = (
        raw * 10**spec.exponent if spec.exponent >= 0 else float(Fraction(raw, 10**-spec.exponent))
    )
    record = new_record(
        quantity=spec.quantity,
        unit=spec.unit,
        value=value,
        data_type=spec.data_type,
        exponent=spec.exponent,
    )
    if not spec.vife:
        return record
    # new_record builds plain VIFs; the VIFE chain sets each extension bit but the last.
    codes = [*spec.vife[:-1]]
    vib = bytes([record.vib[0] | 0x80, *(c | 0x80 for c in codes), spec.vife[-1]])
    return decode_records(record.dib + vib + record.data).records[0]


def records_for(kind: MeterKind, values: Sequence[float]) -> list[Record]:
    """Build the data records a meter of ``kind`` sends for its ``N_VALUES`` values.

    Args:
        kind: the meter kind.
        values: the meter's value columns in the units of ``VALUE_COLUMNS``.

    Raises:
        ValueError: wrong number of values, or a used value that is not finite.
    """
    if len(values) != N_VALUES:
        raise ValueError(f"a meter has {N_VALUES} values, got {len(values)}")
    kind = MeterKind(kind)
    return [
        _record(spec, raw_value(spec, values[spec.column], counter=is_counter(kind, spec.column)))
        for spec in RECORD_SPECS[kind]
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class ValueSlot:
    """Where one value goes in a kind's record bytes.

    Attributes:
        column: the value column.
        offset: offset of the data field in the template.
        size: data field size in bytes (little-endian two's complement).
        mul, div: raw value = ``value * mul / div``, rounded as ``counter`` says.
        counter: round down (True) or to nearest (False).
    """

    column: int
    offset: int
    size: int
    mul: float
    div: float
    counter: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordTemplate:
    """The record bytes of a kind with its value fields zeroed, and where the values go."""

    kind: MeterKind
    data: bytes
    slots: tuple[ValueSlot, ...]


@cache
def template(kind: MeterKind) -> RecordTemplate:
    """Return the byte template of a kind, built from :func:`records_for` itself."""
    kind = MeterKind(kind)
    records = records_for(kind, [0.0] * N_VALUES)
    data, slots = b"", []
    for spec, record in zip(RECORD_SPECS[kind], records, strict=True):
        head = record.dib + record.vib
        mul, div = spec.scale
        slot = ValueSlot(
            column=spec.column,
            offset=len(data) + len(head),
            size=spec.size,
            mul=mul,
            div=div,
            counter=is_counter(kind, spec.column),
        )
        data += head + record.data
        slots.append(slot)
    return RecordTemplate(kind=kind, data=data, slots=tuple(slots))


@dataclass(frozen=True, slots=True, kw_only=True)
class TemplateTable:
    """All kinds' templates as arrays for a kernel (row = ``MeterKind`` value).

    Attributes:
        data: uint8[kinds, width], record bytes (value fields zero), padded with zeros.
        length: int64[kinds], record bytes of each kind.
        slots: int64[kinds, N_VALUES, 4]: offset, size (0 = unused), column, counter flag.
        scale: float64[kinds, N_VALUES, 2]: mul, div.
    """

    data: npt.NDArray[np.uint8]
    length: npt.NDArray[np.int64]
    slots: npt.NDArray[np.int64]
    scale: npt.NDArray[np.float64]


@cache
def template_table() -> TemplateTable:
    """Return the templates of every kind packed for a kernel."""
    kinds = list(MeterKind)
    width = max(len(template(k).data) for k in kinds)
    data = np.zeros((len(kinds), width), dtype=np.uint8)
    length = np.zeros(len(kinds), dtype=np.int64)
    slots = np.zeros((len(kinds), N_VALUES, 4), dtype=np.int64)
    scale = np.ones((len(kinds), N_VALUES, 2), dtype=np.float64)
    for kind in kinds:
        tmpl = template(kind)
        data[kind, : len(tmpl.data)] = np.frombuffer(tmpl.data, dtype=np.uint8)
        length[kind] = len(tmpl.data)
        for index, slot in enumerate(tmpl.slots):
            slots[kind, index] = (slot.offset, slot.size, slot.column, int(slot.counter))
            scale[kind, index] = (slot.mul, slot.div)
    for array in (data, length, slots, scale):
        array.setflags(write=False)
    return TemplateTable(data=data, length=length, slots=slots, scale=scale)
