"""Tests over the wmbusmeters vector set: link/transport decode, mode 5, round trips, records.

Run ``.venv/bin/python -m tests.unit.proto.test_wmbus_vectors`` to print the
record field-matching counts.

wmbusmeters names fields per driver but ends them with a unit suffix (``total_m3``,
``total_energy_consumption_kwh``, ``flow_temperature_c``). A field counts as matched when a
record of a fitting quantity holds the same value after unit conversion. Storage number and
tariff are not compared: driver field names do not say them in a uniform way.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import pytest
from smtestbed.proto.records import Record, Timestamp, decode_records
from smtestbed.proto.wmbus.encoder import encode_telegram
from smtestbed.proto.wmbus.errors import WrongKeyError
from smtestbed.proto.wmbus.link import FrameFormat, add_crcs
from smtestbed.proto.wmbus.telegram import Telegram, decode_telegram
from smtestbed.services._runtime.errors import ProtocolError

from tests.unit.proto.vectors import load_jsonl, skip_reason

ROWS = load_jsonl("wmbus_vectors.jsonl")
pytestmark = pytest.mark.skipif(not ROWS, reason=skip_reason)
RECORD_CIS = (0x72, 0x7A, 0x78)

# suffix -> (our unit, factor from the suffix unit to ours)
SUFFIX_UNITS: dict[str, tuple[str, float]] = {
    "kwh": ("Wh", 1e3),
    "mwh": ("Wh", 1e6),
    "gj": ("Wh", 1e9 / 3600),
    "mj": ("Wh", 1e6 / 3600),
    "m3": ("m^3", 1.0),
    "l": ("m^3", 1e-3),
    "c": ("°C", 1.0),
    "w": ("W", 1.0),
    "kw": ("W", 1e3),
    "m3h": ("m^3/h", 1.0),
    "lh": ("m^3/h", 1e-3),
    "hca": ("", 1.0),
    "v": ("V", 1.0),
    "a": ("A", 1.0),
    "bar": ("bar", 1.0),
    "h": ("s", 3600.0),
}

# Our other units expressed in the comparison unit of SUFFIX_UNITS.
RECORD_UNITS: dict[str, tuple[str, float]] = {
    "J": ("Wh", 1 / 3600),
    "J/h": ("W", 1 / 3600),
    "m^3/min": ("m^3/h", 60.0),
    "m^3/s": ("m^3/h", 3600.0),
}

NUMERIC_QUANTITY_HINT = {"hca": "hca_units"}
DATE_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)(?: (\d\d):(\d\d))?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class RowResult:
    """How many comparable fields one vector row has and how many we matched."""

    considered: int
    matched: int


def _record_number(record: Record) -> tuple[str, float] | None:
    value = record.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    unit, factor = RECORD_UNITS.get(record.unit, (record.unit, 1.0))
    return unit, float(value) * factor


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def _number_matches(records: tuple[Record, ...], suffix: str, expected: float) -> bool:
    unit, factor = SUFFIX_UNITS[suffix]
    want = expected * factor
    hint = NUMERIC_QUANTITY_HINT.get(suffix)
    for record in records:
        got = _record_number(record)
        if got is None or got[0] != unit or (hint and record.quantity != hint):
            continue
        if _close(got[1], want):
            return True
    return False


def _date_matches(records: tuple[Record, ...], text: str) -> bool:
    found = DATE_RE.match(text)
    if found is None:
        return False
    year, month, day, hour, minute = found.groups()
    for record in records:
        stamp = record.value
        if not isinstance(stamp, Timestamp):
            continue
        if (stamp.year, stamp.month, stamp.day) != (int(year), int(month), int(day)):
            continue
        if hour is None or (stamp.hour, stamp.minute) == (int(hour), int(minute)):
            return True
    return False


def comparable_fields(expected: dict[str, Any]) -> dict[str, Any]:
    """Return the fields of wmbusmeters' JSON that standard records can carry."""
    out: dict[str, Any] = {}
    for name, value in expected.items():
        suffix = name.rsplit("_", 1)[-1]
        if isinstance(value, bool):
            continue
        number = isinstance(value, int | float) and suffix in SUFFIX_UNITS
        date = isinstance(value, str) and suffix in ("date", "datetime") and DATE_RE.match(value)
        if number or date:
            out[name] = value
    return out


