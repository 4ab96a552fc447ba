"""`smtb decode` of wireless M-Bus: meter ID as BCD text, --key for modes 5 and 7, hex errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from smtestbed.proto.records import new_record
from smtestbed.proto.wmbus import MeterAddress, decode_telegram, encode_telegram, new_telegram
from smtestbed.services.decode.cli import command
from smtestbed.services.decode.render import to_jsonable

from tests.unit.proto.vectors import load_jsonl, skip_reason

ROWS = load_jsonl("wmbus_vectors.jsonl")
MODE5_KEYED = [
    r
    for r in ROWS
    if r["replay_ok"]
    and r["security_mode"] == 5
    and r["key"] != "NOKEY"
    and len(r["key"]) == 32
    and not r["payload_starts_2f2f"]
    and r["ci_field"] == "7a"
]
needs_vectors = pytest.mark.skipif(not MODE5_KEYED, reason=skip_reason)
KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(command, list(args))
    return result.exit_code, result.stdout, result.stderr


def _json(*args: str) -> dict[str, Any]:
    code, out, err = _run("--format", "json", *args)
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def _telegram_hex(row: dict[str, Any]) -> str:
    data = bytes.fromhex(row["telegram_hex"])
    return data[: data[0] + 1].hex()


@needs_vectors
def test_mode5_row_with_its_key_decodes_to_its_records() -> None:
    """An encrypted mode-5 row with --key prints the records the library decrypts, and its ID."""
    row = MODE5_KEYED[0]
    document = _json(_telegram_hex(row), "--key", row["key"])
    expected = decode_telegram(bytes.fromhex(_telegram_hex(row)), key=bytes.fromhex(row["key"]))
    assert document["decoded"]["records"] == to_jsonable(expected.records)
    assert document["decoded"]["records"]["records"]
    assert document["decoded"]["link"]["address"]["ident"] == row["expected_json"]["id"]


@needs_vectors
def test_mode5_row_with_a_wrong_key_is_one_line_and_exit_1() -> None:
    """The same row with another key prints one line naming the wrong key and exits 1."""
    row = MODE5_KEYED[0]
    code, out, err = _run(_telegram_hex(row), "--key", KEY.hex())
    lines = err.strip().splitlines()
    assert (code, out, len(lines)) == (1, "", 1)
    assert "key" in lines[0].lower()
    assert "2f" in lines[0].lower()


def test_mode7_telegram_of_our_encoder_decodes_with_key() -> None:
    """A mode-7 telegram sealed by our encoder gives its volume back with --key."""
    address = MeterAddress(manufacturer=0x2C2D, ident=0x33221100, version=0x1B, device_type=7)
    record = new_record(quantity="volume", value=12.345)
    built = new_telegram(
        address=address,
        records=record.to_bytes(),
        access_number=9,
        security_mode=7,
        counter=5,
    )
    frame = encode_telegram(built, key=KEY)
    document = _json(frame.hex(), "--key", KEY.hex())
    records = document["decoded"]["records"]["records"]
    assert [(r["quantity"], r["value"]) for r in records] == [("volume", 12.345)]
    assert document["decoded"]["link"]["address"]["ident"] == "33221100"


def test_wireless_meter_id_is_shown_as_its_eight_digits_in_the_table() -> None:
    """The table output names the meter ID as on its label and the manufacturer code."""
    address = MeterAddress(manufacturer=0x2C2D, ident=0x33221100, version=1, device_type=7)
    built = new_telegram(
        address=address, records=new_record(quantity="volume", value=1).to_bytes(), access_number=1
    )
    code, out, _ = _run(encode_telegram(built).hex())
    assert code == 0
    assert "ident: 33221100" in out
    assert "KAM" in out


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("1b 1b zz", "at byte 2"), ("0x1b1b1bg1", "at byte 3"), ("aa:bb:cc:x", "at byte 3")],
)
def test_bad_hex_error_names_the_byte_offset(text: str, fragment: str) -> None:
    """A non-hex character is reported on one line with the byte it falls in."""
    code, _, err = _run(text)
    lines = err.strip().splitlines()
    assert (code, len(lines)) == (1, 1)
    assert "not hex" in lines[0]
    assert fragment in lines[0]
