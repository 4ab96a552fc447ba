"""The gateway's WAN administration protocol: framed JSON over mutual TLS.

Byte layout of every message, in both directions::

    +----------------------+---------------------------------+
    | length: uint32, BE   | body: UTF-8 JSON object, length |
    +----------------------+---------------------------------+

The length counts the body only; 1 <= length <= :data:`MAX_FRAME` (16 MiB).
The client (GWA) sends requests, the gateway answers each one in order:

- request ``{"id": int, "op": str, "params": {...}}`` with ``op`` one of :data:`OPS`;
- success ``{"id": int, "ok": true, "result": ...}``;
- failure ``{"id": int, "ok": false, "error": str, "field": str}`` where
  ``field`` names the parameter at fault (``role`` when the peer may not
  administer, ``op`` for an unknown operation, ``frame`` for bad bytes).

Byte strings travel base64-encoded (``push_update``'s ``bundle``). After a
malformed frame the gateway answers with ``id`` 0 and closes the connection.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any

from smtestbed.proto import topics

__all__ = [
    "HEADER",
    "MAX_FRAME",
    "OPS",
    "FrameError",
    "Reply",
    "Request",
    "decode_reply",
    "decode_request",
    "encode",
    "frame_length",
]

HEADER = 4
MAX_FRAME = 16 * 1024 * 1024
OPS: dict[str, str] = {
    "status": topics.GATEWAY_STATUS,
    "add_meter": topics.GATEWAY_ADD_METER,
    "remove_meter": topics.GATEWAY_REMOVE_METER,
    "assign_taf": topics.GATEWAY_ASSIGN_TAF,
    "list_meters": topics.GATEWAY_LIST_METERS,
    "read_log": topics.GATEWAY_READ_LOG,
    "taf6_readout": topics.GATEWAY_TAF6_READOUT,
    "push_update": topics.GATEWAY_PUSH_UPDATE,
}
"""WAN operation -> the gateway bus request that does the same."""


class FrameError(ValueError):
    """A frame or message does not follow the layout above."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One administration request."""

    id: int
    op: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """The gateway's answer to the request with the same ``id``."""

    id: int
    ok: bool
    result: Any = None
    error: str = ""
    field: str = ""

    def to_map(self) -> dict[str, Any]:
        """Return the JSON object of this reply."""
        if self.ok:
            return {"id": self.id, "ok": True, "result": self.result}
        return {"id": self.id, "ok": False, "error": self.error, "field": self.field}


def encode(message: dict[str, Any]) -> bytes:
    """Return ``message`` as one frame (header and JSON body)."""
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    if len(body) > MAX_FRAME:
        raise FrameError(f"message of {len(body)} bytes exceeds {MAX_FRAME}")
    return struct.pack(">I", len(body)) + body


def frame_length(header: bytes) -> int:
    """Return the body length announced by a 4-byte header."""
    if len(header) != HEADER:
        raise FrameError(f"header must be {HEADER} bytes, got {len(header)}")
    (length,) = struct.unpack(">I", header)
    if not 1 <= length <= MAX_FRAME:
        raise FrameError(f"frame length {length} outside 1..{MAX_FRAME}")
    return int(length)


def _object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError(f"body is not UTF-8 JSON: {exc}") from None
    if not isinstance(value, dict):
        raise FrameError(f"body must be a JSON object, got {type(value).__name__}")
    return value


def _id(value: dict[str, Any]) -> int:
    ident = value.get("id")
    if not isinstance(ident, int) or isinstance(ident, bool) or ident < 0:
        raise FrameError(f"id must be a non-negative integer, got {ident!r}")
    return ident


def decode_request(body: bytes) -> Request:
    """Parse a request body; the op is checked by the server (it answers unknown ones)."""
    value = _object(body)
    op, params = value.get("op"), value.get("params", {})
    if not isinstance(op, str):
        raise FrameError(f"op must be a string, got {op!r}")
    if not isinstance(params, dict):
        raise FrameError(f"params must be an object, got {type(params).__name__}")
    return Request(id=_id(value), op=op, params=params)


def decode_reply(body: bytes) -> Reply:
    """Parse a reply body."""
    value = _object(body)
    ok = value.get("ok")
    if not isinstance(ok, bool):
        raise FrameError(f"ok must be true or false, got {ok!r}")
    if ok:
        return Reply(id=_id(value), ok=True, result=value.get("result"))
    return Reply(
        id=_id(value), ok=False, error=str(value.get("error", "")), field=str(value.get("field"))
    )
