"""Wired M-Bus frames (EN 13757-2): encoding, parsing, faults, streams, requests."""

from __future__ import annotations

import contextlib

import meterbus
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtestbed.proto.mbus.cfield import is_req_ud2, req_ud2, rsp_ud, split_c
from smtestbed.proto.mbus.frames import (
    Ack,
    ControlFrame,
    LongFrame,
    ShortFrame,
    encode_frame,
    parse_frame,
    split_frames,
)
from smtestbed.proto.mbus.header import slave_info
from smtestbed.proto.mbus.requests import (
    SecondaryAddress,
    decode_application_reset,
    decode_select,
    decode_set_primary_address,
    encode_application_reset,
    encode_req_ud2,
    encode_select,
    encode_set_primary_address,
    encode_snd_nke,
    matches,
)
from smtestbed.proto.mbus.response import Response, VariableData, decode_response, encode_response
from smtestbed.proto.records import DataBlock, DataType, Timestamp, new_record
from smtestbed.services._runtime.errors import ProtocolError

REQ_UD2_5 = bytes.fromhex("10 5B 05 60 16")
VALID_LONG = bytes.fromhex(
    "68 1F 1F 68 08 00 72 31 77 67 17 2D 2C 01 02 00 00 00 00 2F 2F 04 83 3B 88 13 00 00 "
    "2F 2F 2F 2F 2F 2F 2F 00 16"
)


def test_snd_nke_and_req_ud2_short_frames_have_known_bytes() -> None:
    """SND_NKE to 0xFD is 10 40 FD 3D 16; REQ_UD2 to 5 is 10 5B 05 60 16."""
    assert encode_snd_nke(0xFD) == bytes.fromhex("10 40 FD 3D 16")
    assert encode_req_ud2(5) == REQ_UD2_5
    assert encode_req_ud2(5, fcb=True)[1] == 0x7B


@pytest.mark.parametrize(
    ("frame", "wire"),
    [
        (Ack(), "E5"),
        (ShortFrame(c=0x5B, a=5), "10 5B 05 60 16"),
        (ControlFrame(c=0x53, a=1, ci=0x50), "68 03 03 68 53 01 50 A4 16"),
        (
            LongFrame(c=0x53, a=0xFE, ci=0x51, data=b"\x01\x7a\x08"),
            "68 06 06 68 53 FE 51 01 7A 08 25 16",
        ),
    ],
)
def test_frame_kinds_encode_and_parse_both_ways(frame: object, wire: str) -> None:
    """Each frame kind encodes to its bytes and parses back to an equal value."""
    data = bytes.fromhex(wire)
    assert encode_frame(frame) == data  # type: ignore[arg-type]
    assert parse_frame(data) == frame


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("10 5B 05 61 16", "bad_checksum"),
        ("10 5B 05 60 17", "missing_stop"),
        ("10 5B 05", "truncated"),
        ("68 04 05 68 08 01 70 00 79 16", "bad_length"),
        ("68 05 05 68 08 01 70 00 79 16", "truncated"),
        ("68 03 03 68 08 01 70 00 79 16", "bad_checksum"),
        ("68 00 00 68 08 16", "bad_length"),
        ("68 04 04 67 08 01 70 00 79 16", "bad_start"),
        ("E5 E5", "trailing_bytes"),
        ("42", "bad_start"),
        ("", "truncated"),
    ],
)
def test_broken_frame_raises_protocol_error_naming_cause(wire: str, reason: str) -> None:
    """Checksum, stop byte, L fields, length and truncation faults each have a reason."""
    with pytest.raises(ProtocolError) as caught:
        parse_frame(bytes.fromhex(wire))
    assert caught.value.reason == reason


def test_split_frames_returns_complete_frames_and_the_partial_rest() -> None:
    """A stream of E5, a short frame and half a long frame splits into two frames and a tail."""
    stream = b"\xe5" + REQ_UD2_5 + VALID_LONG[:10]
    frames, rest = split_frames(stream)
    assert frames == (Ack(), ShortFrame(c=0x5B, a=5))
    assert rest == VALID_LONG[:10]
    more, tail = split_frames(rest + VALID_LONG[10:])
    assert [type(frame) for frame in more] == [LongFrame]
    assert tail == b""


def test_split_frames_skips_noise_and_corrupt_frames() -> None:
    """Garbage and a frame with a bad checksum are dropped; the good frame after them is found."""
    corrupt = bytearray(REQ_UD2_5)
    corrupt[3] ^= 0xFF
    frames, rest = split_frames(b"\x00\x42" + bytes(corrupt) + REQ_UD2_5)
    assert frames == (ShortFrame(c=0x5B, a=5),)
    assert rest == b""


def test_c_field_helpers_toggle_fcb_and_set_acd_dfc() -> None:
    """REQ_UD2 with FCB is 0x7B; RSP_UD with ACD and DFC is 0x38; split_c reads the bits."""
    assert req_ud2(fcb=True) == 0x7B
    assert is_req_ud2(0x7B)
    assert rsp_ud(acd=True, dfc=True) == 0x38
    bits = split_c(0x7B)
    assert (bits.from_master, bits.fcb, bits.fcv, bits.function) == (True, True, True, 0xB)


def test_select_frame_matches_libmbus_layout() -> None:
    """Selecting 1149037877040E16 sends 68 0B 0B 68 53 FD 52 78 03 49 11 77 04 0E 16 CS 16."""
    pattern = SecondaryAddress.parse("1149037877040E16")
    frame = encode_select(pattern)
    assert frame[:15].hex(" ").upper() == "68 0B 0B 68 53 FD 52 78 03 49 11 77 04 0E 16"
    parsed = parse_frame(frame)
    assert isinstance(parsed, LongFrame)
    assert decode_select(parsed) == pattern
    assert str(pattern) == "1149037877040E16"


