"""Decode and encode SML_Message and SML files (messages inside transport v1)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from smtestbed.proto.sml.body_readers import read_body
from smtestbed.proto.sml.body_writers import encode_body
from smtestbed.proto.sml.crc import crc16_x25_wire
from smtestbed.proto.sml.messages import SmlFile, SmlMessage
from smtestbed.proto.sml.tl import SmlInt, TlReader, encode_int, encode_list_header, encode_octets
from smtestbed.proto.sml.transport import unwrap_file, wrap_file
from smtestbed.services._runtime.errors import ProtocolError

__all__ = [
    "decode_sml_file",
    "decode_sml_message",
    "decode_sml_messages",
    "encode_sml_file",
    "encode_sml_message",
]


def read_message(r: TlReader) -> SmlMessage:
    """Read one SML_Message at the reader's position and check its crc16.

    The crc16 covers the message from its first TL byte to the end of the body.
    """
    start = r.pos
    r.list_header("SML_Message", 6)
    transaction_id = r.octets("transactionId")
    group_no = r.number("groupNo", 0, 255)
    abort_on_error = r.number("abortOnError", 0, 255)
    body, tag_size = read_body(r)
    covered, crc_at = r.data[start : r.pos], r.pos
    sent = r.number("crc16", 0, 0xFFFF).to_bytes(2, "big")
    computed = crc16_x25_wire(covered)
    if sent != computed:
        raise r.fail(
            f"bad SML_Message CRC: message says {sent.hex().upper()},"
            f" computed {computed.hex().upper()}",
            "bad_crc",
            crc_at,
        )
    r.end_of_message()
    return SmlMessage(
        transaction_id=transaction_id,
        group_no=group_no,
        abort_on_error=abort_on_error,
        body=body,
        tag_size=tag_size,
    )


def _read_all(data: bytes, where: Callable[[int], int] | None = None) -> tuple[SmlMessage, ...]:
    r = TlReader(data, where=where)
    messages = []
    while not r.at_end():
        messages.append(read_message(r))
    if not messages:
        raise r.fail("no SML_Message in the input", "empty")
    return tuple(messages)


def decode_sml_messages(data: bytes) -> tuple[SmlMessage, ...]:
    """Decode SML messages that follow each other with no transport framing.

    Raises:
        ProtocolError: on any bad byte; ``offset`` is relative to ``data``.
    """
    return _read_all(data)


def decode_sml_message(data: bytes) -> SmlMessage:
    """Decode exactly one SML_Message (``76 ... crc16 00``).

    Raises:
        ProtocolError: on any bad byte or on bytes after the message (``trailing``).
    """
    r = TlReader(data)
    message = read_message(r)
    if not r.at_end():
        raise r.fail(f"{len(data) - r.pos} bytes after the SML_Message", "trailing")
    return message


def decode_sml_file(data: bytes) -> SmlFile:
    """Decode one SML transport v1 file: framing, file CRC, then every message.

    Raises:
        ProtocolError: on any bad byte; ``offset`` counts bytes of ``data`` (escaped).
    """
    unwrapped = unwrap_file(data)
    if unwrapped.size != len(data):
        raise ProtocolError(
            f"{len(data) - unwrapped.size} bytes after the SML end sequence",
            reason="trailing",
            offset=unwrapped.size,
        )
    messages = _read_all(unwrapped.payload, unwrapped.file_offset)
    return SmlFile(messages=messages, padding=unwrapped.padding)


def encode_sml_message(message: SmlMessage) -> bytes:
    """Encode one SML_Message with its crc16 and endOfSmlMsg."""
    covered = b"".join(
        (
            encode_list_header(6),
            encode_octets(message.transaction_id),
            encode_int(SmlInt(value=message.group_no, size=1)),
            encode_int(SmlInt(value=message.abort_on_error, size=1)),
            encode_body(message.body, tag_size=message.tag_size),
        )
    )
    crc = int.from_bytes(crc16_x25_wire(covered), "big")
    return covered + encode_int(SmlInt(value=crc, size=2)) + b"\x00"


def encode_sml_file(messages: Sequence[SmlMessage], *, padding: int | None = None) -> bytes:
    """Encode messages as one SML transport v1 file.

    Args:
        messages: the messages, usually PublicOpen.Res, GetList.Res, PublicClose.Res.
        padding: zero bytes before the end sequence; None for the fewest (0..3).
            Pass ``SmlFile.padding`` to reproduce a decoded file byte for byte.
    """
    return wrap_file(b"".join(map(encode_sml_message, messages)), padding=padding)
