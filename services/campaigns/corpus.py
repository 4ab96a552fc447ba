"""Seed corpora of the fuzz targets: the shared vectors plus frames of our own encoders.

The shared vectors are read from ``SMTB_VECTORS`` when set, else from ``../shared/vectors``
beside the project root; without them the corpora hold only what our encoders build, so a
campaign runs the same way on a machine that lacks the vectors (with fewer seeds).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smtestbed.proto import topics
from smtestbed.proto.envelope import Envelope
from smtestbed.proto.mbus import (
    Response,
    SecondaryAddress,
    VariableData,
    encode_application_reset,
    encode_req_ud2,
    encode_response,
    encode_select,
    encode_set_primary_address,
    encode_snd_nke,
    slave_info,
)
from smtestbed.proto.records import DataBlock, DataType, Record, new_record
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
    TimeKind,
    encode_sml_file,
)
from smtestbed.proto.wmbus import MeterAddress, encode_telegram, new_telegram

KEY = bytes(range(16))
"""AES-128 key of every encrypted seed telegram (the wmbus target decodes with it)."""
SLAVE_IDENT = "12345678"
SLAVE_ADDRESS = 5
SLAVE_MANUFACTURER = "ABC"
EMH = 0x15A8  # FLAG code "EMH"
_ROOT = Path(__file__).resolve().parents[2]


def vectors_dir() -> Path | None:
    """Return the shared vector folder (``SMTB_VECTORS`` or ``../shared/vectors``), or None."""
    configured = os.environ.get("SMTB_VECTORS")
    candidate = Path(configured) if configured else _ROOT.parent / "shared" / "vectors"
    return candidate if candidate.is_dir() else None


def vector_rows(name: str) -> list[dict[str, Any]]:
    """Return the rows of one JSON-lines vector file, [] when it is absent."""
    folder = vectors_dir()
    if folder is None or not (folder / name).is_file():
        return []
    with (folder / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _hex(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text.replace(" ", ""))
    except ValueError:
        return None


def meter_records(energy_wh: float = 123_456, power_w: float = 1500) -> list[Record]:
    """Return the records of a simple electricity meter: energy (Wh) and power (W), INT32."""
    return [
        new_record(quantity="energy", unit="Wh", value=energy_wh, data_type=DataType.INT32),
        new_record(quantity="power", unit="W", value=power_w, data_type=DataType.INT32),
        new_record(quantity="volume", value=12.5, exponent=-3),
    ]


def record_bytes(energy_wh: float = 123_456) -> bytes:
    """Return :func:`meter_records` as application-layer bytes."""
    return b"".join(r.to_bytes() for r in meter_records(energy_wh))


def wmbus_frame(ident: int, *, access: int, mode: int, energy_wh: float = 123_456) -> bytes:
    """Return an on-air format A telegram of EMH meter ``ident`` (BCD digits as hex), KEY."""
    telegram = new_telegram(
        address=MeterAddress(manufacturer=EMH, ident=ident, version=1, device_type=2),
        records=record_bytes(energy_wh),
        access_number=access,
        security_mode=mode,
        counter=access,
    )
    return encode_telegram(telegram, key=KEY if mode else None)


def wmbus_seeds() -> list[bytes]:
    """Return telegrams of the vectors (as delivered, CRC-less) and ours in modes 0, 5, 7."""
    out = [wmbus_frame(0x12345678, access=a, mode=m) for a, m in ((1, 0), (2, 5), (3, 7))]
    for row in vector_rows("wmbus_vectors.jsonl"):
        frame = _hex(str(row.get("telegram_hex", "")))
        if frame:
            out.append(frame)
    return out


def mbus_seeds() -> list[bytes]:
    """Return the wired long frames of the vectors plus our requests and responses."""
    payload = VariableData(info=_info(), block=_block())
    out = [*slave_seeds(), encode_response(Response(c=0x08, a=SLAVE_ADDRESS, payload=payload))]
    for row in vector_rows("mbus_vectors.jsonl"):
        frame = _hex(str(row.get("hex", "")))
        if frame:
            out.append(frame)
    return out


def _info() -> Any:
    return slave_info(ident=SLAVE_IDENT, manufacturer=SLAVE_MANUFACTURER, version=1, medium=2)


def _block() -> DataBlock:
    return DataBlock(records=tuple(meter_records()))


def records_seeds() -> list[bytes]:
    """Return record blocks: ours and the data part of the vectors' variable frames."""
    out = [record_bytes(), b"".join(r.to_bytes() for r in meter_records(1.5, 0))]
    for row in vector_rows("mbus_vectors.jsonl"):
        frame = _hex(str(row.get("hex", "")))
        if frame and row.get("kind") == "variable" and len(frame) > 21:
            out.append(frame[19:-2])  # 68 L L 68 C A CI, 12-byte header | records | CS 16
    return out


