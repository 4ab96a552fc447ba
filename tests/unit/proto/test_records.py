"""Data records (EN 13757-3): builder, codings, special DIFs, round trips, robustness."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtestbed.proto.records import (
    DataBlock,
    DataType,
    Function,
    Record,
    Timestamp,
    decode_records,
    encode_records,
    new_record,
)
from smtestbed.services._runtime.errors import ProtocolError


@pytest.mark.parametrize(
    ("hex_record", "quantity", "unit", "value"),
    [
        ("04 06 39 30 00 00", "energy", "Wh", 12345000),
        ("04 0E 01 00 00 00", "energy", "J", 1000000),
        ("0C 13 45 23 01 00", "volume", "m^3", 12.345),
        ("02 2B E8 03", "power", "W", 1000),
        ("02 3B 10 27", "volume_flow", "m^3/h", 10.0),
        ("02 5A 2D 02", "flow_temperature", "°C", 55.7),
        ("02 5E 2C 01", "return_temperature", "°C", 30.0),
        ("02 61 F6 FF", "temperature_difference", "K", -0.1),
        ("02 22 18 00", "on_time", "s", 86400),
        ("02 6B 01 00", "pressure", "bar", 1),
        ("0A FD 17 01 00", "error_flags", "", 1),
        ("02 FD 48 FF 08", "voltage", "V", 230.3),
        ("0B FD 59 00 50 01", "current", "A", 15.0),
        ("02 FB 1B 32 00", "relative_humidity", "%", 50),
        ("0C 13 45 23 01 F0", "volume", "m^3", -12.345),
    ],
)
def test_record_decodes_to_quantity_unit_and_scaled_value(
    hex_record: str, quantity: str, unit: str, value: float
) -> None:
    """A record's VIF selects quantity and unit; the value is scaled into that unit."""
    record = decode_records(bytes.fromhex(hex_record)).records[0]
    assert (record.quantity, record.unit) == (quantity, unit)
    assert record.value == pytest.approx(value)


def test_negative_bcd_uses_leading_f_nibble() -> None:
    """BCD 'F1 23' (LSB first: 23 F1) is -123."""
    record = decode_records(bytes.fromhex("0A 16 23 F1")).records[0]
    assert record.raw_value == -123


def test_dife_chain_sets_storage_tariff_and_subunit() -> None:
    """DIF bit 6 and each DIFE add storage bits, 2 tariff bits and 1 subunit bit."""
    record = decode_records(bytes.fromhex("C4 E3 41 06 01 00 00 00")).records[0]
    assert record.storage_number == 1 | (3 << 1) | (1 << 5)
    assert record.tariff == 2
    assert record.subunit == 0b11


def test_function_field_names_maximum_minimum_and_error_state() -> None:
    """DIF bits 5..4 give instantaneous, maximum, minimum and value during error state."""
    block = decode_records(bytes.fromhex("01 13 01 11 13 02 21 13 03 31 13 04"))
    assert [r.function for r in block.records] == [
        Function.INSTANTANEOUS,
        Function.MAXIMUM,
        Function.MINIMUM,
        Function.ERROR_STATE,
    ]


def test_lvar_text_is_read_last_character_first() -> None:
    """LVAR 0x03 'CBA' on the wire is the text 'ABC'."""
    record = decode_records(bytes.fromhex("0D 78 03 43 42 41")).records[0]
    assert record.value == "ABC"


def test_plain_text_vif_names_the_unit_and_applies_correction() -> None:
    """VIF 0xFC with text '%RH' and VIFE 0x74 (10^-2) gives 54.1 in '%RH'."""
    record = decode_records(bytes.fromhex("02 FC 03 48 52 25 74 22 15")).records[0]
    assert (record.quantity, record.unit) == ("plain_text_unit", "%RH")
    assert record.value == pytest.approx(54.1)


def test_type_f_date_time_decodes_with_flags() -> None:
    """Type F 0x8B 0x8B 0xCD 0x13: 2014-03-13 11:11, invalid and summer-time flags set."""
    stamp = decode_records(bytes.fromhex("04 6D 8B 8B CD 13")).records[0].value
    assert stamp == Timestamp(
        year=2014, month=3, day=13, hour=11, minute=11, invalid=True, summer_time=True
    )


def test_manufacturer_specific_dif_keeps_remaining_bytes() -> None:
    """DIF 0x0F ends the records and keeps the rest as manufacturer data."""
    block = decode_records(bytes.fromhex("01 13 05 0F AA BB"))
    assert len(block.records) == 1
    assert (block.manufacturer_data, block.more_follow) == (b"\xaa\xbb", False)


def test_dif_1f_says_more_records_follow() -> None:
    """DIF 0x1F sets more_follow."""
    assert decode_records(bytes.fromhex("2F 2F 01 13 05 1F")).more_follow


def test_idle_fillers_are_skipped_and_reencoded() -> None:
    """0x2F fillers between and after records survive a round trip byte for byte."""
    data = bytes.fromhex("2F 2F 01 13 05 2F 01 13 06 2F 2F")
    block = decode_records(data)
    assert [r.fill_before for r in block.records] == [2, 1]
    assert encode_records(block) == data


