"""SML message values (SML v1.04): times, list entries and the message bodies.

Field names follow the specification in snake case. OPTIONAL fields are None
when absent (sent as ``01``). Integers whose width varies between meters keep
it as :class:`SmlInt` so that a decoded message encodes to the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

from smtestbed.proto.sml.obis import ObisCode
from smtestbed.proto.sml.tl import Node, SmlInt

__all__ = [
    "AttentionResponse",
    "GetListRequest",
    "GetListResponse",
    "GetProfileListRequest",
    "GetProfileListResponse",
    "ListEntry",
    "MessageBody",
    "MessageTag",
    "PeriodEntry",
    "PublicCloseRequest",
    "PublicCloseResponse",
    "PublicOpenRequest",
    "PublicOpenResponse",
    "RawBody",
    "SmlFile",
    "SmlMessage",
    "SmlTime",
    "SmlValue",
    "TimeKind",
]

SmlValue: TypeAlias = "bytes | bool | SmlInt"
"""SML_Value: an octet string, a boolean or an integer of 1..8 bytes."""


class MessageTag(IntEnum):
    """The CHOICE tag of SML_MessageBody (Unsigned32, sent as ``63 hi lo``)."""

    PUBLIC_OPEN_REQ = 0x0100
    PUBLIC_OPEN_RES = 0x0101
    PUBLIC_CLOSE_REQ = 0x0200
    PUBLIC_CLOSE_RES = 0x0201
    GET_PROFILE_PACK_REQ = 0x0300
    GET_PROFILE_PACK_RES = 0x0301
    GET_PROFILE_LIST_REQ = 0x0400
    GET_PROFILE_LIST_RES = 0x0401
    GET_PROC_PARAMETER_REQ = 0x0500
    GET_PROC_PARAMETER_RES = 0x0501
    SET_PROC_PARAMETER_REQ = 0x0600
    GET_LIST_REQ = 0x0700
    GET_LIST_RES = 0x0701
    ATTENTION_RES = 0xFF01


class TimeKind(IntEnum):
    """The CHOICE tag of SML_Time."""

    SEC_INDEX = 1  # seconds since an arbitrary origin (often power-up)
    TIMESTAMP = 2  # Unix time, s, UTC
    LOCAL_TIMESTAMP = 3  # Unix time plus local and daylight-saving offsets


@dataclass(frozen=True, slots=True, kw_only=True)
class SmlTime:
    """SML_Time: ``72 62 kk <value>``; a local timestamp is ``73 <ts> <offset> <season>``.

    Attributes:
        kind: which CHOICE.
        value: seconds (secIndex or Unix time).
        local_offset: minutes to add for local time (LOCAL_TIMESTAMP only).
        season_offset: minutes of daylight saving (LOCAL_TIMESTAMP only).
        bare: sent as a plain Unsigned without the CHOICE list, as Holley DTZ541
            meters send valTime (read as a secIndex).
    """

    kind: TimeKind
    value: SmlInt
    local_offset: int | None = None
    season_offset: int | None = None
    bare: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ListEntry:
    """SML_ListEntry: one OBIS value of a GetList.Res (a list of 7).

    Attributes:
        obj_name: what the value is.
        status: meter-specific status word (Unsigned8..64).
        val_time: when the value was taken.
        unit: DLMS unit code (30 Wh, 27 W, 13 m³, ...).
        scaler: power of ten the value is multiplied with.
        value: the value.
        value_signature: the meter's signature over the value.
    """

    obj_name: ObisCode
    status: SmlInt | None = None
    val_time: SmlTime | None = None
    unit: int | None = None
    scaler: int | None = None
    value: SmlValue
    value_signature: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodEntry:
    """SML_PeriodEntry: one value of a load-profile period (a list of 5)."""

    obj_name: ObisCode
    unit: int
    scaler: int
    value: SmlValue
    value_signature: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicOpenRequest:
    """SML_PublicOpen.Req: the client opens a session with a server."""

    codepage: bytes | None = None
    client_id: bytes
    req_file_id: bytes
    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    sml_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicOpenResponse:
    """SML_PublicOpen.Res: first message of every file a meter sends."""

    codepage: bytes | None = None
    client_id: bytes | None = None
    req_file_id: bytes
    server_id: bytes
    ref_time: SmlTime | None = None
    sml_version: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicCloseRequest:
    """SML_PublicClose.Req: the client ends the session."""

    global_signature: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicCloseResponse:
    """SML_PublicClose.Res: last message of every file a meter sends."""

    global_signature: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetListRequest:
    """SML_GetList.Req: ask a server for a list of values."""

    client_id: bytes
    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    list_name: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetListResponse:
    """SML_GetList.Res: the readings a meter pushes (1.8.0 energy, 16.7.0 power, ...)."""

    client_id: bytes | None = None
    server_id: bytes
    list_name: bytes | None = None
    act_sensor_time: SmlTime | None = None
    entries: tuple[ListEntry, ...]
    list_signature: bytes | None = None
    act_gateway_time: SmlTime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetProfileListRequest:
    """SML_GetProfileList.Req: ask for load-profile periods between two times.

    ``das_details`` (an SML_Tree) is kept as a generic TL value.
    """

    server_id: bytes | None = None
    username: bytes | None = None
    password: bytes | None = None
    with_rawdata: bool | None = None
    begin_time: SmlTime | None = None
    end_time: SmlTime | None = None
    tree_path: tuple[bytes, ...]
    object_list: tuple[bytes, ...] | None = None
    das_details: Node = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GetProfileListResponse:
    """SML_GetProfileList.Res: one load-profile period.

    Attributes:
        reg_period: registration period, s.
        status: profile status word (Unsigned64 by the specification).
    """

    server_id: bytes
    act_time: SmlTime
    reg_period: int
    tree_path: tuple[bytes, ...]
    val_time: SmlTime
    status: SmlInt
    period_list: tuple[PeriodEntry, ...]
    rawdata: bytes | None = None
    period_signature: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttentionResponse:
    """SML_Attention.Res: the server reports an error or a note (attentionNo is OBIS-like).

    ``attention_details`` (an SML_Tree) is kept as a generic TL value.
    """

    server_id: bytes
    attention_no: bytes
    attention_msg: bytes | None = None
    attention_details: Node = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RawBody:
    """A message body this package does not model, kept as its generic TL value."""

    tag: int
    content: Node


MessageBody: TypeAlias = (
    "PublicOpenRequest | PublicOpenResponse | PublicCloseRequest | PublicCloseResponse"
    " | GetListRequest | GetListResponse | GetProfileListRequest | GetProfileListResponse"
    " | AttentionResponse | RawBody"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class SmlMessage:
    """SML_Message: ``76 transactionId groupNo abortOnError body crc16 00``.

    The crc16 is computed on encoding and checked on decoding, so it is not a field.

    Attributes:
        tag_size: bytes of the body's CHOICE tag on the wire: 2 as most meters send
            it (``63 07 01``), 4 from Holley and eBZ meters (``65 00 00 07 01``).
    """

    transaction_id: bytes
    group_no: int = 0
    abort_on_error: int = 0
    body: MessageBody
    tag_size: int = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class SmlFile:
    """One SML transport file: its messages and the padding count it was sent with."""

    messages: tuple[SmlMessage, ...]
    padding: int | None = None