def slave_seeds() -> list[bytes]:
    """Return master request sequences a wired slave at SLAVE_ADDRESS answers."""
    pattern = SecondaryAddress(ident=SLAVE_IDENT)
    return [
        encode_snd_nke(SLAVE_ADDRESS) + encode_req_ud2(SLAVE_ADDRESS, fcb=True),
        encode_req_ud2(SLAVE_ADDRESS) + encode_req_ud2(SLAVE_ADDRESS, fcb=True),
        encode_select(pattern) + encode_req_ud2(0xFD, fcb=True) + encode_snd_nke(0xFD),
        encode_set_primary_address(SLAVE_ADDRESS, 7) + encode_req_ud2(7),
        encode_application_reset(SLAVE_ADDRESS, 0x10) + encode_req_ud2(0xFE),
        encode_application_reset(0xFF) + encode_snd_nke(0xFF),
    ]


SERVER_ID = bytes.fromhex("0A01454D480000B97735")


def sml_seeds() -> list[bytes]:
    """Return SML files built by our encoder: an open/list/close meter file and a short one."""
    energy = ListEntry(
        obj_name=ObisCode.parse("1-0:1.8.0*255"),
        status=SmlInt(value=0x0101A2, size=3),
        val_time=SmlTime(kind=TimeKind.SEC_INDEX, value=SmlInt(value=2345, size=4)),
        unit=30,
        scaler=-1,
        value=SmlInt(value=117837949, signed=True, size=5),
    )
    get_list = GetListResponse(
        server_id=SERVER_ID,
        list_name=ObisCode.parse("1-0:98.10.255*255").to_bytes(),
        entries=(energy, ListEntry(obj_name=ObisCode.parse("1-0:96.1.0"), value=SERVER_ID)),
    )
    opening = PublicOpenResponse(req_file_id=b"\x00\x35\x9d\xe8", server_id=SERVER_ID)
    bodies: list[MessageBody] = [opening, get_list, PublicCloseResponse()]
    messages = [
        SmlMessage(transaction_id=i.to_bytes(4, "big"), body=b) for i, b in enumerate(bodies, 1)
    ]
    return [encode_sml_file(messages), encode_sml_file([messages[0], messages[2]])]


def envelope_seeds() -> list[bytes]:
    """Return events as the envelope target reads them: topic length, topic, envelope."""
    out = []
    for seq, (kind, body) in enumerate(
        (
            (topics.GATEWAY_STATUS, {"gateway": "gw0"}),
            (topics.RECEIVED_BATCH, {"count": 1, "meta": {}, "columns": [["t_rx", "d"]]}),
            (topics.GATEWAY_FRAME_REJECTED, {"reason": "bad_crc", "meter": "12345678"}),
        )
    ):
        wire = Envelope(kind=kind, src="fuzz", seq=seq, t_sim=1.5, t_wall=2.5, body=body)
        out.append(event_input(kind.encode(), wire.to_wire()))
    return out


def event_input(topic: bytes, wire: bytes) -> bytes:
    """Return one envelope-target input: a length byte, the topic frame, the envelope frame."""
    return bytes([len(topic) & 0xFF]) + topic[:255] + wire


SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "wmbus": wmbus_seeds,
    "mbus": mbus_seeds,
    "records": records_seeds,
    "sml": sml_seeds,
    "envelope": envelope_seeds,
    "mbus-slave": slave_seeds,
}
