"""SML, Smart Message Language (v1.04): transport, messages, OBIS list entries.

Typical use::

    sml_file = decode_sml_file(raw)           # raw starts with 1B1B1B1B 01010101
    for reading in readings_from_file(sml_file):
        print(reading.obis, reading.value, reading.unit_symbol)
"""

from __future__ import annotations

from smtestbed.proto.sml.codec import (
    decode_sml_file,
    decode_sml_message,
    decode_sml_messages,
    encode_sml_file,
    encode_sml_message,
)
from smtestbed.proto.sml.crc import crc16_x25
from smtestbed.proto.sml.messages import (
    AttentionResponse,
    GetListRequest,
    GetListResponse,
    GetProfileListRequest,
    GetProfileListResponse,
    ListEntry,
    MessageBody,
    MessageTag,
    PeriodEntry,
    PublicCloseRequest,
    PublicCloseResponse,
    PublicOpenRequest,
    PublicOpenResponse,
    RawBody,
    SmlFile,
    SmlMessage,
    SmlTime,
    SmlValue,
    TimeKind,
)
from smtestbed.proto.sml.obis import ObisCode
from smtestbed.proto.sml.readings import Reading, reading_from_entry, readings, readings_from_file
from smtestbed.proto.sml.tl import Node, SmlInt
from smtestbed.proto.sml.transport import START
from smtestbed.proto.sml.units import UNIT_SYMBOLS, unit_symbol

__all__ = [
    "START",
    "UNIT_SYMBOLS",
    "AttentionResponse",
    "GetListRequest",
    "GetListResponse",
    "GetProfileListRequest",
    "GetProfileListResponse",
    "ListEntry",
    "MessageBody",
    "MessageTag",
    "Node",
    "ObisCode",
    "PeriodEntry",
    "PublicCloseRequest",
    "PublicCloseResponse",
    "PublicOpenRequest",
    "PublicOpenResponse",
    "RawBody",
    "Reading",
    "SmlFile",
    "SmlInt",
    "SmlMessage",
    "SmlTime",
    "SmlValue",
    "TimeKind",
    "crc16_x25",
    "decode_sml_file",
    "decode_sml_message",
    "decode_sml_messages",
    "encode_sml_file",
    "encode_sml_message",
    "reading_from_entry",
    "readings",
    "readings_from_file",
    "unit_symbol",
]
