"""Wired M-Bus frames from libmbus and pyMeterBus decode as those projects say.

Each row of ``mbus_vectors.jsonl`` is one test case. ``parsed`` is libmbus's
normalised XML; the small tables below map our quantity/unit names to its.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from smtestbed.proto.mbus.fixed import FixedData
from smtestbed.proto.mbus.response import (
    ApplicationError,
    VariableData,
    decode_response,
    encode_response,
)
from smtestbed.proto.records import Function, Record, Timestamp
from smtestbed.proto.records.vif import PRIMARY, lookup
from smtestbed.services._runtime.errors import ProtocolError

from tests.unit.proto.vectors import load_jsonl, skip_reason

ROWS = load_jsonl("mbus_vectors.jsonl")
pytestmark = pytest.mark.skipif(not ROWS, reason=skip_reason)

LIBMBUS_QUANTITY = {
    "energy": "Energy",
    "volume": "Volume",
    "power": "Power",
    "volume_flow": "Volume flow",
    "flow_temperature": "Flow temperature",
    "return_temperature": "Return temperature",
    "temperature_difference": "Temperature difference",
    "external_temperature": "External temperature",
    "on_time": "On time",
    "operating_time": "Operating time",
    "averaging_duration": "Averaging Duration",
    "actuality_duration": "Actuality Duration",
    "fabrication_number": "Fabrication No",
    "date": "Time point (date)",
    "date_time": "Time point (date & time)",
    "hca_units": "H.C.A.",
    "error_flags": "Error flags",
    "digital_input": "Digital Input",
    "digital_output": "Digital Output",
    "dimensionless": "Dimensionless",
    "firmware_version": "Firmware version",
    "software_version": "Software version",
    "model_version": "Model / Version",
    "parameter_set_id": "Parameter set identification",
    "reset_counter": "Reset counter",
    "special_supplier_info": "Special supplier information",
    "voltage": "Voltage",
    "current": "Current",
    "manufacturer_specific": "Manufacturer specific",
    "reserved": "Reserved",
    "relative_humidity": "%RH",
}
"""Our quantity -> libmbus's <Quantity>."""

LIBMBUS_UNIT = {"": "", "%": "-", "reserved": "Reserved", "hca_units": "Units for H.C.A."}
"""Our unit (or quantity, for units libmbus names by quantity) -> libmbus's <Unit>."""

LIBMBUS_FUNCTION = {
    Function.INSTANTANEOUS: "Instantaneous value",
    Function.MAXIMUM: "Maximum value",
    Function.MINIMUM: "Minimum value",
    Function.ERROR_STATE: "Value during error state",
}

LIBMBUS_MEDIUM = {
    0x00: "Other",
    0x01: "Oil",
    0x02: "Electricity",
    0x03: "Gas",
    0x04: "Heat: Outlet",
    0x06: "Warm water (30-90°C)",
    0x07: "Water",
    0x0C: "Heat: Inlet",
    0x0D: "Heat / Cooling load meter",
    0x0E: "Bus/System",
    0x16: "Cold water",
    0x1B: "Ambient Sensor",
    0x20: "Breaker: Electricity",
}

WE_DIFFER = {
    ("pymeterbus_test_weptech", 4): (
        "%RH",
        53.1,
        "VIF FB 1A is relative humidity in 0.1 % (EN 13757-3 first extension table); "
        "libmbus's table lacks FB 1A and prints the raw 531 as 'Reserved'",
    ),
}
"""Records where libmbus's stored value is wrong, with our value and why."""


def _rows(*kinds: str) -> list[Any]:
    return [pytest.param(row, id=row["name"]) for row in ROWS if row["kind"] in kinds]


def _libmbus_unit(record: Record) -> str:
    if record.quantity in ("date", "date_time", "plain_text_unit", "relative_humidity"):
        return "-"
    if record.quantity in LIBMBUS_UNIT:
        return LIBMBUS_UNIT[record.quantity]
    return LIBMBUS_UNIT.get(record.unit, record.unit)


def _libmbus_quantity(record: Record) -> str:
    if record.quantity == "plain_text_unit":
        return record.unit
    return LIBMBUS_QUANTITY[record.quantity]


def _libmbus_bcd(data: bytes) -> int:
    """Return what libmbus makes of BCD with non-decimal digits.

    It skips high nibbles above 9 but adds every low nibble as if it were a
    digit, so ``DD EB B4 DD`` becomes 13110413: a number the meter never sent.
    """
    value = 0
    for byte in reversed(data):
        value = value * 10 + (byte >> 4 if byte >> 4 < 10 else 0)
        value = value * 10 + (byte & 0x0F)
    return value


def _assert_value(record: Record, expected: str) -> None:
    value = record.value
    if value is None and record.data_type.value.startswith("bcd"):
        # Meters fill BCD fields with hex digits in error state; there is no
        # number to report, so we give None where libmbus prints digit soup.
        assert any(nibble > 9 for byte in record.data for nibble in (byte >> 4, byte & 0x0F))
        entry = lookup(PRIMARY, record.vib[0])
        assert entry is not None
        factor, exponent = entry.scale(record.vib[0] & 0x7F)
        libmbus = _libmbus_bcd(record.data) * factor * 10.0**exponent
        assert math.isclose(libmbus, float(expected), rel_tol=1e-9)
    elif isinstance(value, Timestamp) and value.invalid:
        # IV flag set: libmbus replaces the fields by a zero placeholder.
        assert expected == "1900-01-00T00:00:00Z"
    elif isinstance(value, Timestamp):
        assert value.iso() == expected.removesuffix("Z")
    elif isinstance(value, str):
        assert value == expected
    elif isinstance(value, bytes):
        # libmbus prints a binary number most significant byte first.
        assert value[::-1].hex(" ").upper() == expected
    else:
        assert value is not None
        assert math.isclose(value, float(expected), rel_tol=1e-6, abs_tol=1e-6), (value, expected)


