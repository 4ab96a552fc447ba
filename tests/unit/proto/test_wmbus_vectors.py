"""Tests over the wmbusmeters vector set: link/transport decode, mode 5, round trips, records.

Run ``.venv/bin/python -m tests.unit.proto.test_wmbus_vectors`` to print the
record field-matching counts.

Which of wmbusmeters' fields come from standard records, and how they are compared,
is set out in :mod:`tests.unit.proto.wmbus_fields`. Every standard field of every
replayed row must equal our value (one test case per row). Records are read up to
the first malformed one, as wmbusmeters does (:func:`salvage_records`).
"""

from __future__ import annotations

from typing import Any

import pytest
from smtestbed.proto.records import Record, salvage_records
from smtestbed.proto.wmbus.encoder import encode_telegram
from smtestbed.proto.wmbus.errors import WrongKeyError
from smtestbed.proto.wmbus.link import FrameFormat, add_crcs
from smtestbed.proto.wmbus.telegram import Telegram, decode_telegram

from tests.unit.proto.vectors import load_jsonl, skip_reason
from tests.unit.proto.wmbus_fields import FieldCheck, check_row

ROWS = load_jsonl("wmbus_vectors.jsonl")
pytestmark = pytest.mark.skipif(not ROWS, reason=skip_reason)
RECORD_CIS = (0x72, 0x7A, 0x78)


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


REPLAYED = [(index, row) for index, row in enumerate(ROWS) if row["replay_ok"]]


def row_checks(row: dict[str, Any]) -> tuple[list[FieldCheck], bool]:
    """Check the comparable fields of one row; also say whether it had records at all."""
    records = _records_of(decode_telegram(_crc_less(row), key=_key(row), records=False))
    return check_row(row["expected_json"], records or ()), records is not None


def field_counts() -> dict[str, int]:
    """Decode every replayed row's records and count standard and matched fields."""
    names = ("rows_full", "rows_partial", "rows_none", "rows_no_fields", "rows_no_records")
    counts = dict.fromkeys((*names, "fields_comparable", "fields_standard", "fields_matched"), 0)
    for _, row in REPLAYED:
        checks, has_records = row_checks(row)
        counts["rows_no_records"] += not has_records
        counts["fields_comparable"] += len(checks)
        counts["fields_standard"] += sum(check.standard for check in checks)
        counts["fields_matched"] += sum(check.matched for check in checks)
        counts[_row_class(checks)] += 1
    return counts


def _row_class(checks: list[FieldCheck]) -> str:
    """Full: every comparable field matched; partial: some; none: not one."""
    matched = sum(check.matched for check in checks)
    if not checks:
        return "rows_no_fields"
    if matched == len(checks):
        return "rows_full"
    return "rows_partial" if matched else "rows_none"


def _records_of(telegram: Telegram) -> tuple[Record, ...] | None:
    if telegram.application_data is None or telegram.tpl is None:
        return None
    if telegram.tpl.ci not in RECORD_CIS:
        return None
    return salvage_records(telegram.application_data)[0].records


@pytest.mark.parametrize(
    "row", [row for _, row in REPLAYED], ids=[f"{i}-{row['driver']}" for i, row in REPLAYED]
)
def test_standard_record_fields_equal_wmbusmeters(row: dict[str, Any]) -> None:
    """Every field of the row that a standard record explains has wmbusmeters' value."""
    checks, _ = row_checks(row)
    standard = [check for check in checks if check.standard]
    if not standard:
        pytest.skip("no field of this row comes from a standard record")
    wrong = [(c.name, c.expected, c.candidates) for c in standard if not c.matched]
    assert wrong == []


def test_field_counts_do_not_fall() -> None:
    """The share of rows and fields we decode stays at least what it is today."""
    counts = field_counts()
    assert counts["fields_matched"] == counts["fields_standard"]
    assert counts["fields_matched"] >= 1078
    assert counts["rows_full"] >= 105


def test_decoded_row_values_equal_wmbusmeters() -> None:
    """The DME gas row gives 6842.784 m3, 15.9 C and the 2022-12-31 target date.

    Its volumes carry VIFE 0x3E, which the comparison rules do not know yet, so only
    flow, temperature and target date count as standard-record matches.
    """
    row = next(r for r in ROWS if r["telegram_hex"].startswith("2e44a511987065"))
    telegram = decode_telegram(_crc_less(row))
    assert telegram.records is not None
    values = {(r.quantity, r.storage_number): r.value for r in telegram.records.records}
    assert values[("volume", 0)] == pytest.approx(6842.784)
    assert values[("flow_temperature", 0)] == pytest.approx(15.9)
    checks = check_row(row["expected_json"], telegram.records.records)
    assert [c.name for c in checks if c.matched] == ["flow_m3h", "temperature_c", "target_datetime"]


if __name__ == "__main__":
    for name, value in field_counts().items():
        print(f"{name:20} {value}")