def compare_row(expected: dict[str, Any], records: tuple[Record, ...]) -> RowResult:
    """Count comparable fields and those a record matches."""
    fields = comparable_fields(expected)
    matched = 0
    for name, value in fields.items():
        if isinstance(value, str):
            matched += _date_matches(records, value)
        else:
            matched += _number_matches(records, name.rsplit("_", 1)[-1], float(value))
    return RowResult(considered=len(fields), matched=matched)


def _crc_less(row: dict[str, Any]) -> bytes:
    """Return the CRC-less telegram; one replayed row carries 5 dongle bytes beyond L."""
    data = bytes.fromhex(row["telegram_hex"])
    return data[: data[0] + 1]


def _key(row: dict[str, Any]) -> bytes | None:
    """Return the row's AES-128 key (DES keys of mode 2 rows are out of scope)."""
    key = None if row["key"] == "NOKEY" else bytes.fromhex(row["key"])
    return key if key is not None and len(key) == 16 else None


def _decode(row: dict[str, Any], frame_format: FrameFormat = FrameFormat.A) -> Telegram:
    frame = add_crcs(_crc_less(row), frame_format)
    return decode_telegram(frame, key=_key(row), records=False)


def _first_ci(telegram: Telegram) -> int:
    if telegram.ell is not None:
        return telegram.ell.ci
    if telegram.afl is not None:
        return 0x90
    assert telegram.tpl is not None
    return telegram.tpl.ci


def _mode5_cipher_rows() -> list[dict[str, Any]]:
    rows = []
    for row in ROWS:
        data, key = _crc_less(row), _key(row)
        if key is None or row.get("ci_field") == "73":
            continue
        telegram = decode_telegram(data, key=None, records=False)
        if telegram.tpl is not None and telegram.tpl.security_mode == 5:
            rows.append(row)
    return rows


def test_every_replayed_row_decodes_through_link_and_transport() -> None:
    """All 384 replay_ok rows, framed as format A with CRCs, decode with the row's fields."""
    replayed = [row for row in ROWS if row["replay_ok"]]
    assert len(replayed) == 384
    for row in replayed:
        telegram = _decode(row)
        assert telegram.frame_format is FrameFormat.A
        assert telegram.link.c_field == int(row["c_field"], 16)
        assert telegram.link.address.link_order()[:2].hex() == row["m_field"]
        assert _first_ci(telegram) == int(row["ci_field"], 16)


def test_format_b_frames_decode_like_format_a() -> None:
    """Every row framed as format B decodes to the same telegram as format A."""
    for row in ROWS:
        a_side, b_side = _decode(row, FrameFormat.A), _decode(row, FrameFormat.B)
        assert b_side.frame_format is FrameFormat.B
        assert (b_side.tpl, b_side.payload, b_side.ell) == (a_side.tpl, a_side.payload, a_side.ell)


def test_all_keyed_mode5_ciphertext_rows_decrypt() -> None:
    """The 22 keyed mode-5 ciphertext rows decrypt to plaintext beginning with 2F 2F."""
    rows = _mode5_cipher_rows()
    assert len(rows) == 22
    for row in rows:
        telegram = _decode(row)
        assert telegram.security.decrypted
        assert telegram.application_data is not None
        assert telegram.application_data[:2] == b"\x2f\x2f"
        assert telegram.payload[:2] != b"\x2f\x2f"


def test_keyed_row_with_wrong_key_fails_the_2f2f_check() -> None:
    """A keyed mode-5 row decrypted with another key raises WrongKeyError."""
    row = _mode5_cipher_rows()[0]
    frame = add_crcs(_crc_less(row))
    with pytest.raises(WrongKeyError) as info:
        decode_telegram(frame, key=bytes(range(16)), records=False)
    assert info.value.reason == "wrong_key"


def test_encrypted_rows_without_key_keep_ciphertext() -> None:
    """Mode-5 rows without key and without 2F 2F stay encrypted: no APL, no records."""
    seen = 0
    for row in ROWS:
        telegram = decode_telegram(_crc_less(row), records=False)
        if telegram.security.mode == 5 and telegram.payload[:2] != b"\x2f\x2f":
            seen += 1
            assert telegram.application_data is None
            assert telegram.security.encrypted
            assert not telegram.security.decrypted
    assert seen >= 22


