"""Wired M-Bus LMN driver: a master that polls the configured meters of each line.

Per line one link (:mod:`lmn_link`: TCP or serial/pty) and, every ``interval_s``, per meter:

1. primary address: SND_NKE ``10 40 A CS 16``, expecting ``E5`` (resets the slave's frame
   count state); secondary address: select ``68 0B 0B 68 53 FD 52 ID(4) M(2) V MED CS 16``
   expecting ``E5``, then talk to address 0xFD;
2. REQ_UD2 ``10 7B|5B A CS 16``: FCV set, FCB set in the first request after the reset and
   toggled for each new telegram; RSP_UD frames are cut out of the stream with
   ``split_frames``; while the last record is DIF 0x1F (more records follow) the next
   telegram is requested with the toggled FCB, up to ``max_telegrams``;
3. a missing or bad reply (timeout, garbled bytes, bad checksum, another meter's telegram)
   is retried with the SAME frame up to ``retries`` times, so the slave repeats its last
   telegram instead of skipping one;
4. secondary address: SND_NKE to 0xFD deselects the meter.

A complete readout becomes a reading (:mod:`wired_readings`) and is stored and logged by
the instance. A meter that gives no good reply after the retries is counted and, when it
was not missing before, written to the system log as ``meter_missing``. Bytes that belong
to no frame are counted as garbage, and a reply with such bytes as a collision.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from smtestbed.proto.mbus import (
    Ack,
    Frame,
    LongFrame,
    Response,
    SecondaryAddress,
    VariableData,
    decode_response,
    encode_frame,
    encode_req_ud2,
    encode_select,
    encode_snd_nke,
    split_frames,
)
from smtestbed.proto.mbus.requests import ADDRESS_SELECTED
from smtestbed.services._runtime.errors import ConfigError, ProtocolError
from smtestbed.services.gateway.instance import GatewayInstance, IngestResult
from smtestbed.services.gateway.lmn_link import Link, check_link_table, open_link
from smtestbed.services.gateway.wired_readings import (
    Readout,
    RefusedError,
    WiredIngest,
    mbus_reading,
    report_missing,
)

Announce = Callable[[str, IngestResult], None]
"""Called with the instance name and what a poll round committed and refused."""
Missing = Callable[[str, dict[str, Any]], object]
"""Called with the instance name and the body of a ``gateway.meter_missing`` event."""
RECONNECT_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MeterTarget:
    """A meter on a line: its ID and how to address it (primary 0..250 or secondary)."""

    meter: str
    primary: int | None = None
    secondary: SecondaryAddress | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LineConfig:
    """One wired line of an instance (a ``wired_lines`` table of the gateway config)."""

    instance: str
    url: str
    meters: tuple[MeterTarget, ...]
    baudrate: int = 2400
    parity: str = "E"
    interval_s: float = 60.0
    reply_timeout_s: float = 1.0
    retries: int = 3
    max_telegrams: int = 16


@dataclass(slots=True)
class LineCounters:
    """Totals of one line since start."""

    polls: int = 0
    readouts: int = 0
    retries: int = 0
    timeouts: int = 0
    collisions: int = 0
    garbage_bytes: int = 0
    missing: int = 0
    reconnects: int = 0


class MeterSilentError(Exception):
    """A meter gave no good reply to a request after the retries."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# -- configuration ---------------------------------------------------------------------------


def _target(item: Any, where: str) -> MeterTarget:
    if not isinstance(item, Mapping) or not isinstance(item.get("meter"), str):
        raise ConfigError("each meter needs a table with a string 'meter'", key=where)
    primary, secondary = item.get("primary"), item.get("secondary")
    if (primary is None) == (secondary is None):
        raise ConfigError("give either 'primary' or 'secondary'", key=where)
    if primary is not None:
        if isinstance(primary, bool) or not isinstance(primary, int) or not 0 <= primary <= 250:
            raise ConfigError(f"primary must be 0..250, got {primary!r}", key=where)
        return MeterTarget(meter=item["meter"], primary=primary)
    try:
        address = SecondaryAddress.parse(str(secondary))
    except ValueError as exc:
        raise ConfigError(f"secondary: {exc}", key=where) from exc
    return MeterTarget(meter=item["meter"], secondary=address)


def _number(table: Mapping[str, Any], key: str, default: float, where: str) -> float:
    value = table.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"must be a positive number, got {value!r}", key=f"{where}.{key}")
    return float(value)


