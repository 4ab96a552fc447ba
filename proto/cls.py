"""The CLS proxy channel (TR-03109-1 IF_GW_CLS): a CLS device reaches its EMT through the gateway.

A controllable local system (CLS: heat pump, wallbox, PV inverter) on the HAN
never talks to the WAN itself. It opens mutual TLS to the gateway's HAN
endpoint with its ``CLS`` certificate and asks for its channel; the gateway
opens mutual TLS to the EMT configured for that device with its own TLS
certificate, announces the device and then relays data frames both ways,
unchanged, until one side closes.

CLS device -> gateway, first message (the HAN/WAN request framing of
:mod:`smtestbed.proto.wan`)::

    {"id": 1, "op": "channel", "params": {"emt": NAME}}
    -> {"id": 1, "ok": true, "result": {"emt": NAME, "channel": N}}
    or {"id": 1, "ok": false, "error": TEXT, "field": "cls" | "emt" | "role" | "op"}

Gateway -> EMT, first message (the framing of :mod:`smtestbed.proto.delivery`)::

    {"type": "cls.open", "version": 1, "cls": CN, "serial": HEX, "emt": NAME, "channel": N}
    -> {"type": "cls.accepted", "version": 1}
    or {"type": "cls.refused", "version": 1, "reason": TEXT, "detail": TEXT}

After the two openings both connections carry data frames only::

    +----------------------+------------------------+
    | length N: uint32, BE | N bytes, opaque        |
    +----------------------+------------------------+

with ``1 <= N <= max`` (the gateway's ``cls_max_frame``; at most
:data:`MAX_DATA`). The gateway forwards each frame byte for byte; a frame
over the limit ends the channel. Closing either connection closes the other.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from smtestbed.services._runtime.errors import ProtocolError

__all__ = [
    "ACCEPTED",
    "CHANNEL_OP",
    "CLS_ROLE",
    "HEADER",
    "MAX_DATA",
    "OPEN",
    "REFUSED",
    "VERSION",
    "accepted",
    "data_length",
    "encode_data",
    "open_message",
    "read_data",
    "refused",
]

CLS_ROLE = "CLS"
CHANNEL_OP = "channel"
OPEN, ACCEPTED, REFUSED = "cls.open", "cls.accepted", "cls.refused"
VERSION = 1
HEADER = struct.Struct(">I")
MAX_DATA = 16 * 1024 * 1024


class Reader(Protocol):
    """What :func:`read_data` needs of a stream (``asyncio.StreamReader``)."""

    async def readexactly(self, n: int) -> bytes:
        """Return exactly ``n`` bytes; raise ``IncompleteReadError`` at EOF."""
        ...


def open_message(*, cls: str, serial: str, emt: str, channel: int) -> dict[str, Any]:
    """Return the gateway's announcement of a channel to the EMT."""
    return {
        "type": OPEN,
        "version": VERSION,
        "cls": cls,
        "serial": serial,
        "emt": emt,
        "channel": channel,
    }


def accepted() -> dict[str, Any]:
    """Return the EMT's acceptance of a channel."""
    return {"type": ACCEPTED, "version": VERSION}


def refused(reason: str, detail: str) -> dict[str, Any]:
    """Return the EMT's refusal of a channel."""
    return {"type": REFUSED, "version": VERSION, "reason": reason, "detail": detail[:300]}


def encode_data(payload: bytes, max_size: int = MAX_DATA) -> bytes:
    """Return ``payload`` as one data frame."""
    if not 0 < len(payload) <= max_size:
        raise ProtocolError(f"data of {len(payload)} bytes outside 1..{max_size}", reason="size")
    return HEADER.pack(len(payload)) + payload


def data_length(header: bytes, max_size: int = MAX_DATA) -> int:
    """Return the payload length a 4-byte data frame header announces."""
    (size,) = HEADER.unpack(header)
    if not 0 < size <= max_size:
        raise ProtocolError(f"data frame of {size} bytes outside 1..{max_size}", reason="size")
    return int(size)


async def read_data(reader: Reader, max_size: int = MAX_DATA) -> bytes:
    """Read one data frame's payload.

    Raises:
        asyncio.IncompleteReadError: the stream ended (at or inside a frame).
        ProtocolError: a length of 0 or above ``max_size``.
    """
    size = data_length(await reader.readexactly(HEADER.size), max_size)
    return await reader.readexactly(size)
