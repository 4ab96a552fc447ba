"""Property tests of the wM-Bus codec: seal/open identity and robustness on hostile bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smtestbed.proto.wmbus.encoder import encode_telegram, new_telegram
from smtestbed.proto.wmbus.fields import MeterAddress
from smtestbed.proto.wmbus.link import FrameFormat, load_crc_kernel
from smtestbed.proto.wmbus.telegram import decode_telegram
from smtestbed.services._runtime.errors import ProtocolError

FAST = settings(max_examples=150, deadline=None)


@pytest.fixture(scope="module", autouse=True)
def _compiled_kernel() -> None:
    """Load the compiled CRC check before the timed examples (its load takes ~0.5 s)."""
    load_crc_kernel()


addresses = st.builds(
    MeterAddress,
    manufacturer=st.integers(0, 0xFFFF),
    ident=st.integers(0, 0xFFFFFFFF),
    version=st.integers(0, 255),
    device_type=st.integers(0, 255),
)
keys = st.binary(min_size=16, max_size=16)
# (DIF, VIF) pairs with their data sizes: Wh, litre, W, l/h in int8..int32.
record = st.tuples(
    st.sampled_from([0x01, 0x02, 0x03, 0x04]), st.sampled_from([3, 0x13, 0x2B, 0x3B])
)


@st.composite
def record_sets(draw: st.DrawFn) -> bytes:
    """Draw 1..8 plain integer records as DIF VIF data bytes."""
    out = b""
    for dif, vif in draw(st.lists(record, min_size=1, max_size=8)):
        out += bytes((dif, vif)) + draw(st.binary(min_size=dif, max_size=dif))
    return out


@FAST
@given(
    address=addresses,
    key=keys,
    records=record_sets(),
    acc=st.integers(0, 255),
    mode=st.sampled_from([0, 5, 7]),
    counter=st.integers(0, 0xFFFFFFFF),
    long_header=st.booleans(),
    fmt=st.sampled_from(list(FrameFormat)),
)
def test_encode_then_decode_is_identity(
    address: MeterAddress,
    key: bytes,
    records: bytes,
    acc: int,
    mode: int,
    counter: int,
    long_header: bool,
    fmt: FrameFormat,
) -> None:
    """Encode -> encrypt -> decrypt -> decode returns the header fields and the records."""
    built = new_telegram(
        address=address,
        records=records,
        access_number=acc,
        security_mode=mode,
        counter=counter,
        long_header=long_header,
    )
    frame = encode_telegram(built, key=key, frame_format=fmt)
    telegram = decode_telegram(frame, key=key)
    assert telegram.frame_format is fmt
    assert telegram.address == address
    assert telegram.tpl is not None
    assert (telegram.tpl.access_number, telegram.tpl.security_mode) == (acc, mode)
    assert telegram.security.mac_verified is (mode == 7)
    assert telegram.application_data is not None
    start = 0 if mode == 0 else 2
    assert telegram.application_data[start : start + len(records)] == records
    assert telegram.records is not None
    assert b"".join(r.dib + r.vib + r.data for r in telegram.records.records) == records
    assert encode_telegram(telegram, key=key, frame_format=fmt) == frame


def _decode_or_protocol_error(data: bytes, key: bytes | None, crcs: bool | None) -> None:
    with contextlib.suppress(ProtocolError):
        decode_telegram(data, key=key, crcs=crcs)


@FAST
@given(
    data=st.binary(max_size=300),
    key=st.one_of(st.none(), keys),
    crcs=st.sampled_from([None, True, False]),
)
def test_random_bytes_raise_only_protocol_error(
    data: bytes, key: bytes | None, crcs: bool | None
) -> None:
    """Arbitrary bytes either decode or raise ProtocolError, with or without key and CRCs."""
    _decode_or_protocol_error(data, key, crcs)


@st.composite
def valid_frames(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """Draw a valid CRC-less telegram (mode 0, 5 or 7) and its key."""
    key = draw(keys)
    built = new_telegram(
        address=draw(addresses),
        records=draw(record_sets()),
        access_number=draw(st.integers(0, 255)),
        security_mode=draw(st.sampled_from([0, 5, 7])),
        long_header=draw(st.booleans()),
    )
    return encode_telegram(built, key=key, crcs=False), key


@FAST
@given(
    frame_key=valid_frames(),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 7)), max_size=4),
    cut=st.integers(0, 300),
    length=st.one_of(st.none(), st.integers(0, 255)),
    crcs=st.booleans(),
)
def test_mutated_frames_raise_only_protocol_error(
    frame_key: tuple[bytes, bytes],
    flips: list[tuple[int, int]],
    cut: int,
    length: int | None,
    crcs: bool,
) -> None:
    """Bit flips, truncation and a lying L-field give a decode or a ProtocolError only."""
    plain, key = frame_key
    data = bytearray(encode_telegram(decode_telegram(plain, key=key), key=key, crcs=crcs))
    for where, bit in flips:
        data[where % len(data)] ^= 1 << bit
    if length is not None:
        data[0] = length
    _decode_or_protocol_error(bytes(data[: max(cut, 1)]), key, crcs)
    _decode_or_protocol_error(bytes(data), key, None)