def _assert_record(name: str, index: int, record: Record, expected: dict[str, str]) -> None:
    assert LIBMBUS_FUNCTION[record.function] == expected["function"]
    assert record.storage_number == int(expected["storage_number"])
    if "tariff" in expected:
        assert record.tariff == int(expected["tariff"])
        assert record.subunit == int(expected["device"])
    if (name, index) in WE_DIFFER:
        quantity, value, _why = WE_DIFFER[(name, index)]
        assert _libmbus_quantity(record) == quantity
        assert record.value == pytest.approx(value)
        return
    assert _libmbus_quantity(record) == expected["quantity"]
    assert _libmbus_unit(record) == expected["unit"]
    _assert_value(record, expected["value"])


def _assert_special(payload: VariableData, expected: dict[str, str]) -> None:
    block = payload.block
    if expected["function"] == "More records follow":
        assert block.more_follow
    else:
        assert expected["function"] == "Manufacturer specific"
        assert not block.more_follow
    assert block.special_dif
    assert block.manufacturer_data.hex(" ").upper() == expected["value"]


@pytest.mark.parametrize("row", _rows("variable"))
def test_variable_data_header_matches_libmbus(row: dict[str, Any]) -> None:
    """The CI 0x72 header gives libmbus's ID, manufacturer, version, medium, access no., status."""
    if "parsed" not in row:
        pytest.skip("row has no libmbus decoding (libmbus rejects its CI)")
    payload = decode_response(bytes.fromhex(row["hex"])).payload
    assert isinstance(payload, VariableData)
    parsed, info = row["parsed"], payload.info
    # libmbus prints the ID digits as hex without leading zeros ("50002E5").
    assert (info.ident.lstrip("0") or "0") == parsed["id"]
    assert info.manufacturer == parsed["manufacturer"]
    assert info.version == int(parsed["version"])
    assert LIBMBUS_MEDIUM[info.medium] == parsed["medium"]
    assert info.access_number == int(parsed["access_number"])
    assert f"{info.status:02X}" == parsed["status"]
    assert f"{info.signature:04X}" == parsed["signature"]


@pytest.mark.parametrize("row", _rows("variable"))
def test_variable_data_records_match_libmbus(row: dict[str, Any]) -> None:
    """Every record has libmbus's function, storage, tariff, device, quantity, unit and value."""
    if "parsed" not in row:
        pytest.skip("row has no libmbus decoding (libmbus rejects its CI)")
    payload = decode_response(bytes.fromhex(row["hex"])).payload
    assert isinstance(payload, VariableData)
    expected = row["parsed"]["records"]
    records = payload.block.records
    assert len(records) + int(payload.block.special_dif) == len(expected)
    for index, record in enumerate(records):
        _assert_record(row["name"], index, record, expected[index])
    if payload.block.special_dif:
        _assert_special(payload, expected[-1])


@pytest.mark.parametrize("row", _rows("fixed"))
def test_fixed_data_matches_libmbus(row: dict[str, Any]) -> None:
    """CI 0x73 gives libmbus's ID, medium, access number, status and both counters.

    Counter 2 with unit code 0x3E is "same but historic" (EN 1434-3): a
    historic value in counter 1's unit. libmbus prints it unitless as
    "reserved but historic"; we give it counter 1's unit.
    """
    payload = decode_response(bytes.fromhex(row["hex"])).payload
    assert isinstance(payload, FixedData)
    parsed = row["parsed"]
    assert payload.ident.lstrip("0") == parsed["id"]
    assert {0x07: "Water", 0x04: "Heat"}[payload.medium] == parsed["medium"]
    assert payload.access_number == int(parsed["access_number"])
    assert f"{payload.status:02X}" == parsed["status"]
    litre_like = {"l": ("m^3", -3), "kWh": ("Wh", 3)}
    for counter, expected in zip(payload.counters, parsed["records"], strict=True):
        assert counter.raw == int(expected["value"])
        if expected["unit"] == "reserved but historic":
            assert counter.historic
            assert counter.unit == payload.counters[0].unit
        else:
            assert counter.unit.label == expected["unit"]
            unit, exponent = litre_like[expected["unit"]]
            assert counter.unit.unit == unit
            assert counter.value == pytest.approx(int(expected["value"]) * 10.0**exponent)


@pytest.mark.parametrize("row", _rows("app_error"))
def test_application_error_matches_libmbus(row: dict[str, Any]) -> None:
    """CI 0x70 gives the error code whose text libmbus prints."""
    payload = decode_response(bytes.fromhex(row["hex"])).payload
    assert isinstance(payload, ApplicationError)
    assert payload.description.lower() == row["parsed"]["error"].lower().replace("-", " ")


@pytest.mark.parametrize("row", _rows("malformed"))
def test_malformed_frame_raises_protocol_error(row: dict[str, Any]) -> None:
    """Frames libmbus rejects raise ProtocolError with a reason and an offset."""
    with pytest.raises(ProtocolError) as caught:
        decode_response(bytes.fromhex(row["hex"]))
    assert caught.value.reason != "malformed"
    assert caught.value.offset is not None


@pytest.mark.parametrize("row", _rows("variable", "fixed", "app_error"))
def test_valid_frame_reencodes_byte_for_byte(row: dict[str, Any]) -> None:
    """encode_response(decode_response(frame)) gives the frame back unchanged."""
    if row["ci"] not in ("70", "72", "73"):
        pytest.skip(f"CI 0x{row['ci']} is not supported (deprecated MSB-first variant)")
    frame = bytes.fromhex(row["hex"])
    assert encode_response(decode_response(frame)) == frame