def test_already_decrypted_rows_are_flagged_plain_on_air() -> None:
    """NOKEY mode-5 rows with 2F 2F and all 44 ELL 0x8D rows are read as plaintext."""
    ell_rows = [row for row in ROWS if row["ci_field"] == "8d"]
    assert len(ell_rows) == 44
    for row in ell_rows:
        telegram = _decode(row)
        assert telegram.security.plain_on_air
        assert telegram.tpl is not None
    plain5 = [r for r in ROWS if r["key"] == "NOKEY" and r["security_mode"] == 5]
    plain5 = [r for r in plain5 if r.get("payload_starts_2f2f")]
    assert len(plain5) >= 90
    for row in plain5:
        assert _decode(row).security.plain_on_air


def test_already_plain_row_with_a_key_is_refused() -> None:
    """A plaintext mode-5 row decoded with a key fails: it was never encrypted."""
    row = next(r for r in ROWS if r["security_mode"] == 5 and r.get("payload_starts_2f2f"))
    with pytest.raises(WrongKeyError):
        decode_telegram(_crc_less(row), key=bytes(16), records=False)


def test_mode7_rows_carry_oms_profile_b_afl() -> None:
    """ELL+AFL rows show the OMS profile B AFL and a mode 7 TPL with KDF selection 1."""
    rows = [r for r in ROWS if r["ci_field"] == "8c" and r["telegram_hex"][26:28] == "90"]
    assert rows
    for row in rows:
        telegram = _decode(row)
        assert telegram.afl is not None
        assert telegram.tpl is not None
        assert telegram.tpl.config is not None
        assert (telegram.afl.fcl, telegram.afl.mcl) == (0x2C00, 0x25)
        assert telegram.afl.mac is not None
        assert len(telegram.afl.mac) == 8
        assert telegram.tpl.security_mode == 7
        assert telegram.tpl.config.kdf_selection == 1


@pytest.mark.parametrize("frame_format", [FrameFormat.A, FrameFormat.B])
def test_every_row_round_trips_byte_exact(frame_format: FrameFormat) -> None:
    """encode(decode(frame)) == frame for all 395 rows, keyed rows re-encrypted with the key."""
    for row in ROWS:
        frame = add_crcs(_crc_less(row), frame_format)
        telegram = decode_telegram(frame, key=_key(row), records=False)
        assert encode_telegram(telegram, key=_key(row), frame_format=frame_format) == frame
        if _key(row) is None:
            assert encode_telegram(telegram, crcs=False) == _crc_less(row)


def field_counts() -> dict[str, int]:
    """Decode every replayed row's records and count matched wmbusmeters fields."""
    counts = dict.fromkeys(
        (
            "rows_full",
            "rows_partial",
            "rows_none",
            "rows_no_fields",
            "rows_no_records",
            "fields_considered",
            "fields_matched",
        ),
        0,
    )
    for row in ROWS:
        if not row["replay_ok"]:
            continue
        records = _records_of(decode_telegram(_crc_less(row), key=_key(row), records=False))
        if records is None:
            counts["rows_no_records"] += 1
            records = ()
        result = compare_row(row["expected_json"], records)
        counts["fields_considered"] += result.considered
        counts["fields_matched"] += result.matched
        counts[_row_class(result)] += 1
    return counts


def _row_class(result: RowResult) -> str:
    if result.considered == 0:
        return "rows_no_fields"
    if result.matched == result.considered:
        return "rows_full"
    return "rows_partial" if result.matched else "rows_none"


def _records_of(telegram: Telegram) -> tuple[Record, ...] | None:
    if telegram.application_data is None or telegram.tpl is None:
        return None
    if telegram.tpl.ci not in RECORD_CIS:
        return None
    try:
        return decode_records(telegram.application_data).records
    except ProtocolError:
        return None


def test_records_match_wmbusmeters_fields() -> None:
    """Standard-record fields of wmbusmeters' JSON equal our decoded values in most rows."""
    counts = field_counts()
    assert counts["rows_full"] >= 200
    assert counts["fields_matched"] >= 1700


def test_decoded_row_values_equal_wmbusmeters() -> None:
    """The DME gas row gives 6842.784 m3, 15.9 C and the 2022-12-31 target date."""
    row = next(r for r in ROWS if r["telegram_hex"].startswith("2e44a511987065"))
    telegram = decode_telegram(_crc_less(row))
    assert telegram.records is not None
    values = {(r.quantity, r.storage_number): r.value for r in telegram.records.records}
    assert values[("volume", 0)] == pytest.approx(6842.784)
    assert values[("flow_temperature", 0)] == pytest.approx(15.9)
    assert compare_row(row["expected_json"], telegram.records.records).matched == 5


if __name__ == "__main__":
    for name, value in field_counts().items():
        print(f"{name:20} {value}")
