"""In-process fuzz targets: one function per decoder, bytes in, a documented error or nothing.

A target returns normally or raises the decoder's documented error family
(:class:`ProtocolError`, whose subclasses include ``EnvelopeError`` and the wM-Bus security
errors); anything else is a crash. Targets that also check what the code under test
answered raise :class:`InvariantError` when an answer is wrong, which is a crash too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from smtestbed.proto.envelope import Envelope, check_event_frames
from smtestbed.proto.mbus import (
    ControlFrame,
    LongFrame,
    decode_response,
    parse_frame,
    split_frames,
)
from smtestbed.proto.records import decode_records, encode_records
from smtestbed.proto.sml import decode_sml_file
from smtestbed.proto.wmbus import decode_telegram
from smtestbed.proto.wmbus.link import load_crc_kernel
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.campaigns import corpus
from smtestbed.services.sensorfarm.mbus_slave import MbusSlave, WiredMeter

ALLOWED: tuple[type[BaseException], ...] = (ProtocolError,)
"""The documented error family of every in-process target."""


class InvariantError(AssertionError):
    """The code under test answered something its contract rules out."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A fuzz target: the function under test and the seeds of its corpus."""

    name: str
    run: Callable[[bytes], None]
    seeds: Callable[[], list[bytes]]
    about: str
    prepare: Callable[[], None] = lambda: None


def run_wmbus(data: bytes) -> None:
    """Decode a wireless M-Bus telegram (CRCs detected) with the seeds' key."""
    decode_telegram(data, key=corpus.KEY)


def run_mbus(data: bytes) -> None:
    """Parse a wired M-Bus frame; decode a long or control frame as a slave's RSP_UD."""
    frame = parse_frame(data)
    if isinstance(frame, LongFrame | ControlFrame):
        decode_response(data)


def run_records(data: bytes) -> None:
    """Decode application-layer data records; re-encode them and compare byte for byte."""
    if encode_records(decode_records(data)) != data:
        raise InvariantError("decoded records do not encode back to the input byte for byte")


def run_sml(data: bytes) -> None:
    """Decode an SML transport file."""
    decode_sml_file(data)


def run_envelope(data: bytes) -> None:
    """Read ``len topic | topic | envelope`` and check it as a received event; re-pack it."""
    size = data[0] if data else 0
    topic, wire = data[1 : 1 + size], data[1 + size :]
    packed = check_event_frames([topic, wire]).to_wire()
    if Envelope.from_wire(packed).to_wire() != packed:  # bytes: a NaN time is not == itself
        raise InvariantError("an accepted envelope does not survive to_wire/from_wire")


def _slave() -> MbusSlave:
    meter = WiredMeter(
        ident=corpus.SLAVE_IDENT,
        manufacturer=corpus.SLAVE_MANUFACTURER,
        version=1,
        medium=2,
        primary_address=corpus.SLAVE_ADDRESS,
        records=corpus.meter_records,
    )
    return MbusSlave(meter, records_per_telegram=2)


def run_mbus_slave(data: bytes) -> None:
    """Feed every frame of the input to a fresh slave; each answer must be E5 or a RSP_UD."""
    frames, _rest = split_frames(data)
    slave = _slave()
    for frame in frames:
        reply = slave.handle(frame)
        if reply is None or reply == b"\xe5":
            continue
        try:
            response = decode_response(reply)
        except ProtocolError as exc:
            raise InvariantError(f"slave answered a malformed frame: {exc}") from exc
        if response.a != slave.primary_address:
            raise InvariantError(f"slave answered as {response.a}, is {slave.primary_address}")


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            name="wmbus",
            run=run_wmbus,
            seeds=corpus.wmbus_seeds,
            about="decode_telegram",
            prepare=load_crc_kernel,  # compiling mid-campaign would look like a hang
        ),
        Target(name="mbus", run=run_mbus, seeds=corpus.mbus_seeds, about="parse_frame"),
        Target(name="records", run=run_records, seeds=corpus.records_seeds, about="records"),
        Target(name="sml", run=run_sml, seeds=corpus.sml_seeds, about="decode_sml_file"),
        Target(name="envelope", run=run_envelope, seeds=corpus.envelope_seeds, about="envelope"),
        Target(name="mbus-slave", run=run_mbus_slave, seeds=corpus.slave_seeds, about="MbusSlave"),
    )
}
IN_PROCESS = tuple(TARGETS)
SERVICE_TARGETS = ("gateway-lmn", "ca-http", "gwa", "mbus-master")
"""Targets that drive a real service process or socket (always the seeded mutator)."""
ALL_TARGETS = (*IN_PROCESS, *SERVICE_TARGETS)
