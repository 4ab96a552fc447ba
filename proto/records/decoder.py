"""Decode M-Bus data records (EN 13757-3) from bytes.

A record is ``DIF [DIFE...] VIF [VIFE...] data``. Every fault in the input is a
:class:`ProtocolError` whose offset is ``offset`` plus the position in ``data``.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.proto.records.model import (
    DATA_TYPES,
    FUNCTIONS,
    DataBlock,
    DataType,
    Function,
    Record,
)
from smtestbed.proto.records.semantics import interpret
from smtestbed.proto.records.values import decode_field, field_length
from smtestbed.services._runtime.errors import ProtocolError

MAX_DIFE = 10
MAX_VIFE = 10
IDLE_FILLER = 0x2F
MANUFACTURER_DATA = 0x0F
MORE_RECORDS_FOLLOW = 0x1F


@dataclass(frozen=True, slots=True, kw_only=True)
class _Dib:
    end: int
    function: Function
    storage_number: int
    tariff: int
    subunit: int
    data_type: DataType


def decode_records(data: bytes, *, offset: int = 0) -> DataBlock:
    """Decode the records of an application-layer data block.

    Args:
        data: the bytes after the TPL header (wired: after the 12-byte header).
        offset: position of ``data`` in the enclosing frame, added to error offsets.

    Returns:
        The records; bytes after DIF 0x0F / 0x1F are kept as manufacturer data.

    Raises:
        ProtocolError: on any malformed or truncated record.
    """
    block, fault = salvage_records(data, offset=offset)
    if fault is not None:
        raise fault
    return block


def salvage_records(data: bytes, *, offset: int = 0) -> tuple[DataBlock, ProtocolError | None]:
    """Decode records up to the first fault and return them with that fault.

    Receivers of real meters need this: some meters cut their last record short or
    end with a reserved DIF (wmbusmeters, for one, keeps the records read until then).
    The records before the fault are exactly those :func:`decode_records` would give.

    Args:
        data: the bytes after the TPL header.
        offset: position of ``data`` in the enclosing frame, added to error offsets.

    Returns:
        The well-formed records before the first fault (all of them when there is
        none) and the fault as a :class:`ProtocolError`, or None.
    """
    records: list[Record] = []
    pos = fill = 0
    while pos < len(data):
        dif = data[pos]
        if dif == IDLE_FILLER:
            pos, fill = pos + 1, fill + 1
            continue
        if dif in (MANUFACTURER_DATA, MORE_RECORDS_FOLLOW):
            return _with_manufacturer_data(records, data[pos:], fill), None
        try:
            record, pos = _decode_record(data, pos, fill, offset)
        except ProtocolError as fault:
            return DataBlock(records=tuple(records), trailing_fill=fill), fault
        records.append(record)
        fill = 0
    return DataBlock(records=tuple(records), trailing_fill=fill), None


def _with_manufacturer_data(records: list[Record], rest: bytes, fill: int) -> DataBlock:
    return DataBlock(
        records=tuple(records),
        manufacturer_data=bytes(rest[1:]),
        more_follow=rest[0] == MORE_RECORDS_FOLLOW,
        special_dif=True,
        trailing_fill=fill,
    )


def _decode_record(data: bytes, start: int, fill: int, offset: int) -> tuple[Record, int]:
    dib = _decode_dib(data, start, offset)
    vib_end = _vib_end(data, dib.end, offset)
    length = field_length(dib.data_type, data, vib_end, offset=offset)
    end = vib_end + length
    if end > len(data):
        raise ProtocolError(
            "premature end of record at data", reason="truncated", offset=offset + len(data)
        )
    field = bytes(data[vib_end:end])
    raw = decode_field(dib.data_type, field)
    vib = bytes(data[dib.end : vib_end])
    meaning = interpret(vib, dib.data_type, raw, field)
    record = Record(
        dib=bytes(data[start : dib.end]),
        vib=vib,
        data=field,
        fill_before=fill,
        function=dib.function,
        storage_number=dib.storage_number,
        tariff=dib.tariff,
        subunit=dib.subunit,
        data_type=dib.data_type,
        raw_value=raw,
        value=meaning.value,
        unit=meaning.unit,
        quantity=meaning.quantity,
        description=meaning.description,
        vife=meaning.vife,
    )
    return record, end


def _decode_dib(data: bytes, pos: int, offset: int) -> _Dib:
    dif = data[pos]
    if dif & 0x0F == 0x0F:
        raise ProtocolError(
            f"reserved special DIF 0x{dif:02X}", reason="reserved_dif", offset=offset + pos
        )
    storage, tariff, subunit = (dif >> 6) & 1, 0, 0
    pos += 1
    extended = bool(dif & 0x80)
    for index in range(MAX_DIFE + 1):
        if not extended:
            break
        if index == MAX_DIFE:
            raise ProtocolError("too many DIFE", reason="too_many_dife", offset=offset + pos)
        if pos >= len(data):
            raise ProtocolError(
                "premature end of record at DIF", reason="truncated", offset=offset + pos
            )
        dife = data[pos]
        storage |= (dife & 0x0F) << (1 + 4 * index)
        tariff |= ((dife >> 4) & 0x03) << (2 * index)
        subunit |= ((dife >> 6) & 0x01) << index
        extended, pos = bool(dife & 0x80), pos + 1
    return _Dib(
        end=pos,
        function=FUNCTIONS[(dif >> 4) & 0x03],
        storage_number=storage,
        tariff=tariff,
        subunit=subunit,
        data_type=DATA_TYPES[dif & 0x0F],
    )


def _vib_end(data: bytes, pos: int, offset: int) -> int:
    """Return the end of the VIB: VIF, VIFEs and a plain-text unit if any."""
    if pos >= len(data):
        raise ProtocolError(
            "premature end of record at VIF", reason="truncated", offset=offset + pos
        )
    vif = data[pos]
    pos += 1
    if vif & 0x7F == 0x7C:
        pos = _skip_plain_text(data, pos, offset)
    extended, count = bool(vif & 0x80), 0
    while extended:
        if pos >= len(data):
            raise ProtocolError(
                "premature end of record at VIFE", reason="truncated", offset=offset + pos
            )
        count += 1
        if count > MAX_VIFE:
            raise ProtocolError("too many VIFE", reason="too_many_vife", offset=offset + pos)
        extended, pos = bool(data[pos] & 0x80), pos + 1
    return pos


def _skip_plain_text(data: bytes, pos: int, offset: int) -> int:
    if pos >= len(data):
        raise ProtocolError(
            "premature end of record at plain-text VIF", reason="truncated", offset=offset + pos
        )
    end = pos + 1 + data[pos]
    if end > len(data):
        raise ProtocolError(
            "premature end of plain-text VIF", reason="truncated", offset=offset + len(data)
        )
    return end