def parse_line(table: Mapping[str, Any], instances: Sequence[str], where: str) -> LineConfig:
    """Validate one ``wired_lines`` table.

    Raises:
        ConfigError: naming the key at fault.
    """
    check_link_table(table, instances, where, parity="E")
    meters = table.get("meters", [])
    if not isinstance(meters, list | tuple):
        raise ConfigError("must be a list of tables", key=f"{where}.meters")
    return LineConfig(
        instance=str(table["instance"]),
        url=table["url"],
        meters=tuple(_target(m, f"{where}.meters[{i}]") for i, m in enumerate(meters)),
        baudrate=int(_number(table, "baudrate", 2400, where)),
        parity=str(table.get("parity", "E")),
        interval_s=_number(table, "interval_s", 60.0, where),
        reply_timeout_s=_number(table, "reply_timeout_s", 1.0, where),
        retries=int(_number(table, "retries", 3, where)),
        max_telegrams=int(_number(table, "max_telegrams", 16, where)),
    )


def parse_lines(tables: Sequence[Mapping[str, Any]], instances: Sequence[str]) -> list[LineConfig]:
    """Validate every ``wired_lines`` table (keys named ``gateway.wired_lines[i]...``)."""
    return [parse_line(t, instances, f"gateway.wired_lines[{i}]") for i, t in enumerate(tables)]


# -- the master --------------------------------------------------------------------------------


