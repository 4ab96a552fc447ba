"""Data records of accepted frames as reading values, through cached record layouts.

Decoding a telegram's records with :func:`smtestbed.proto.records.decode_records` builds a
full :class:`~smtestbed.proto.records.Record` per record (raw bytes, description, ...), some
10 us each. A meter sends the same layout in every telegram, only the data fields change.
So the first plaintext of a layout is decoded in full and its layout kept: the bytes that
are not data fields (fillers, DIF/DIFE, VIF/VIFE) and, for each record with a physical
quantity, where its field is and how it scales. A later plaintext of the same size with
the same non-data bytes parses the same way (every field has a fixed length) and is read
through the layout: ``value = raw * factor * 10^exponent``, as the records package scales.

Values are the records whose VIF has a decimal or time scale; dates, identification and
manufacturer-specific records are left out. Accumulation and limit VIFEs qualify the
quantity name: 0x3C (negative contributions, e.g. electricity A-) gives ``energy_negative``,
0x3B ``energy_positive``, 0x40/0x48 ``..._lower_limit``/``..._upper_limit``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter

from smtestbed.proto.records import DataBlock, DataType, decode_records
from smtestbed.proto.records.values import decode_field
from smtestbed.proto.records.vif import EXT_FB, EXT_FD, PRIMARY, lookup
from smtestbed.proto.records.vife import orthogonal_exponent
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.gateway.schema import Value

QUALIFIERS = {0x3B: "_positive", 0x3C: "_negative", 0x40: "_lower_limit", 0x48: "_upper_limit"}
"""Suffix of the quantity name for each qualifying orthogonal VIFE."""

MAX_LAYOUTS = 256
_INT_TYPES = frozenset(
    {DataType.INT8, DataType.INT16, DataType.INT24, DataType.INT32, DataType.INT48, DataType.INT64}
)


@dataclass(frozen=True, slots=True)
class Slot:
    """A record with a physical quantity: how its data field reads and what it means.

    The attributes after ``divisor`` are those of the :class:`Value` read through the slot.
    """

    data_type: DataType
    integer: bool  # a two's complement field, read with int.from_bytes
    multiplier: int  # value = raw * multiplier / divisor, as the records package scales
    divisor: int
    quantity: str
    unit: str
    storage_number: int
    tariff: int
    subunit: int
    function: str


@dataclass(frozen=True, slots=True)
class _Layout:
    """A record layout: the plaintext with its data fields cut out, and how to read them.

    Two plaintexts of equal size whose non-data bytes (fillers, DIF/DIFE, VIF/VIFE) are equal
    parse the same way, since every data field has a fixed length.
    """

    size: int
    skeleton: Callable[[bytes], tuple[bytes, ...]]
    expected: tuple[bytes, ...]
    fields: Callable[[bytes], tuple[bytes, ...]]
    slots: tuple[Slot, ...]
    recent: list[tuple[bytes | None, Value]]  # per slot the last (integer field, value) read


def _getter(spans: list[tuple[int, int]]) -> Callable[[bytes], tuple[bytes, ...]]:
    """Return a C-level getter of the byte spans (always a tuple, whatever their number)."""
    if len(spans) == 1:
        single = slice(*spans[0])
        return lambda data: (data[single],)
    if not spans:
        return lambda data: ()
    getter: Callable[[bytes], tuple[bytes, ...]] = itemgetter(*(slice(a, b) for a, b in spans))
    return getter


def _slot(
    vib: bytes, data_type: DataType, storage: int, tariff: int, subunit: int, function: str
) -> Slot | None:
    """Return the slot of a record whose VIF has a decimal or time scale, else None."""
    vif = vib[0]
    if vif & 0x7F in (0x7C, 0x7F):
        return None
    table, code, rest = PRIMARY, vif & 0x7F, vib[1:]
    if vif in (EXT_FB, EXT_FD) and rest:
        table, code, rest = vif, rest[0] & 0x7F, rest[1:]
    entry = lookup(table, code)
    if entry is None or entry.kind not in ("decimal", "time") or data_type is DataType.NONE:
        return None
    vife = tuple(byte & 0x7F for byte in rest)
    factor, exponent = entry.scale(code)
    exponent += orthogonal_exponent(vife)
    quantity = entry.quantity + "".join(QUALIFIERS.get(code, "") for code in vife)
    return Slot(
        data_type,
        data_type in _INT_TYPES,
        factor * 10 ** max(exponent, 0),
        10 ** max(-exponent, 0),
        quantity,
        entry.unit,
        storage,
        tariff,
        subunit,
        function,
    )


def _layout(plain: bytes, block: DataBlock) -> _Layout:
    """Build the layout of a decoded plaintext (its records, fillers and data positions)."""
    skeleton: list[tuple[int, int]] = []
    fields: list[tuple[int, int]] = []
    slots: list[Slot] = []
    pos = 0
    for record in block.records:
        head = record.fill_before + len(record.dib) + len(record.vib)
        skeleton.append((pos, pos + head))
        end = pos + head + len(record.data)
        found = _slot(
            record.vib,
            record.data_type,
            record.storage_number,
            record.tariff,
            record.subunit,
            str(record.function),
        )
        if found is not None:
            fields.append((pos + head, end))
            slots.append(found)
        pos = end
    skeleton.append((pos, len(plain)))
    get = _getter(skeleton)
    recent: list[tuple[bytes | None, Value]] = [(None, _value(slot, 0.0)) for slot in slots]
    return _Layout(len(plain), get, get(plain), _getter(fields), tuple(slots), recent)


class RecordLayouts:
    """Record layouts seen before, by plaintext size (bounded: the first ``MAX_LAYOUTS``)."""

    __slots__ = ("_by_size", "_count")

    def __init__(self) -> None:
        self._by_size: dict[int, list[_Layout]] = {}
        self._count = 0

    def values(self, plain: bytes) -> tuple[Value, ...]:
        """Return the physical values of the data records in ``plain`` (an APL plaintext).

        Raises:
            ProtocolError: ``malformed_record`` when the records do not decode or a numeric
                field holds no number (a BCD digit above 9).
        """
        return _read(self._find(plain), plain)

    def read(self, plain: bytes) -> tuple[tuple[Value, ...], tuple[Slot, ...]]:
        """Return what :meth:`values` returns and the slots the values were read through.

        The slots are the same tuple object for every plaintext of a kept layout, so a
        caller may keep what it derives from them by their identity.

        Raises:
            ProtocolError: as :meth:`values`.
        """
        layout = self._find(plain)
        return _read(layout, plain), layout.slots

    def _find(self, plain: bytes) -> _Layout:
        for layout in self._by_size.get(len(plain), ()):
            if layout.skeleton(plain) == layout.expected:
                return layout
        try:
            block = decode_records(plain)
        except ProtocolError as exc:
            raise ProtocolError(f"data records: {exc}", reason="malformed_record") from exc
        layout = _layout(plain, block)
        if self._count < MAX_LAYOUTS and _cacheable(block):
            self._by_size.setdefault(len(plain), []).append(layout)
            self._count += 1
        return layout

    def __len__(self) -> int:
        return self._count


def _cacheable(block: DataBlock) -> bool:
    """Tell whether a layout holds for other plaintexts: fixed-length fields, no special DIF."""
    return not block.special_dif and all(r.data_type is not DataType.LVAR for r in block.records)


_VALUE_SETTERS = tuple(
    Value.__dict__[name].__set__
    for name in ("quantity", "unit", "value", "storage_number", "tariff", "subunit", "function")
)


def _value(slot: Slot, number: float) -> Value:
    # Fills the slots directly: the frozen dataclass __init__ goes through
    # object.__setattr__ per field, 0.8 us more per value of every accepted frame.
    value = object.__new__(Value)
    quantity, unit, figure, storage, tariff, subunit, function = _VALUE_SETTERS
    quantity(value, slot.quantity)
    unit(value, slot.unit)
    figure(value, number)
    storage(value, slot.storage_number)
    tariff(value, slot.tariff)
    subunit(value, slot.subunit)
    function(value, slot.function)
    return value


def _read(layout: _Layout, plain: bytes) -> tuple[Value, ...]:
    """Read the values of ``plain`` through its layout.

    A register whose integer field holds what it held when last read (a counter at rest,
    an unused tariff) gets the same, immutable, value object again.
    """
    out: list[Value] = []
    append, recent, slots = out.append, layout.recent, layout.slots
    for k, data in enumerate(layout.fields(plain)):  # one field per slot
        last = recent[k]
        if last[0] == data:  # equal fields of one slot: equal integers
            append(last[1])
            continue
        slot = slots[k]
        if slot.integer:
            number = int.from_bytes(data, "little", signed=True)
            value = _value(slot, number * slot.multiplier / slot.divisor)
            recent[k] = (data, value)
            append(value)
            continue
        raw = decode_field(slot.data_type, data)
        if not isinstance(raw, int | float):
            raise ProtocolError(
                f"{slot.quantity} field {data.hex()} is not a number", reason="malformed_record"
            )
        append(_value(slot, raw * slot.multiplier / slot.divisor))
    return tuple(out)
