"""`smtb decode`: detection of M-Bus, wM-Bus and SML, JSON and table output, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from smtestbed.proto.sml import encode_sml_file
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.decode.cli import command
from smtestbed.services.decode.detect import Protocol, detect, parse_hex

from tests.unit.proto.test_sml_codec import _meter_file
from tests.unit.proto.test_sml_real import ISKRA_MT175
from tests.unit.proto.vectors import load_jsonl, skip_reason

MBUS_ROWS = [r for r in load_jsonl("mbus_vectors.jsonl") if r["kind"] == "variable"]
WMBUS_ROWS = [
    r
    for r in load_jsonl("wmbus_vectors.jsonl")
    if r["key"] == "NOKEY" and r["replay_ok"] and r["security_mode"] == 0 and not r["ell"]
]
needs_vectors = pytest.mark.skipif(not MBUS_ROWS or not WMBUS_ROWS, reason=skip_reason)


def _run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(command, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def _json(*args: str, stdin: str | None = None) -> dict[str, Any]:
    code, out, err = _run("--format", "json", *args, stdin=stdin)
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def test_parse_hex_accepts_spaces_colons_and_none() -> None:
    """ "1b 1B:1b1b" and "0x1b1b1b1b" are the same four bytes."""
    assert parse_hex("1b 1B:1b1b") == parse_hex("0x1b1b1b1b") == b"\x1b" * 4


def test_detect_by_first_bytes() -> None:
    """SML start, E5, a short frame and 68 L L 68 are told apart; the rest is wM-Bus."""
    assert detect(ISKRA_MT175) is Protocol.SML
    assert detect(b"\xe5") is Protocol.MBUS
    assert detect(bytes.fromhex("105BFE5916")) is Protocol.MBUS
    assert detect(bytes.fromhex("68030368087272ED16")) is Protocol.MBUS
    assert detect(bytes.fromhex("1E44AE4C")) is Protocol.WMBUS


def test_sml_json_has_layers_and_readings() -> None:
    """A real SML file prints its three messages and the scaled 1.8.0 reading in Wh."""
    document = _json(ISKRA_MT175.hex(" "))
    assert document["protocol"] == "sml"
    bodies = [m["body"]["type"] for m in document["decoded"]["messages"]]
    assert bodies == ["PublicOpenResponse", "GetListResponse", "PublicCloseResponse"]
    energy = next(r for r in document["readings"] if r["obis"] == "1-0:1.8.0*255")
    assert (energy["value"], energy["unit"]) == ("22462413.6", "Wh")


def test_sml_of_our_own_read_from_stdin() -> None:
    """'-' reads hex from stdin; our own file with colons decodes to its signed entry."""
    raw = encode_sml_file(_meter_file())
    document = _json("-", stdin=raw.hex(":") + "\n")
    energy = next(r for r in document["readings"] if r["obis"] == "1-0:1.8.0*255")
    assert (energy["value"], energy["signed"]) == ("11783794.9", True)


def test_sml_table_shows_readings() -> None:
    """The table output names the message bodies and lists OBIS readings with units."""
    code, out, _ = _run(ISKRA_MT175.hex())
    assert code == 0
    assert "GetListResponse" in out
    assert "SML readings" in out
    assert "22462413.6" in out
    assert "1-0:16.7.0*255" in out


@needs_vectors
def test_mbus_vector_json_has_slave_info_and_records() -> None:
    """A libmbus variable-data frame prints its slave id and the records libmbus decodes."""
    row = MBUS_ROWS[0]
    document = _json(row["hex"])
    payload = document["decoded"]["payload"]
    assert document["protocol"] == "mbus"
    assert payload["info"]["ident"] == row["parsed"]["id"]
    records = payload["block"]["records"]
    expected = row["parsed"]["records"][1]  # libmbus: Volume 54.321000 m^3
    assert (records[1]["value"], records[1]["unit"]) == (float(expected["value"]), "m^3")


@needs_vectors
def test_mbus_vector_table_lists_records() -> None:
    """The table output of an M-Bus frame has a data-record table."""
    code, out, _ = _run(MBUS_ROWS[0]["hex"])
    assert code == 0
    assert "data records" in out
    assert "Response" in out


@needs_vectors
def test_wmbus_vector_without_crcs_decodes() -> None:
    """An unencrypted wmbusmeters telegram (no link CRCs) prints link, TPL and records."""
    row = WMBUS_ROWS[0]
    document = _json(row["telegram_hex"])
    assert document["protocol"] == "wmbus"
    assert document["decoded"]["link"]["c_field"] == int(row["c_field"], 16)
    assert document["decoded"]["records"]["records"]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("zz", "not hex"),
        ("123", "odd number"),
        (ISKRA_MT175[:-1].hex(), "SML"),
        (ISKRA_MT175[:-2].hex() + "0000", "bad SML file CRC"),
        ("68 03 03 68 08 01 72 00 16", "checksum"),
    ],
    ids=["not_hex", "odd_digits", "sml_truncated", "sml_bad_crc", "mbus_bad_checksum"],
)
def test_bad_input_is_one_line_and_exit_1(text: str, fragment: str) -> None:
    """Bad input prints one error line naming the cause on stderr and exits with 1."""
    code, out, err = _run(text)
    assert code == 1
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert fragment in lines[0]


def test_bad_sml_error_names_the_byte_offset() -> None:
    """A broken message CRC inside an SML file is reported with its file offset."""
    raw = bytearray(ISKRA_MT175)
    raw[100] ^= 0x01
    code, _, err = _run(bytes(raw).hex())
    assert code == 1
    assert "at byte" in err


def test_parse_hex_error_is_protocol_error() -> None:
    """parse_hex rejects non-hex text with ProtocolError bad_hex."""
    with pytest.raises(ProtocolError) as info:
        parse_hex("12 3g")
    assert info.value.reason == "bad_hex"
