"""SML: TL fields, transport framing, our own messages, OBIS, and every error path."""

from __future__ import annotations

import pytest
from smtestbed.proto.sml import (
    AttentionResponse,
    GetListRequest,
    GetListResponse,
    GetProfileListRequest,
    GetProfileListResponse,
    ListEntry,
    ObisCode,
    PeriodEntry,
    PublicCloseRequest,
    PublicCloseResponse,
    PublicOpenRequest,
    PublicOpenResponse,
    RawBody,
    SmlInt,
    SmlMessage,
    SmlTime,
    TimeKind,
    crc16_x25,
    decode_sml_file,
    decode_sml_message,
    encode_sml_file,
    encode_sml_message,
    unit_symbol,
)
from smtestbed.proto.sml.tl import TlReader, encode_list_header, encode_octets
from smtestbed.proto.sml.transport import ESCAPE, START, unwrap_file, wrap_file
from smtestbed.services._runtime.errors import ProtocolError

SERVER_ID = bytes.fromhex("0A01454D480000B97735")
ENERGY = ListEntry(
    obj_name=ObisCode.parse("1-0:1.8.0*255"),
    status=SmlInt(value=0x0101A2, size=3),
    val_time=SmlTime(kind=TimeKind.SEC_INDEX, value=SmlInt(value=2345, size=4)),
    unit=30,
    scaler=-1,
    value=SmlInt(value=117837949, signed=True, size=5),
    value_signature=bytes(range(48)),
)


def _message(body: object, tx: int = 1) -> SmlMessage:
    return SmlMessage(transaction_id=tx.to_bytes(4, "big"), body=body)  # type: ignore[arg-type]


def _meter_file() -> list[SmlMessage]:
    open_res = PublicOpenResponse(req_file_id=b"\x00\x35\x9d\xe8", server_id=SERVER_ID)
    get_list = GetListResponse(
        server_id=SERVER_ID,
        list_name=ObisCode.parse("1-0:98.10.255*255").to_bytes(),
        act_sensor_time=SmlTime(kind=TimeKind.SEC_INDEX, value=SmlInt(value=2345, size=4)),
        entries=(ENERGY, ListEntry(obj_name=ObisCode.parse("1-0:96.1.0"), value=SERVER_ID)),
    )
    return [_message(open_res, 1), _message(get_list, 2), _message(PublicCloseResponse(), 3)]


def test_crc16_x25_check_value() -> None:
    """CRC-16/X-25 of "123456789" is 0x906E."""
    assert crc16_x25(b"123456789") == 0x906E


def test_octet_string_tl_counts_itself() -> None:
    """A 4-byte octet string is 05 + data; 15 bytes need the two-byte TL 81 01."""
    assert encode_octets(b"EMH\x01") == b"\x05EMH\x01"
    assert encode_octets(bytes(15))[:2] == b"\x81\x01"
    assert encode_octets(bytes(254))[:3] == b"\x81\x80\x01"  # 254 + 3 TL bytes = 0x101


def test_list_tl_counts_elements_past_fifteen() -> None:
    """A list of 20 elements has the TL F1 04 (element count, TL bytes not counted)."""
    assert encode_list_header(20) == b"\xf1\x04"
    assert TlReader(b"\xf1\x04" + b"\x01" * 20).list_header("list") == 20


def test_integer_keeps_width_and_sign() -> None:
    """55 FFFFF914 reads as -1772 in 4 bytes; 64 0101A2 as unsigned 0x0101A2 in 3."""
    assert TlReader(bytes.fromhex("55FFFFF914")).integer("v") == SmlInt(
        value=-1772, signed=True, size=4
    )
    assert TlReader(bytes.fromhex("640101A2")).integer("v") == SmlInt(value=0x0101A2, size=3)


def test_sml_int_picks_smallest_standard_width() -> None:
    """SmlInt without size takes 1, 2, 4 or 8 bytes, whichever holds the value first."""
    assert SmlInt(value=255).size == 1
    assert SmlInt(value=256).size == 2
    assert SmlInt(value=70000).size == 4
    assert SmlInt(value=-129, signed=True).size == 2


def test_our_meter_file_round_trips() -> None:
    """Open.Res, GetList.Res (signed entry, int40 value), Close.Res decode to what we encoded."""
    messages = _meter_file()
    raw = encode_sml_file(messages)
    assert raw.startswith(START)
    assert len(raw) % 4 == 0
    decoded = decode_sml_file(raw)
    assert list(decoded.messages) == messages
    assert encode_sml_file(decoded.messages, padding=decoded.padding) == raw


