"""Tell wired M-Bus, wireless M-Bus and SML apart and decode with the matching codec."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from smtestbed.proto.mbus.frames import (
    ACK_BYTE,
    LONG_START,
    SHORT_START,
    Frame,
    LongFrame,
    parse_frame,
)
from smtestbed.proto.mbus.response import Response, decode_response
from smtestbed.proto.sml import SmlFile, decode_sml_file
from smtestbed.proto.sml.transport import START as SML_START
from smtestbed.proto.wmbus import Telegram, decode_telegram
from smtestbed.services._runtime.errors import ProtocolError

__all__ = ["Decoded", "Protocol", "decode_bytes", "detect", "parse_hex"]

_SEPARATORS = re.compile(r"[\s:,\-]+")
_NOT_HEX = re.compile(r"[^0-9a-fA-F\s:,\-]")


class Protocol(StrEnum):
    """The wire formats ``smtb decode`` knows."""

    MBUS = "mbus"
    WMBUS = "wmbus"
    SML = "sml"


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    """What the input was and what the codec made of it.

    Attributes:
        protocol: the detected wire format.
        result: an M-Bus ``Response`` or ``Frame``, a wM-Bus ``Telegram`` or an ``SmlFile``.
        size: input length, bytes.
    """

    protocol: Protocol
    result: Response | Frame | Telegram | SmlFile
    size: int


def parse_hex(text: str) -> bytes:
    """Turn hex with spaces, colons, dashes or nothing between bytes into bytes; ``0x`` allowed.

    Raises:
        ProtocolError: a non-hex character (``bad_hex``; the message names its character
            index in ``text`` and ``offset`` is the byte it falls in) or an odd number of
            digits (``odd_hex``).
    """
    cleaned = text.strip()
    body = cleaned[2:] if cleaned[:2] in ("0x", "0X") else cleaned
    bad = _NOT_HEX.search(body)
    if bad is not None:
        at = bad.start() + len(text) - len(text.lstrip()) + len(cleaned) - len(body)
        raise ProtocolError(
            f"input is not hex: {bad.group()!r} (character {at})",
            reason="bad_hex",
            offset=len(_SEPARATORS.sub("", body[: bad.start()])) // 2,
        )
    digits = _SEPARATORS.sub("", body)
    if len(digits) % 2:
        raise ProtocolError(f"odd number of hex digits ({len(digits)})", reason="odd_hex")
    if not digits:
        raise ProtocolError("no bytes to decode", reason="empty", offset=0)
    return bytes.fromhex(digits)


def detect(data: bytes) -> Protocol:
    """Guess the wire format from the first bytes.

    ``1B1B1B1B 01010101`` is SML; ``E5``, ``10 .. 16`` and ``68 L L 68 .. 16`` are wired
    M-Bus; anything else is taken for a wireless M-Bus telegram (L C M A ...).
    """
    if data.startswith(SML_START):
        return Protocol.SML
    if data == bytes([ACK_BYTE]) or (len(data) == 5 and data[0] == SHORT_START):
        return Protocol.MBUS
    if len(data) >= 9 and data[0] == data[3] == LONG_START and data[1] == data[2]:
        return Protocol.MBUS
    return Protocol.WMBUS


def decode_bytes(data: bytes, *, key: bytes | None = None) -> Decoded:
    """Detect the format of ``data`` and decode it through every layer.

    Args:
        data: the frame, file or telegram.
        key: AES-128 key for encrypted wireless M-Bus telegrams.

    Raises:
        ProtocolError: the bytes are bad for the detected format.
    """
    protocol = detect(data)
    result: Response | Frame | Telegram | SmlFile
    if protocol is Protocol.SML:
        result = decode_sml_file(data)
    elif protocol is Protocol.MBUS:
        result = _decode_mbus(data)
    else:
        result = decode_telegram(data, key=key)
    return Decoded(protocol=protocol, result=result, size=len(data))


def _decode_mbus(data: bytes) -> Response | Frame:
    frame = parse_frame(data)
    if isinstance(frame, LongFrame) and not frame.c & 0x40:
        return decode_response(data)
    return frame
