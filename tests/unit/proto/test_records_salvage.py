"""Records before a fault: what a receiver keeps from a meter that cuts its last record."""

from __future__ import annotations

import pytest
from smtestbed.proto.records import decode_records, salvage_records
from smtestbed.services._runtime.errors import ProtocolError

# 12.345 m^3 (BCD8, VIF 0x13 = 1 l), then a date record cut after one data byte.
VOLUME_THEN_CUT_DATE = bytes.fromhex("0C 13 45 23 01 00 42 6C 9F")


def test_salvage_keeps_records_before_a_truncated_one() -> None:
    """A record cut short leaves the volume before it and reports where the data ended."""
    block, fault = salvage_records(VOLUME_THEN_CUT_DATE, offset=10)
    assert [(r.quantity, r.value) for r in block.records] == [("volume", 12.345)]
    assert fault is not None
    assert (fault.reason, fault.offset) == ("truncated", 10 + len(VOLUME_THEN_CUT_DATE))


def test_decode_records_raises_the_fault_salvage_reports() -> None:
    """decode_records raises the very fault salvage_records returns for the same bytes."""
    _, fault = salvage_records(VOLUME_THEN_CUT_DATE)
    with pytest.raises(ProtocolError) as info:
        decode_records(VOLUME_THEN_CUT_DATE)
    assert fault is not None
    assert (info.value.reason, info.value.offset) == (fault.reason, fault.offset)


def test_salvage_stops_at_a_reserved_special_dif() -> None:
    """A trailing reserved DIF 0xFF ends the records read so far with reason reserved_dif."""
    block, fault = salvage_records(bytes.fromhex("02 5A 2D 02 2F FF FF"))
    assert [(r.quantity, r.value) for r in block.records] == [("flow_temperature", 55.7)]
    assert block.trailing_fill == 1
    assert fault is not None
    assert (fault.reason, fault.offset) == ("reserved_dif", 5)


def test_salvage_of_good_data_equals_decode_records() -> None:
    """Well-formed data gives no fault and the same block, manufacturer data included."""
    data = bytes.fromhex("02 5A 2D 02 0F 01 02 03")
    block, fault = salvage_records(data)
    assert fault is None
    assert block == decode_records(data)
    assert block.manufacturer_data == b"\x01\x02\x03"