@pytest.mark.parametrize(
    "body",
    [
        PublicOpenRequest(client_id=b"\x01\x02", req_file_id=b"\x07", username=b"u", sml_version=1),
        PublicCloseRequest(global_signature=b"\xaa" * 8),
        GetListRequest(
            client_id=b"\x01", server_id=SERVER_ID, list_name=b"\x01\x00\x62\x0a\xff\xff"
        ),
        GetProfileListRequest(
            server_id=SERVER_ID,
            with_rawdata=False,
            begin_time=SmlTime(kind=TimeKind.TIMESTAMP, value=SmlInt(value=1_700_000_000, size=4)),
            tree_path=(ObisCode.parse("1-0:99.1.0").to_bytes(),),
            object_list=(ObisCode.parse("1-0:1.8.0").to_bytes(),),
        ),
        GetProfileListResponse(
            server_id=SERVER_ID,
            act_time=SmlTime(
                kind=TimeKind.LOCAL_TIMESTAMP,
                value=SmlInt(value=1_700_000_900, size=4),
                local_offset=60,
                season_offset=0,
            ),
            reg_period=900,
            tree_path=(ObisCode.parse("1-0:99.1.0").to_bytes(),),
            val_time=SmlTime(kind=TimeKind.TIMESTAMP, value=SmlInt(value=1_700_000_900, size=4)),
            status=SmlInt(value=0, size=8),
            period_list=(
                PeriodEntry(
                    obj_name=ObisCode.parse("1-0:1.8.0"), unit=30, scaler=-1, value=SmlInt(value=5)
                ),
                PeriodEntry(
                    obj_name=ObisCode.parse("1-0:2.8.0"),
                    unit=30,
                    scaler=-1,
                    value=SmlInt(value=7),
                    value_signature=b"\x55" * 64,
                ),
            ),
        ),
        AttentionResponse(
            server_id=SERVER_ID,
            attention_no=bytes.fromhex("8181C7C7FE00"),
            attention_msg=b"ok",
            attention_details=(b"\x01\x02", SmlInt(value=3), None),
        ),
        RawBody(tag=0x0500, content=(b"\x01", (SmlInt(value=1), True))),
    ],
    ids=lambda body: type(body).__name__,
)
def test_each_message_body_round_trips(body: object) -> None:
    """Every modelled body (and an unmodelled one) decodes to the value it was encoded from."""
    message = _message(body)
    assert decode_sml_message(encode_sml_message(message)) == message


def test_escape_sequence_in_data_is_doubled_and_restored() -> None:
    """Eight 1B bytes in a value contain an aligned 1B1B1B1B, which goes on the wire twice."""
    entry = ListEntry(obj_name=ObisCode.parse("1-0:96.1.0"), value=b"\x1b" * 8)
    get_list = GetListResponse(server_id=SERVER_ID, entries=(entry,))
    raw = encode_sml_file([_message(get_list)])
    assert ESCAPE * 2 in raw
    assert decode_sml_file(raw).messages[0].body == get_list


def test_wrap_file_escapes_aligned_block_and_pads() -> None:
    """Payload 1B1B1B1B 01 02 becomes START, ESC ESC, 01 02 00 00, ESC 1A 02 and the CRC."""
    raw = wrap_file(ESCAPE + b"\x01\x02")
    assert raw[:-2] == START + ESCAPE * 2 + b"\x01\x02\x00\x00" + ESCAPE + b"\x1a\x02"
    assert raw[-2:] == crc16_x25(raw[:-2]).to_bytes(2, "little")
    unwrapped = unwrap_file(raw)
    assert (unwrapped.payload, unwrapped.padding, unwrapped.escapes) == (
        ESCAPE + b"\x01\x02",
        2,
        (0,),
    )


def test_file_offset_skips_escape_bytes() -> None:
    """A payload byte after an escaped block sits 4 bytes further into the file."""
    unwrapped = unwrap_file(wrap_file(ESCAPE + b"\x01\x02"))
    assert unwrapped.file_offset(0) == 12
    assert unwrapped.file_offset(4) == 16


def test_obis_parse_and_format() -> None:
    """ "1-0:1.8.0*255" parses to groups 1 0 1 8 0 255; *F defaults to 255."""
    obis = ObisCode.parse("1-0:1.8.0*255")
    assert obis.to_bytes() == bytes((1, 0, 1, 8, 0, 255))
    assert str(obis) == "1-0:1.8.0*255"
    assert ObisCode.parse("1-0:1.8.0") == obis
    assert str(ObisCode.from_bytes(bytes.fromhex("8181C78203FF"))) == "129-129:199.130.3*255"


@pytest.mark.parametrize("text", ["1.8.0", "1-0:1.8.0*256", "x-0:1.8.0", ""])
def test_obis_parse_rejects_bad_text(text: str) -> None:
    """Text that is not A-B:C.D.E[*F] with groups 0..255 raises ProtocolError bad_obis."""
    with pytest.raises(ProtocolError) as info:
        ObisCode.parse(text)
    assert info.value.reason == "bad_obis"