@pytest.mark.parametrize(
    ("pattern", "selected"),
    [
        ("1149037877040E16", True),
        ("1149FFFF77040E16", True),
        ("FFFFFFFFFFFFFFFF", True),
        ("11490378FFFFFF16", True),
        ("1149037977040E16", False),
        ("11490378FFFFFF07", False),
        ("2FFFFFFFFFFFFFFF", False),
    ],
)
def test_secondary_pattern_matches_with_wildcards(pattern: str, selected: bool) -> None:
    """F nibbles in the ID and 0xFF bytes match anything; other digits must be equal."""
    address = SecondaryAddress.parse("1149037877040E16")
    assert matches(address, SecondaryAddress.parse(pattern)) is selected


def test_set_primary_address_frame_is_libmbus_manual_frame4() -> None:
    """Setting address 8 via 0xFE gives libmbus's manual_frame4 bytes and decodes back to 8."""
    frame = encode_set_primary_address(0xFE, 8)
    assert frame == bytes.fromhex("68 06 06 68 53 FE 51 01 7A 08 25 16")
    parsed = parse_frame(frame)
    assert isinstance(parsed, LongFrame)
    assert decode_set_primary_address(parsed) == 8


def test_application_reset_with_and_without_subcode() -> None:
    """Reset without subcode is a control frame; with one it is a long frame carrying it."""
    plain = parse_frame(encode_application_reset(3))
    coded = parse_frame(encode_application_reset(3, 0x10))
    assert isinstance(plain, ControlFrame)
    assert isinstance(coded, LongFrame)
    assert (decode_application_reset(plain), decode_application_reset(coded)) == (None, 0x10)


def test_master_frame_is_not_a_slave_response() -> None:
    """decode_response refuses a SND_UD (master to slave) with reason wrong_direction."""
    with pytest.raises(ProtocolError) as caught:
        decode_response(encode_set_primary_address(0xFE, 8))
    assert caught.value.reason == "wrong_direction"


def _meter_response() -> bytes:
    info = slave_info(ident="12345678", manufacturer="KAM", version=1, medium=0x04, access_number=7)
    records = (
        new_record(quantity="energy", value=1_234_000, data_type=DataType.BCD8),
        new_record(quantity="volume", value=56.789, data_type=DataType.INT32),
        new_record(quantity="power", value=1500, data_type=DataType.INT32),
        new_record(quantity="flow_temperature", value=65.3, data_type=DataType.INT16),
        new_record(quantity="return_temperature", value=40.1, data_type=DataType.INT16),
        new_record(quantity="volume", value=50.0, data_type=DataType.BCD8, storage_number=1),
        new_record(
            quantity="date_time", value=Timestamp(year=2024, month=5, day=6, hour=7, minute=8)
        ),
    )
    payload = VariableData(info=info, block=DataBlock(records=records))
    return encode_response(Response(c=rsp_ud(), a=5, payload=payload))


def test_own_rsp_ud_decodes_to_the_values_built() -> None:
    """A RSP_UD built from new records decodes to the same header and values."""
    payload = decode_response(_meter_response()).payload
    assert isinstance(payload, VariableData)
    assert (payload.info.ident, payload.info.manufacturer) == ("12345678", "KAM")
    values = [record.value for record in payload.block.records[:6]]
    assert values == pytest.approx([1_234_000, 56.789, 1500, 65.3, 40.1, 50.0])


def test_own_rsp_ud_decodes_in_pymeterbus_to_the_same_values() -> None:
    """pyMeterBus reads our encoder's long frame with the same ID, manufacturer and values."""
    telegram = meterbus.load(_meter_response())
    assert telegram.body.bodyHeader.id_nr_field.decodeBCD == 12345678
    assert telegram.body.bodyHeader.manufacturer_field.decodeManufacturer == "KAM"
    theirs = [float(record.value) for record in telegram.records[:6]]
    ours = decode_response(_meter_response()).payload
    assert isinstance(ours, VariableData)
    assert theirs == pytest.approx([float(r.value) for r in ours.block.records[:6]])  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_into_decoders_raise_only_protocol_error(data: bytes) -> None:
    """parse_frame and decode_response raise nothing but ProtocolError."""
    for decoder in (parse_frame, decode_response, split_frames):
        with contextlib.suppress(ProtocolError):
            decoder(data)


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    frame = bytearray(draw(st.sampled_from([VALID_LONG, _meter_response(), REQ_UD2_5])))
    action = draw(st.sampled_from(["flip", "truncate", "length", "fix_checksum"]))
    index = draw(st.integers(0, len(frame) - 1))
    if action == "truncate":
        return bytes(frame[:index])
    if action == "length" and frame[0] == 0x68:
        frame[1] = frame[2] = draw(st.integers(0, 255))
        return bytes(frame)
    frame[index] ^= 1 << draw(st.integers(0, 7))
    if (
        action == "fix_checksum"
        and frame[0] == 0x68
        and len(frame) > 6
        and frame[1] + 6 == len(frame)
    ):
        frame[-2] = sum(frame[4:-2]) & 0xFF
    return bytes(frame)


@settings(max_examples=400, deadline=None)
@given(data=_mutated())
def test_mutated_frames_raise_only_protocol_error(data: bytes) -> None:
    """Bit flips (with and without a fixed checksum), truncation and L lies never crash."""
    try:
        response = decode_response(data)
    except ProtocolError:
        return
    assert encode_response(response) == data
