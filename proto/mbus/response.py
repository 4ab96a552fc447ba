"""Slave responses of wired M-Bus: RSP_UD with CI 0x72, 0x73 or 0x70 (EN 13757-3).

- CI 0x72 variable data: 12-byte header (:class:`SlaveInfo`), then data records.
- CI 0x73 fixed data: ID(4, BCD) access(1) status(1) medium/unit(2)
  counter1(4) counter2(4). Status bit 7 clear: counters are BCD; set: binary.
  Medium/unit bytes: low 6 bits = unit code of counter 1 / counter 2; the top
  two bits of each byte are medium bits 1..0 and 3..2.
- CI 0x70 application error: optional one-byte error code.
"""

from __future__ import annotations

from dataclasses import dataclass

from smtestbed.proto.mbus.cfield import PRM, is_rsp_ud
from smtestbed.proto.mbus.fixed import FixedData, decode_fixed_data, encode_fixed_data
from smtestbed.proto.mbus.frames import (
    ControlFrame,
    LongFrame,
    encode_control,
    encode_long,
    parse_frame,
)
from smtestbed.proto.mbus.header import (
    VARIABLE_HEADER_SIZE,
    SlaveInfo,
    decode_slave_info,
    encode_slave_info,
)
from smtestbed.proto.records import DataBlock, decode_records, encode_records
from smtestbed.services._runtime.errors import ProtocolError

CI_VARIABLE = 0x72
CI_FIXED = 0x73
CI_ERROR = 0x70
DATA_OFFSET = 7
"""Position of the first byte after CI in a long frame (68 L L 68 C A CI)."""

APPLICATION_ERRORS = {
    0: "unspecified error",
    1: "unimplemented CI field",
    2: "buffer too long, truncated",
    3: "too many records",
    4: "premature end of record",
    5: "more than 10 DIFE",
    6: "more than 10 VIFE",
    7: "reserved",
    8: "application too busy for readout request",
    9: "too many readouts",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class VariableData:
    """CI 0x72 payload: header and data records."""

    info: SlaveInfo
    block: DataBlock


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationError:
    """CI 0x70 payload: error code (None when the slave sent none) and its text."""

    code: int | None
    description: str
    extra: bytes = b""


Payload = VariableData | FixedData | ApplicationError


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A slave's RSP_UD: C field, primary address and the decoded payload."""

    c: int
    a: int
    payload: Payload


def decode_response(data: bytes) -> Response:
    """Parse a frame from a slave and decode its application data.

    Raises:
        ProtocolError: framing faults, ``wrong_direction`` for a frame from a
            master, ``not_a_response`` for other frame kinds,
            ``unsupported_ci`` and record faults.
    """
    frame = parse_frame(data)
    if not isinstance(frame, LongFrame | ControlFrame):
        raise ProtocolError(
            f"{type(frame).__name__} carries no slave data", reason="not_a_response", offset=0
        )
    if frame.c & PRM:
        raise ProtocolError(
            "wrong direction: frame from the master", reason="wrong_direction", offset=4
        )
    if not is_rsp_ud(frame.c):
        raise ProtocolError(
            f"C field 0x{frame.c:02X} is not RSP_UD", reason="not_a_response", offset=4
        )
    body = frame.data if isinstance(frame, LongFrame) else b""
    return Response(c=frame.c, a=frame.a, payload=decode_payload(frame.ci, body))


def decode_payload(ci: int, body: bytes) -> Payload:
    """Decode the bytes after a slave's CI field (``body`` starts at frame byte 7)."""
    if ci == CI_VARIABLE:
        info = decode_slave_info(body, offset=DATA_OFFSET)
        block = decode_records(
            body[VARIABLE_HEADER_SIZE:], offset=DATA_OFFSET + VARIABLE_HEADER_SIZE
        )
        return VariableData(info=info, block=block)
    if ci == CI_FIXED:
        return decode_fixed_data(body, offset=DATA_OFFSET)
    if ci == CI_ERROR:
        code = body[0] if body else None
        text = APPLICATION_ERRORS.get(code, "reserved") if code is not None else "no error code"
        return ApplicationError(code=code, description=text, extra=bytes(body[1:]))
    raise ProtocolError(
        f"unsupported CI field 0x{ci:02X}", reason="unsupported_ci", offset=DATA_OFFSET - 1
    )


def encode_payload(payload: Payload) -> tuple[int, bytes]:
    """Return the CI field and the bytes after it for a payload."""
    if isinstance(payload, VariableData):
        return CI_VARIABLE, encode_slave_info(payload.info) + encode_records(payload.block)
    if isinstance(payload, FixedData):
        return CI_FIXED, encode_fixed_data(payload)
    code = b"" if payload.code is None else bytes([payload.code])
    return CI_ERROR, code + payload.extra


def encode_response(response: Response) -> bytes:
    """Encode a RSP_UD frame; a payload without bytes becomes a control frame."""
    ci, body = encode_payload(response.payload)
    if not body:
        return encode_control(response.c, response.a, ci)
    return encode_long(response.c, response.a, ci, body)