def test_unit_table_has_the_common_units() -> None:
    """DLMS codes: 30 Wh, 27 W, 13 m³, 35 V, 33 A, 44 Hz, 9 °C, 32 varh."""
    codes = {30: "Wh", 27: "W", 13: "m³", 35: "V", 33: "A", 44: "Hz", 9: "°C", 32: "varh"}
    assert {code: unit_symbol(code) for code in codes} == codes
    assert unit_symbol(None) == ""
    assert unit_symbol(200) == "unit 200"


def _error(data: bytes, *, file: bool = True) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_sml_file(data) if file else decode_sml_message(data)
    return info.value


def test_bad_file_crc_names_both_values() -> None:
    """A flipped CRC byte fails with bad_crc, both CRCs in the message, offset of the CRC."""
    raw = bytearray(encode_sml_file(_meter_file()))
    sent = raw[-2:].hex().upper()
    raw[-1] ^= 0xFF
    error = _error(bytes(raw))
    assert (error.reason, error.offset) == ("bad_crc", len(raw) - 2)
    assert sent in str(error)
    assert raw[-2:].hex().upper() in str(error)


def test_bad_message_crc_points_at_the_crc_field() -> None:
    """A message whose crc16 is wrong fails with bad_crc at the crc16 TL byte."""
    raw = bytearray(encode_sml_message(_message(PublicCloseResponse())))
    raw[-2] ^= 0x01
    error = _error(bytes(raw), file=False)
    assert (error.reason, error.offset) == ("bad_crc", len(raw) - 4)


def test_message_error_offset_counts_file_bytes() -> None:
    """An error inside a file reports the offset in the file, start sequence included."""
    message = encode_sml_message(_message(PublicCloseResponse()))
    broken = message[:-2] + bytes((message[-2] ^ 1,)) + message[-1:]
    error = _error(wrap_file(broken))
    assert (error.reason, error.offset) == ("bad_crc", 8 + len(message) - 4)


@pytest.mark.parametrize(
    ("data", "reason", "offset"),
    [
        (b"\x1b\x1b\x1b\x1b\x02\x02\x02\x02", "bad_start", 0),
        (START + b"\x76\x01\x01\x01", "truncated", 12),
        (START + ESCAPE + b"\x02\x00\x00\x00" + ESCAPE + b"\x1a\x00\x00\x00", "bad_escape", 8),
    ],
    ids=["no_start", "no_end", "unknown_escape"],
)
def test_bad_framing_is_named(data: bytes, reason: str, offset: int) -> None:
    """Missing start, missing end and unknown escapes fail with their reason and offset."""
    error = _error(data)
    assert (error.reason, error.offset) == (reason, offset)


def test_padding_count_must_match_zero_bytes() -> None:
    """An end sequence claiming 3 padding bytes where data is not zero fails bad_padding."""
    body = START + b"\x01\x02\x03\x04" + ESCAPE + b"\x1a\x03"
    error = _error(body + crc16_x25(body).to_bytes(2, "little"))
    assert (error.reason, error.offset) == ("bad_padding", 17)


def test_bytes_after_end_sequence_are_rejected() -> None:
    """A file followed by more bytes fails with reason trailing at the first extra byte."""
    raw = encode_sml_file(_meter_file())
    error = _error(raw + b"\x00")
    assert (error.reason, error.offset) == ("trailing", len(raw))


@pytest.mark.parametrize(
    ("hex_message", "reason", "offset"),
    [
        ("76050000000181", "truncated", 6),
        ("76050000000162", "truncated", 6),
        ("760F000000000000000000", "truncated", 1),
        ("7605000000010400", "wrong_type", 6),
        ("7605000000016200620072630201710000", "unexpected_end", 15),
        ("76050000000162006200726302017201010000", "bad_length", 14),
        ("3605", "bad_type", 0),
        ("7685950000000000", "bad_tl", 2),
    ],
    ids=[
        "truncated_tl",
        "truncated_int",
        "truncated_octets",
        "group_no_not_int",
        "end_marker_as_value",
        "wrong_list_size",
        "reserved_type",
        "tl_continuation_type_bits",
    ],
)
def test_bad_message_bytes_are_named(hex_message: str, reason: str, offset: int) -> None:
    """Each malformed message fails with a ProtocolError naming the cause and its offset."""
    error = _error(bytes.fromhex(hex_message), file=False)
    assert (error.reason, error.offset) == (reason, offset)


def test_nesting_too_deep_is_rejected() -> None:
    """An unmodelled body nesting lists 40 deep fails with too_deep, not RecursionError."""
    data = bytes.fromhex("7601620062007263") + b"\x09\x99" + b"\x71" * 40 + b"\x01"
    error = _error(data, file=False)
    assert error.reason == "too_deep"