class MbusMaster:
    """Request/response exchanges of an M-Bus master on one link.

    Args:
        link: the line.
        timeout: seconds to wait for a reply.
        retries: repetitions of a request whose reply is missing or bad.
        max_telegrams: telegrams of one readout at most.
        counters: where retries, timeouts and garbage are counted.
    """

    def __init__(
        self,
        link: Link,
        *,
        timeout: float = 1.0,
        retries: int = 3,
        max_telegrams: int = 16,
        counters: LineCounters | None = None,
    ) -> None:
        self.link = link
        self.timeout = timeout
        self.retries = retries
        self.max_telegrams = max_telegrams
        self.counters = counters or LineCounters()

    async def read(self, target: MeterTarget) -> Readout:
        """Read one meter completely (all telegrams of one readout).

        Raises:
            MeterSilentError: a request stayed without a good reply after the retries.
        """
        if target.secondary is not None:
            await self._request(encode_select(target.secondary), _is_ack, "select")
            try:
                return await self._readout(ADDRESS_SELECTED, target.secondary.ident)
            finally:
                await self._deselect()
        assert target.primary is not None
        await self._request(encode_snd_nke(target.primary), _is_ack, "snd_nke")
        return await self._readout(target.primary, None)

    async def _deselect(self) -> None:
        # A meter that misses the deselect stays selected until the next selection.
        with contextlib.suppress(MeterSilentError):
            await self._request(encode_snd_nke(ADDRESS_SELECTED), _is_ack, "deselect")

    async def _readout(self, address: int, ident: str | None) -> Readout:
        frames: list[bytes] = []
        responses: list[Response] = []
        fcb = True
        for _ in range(self.max_telegrams):
            accept = _response_check(address, ident)
            frame = await self._request(encode_req_ud2(address, fcb=fcb), accept, "req_ud2")
            raw = encode_frame(frame)
            response = decode_response(raw)
            frames.append(raw)
            responses.append(response)
            payload = response.payload
            if not (isinstance(payload, VariableData) and payload.block.more_follow):
                return Readout(frames=tuple(frames), responses=tuple(responses))
            fcb = not fcb
        raise MeterSilentError(f"more than {self.max_telegrams} telegrams", "too_many_telegrams")

    async def _request(self, request: bytes, accept: Callable[[Frame], bool], what: str) -> Frame:
        """Send ``request`` until a reply passes ``accept`` (1 + ``retries`` attempts)."""
        for attempt in range(self.retries + 1):
            if attempt:
                self.counters.retries += 1
            frame = await self._exchange(request)
            if frame is not None and accept(frame):
                return frame
        raise MeterSilentError(
            f"no good reply to {what} after {self.retries} retries", f"no_reply_{what}"
        )

    async def _exchange(self, request: bytes) -> Frame | None:
        """Send once; return the first frame of the reply (None: timeout or garbage only)."""
        inbox = self.link.inbox
        self._garbage(inbox.clear())  # a late reply to an earlier request
        await self.link.write(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        buffer = b""
        while (left := deadline - loop.time()) > 0:
            buffer += await inbox.take(left)
            frames, tail = split_frames(buffer)
            dropped = len(buffer) - len(tail) - sum(len(encode_frame(f)) for f in frames)
            if frames:
                self._garbage(dropped + inbox.clear())
                return frames[0]
            if dropped:
                self._garbage(dropped)
                buffer = tail
        if not buffer:
            self.counters.timeouts += 1
        self._garbage(len(buffer))
        return None

    def _garbage(self, count: int) -> None:
        if count:
            self.counters.garbage_bytes += count
            self.counters.collisions += 1


def _is_ack(frame: Frame) -> bool:
    return isinstance(frame, Ack)


def _response_check(address: int, ident: str | None) -> Callable[[Frame], bool]:
    """Accept a RSP_UD that decodes, from ``address`` (primary) or of meter ``ident``."""

    def accept(frame: Frame) -> bool:
        if not isinstance(frame, LongFrame):
            return False
        try:
            response = decode_response(encode_frame(frame))
        except ProtocolError:
            return False
        if ident is None:
            return response.a == address
        payload = response.payload
        return isinstance(payload, VariableData) and payload.info.ident == ident

    return accept


# -- polling --------------------------------------------------------------------------------


class LinePoller:
    """Poll the meters of one line every ``interval_s`` and hand the readouts to an instance.

    Args:
        config: the line.
        instance: the instance the meters belong to.
        clock: the gateway's time (simulation clock), s.
        announce: told what each poll round committed and refused.
        on_missing: told (instance name, event body) when a meter goes missing.
    """

    def __init__(
        self,
        config: LineConfig,
        instance: GatewayInstance,
        clock: Callable[[], float],
        announce: Announce | None = None,
        on_missing: Missing | None = None,
    ) -> None:
        self.config = config
        self.instance = instance
        self.clock = clock
        self.announce = announce
        self.on_missing = on_missing
        self.counters = LineCounters()
        self.missing: set[str] = set()
        self.ingest = WiredIngest(instance)

    async def run(self) -> None:
        """Connect, poll every ``interval_s``, reconnect when the link goes; until cancelled."""
        log = structlog.get_logger().bind(instance=self.instance.name, line=self.config.url)
        while True:
            try:
                link = await open_link(
                    self.config.url, baudrate=self.config.baudrate, parity=self.config.parity
                )
            except OSError as exc:
                log.warning("wired_line_unreachable", error=str(exc))
                self.counters.reconnects += 1
                await asyncio.sleep(RECONNECT_S)
                continue
            try:
                await self._poll_forever(link)
            except ConnectionError as exc:
                log.warning("wired_line_lost", error=str(exc))
                self.counters.reconnects += 1
            finally:
                await link.close()

    async def _poll_forever(self, link: Link) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.poll(link)
            await asyncio.sleep(max(0.0, self.config.interval_s - (loop.time() - started)))

    async def poll(self, link: Link) -> IngestResult:
        """Read every meter of the line once; store, log and announce the result."""
        cfg = self.config
        master = MbusMaster(
            link,
            timeout=cfg.reply_timeout_s,
            retries=cfg.retries,
            max_telegrams=cfg.max_telegrams,
            counters=self.counters,
        )
        readings, rejections = [], []
        self.counters.polls += 1
        for target in cfg.meters:
            readout = await self._read(master, target)
            if readout is None:
                continue
            try:
                reading = mbus_reading(
                    self.instance, readout, self.ingest.layouts, t_sim=self.clock()
                )
                readings.append(reading)
            except RefusedError as refused:
                rejections.append(refused.rejection(self.clock()))
        result = self.ingest.commit(readings, rejections)
        if self.announce is not None:
            self.announce(self.instance.name, result)
        return result

    async def _read(self, master: MbusMaster, target: MeterTarget) -> Readout | None:
        try:
            readout = await master.read(target)
        except MeterSilentError as silent:
            self._missed(target, silent, master.retries + 1)
            return None
        self.counters.readouts += 1
        self.missing.discard(target.meter)
        return readout

    def _missed(self, target: MeterTarget, silent: MeterSilentError, attempts: int) -> None:
        self.counters.missing += 1
        if target.meter in self.missing:
            return  # logged when it went missing; one entry per outage
        self.missing.add(target.meter)
        if self.instance.skipped.skips("meter_missing"):
            return  # test-only (unsafe_skip_checks): the outage goes unreported
        structlog.get_logger().warning(
            "meter_missing", instance=self.instance.name, meter=target.meter, reason=silent.reason
        )
        report_missing(
            self.instance,
            target.meter,
            line=self.config.url,
            reason=silent.reason,
            attempts=attempts,
            t_sim=self.clock(),
        )
        if self.on_missing is not None:
            self.on_missing(
                self.instance.name,
                {
                    "meter": target.meter,
                    "line": self.config.url,
                    "reason": silent.reason,
                    "attempts": attempts,
                    "t_sim": self.clock(),
                },
            )


def pollers(
    tables: Sequence[Mapping[str, Any]],
    instances: Mapping[str, GatewayInstance],
    *,
    clock: Callable[[], float],
    announce: Announce | None = None,
    on_missing: Missing | None = None,
) -> list[LinePoller]:
    """Return a poller per ``wired_lines`` table (validated; ConfigError names the key)."""
    lines = parse_lines(tables, list(instances))
    return [
        LinePoller(line, instances[line.instance], clock, announce, on_missing) for line in lines
    ]


async def run_pollers(polls: Sequence[LinePoller]) -> None:
    """Run the pollers until cancelled (returns at once without any)."""
    if polls:
        await asyncio.gather(*(p.run() for p in polls))
