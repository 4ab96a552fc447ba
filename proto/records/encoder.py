"""Encode M-Bus data records (EN 13757-3) to bytes."""

from __future__ import annotations

from collections.abc import Iterable

from smtestbed.proto.records.decoder import MANUFACTURER_DATA, MORE_RECORDS_FOLLOW
from smtestbed.proto.records.model import DataBlock, Record


def encode_records(block_or_records: DataBlock | Iterable[Record]) -> bytes:
    """Encode a data block, or plain records, as application-layer bytes.

    A block decoded by :func:`decode_records` comes out byte for byte as it
    went in: records keep their DIB/VIB/data bytes and idle fillers, and the
    block keeps its trailing fillers and special DIF.

    Args:
        block_or_records: a :class:`DataBlock`, or records to write without a
            special DIF.
    """
    if not isinstance(block_or_records, DataBlock):
        return b"".join(record.to_bytes() for record in block_or_records)
    block = block_or_records
    body = b"".join(record.to_bytes() for record in block.records)
    body += b"\x2f" * block.trailing_fill
    if block.more_follow:
        return body + bytes([MORE_RECORDS_FOLLOW]) + block.manufacturer_data
    if block.special_dif or block.manufacturer_data:
        return body + bytes([MANUFACTURER_DATA]) + block.manufacturer_data
    return body
