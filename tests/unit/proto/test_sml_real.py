"""SML: files captured from real meters decode to the readings in their bytes and re-encode.

The readings asserted here were worked out by hand from the hex (noted next to each
assertion), not taken from another decoder.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from smtestbed.proto.sml import (
    GetListResponse,
    ObisCode,
    PublicCloseResponse,
    PublicOpenResponse,
    Reading,
    SmlFile,
    decode_sml_file,
    decode_sml_message,
    encode_sml_file,
    encode_sml_message,
    readings_from_file,
)

# ISKRA MT175, first complete file of ISKRA_MT175_eHZ.hex in devZer0/libsml-testing.
ISKRA_MT175 = bytes.fromhex(
    "1B1B1B1B0101010176050F1A20606200620072630101760101050508B5760B090149534B000403DF6301"
    "0163C4BA0076050F1A2061620062007263070177010B090149534B000403DF63070100620AFFFF726201"
    "6507AFF5DC7A77078181C78203FF010101010449534B0177070100000009FF010101010B090149534B00"
    "0403DF630177070100010800FF650000018201621E52FF59000000000D637E080177070100010801FF01"
    "01621E52FF59000000000D637E080177070100010802FF0101621E52FF59000000000000000001770701"
    "00100700FF0101621B520055000000A80177070100240700FF0101621B52005500000075017707010038"
    "0700FF0101621B5200550000001601770701004C0700FF0101621B5200550000001D0177078181C78205"
    "FF0101010183020C2DE05C56024E1CD45280F4A0769A95E629CAE205C55C9F1683CA5419778E1D9BCFA1"
    "C577A6B36A92709EBF05EA21BD01010163291C0076050F1A206262006200726302017101630054001B1B"
    "1B1B1A00AE84"
)

# Holley DTZ541 ("Frame2" in tests/test_frames.py of spacemanspiff2007/SmlLib): body tags
# sent as Unsigned32 and valTime as a bare Unsigned32, both off the specification.
HOLLEY_DTZ541 = bytes.fromhex(
    "1b1b1b1b0101010176040000016200620072650000010176010107000002dba23c0b0a01484c59020004"
    "24a0010163945b0076040000026200620072650000070177010b0a01484c5902000424a00101f1047707"
    "0100603201010101010104484c590177070100600100ff010101010b0a01484c5902000424a001770701"
    "00010800ff65001c81046502dba23d621e52ff6502aea1320177070100020800ff65001c81046502dba2"
    "3d621e52ff62000177070100100700ff0101621b52005300890177070100200700ff0101622352ff6309"
    "280177070100340700ff0101622352ff6309290177070100480700ff0101622352ff6309220177070100"
    "1f0700ff0101622152fe62290177070100330700ff0101622152fe624e0177070100470700ff01016221"
    "52fe622e0177070100510701ff01016208520062f00177070100510702ff010162085200627801770701"
    "00510704ff010162085200630110017707010051070fff0101620852006301380177070100510"
    "71aff01016208520063011101770701000e0700ff0101622c52ff6301f401770701000002000001010101"
    "09312e30322e3030370177070100605a02010101010105413031410177070100600500ff010101016500"
    "1c810401010163fc1e00760400000362006200726500000201710163e8230000001b1b1b1b1a0222ed"
)

# DZG meter ("Frame1" in tests/test_frames.py of spacemanspiff2007/SmlLib): valTime as
# secIndex of one byte, and 4 padding bytes before the end sequence.
DZG = bytes.fromhex(
    "1b1b1b1b0101010176051c414c02620062007263010176010102310b0a01445a47000282c0b072620165"
    "05471c2a620263f9380076051d414c02620062007263070177010b0a01445a47000282c0b0070100620a"
    "ffff7262016505471c2a7477070100603201010172620162006200520004445a470177070100600100ff"
    "017262016200620052000b0a01445a47000282c0b00177070100010800ff641c01047262016200621e52"
    "0363344f0177070100020800ff017262016200621e520362000101016393770076051e414c0262006200"
    "72630201710163e6ba00000000001b1b1b1b1a04dad0"
)

REAL_FILES = {"iskra_mt175": ISKRA_MT175, "holley_dtz541": HOLLEY_DTZ541, "dzg": DZG}


def _by_obis(sml_file: SmlFile) -> dict[str, Reading]:
    return {str(reading.obis): reading for reading in readings_from_file(sml_file)}


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_file_reencodes_to_the_same_bytes(name: str) -> None:
    """encode(decode(x)) == x for files captured from real meters."""
    raw = REAL_FILES[name]
    decoded = decode_sml_file(raw)
    assert encode_sml_file(decoded.messages, padding=decoded.padding) == raw


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_real_file_is_open_getlist_close(name: str) -> None:
    """A pushing meter sends PublicOpen.Res, GetList.Res, PublicClose.Res in one file."""
    bodies = [type(m.body) for m in decode_sml_file(REAL_FILES[name]).messages]
    assert bodies == [PublicOpenResponse, GetListResponse, PublicCloseResponse]


def test_iskra_energy_register_is_scaled_to_wh() -> None:
    """ISKRA 1.8.0: 59 00000000 0D637E08 = 224624136, scaler FF (-1), unit 1E -> 22462413.6 Wh."""
    reading = _by_obis(decode_sml_file(ISKRA_MT175))["1-0:1.8.0*255"]
    assert reading.value == Decimal("22462413.6")
    assert (reading.unit, reading.unit_symbol) == (30, "Wh")


def test_iskra_power_and_signature_entries() -> None:
    """ISKRA 16.7.0: 55 000000A8 = 168 W; 129-129:199.130.5 carries a 48-byte public key."""
    by_obis = _by_obis(decode_sml_file(ISKRA_MT175))
    assert by_obis["1-0:16.7.0*255"].value == Decimal(168)
    assert by_obis["1-0:16.7.0*255"].unit_symbol == "W"
    key = by_obis["129-129:199.130.5*255"].value
    assert isinstance(key, bytes)
    assert len(key) == 48  # TL 83 02: a two-byte TL, 0x32 = 50 bytes with the TL


def test_holley_readings_scale_voltage_current_frequency() -> None:
    """Holley: 02AEA132 x 0.1 Wh, 0928 x 0.1 V, 29 x 0.01 A, 01F4 x 0.1 Hz."""
    by_obis = _by_obis(decode_sml_file(HOLLEY_DTZ541))
    assert by_obis["1-0:1.8.0*255"].value == Decimal("4499896.2")
    assert (by_obis["1-0:32.7.0*255"].value, by_obis["1-0:32.7.0*255"].unit) == (
        Decimal("234.4"),
        35,
    )
    assert (by_obis["1-0:31.7.0*255"].value, by_obis["1-0:31.7.0*255"].unit) == (
        Decimal("0.41"),
        33,
    )
    assert (by_obis["1-0:14.7.0*255"].value, by_obis["1-0:14.7.0*255"].unit) == (
        Decimal("50.0"),
        44,
    )


def test_holley_keeps_wide_tags_and_bare_val_time() -> None:
    """Holley's Unsigned32 body tags and bare valTime are kept so that the file re-encodes."""
    sml_file = decode_sml_file(HOLLEY_DTZ541)
    assert {m.tag_size for m in sml_file.messages} == {4}
    body = sml_file.messages[1].body
    assert isinstance(body, GetListResponse)
    energy = next(e for e in body.entries if e.obj_name == ObisCode.parse("1-0:1.8.0"))
    assert energy.val_time is not None
    assert energy.val_time.bare
    assert energy.val_time.value.value == 0x02DBA23D


def test_dzg_positive_scaler_multiplies_out() -> None:
    """DZG 1.8.0: 63 344F = 13391 with scaler 52 03 -> 13391000 Wh; padding 4 is kept."""
    sml_file = decode_sml_file(DZG)
    assert _by_obis(sml_file)["1-0:1.8.0*255"].value == Decimal(13391000)
    assert sml_file.padding == 4


@pytest.mark.parametrize(
    "hex_message",
    [
        "7605032b18116200620072630201710163fa3600",
        "7605171756bd6200620072630201710163170f00",
        "760700070615fce7620062007263010176010107000702e053ce0b0901454d4800004895f701016333aa00",
    ],
)
def test_published_message_crc_is_accepted(hex_message: str) -> None:
    """Messages from SmlLib tests/test_crc.py pass the per-message CRC check and re-encode."""
    raw = bytes.fromhex(hex_message)
    assert encode_sml_message(decode_sml_message(raw)) == raw
