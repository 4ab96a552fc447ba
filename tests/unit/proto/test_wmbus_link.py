"""Tests of the wM-Bus link layer: CRC, fields, frame formats A and B."""

from __future__ import annotations

import pytest
from smtestbed.proto.wmbus.crc import crc16
from smtestbed.proto.wmbus.fields import (
    MeterAddress,
    c_field_name,
    device_type_name,
    ident_value,
    manufacturer_code,
    manufacturer_value,
)
from smtestbed.proto.wmbus.link import (
    FrameFormat,
    add_crcs,
    decode_link_header,
    detect_format,
    format_a_size,
    strip_crcs,
    strip_crcs_a,
    strip_crcs_b,
)
from smtestbed.services._runtime.errors import ProtocolError


def _telegram(size: int) -> bytes:
    """Return a CRC-less telegram with ``size`` bytes after L."""
    body = bytes((0x44, 0x2D, 0x2C, 0x78, 0x56, 0x34, 0x12, 0x01, 0x07))
    body += bytes((0x7A,)) + bytes(i & 0xFF for i in range(size - 10))
    return bytes((size,)) + body[:size]


def _bitwise_crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x3D65) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc ^ 0xFFFF


def test_crc_check_value() -> None:
    """The CRC of "123456789" is the catalogue check value 0xC2B7."""
    assert crc16(b"123456789") == 0xC2B7


@pytest.mark.parametrize("size", [0, 1, 2, 9, 10, 16, 17, 126, 255, 300])
def test_crc_table_matches_bitwise_reference(size: int) -> None:
    """The word-table CRC equals a bit-by-bit reference for odd and even sizes."""
    data = bytes((i * 37 + 11) & 0xFF for i in range(size))
    assert crc16(data) == _bitwise_crc(data)


def test_manufacturer_packing_round_trips() -> None:
    """KAM packs to 0x2C2D and back; ZRI to 0x6A49."""
    assert manufacturer_value("KAM") == 0x2C2D
    assert manufacturer_code(0x2C2D) == "KAM"
    assert manufacturer_value("ZRI") == 0x6A49
    assert manufacturer_code(manufacturer_value("EMH")) == "EMH"


def test_manufacturer_rejects_bad_code() -> None:
    """A code that is not three letters raises ProtocolError."""
    with pytest.raises(ProtocolError) as info:
        manufacturer_value("kamx")
    assert info.value.reason == "bad_m_field"


def test_names_of_c_field_and_device_type() -> None:
    """Known C-fields and device types have names; unknown ones a hex fallback."""
    assert c_field_name(0x44) == "SND_NR"
    assert c_field_name(0x46) == "SND_IR"
    assert c_field_name(0xEE) == "C_0xEE"
    assert device_type_name(0x07) == "water"
    assert device_type_name(0x7F) == "reserved_0x7F"


def test_link_header_decodes_fields() -> None:
    """L, C, M and the A-field (ID LSB first, version, type) decode from the first 10 bytes."""
    data = bytes.fromhex(
        "2e44a5119870659930037a060020052f2f0c933e842784060a3b00000a5a5901c4016d3b37df2ccc01933e24032606"
    )
    header = decode_link_header(data)
    assert header.length == 0x2E
    assert header.c_name == "SND_NR"
    assert header.address.manufacturer_code == "DME"
    assert header.address.id_text == "99657098"
    assert header.address.version == 0x30
    assert header.address.device_type_name == "gas"
    assert header.to_bytes() == data[:10]


def test_link_header_wrong_l_field_is_named() -> None:
    """An L-field that disagrees with the size raises bad_length at byte 0."""
    data = bytearray(_telegram(20))
    data[0] = 30
    with pytest.raises(ProtocolError) as info:
        decode_link_header(bytes(data))
    assert (info.value.reason, info.value.offset) == ("bad_length", 0)


def test_address_orders_differ_between_link_and_tpl() -> None:
    """Link order puts M first; long-TPL order puts the ID first; both read back."""
    address = MeterAddress(
        manufacturer=0x2C2D, ident=ident_value("12345678"), version=1, device_type=7
    )
    assert address.link_order().hex() == "2d2c785634120107"
    assert address.tpl_order().hex() == "785634122d2c0107"
    assert MeterAddress.from_tpl_order(address.tpl_order()) == address
    assert MeterAddress.from_link_order(address.link_order()) == address


@pytest.mark.parametrize("size", [9, 10, 25, 26, 27, 41, 100, 255])
def test_format_a_round_trip_and_size(size: int) -> None:
    """Format A inserts one CRC per block, keeps L, and strips back to the input."""
    data = _telegram(size)
    frame = add_crcs(data, FrameFormat.A)
    assert len(frame) == format_a_size(size)
    assert frame[0] == size
    assert frame[10:12] == crc16(data[:10]).to_bytes(2, "big")
    assert strip_crcs(frame) == (data, FrameFormat.A)


@pytest.mark.parametrize("size", [11, 60, 125, 126, 127, 200, 251])
def test_format_b_round_trip(size: int) -> None:
    """Format B counts CRCs in L, uses one CRC up to 126 bytes, two beyond."""
    data = _telegram(size)
    frame = add_crcs(data, FrameFormat.B)
    crcs = 2 if size + 1 <= 126 else 4
    assert frame[0] == size + crcs
    assert len(frame) == size + 1 + crcs
    assert strip_crcs_b(frame) == data
    assert detect_format(frame) is FrameFormat.B


def test_format_a_bad_crc_names_block() -> None:
    """A flipped bit in the third block raises bad_crc naming block 3 at its CRC offset."""
    frame = bytearray(add_crcs(_telegram(60), FrameFormat.A))
    frame[12 + 18 + 3] ^= 0x10
    with pytest.raises(ProtocolError) as info:
        strip_crcs_a(bytes(frame))
    assert info.value.reason == "bad_crc"
    assert "block 3" in str(info.value)
    assert info.value.offset == 12 + 18 + 16


def test_format_a_truncated_block() -> None:
    """A frame cut inside a block raises truncated and names the block."""
    frame = add_crcs(_telegram(60), FrameFormat.A)
    with pytest.raises(ProtocolError) as info:
        strip_crcs_a(frame[:40])
    assert info.value.reason == "truncated"
    assert "block 3" in str(info.value)


def test_format_a_extra_bytes_are_a_length_error() -> None:
    """Bytes beyond what L announces raise bad_length."""
    frame = add_crcs(_telegram(30), FrameFormat.A) + b"\x00"
    with pytest.raises(ProtocolError) as info:
        strip_crcs_a(frame)
    assert info.value.reason == "bad_length"


def test_format_b_bad_crc_in_block_3() -> None:
    """A damaged byte behind the first 126 bytes is reported in block 3."""
    frame = bytearray(add_crcs(_telegram(200), FrameFormat.B))
    frame[150] ^= 1
    with pytest.raises(ProtocolError) as info:
        strip_crcs_b(bytes(frame))
    assert info.value.reason == "bad_crc"
    assert "block 3" in str(info.value)


def test_format_b_refuses_oversize() -> None:
    """A telegram with more than 251 bytes after L cannot be framed as format B."""
    with pytest.raises(ProtocolError) as info:
        add_crcs(_telegram(252), FrameFormat.B)
    assert info.value.reason == "too_long"
