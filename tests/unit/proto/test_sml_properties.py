"""SML properties: random entries round-trip; random or mutated bytes raise only ProtocolError."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from smtestbed.proto.sml import (
    GetListResponse,
    ListEntry,
    MessageBody,
    ObisCode,
    PublicCloseResponse,
    PublicOpenResponse,
    SmlInt,
    SmlMessage,
    SmlTime,
    SmlValue,
    TimeKind,
    decode_sml_file,
    decode_sml_messages,
    encode_sml_file,
)
from smtestbed.proto.sml.transport import START, unwrap_file, wrap_file
from smtestbed.services._runtime.errors import ProtocolError

from .test_sml_real import ISKRA_MT175

FAST = settings(max_examples=150, deadline=None)


@st.composite
def sml_ints(draw: st.DrawFn) -> SmlInt:
    signed, size = draw(st.booleans()), draw(st.integers(1, 8))
    bits = 8 * size
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return SmlInt(value=draw(st.integers(low, high)), signed=signed, size=size)


# Absent optional octet strings and b"" share the byte 01, so optional ones are non-empty.
optional_octets = st.none() | st.binary(min_size=1, max_size=40)
values: st.SearchStrategy[SmlValue] = st.binary(max_size=300) | st.booleans() | sml_ints()
obis_codes = st.builds(
    ObisCode,
    a=st.integers(0, 255),
    b=st.integers(0, 255),
    c=st.integers(0, 255),
    d=st.integers(0, 255),
    e=st.integers(0, 255),
    f=st.integers(0, 255),
)
times = st.builds(
    SmlTime,
    kind=st.sampled_from([TimeKind.SEC_INDEX, TimeKind.TIMESTAMP]),
    value=st.integers(0, 0xFFFFFFFF).map(lambda v: SmlInt(value=v, size=4)),
)
entries = st.builds(
    ListEntry,
    obj_name=obis_codes,
    status=st.none() | sml_ints().map(lambda i: SmlInt(value=abs(i.value) % 256, size=1)),
    val_time=st.none() | times,
    unit=st.none() | st.integers(0, 255),
    scaler=st.none() | st.integers(-128, 127),
    value=values,
    value_signature=optional_octets,
)


def _file_of(entries_: list[ListEntry]) -> list[SmlMessage]:
    server = b"\x0a\x01EMH\x00\x00\x00\x00\x01"
    bodies: list[MessageBody] = [
        PublicOpenResponse(req_file_id=b"\x01", server_id=server),
        GetListResponse(server_id=server, entries=tuple(entries_)),
        PublicCloseResponse(),
    ]
    return [SmlMessage(transaction_id=bytes([n]), body=body) for n, body in enumerate(bodies)]


@FAST
@given(st.lists(entries, max_size=20))
def test_random_list_entries_round_trip(entries_: list[ListEntry]) -> None:
    """Any list of valid entries decodes from a file to exactly the entries encoded."""
    messages = _file_of(entries_)
    assert list(decode_sml_file(encode_sml_file(messages)).messages) == messages


def _error_offset(decode: Callable[[bytes], object], data: bytes) -> int:
    """Return the offset of the ProtocolError ``decode`` raises, or 0 when it decodes."""
    try:
        decode(data)
    except ProtocolError as error:
        return -1 if error.offset is None else error.offset
    return 0


@FAST
@given(st.binary(max_size=400) | st.binary(max_size=400).map(lambda tail: START + tail))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    """Random bytes, framed or not, either decode or raise ProtocolError with an offset."""
    for decode in (decode_sml_messages, decode_sml_file):
        assert 0 <= _error_offset(decode, data) <= len(data)


_PAYLOAD = unwrap_file(ISKRA_MT175).payload


@FAST
@given(
    st.lists(
        st.tuples(st.integers(0, len(_PAYLOAD) - 1), st.integers(0, 255), st.sampled_from("sid")),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_real_telegram_raises_only_protocol_error(
    edits: list[tuple[int, int, str]],
) -> None:
    """A real payload with bytes set, inserted or deleted, re-framed with a good file CRC,
    decodes or raises ProtocolError; never another exception."""
    payload = bytearray(_PAYLOAD)
    for pos, byte, op in edits:
        pos = min(pos, len(payload) - 1)
        if op == "s":
            payload[pos] = byte
        elif op == "i":
            payload.insert(pos, byte)
        elif len(payload) > 1:
            del payload[pos]
    framed = wrap_file(bytes(payload))
    assert 0 <= _error_offset(decode_sml_file, framed) <= len(framed)