@pytest.mark.parametrize(
    ("hex_data", "reason"),
    [
        ("04 13 01 02", "truncated"),
        ("84", "truncated"),
        ("04", "truncated"),
        ("84 80 80 80 80 80 80 80 80 80 80 00 13 00 00 00 00", "too_many_dife"),
        ("0D 13 FA", "reserved_lvar"),
        ("3F", "reserved_dif"),
        ("01 FC 05 41", "truncated"),
    ],
)
def test_bad_record_raises_protocol_error_with_reason(hex_data: str, reason: str) -> None:
    """Truncated or reserved codings raise ProtocolError naming the cause."""
    with pytest.raises(ProtocolError) as caught:
        decode_records(bytes.fromhex(hex_data), offset=19)
    assert caught.value.reason == reason
    assert caught.value.offset is not None
    assert caught.value.offset >= 19


@pytest.mark.parametrize(
    ("kwargs", "vib"),
    [
        ({"quantity": "volume", "value": 12.345}, "13"),
        ({"quantity": "energy", "value": 5_000_000}, "07"),
        ({"quantity": "energy", "value": 3.6e9, "unit": "J"}, "0F"),
        ({"quantity": "on_time", "value": 7200}, "22"),
        ({"quantity": "power", "value": 2.5, "exponent": -3}, "28"),
        ({"quantity": "voltage", "value": 230.5}, "FD48"),
    ],
)
def test_builder_chooses_vif_from_quantity_and_value(kwargs: dict[str, object], vib: str) -> None:
    """new_record picks the largest exact power of ten, or the one asked for."""
    record = new_record(**kwargs)  # type: ignore[arg-type]
    assert record.vib.hex().upper() == vib
    assert record.value == pytest.approx(kwargs["value"])


def test_builder_writes_storage_tariff_subunit_and_function() -> None:
    """new_record's DIB decodes back to the storage, tariff, subunit and function given."""
    record = new_record(
        quantity="volume",
        value=1.5,
        data_type=DataType.BCD8,
        function=Function.MAXIMUM,
        storage_number=37,
        tariff=5,
        subunit=2,
    )
    assert (record.storage_number, record.tariff, record.subunit) == (37, 5, 2)
    assert (record.function, record.data_type) == (Function.MAXIMUM, DataType.BCD8)


def test_builder_rejects_unknown_quantity() -> None:
    """An unknown quantity is a ValueError, not a silent default."""
    with pytest.raises(ValueError, match="no VIF"):
        new_record(quantity="warp_factor", value=9)


NUMERIC_QUANTITIES = (
    "energy",
    "volume",
    "mass",
    "power",
    "volume_flow",
    "flow_temperature",
    "return_temperature",
    "external_temperature",
    "pressure",
    "voltage",
    "current",
)
INT_TYPES = (DataType.INT8, DataType.INT16, DataType.INT32, DataType.INT48, DataType.INT64)
BCD_TYPES = (DataType.BCD2, DataType.BCD4, DataType.BCD6, DataType.BCD8, DataType.BCD12)
_LIMITS = {
    DataType.INT8: 127,
    DataType.INT16: 32767,
    DataType.INT32: 2**31 - 1,
    DataType.INT48: 2**47 - 1,
    DataType.INT64: 2**63 - 1,
    DataType.BCD2: 9,
    DataType.BCD4: 999,
    DataType.BCD6: 99999,
    DataType.BCD8: 9999999,
    DataType.BCD12: 99999999999,
}


@st.composite
def _records(draw: st.DrawFn) -> Record:
    quantity = draw(st.sampled_from(NUMERIC_QUANTITIES))
    kind = draw(st.sampled_from(INT_TYPES + BCD_TYPES))
    exponent = -3 if quantity in ("voltage", "current") else 0
    # raw / 1000 must be a float that rounds back to raw: |raw| below 2**53 keeps it so.
    limit = _LIMITS[kind] if exponent == 0 else min(_LIMITS[kind], 2**53)
    raw = draw(st.integers(-limit, limit))
    return new_record(
        quantity=quantity,
        value=raw if exponent == 0 else raw / 1000,
        data_type=kind,
        exponent=exponent,
        function=draw(st.sampled_from(list(Function))),
        storage_number=draw(st.integers(0, 2**20)),
        tariff=draw(st.integers(0, 255)),
        subunit=draw(st.integers(0, 15)),
    )


@settings(max_examples=150, deadline=None)
@given(records=st.lists(_records(), max_size=8), mfr=st.binary(max_size=6), more=st.booleans())
def test_random_record_sets_round_trip(records: list[Record], mfr: bytes, more: bool) -> None:
    """encode -> decode gives equal records, manufacturer data and more_follow."""
    block = DataBlock(records=tuple(records), manufacturer_data=mfr, more_follow=more)
    decoded = decode_records(encode_records(block))
    assert decoded.records == block.records
    assert (decoded.manufacturer_data, decoded.more_follow) == (mfr, more)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=120))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    """Any input either decodes or raises ProtocolError."""
    try:
        block = decode_records(data)
    except ProtocolError:
        pass
    else:
        assert encode_records(block) == data
