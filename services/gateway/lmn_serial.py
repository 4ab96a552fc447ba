"""Raw UART / RS-485 LMN input: meters that push M-Bus telegrams or SML files unasked.

The gateway only listens on the link (:mod:`lmn_link`: serial port, pty or TCP). The byte
stream is cut into

- SML files (``1B1B1B1B 01010101 ... 1B1B1B1B 1A nn CRC``, SML transport v1), decoded with
  :mod:`smtestbed.proto.sml`; a file whose CRC fails is a ``bad_crc`` rejection;
- wired M-Bus frames (``split_frames``); RSP_UD long frames of one meter are collected
  while their last record is DIF 0x1F and then form one readout.

Bytes that belong to neither are counted as garbage; a partial frame that sees no further
byte for ``idle_s`` loses its first byte so the next frame can be found. Readouts become
readings, checked, stored and logged as the wired M-Bus master's (:mod:`wired_readings`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from smtestbed.proto.mbus import Response, VariableData, decode_response, encode_frame
from smtestbed.proto.mbus import split_frames as split_mbus
from smtestbed.proto.sml import SmlFile, decode_sml_file
from smtestbed.proto.sml.transport import START as SML_START
from smtestbed.proto.sml.transport import unwrap_file
from smtestbed.services._runtime.errors import ConfigError, ProtocolError
from smtestbed.services.gateway.instance import GatewayInstance, IngestResult
from smtestbed.services.gateway.lmn_link import Link, check_link_table, open_link
from smtestbed.services.gateway.schema import Reading, Reason, Rejection
from smtestbed.services.gateway.wired_readings import (
    Readout,
    RefusedError,
    WiredIngest,
    mbus_reading,
    sml_readings,
)

Announce = Callable[[str, IngestResult], None]
MAX_BUFFER = 65_536
"""Bytes kept while waiting for the end of an SML file; older ones are dropped as garbage."""
RECONNECT_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class InputConfig:
    """One raw input of an instance (a ``serial_inputs`` table of the gateway config)."""

    instance: str
    url: str
    baudrate: int = 9600
    parity: str = "N"
    idle_s: float = 0.5


@dataclass(slots=True)
class InputCounters:
    """Totals of one input since start."""

    mbus_frames: int = 0
    sml_files: int = 0
    other_frames: int = 0
    garbage_bytes: int = 0
    reconnects: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Pieces:
    """What :func:`cut` found at the front of a buffer."""

    mbus: tuple[bytes, ...] = ()
    sml: tuple[bytes, ...] = ()
    bad_sml: tuple[str, ...] = ()
    garbage: int = 0
    rest: bytes = b""


def _mbus_part(data: bytes) -> tuple[list[bytes], bytes, int]:
    frames, tail = split_mbus(data)
    raw = [encode_frame(f) for f in frames]
    return raw, tail, len(data) - len(tail) - sum(map(len, raw))


def cut(buffer: bytes) -> Pieces:
    """Cut the complete M-Bus frames and SML files off the front of a byte stream."""
    mbus: list[bytes] = []
    sml: list[bytes] = []
    bad: list[str] = []
    garbage = 0
    while True:
        at = buffer.find(SML_START)
        frames, tail, dropped = _mbus_part(buffer if at < 0 else buffer[:at])
        mbus += frames
        garbage += dropped
        if at < 0:
            return Pieces(mbus=(*mbus,), sml=(*sml,), bad_sml=(*bad,), garbage=garbage, rest=tail)
        garbage += len(tail)  # a frame cut short by an SML file
        size, problem = _sml_size(buffer[at:])
        if size is None:
            rest = buffer[at:]
            return Pieces(mbus=(*mbus,), sml=(*sml,), bad_sml=(*bad,), garbage=garbage, rest=rest)
        if problem:
            bad.append(problem)
        else:
            sml.append(buffer[at : at + size])
        buffer = buffer[at + size :]


def _sml_size(data: bytes) -> tuple[int | None, str]:
    """Return (size of the SML file at the front, problem); size None: incomplete."""
    try:
        return unwrap_file(data).size, ""
    except ProtocolError as exc:
        if exc.reason == "truncated":
            return None, ""
        if exc.reason == "bad_crc" and exc.offset is not None:
            return exc.offset + 2, f"SML file: {exc}"
        return len(SML_START), f"SML file: {exc}"


def parse_inputs(
    tables: Sequence[Mapping[str, Any]], instances: Sequence[str]
) -> list[InputConfig]:
    """Validate the ``serial_inputs`` tables (ConfigError names the key)."""
    out = []
    for index, table in enumerate(tables):
        where = f"gateway.serial_inputs[{index}]"
        check_link_table(table, instances, where, parity="N")
        baudrate = table.get("baudrate", 9600)
        if isinstance(baudrate, bool) or not isinstance(baudrate, int):
            raise ConfigError("must be an integer", key=f"{where}.baudrate")
        out.append(
            InputConfig(
                instance=str(table["instance"]),
                url=table["url"],
                baudrate=baudrate,
                parity=str(table.get("parity", "N")),
            )
        )
    return out


class SerialInput:
    """Listen on one raw input and ingest what meters push on it.

    Args:
        config: the input.
        instance: the instance the meters belong to.
        clock: the gateway's time (simulation clock), s.
        announce: told what each ingest committed and refused.
    """

    def __init__(
        self,
        config: InputConfig,
        instance: GatewayInstance,
        clock: Callable[[], float],
        announce: Announce | None = None,
    ) -> None:
        self.config = config
        self.instance = instance
        self.clock = clock
        self.announce = announce
        self.counters = InputCounters()
        self.ingest = WiredIngest(instance)
        self._buffer = b""
        self._pending: dict[str, list[tuple[bytes, Response]]] = {}

    async def run(self) -> None:
        """Open the link, ingest until cancelled, reopen it when it goes."""
        log = structlog.get_logger().bind(instance=self.instance.name, line=self.config.url)
        while True:
            try:
                link = await open_link(
                    self.config.url, baudrate=self.config.baudrate, parity=self.config.parity
                )
            except OSError as exc:
                log.warning("serial_input_unreachable", error=str(exc))
            else:
                try:
                    await self.listen(link)
                except ConnectionError as exc:
                    log.warning("serial_input_lost", error=str(exc))
                finally:
                    await link.close()
            self.counters.reconnects += 1
            await asyncio.sleep(RECONNECT_S)

    async def listen(self, link: Link) -> None:
        """Feed what arrives on ``link``; drop a stale partial frame after ``idle_s``."""
        while True:
            data = await link.inbox.take(self.config.idle_s)
            if data:
                self.feed(data)
            elif self._buffer:
                self._buffer = self._buffer[1:]
                self.counters.garbage_bytes += 1
                self.feed(b"")

    def feed(self, data: bytes) -> list[IngestResult]:
        """Take received bytes; ingest the readouts and SML files they complete."""
        pieces = cut(self._buffer + data)
        self._buffer = pieces.rest[-MAX_BUFFER:]
        self.counters.garbage_bytes += pieces.garbage + len(pieces.rest) - len(self._buffer)
        t_sim = self.clock()
        results = []
        readings, rejections = self._mbus(pieces.mbus, t_sim)
        for problem in pieces.bad_sml:
            rejections.append(Rejection(reason=Reason.BAD_CRC, message=problem, t_sim=t_sim))
        if readings or rejections:
            results.append(self.ingest.commit(readings, rejections))
        if pieces.sml:
            results.append(self.ingest.commit(*self._sml(pieces.sml, t_sim), sml=True))
        for result in results:
            if self.announce is not None:
                self.announce(self.instance.name, result)
        return results

    def _mbus(self, frames: Sequence[bytes], t_sim: float) -> tuple[list[Reading], list[Rejection]]:
        readings: list[Reading] = []
        rejections: list[Rejection] = []
        for raw in frames:
            readout = self._collect(raw)
            if readout is None:
                continue
            try:
                readings.append(
                    mbus_reading(self.instance, readout, self.ingest.layouts, t_sim=t_sim)
                )
            except RefusedError as refused:
                rejections.append(refused.rejection(t_sim))
        return readings, rejections

    def _collect(self, raw: bytes) -> Readout | None:
        """Add a frame to its meter's readout; return the readout once it is complete."""
        try:
            response = decode_response(raw)
        except ProtocolError:
            self.counters.other_frames += 1
            return None
        self.counters.mbus_frames += 1
        payload = response.payload
        if not isinstance(payload, VariableData):
            return Readout(frames=(raw,), responses=(response,))
        parts = self._pending.setdefault(payload.info.ident, [])
        parts.append((raw, response))
        if payload.block.more_follow:
            return None
        del self._pending[payload.info.ident]
        return Readout(frames=tuple(r for r, _ in parts), responses=tuple(p for _, p in parts))

    def _sml(self, files: Sequence[bytes], t_sim: float) -> tuple[list[Reading], list[Rejection]]:
        readings: list[Reading] = []
        rejections: list[Rejection] = []
        for raw in files:
            self.counters.sml_files += 1
            try:
                sml: SmlFile = decode_sml_file(raw)
                readings += sml_readings(self.instance, sml, raw, t_sim=t_sim)
            except ProtocolError as exc:
                reason = Reason.MALFORMED_RECORD
                rejections.append(Rejection(reason=reason, message=f"SML: {exc}", t_sim=t_sim))
            except RefusedError as refused:
                rejections.append(refused.rejection(t_sim))
        return readings, rejections


def inputs(
    tables: Sequence[Mapping[str, Any]],
    instances: Mapping[str, GatewayInstance],
    *,
    clock: Callable[[], float],
    announce: Announce | None = None,
) -> list[SerialInput]:
    """Return a listener per ``serial_inputs`` table (validated; ConfigError names the key)."""
    configs = parse_inputs(tables, list(instances))
    return [SerialInput(c, instances[c.instance], clock, announce) for c in configs]


async def run_inputs(listeners: Sequence[SerialInput]) -> None:
    """Run the listeners until cancelled (returns at once without any)."""
    if listeners:
        await asyncio.gather(*(listener.run() for listener in listeners))
