"""Wired LMN drivers against the real simulated slaves: TCP on 127.0.0.1, real ptys, SQLite.

The master polls :class:`MbusSlave` s built from a generated population on an
:class:`MbusLine`, served by :class:`MbusTcpServer` or :class:`MbusPtyPort`; the values the
gateway stores are compared with the records the slaves' meters hold at the (fixed)
simulation time. Garbage on the line comes from a TCP relay between master and server that
garbles the slaves' replies on the way back, as noise on the bus would.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest
from smtestbed.proto import topics
from smtestbed.proto.mbus import SecondaryAddress, ShortFrame, VariableData, decode_response
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    random_endpoints,
    service_process,
    wait_for_event,
    wait_until,
)
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.lmn_link import Link, open_link
from smtestbed.services.gateway.lmn_serial import InputConfig, SerialInput
from smtestbed.services.gateway.lmn_wired import LineConfig, LinePoller, MeterTarget
from smtestbed.services.gateway.schema import MeterEntry
from smtestbed.services.sensorfarm.mbus_line import MbusLine
from smtestbed.services.sensorfarm.mbus_server import MbusPtyPort, MbusTcpServer
from smtestbed.services.sensorfarm.mbus_slave import MbusSlave, WiredMeter
from smtestbed.services.sensorfarm.population import generate
from smtestbed.services.sensorfarm.schema import Interface
from smtestbed.services.sensorfarm.wired_meters import wired_meters

from tests.integration.gateway_helpers import configured_process, gw, write_registry

pytestmark = pytest.mark.timeout(60)
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z, the meters' (fixed) simulation time
REQ_UD2_C = (0x5B, 0x7B)
T = TypeVar("T")


def population_meters(n: int, *, seed: int = 7) -> list[WiredMeter]:
    """Return ``n`` wired meters (electricity, water, heat) with values fixed at START."""
    mix = {"electricity": 1.0, "water": 1.0, "heat": 1.0}
    pop = generate(n, seed=seed, interface=Interface.WIRED_MBUS, mix=mix)
    return wired_meters(pop, clock=lambda: START)


def expected_values(meter: WiredMeter) -> list[tuple[str, str, float]]:
    """Return (quantity, unit, value) of the numeric records the meter holds now."""
    return [
        (r.quantity, r.unit, float(r.value))
        for r in meter.records()
        if isinstance(r.value, int | float) and r.unit
    ]


def stored_values(instance: GatewayInstance, meter: str) -> list[list[tuple[str, str, float]]]:
    """Return the values of every stored reading of ``meter``, oldest first."""
    return [
        [(v.quantity, v.unit, v.value) for v in reading.values]
        for _, reading in instance.store.readings(meter)
    ]


def assert_meter_values(values: Sequence[tuple[str, str, float]], meter: WiredMeter) -> None:
    """Assert stored values equal the meter's records (accumulation qualifiers dropped)."""
    expected = expected_values(meter)
    names = [(q.removesuffix("_negative").removesuffix("_positive"), u) for q, u, _ in values]
    assert names == [(q, u) for q, u, _ in expected]
    assert [v for _, _, v in values] == pytest.approx([v for _, _, v in expected], rel=1e-12)


def register(instance: GatewayInstance, meters: Sequence[WiredMeter]) -> None:
    """Register ``meters`` as plaintext (mode 0) meters of the instance."""
    for m in meters:
        instance.registry.add(
            MeterEntry(meter=m.ident, manufacturer=m.manufacturer, key=b"", security=0)
        )


def system_entries(instance: GatewayInstance, kind: str) -> list[dict[str, Any]]:
    """Return the fields of the instance's system-log entries of ``kind``."""
    return [e.fields for e in instance.logs.system.entries() if e.kind == kind]


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[GatewayInstance]:
    """A gateway instance in a temporary folder, closed at teardown."""
    inst = GatewayInstance("gw0", tmp_path / "gw0", synchronous="NORMAL")
    yield inst
    inst.close()


class Relay:
    """A TCP relay master <-> server that can garble the server's replies and logs requests.

    ``garble`` replies longer than one byte get two noise bytes in front and one byte in the
    middle flipped (so the checksum fails); each garbled reply counts ``garble`` down.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.garble = 0
        self.requests = bytearray()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"tcp://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        # The pumps end by themselves once the master has hung up; then the server sees the
        # relay hang up too, and its connection handler ends before the server closes.
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=1.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0.01)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        for task in (
            self._pump(reader, up_writer, self.requests.extend),
            self._pump(up_reader, writer, None),
        ):
            t = asyncio.create_task(task)
            self._tasks.add(t)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        record: Callable[[bytes], None] | None,
    ) -> None:
        try:
            while data := await src.read(4096):
                if record is not None:
                    record(data)
                elif self.garble and len(data) > 1:
                    self.garble -= 1
                    middle = len(data) // 2
                    data = (
                        b"\x00\xaa"
                        + data[:middle]
                        + bytes([data[middle] ^ 0x5A])
                        + data[middle + 1 :]
                    )
                dst.write(data)
                await dst.drain()
        finally:
            dst.close()

    def req_ud2_c_fields(self) -> list[int]:
        """Return the C fields of the REQ_UD2 short frames the master sent, in order."""
        raw = bytes(self.requests)
        return [
            raw[i + 1]
            for i in range(len(raw) - 4)
            if raw[i] == 0x10 and raw[i + 1] in REQ_UD2_C and raw[i + 4] == 0x16
        ]


@contextlib.asynccontextmanager
async def tcp_line(line: MbusLine) -> AsyncIterator[tuple[str, Relay]]:
    """Serve ``line`` on 127.0.0.1 behind a relay; yield the relay's URL and the relay."""
    async with MbusTcpServer(line) as server:
        relay = Relay(server.port)
        url = await relay.start()
        try:
            yield url, relay
        finally:
            await relay.close()


@contextlib.asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[Link]:
    """Open a link; close it at the end."""
    link = await open_link(url, **options)
    try:
        yield link
    finally:
        await link.close()


def poller(
    instance: GatewayInstance, url: str, targets: Sequence[MeterTarget], **options: Any
) -> LinePoller:
    """Return a poller of ``targets`` with short reply timeouts."""
    config = LineConfig(
        instance=instance.name,
        url=url,
        meters=tuple(targets),
        reply_timeout_s=options.pop("reply_timeout_s", 0.3),
        **options,
    )
    return LinePoller(config, instance, lambda: START)


def by_primary(meters: Sequence[WiredMeter]) -> list[MeterTarget]:
    """Return a target per meter, addressed by its primary address."""
    return [MeterTarget(meter=m.ident, primary=m.primary_address) for m in meters]


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run an async test body."""
    asyncio.run(body())


def test_polling_by_primary_address_stores_each_meters_values(instance: GatewayInstance) -> None:
    """Each meter read by primary address is stored once with the values its records hold."""
    meters = population_meters(3)
    register(instance, meters)

    async def body() -> None:
        async with tcp_line(MbusLine(MbusSlave(m) for m in meters)) as (url, _):
            poll = poller(instance, url, by_primary(meters))
            async with opened(url) as link:
                result = await poll.poll(link)
        assert len(result.accepted) == 3
        assert result.rejected == []
        assert poll.counters.readouts == 3
        assert poll.counters.missing == 0

    run(body)
    for m in meters:
        (values,) = stored_values(instance, m.ident)
        assert_meter_values(values, m)


def test_polling_by_secondary_address_reads_meters_sharing_a_primary_address(
    instance: GatewayInstance,
) -> None:
    """Two meters at primary address 0 are told apart by selection: each stores its own values."""
    meters = [dataclasses.replace(m, primary_address=0) for m in population_meters(2, seed=3)]
    register(instance, meters)
    slaves = [MbusSlave(m) for m in meters]
    targets = [
        MeterTarget(meter=m.ident, secondary=SecondaryAddress.parse(str(s.secondary_address)))
        for m, s in zip(meters, slaves, strict=True)
    ]

    async def body() -> None:
        async with tcp_line(MbusLine(slaves)) as (url, _), opened(url) as link:
            await poller(instance, url, targets).poll(link)

    run(body)
    for m, slave in zip(meters, slaves, strict=True):
        (values,) = stored_values(instance, m.ident)
        assert_meter_values(values, m)
        assert not slave.selected  # deselected after its readout


def test_multi_telegram_meter_is_read_completely_with_fcb_toggling(
    instance: GatewayInstance,
) -> None:
    """A meter sending one record per telegram is read in full; REQ_UD2 goes 7B, 5B, 7B, ..."""
    (meter,) = population_meters(1, seed=5)
    register(instance, [meter])
    records = len(expected_values(meter))
    assert records >= 2

    async def body(relay_out: list[Relay]) -> None:
        slave = MbusSlave(meter, records_per_telegram=1)
        async with tcp_line(MbusLine([slave])) as (url, relay):
            async with opened(url) as link:
                await poller(instance, url, by_primary([meter])).poll(link)
            relay_out.append(relay)

    relays: list[Relay] = []
    asyncio.run(body(relays))
    (values,) = stored_values(instance, meter.ident)
    assert_meter_values(values, meter)
    c_fields = relays[0].req_ud2_c_fields()
    assert len(c_fields) == len(meter.records())
    assert c_fields == [(0x7B, 0x5B)[i % 2] for i in range(len(c_fields))]


def test_garbled_replies_are_retried_with_the_same_fcb(instance: GatewayInstance) -> None:
    """Two garbled replies: the same REQ_UD2 is repeated, the third reply is stored."""
    (meter,) = population_meters(1)
    register(instance, [meter])

    async def body() -> tuple[LinePoller, list[int]]:
        async with tcp_line(MbusLine([MbusSlave(meter)])) as (url, relay):
            poll = poller(instance, url, by_primary([meter]))
            relay.garble = 2
            async with opened(url) as link:
                await poll.poll(link)
            return poll, relay.req_ud2_c_fields()

    poll, c_fields = asyncio.run(body())
    assert c_fields == [0x7B, 0x7B, 0x7B]
    assert poll.counters.retries == 2
    assert poll.counters.collisions >= 2
    assert poll.counters.garbage_bytes >= 4
    (values,) = stored_values(instance, meter.ident)
    assert_meter_values(values, meter)


def test_replies_garbled_beyond_the_retries_report_the_meter_missing(
    instance: GatewayInstance,
) -> None:
    """Every reply garbled: 1 + 3 REQ_UD2, nothing stored, one meter_missing log entry."""
    (meter,) = population_meters(1)
    register(instance, [meter])

    async def body() -> tuple[LinePoller, list[int]]:
        async with tcp_line(MbusLine([MbusSlave(meter)])) as (url, relay):
            poll = poller(instance, url, by_primary([meter]))
            relay.garble = 1000
            async with opened(url) as link:
                await poll.poll(link)
            return poll, relay.req_ud2_c_fields()

    poll, c_fields = asyncio.run(body())
    assert c_fields == [0x7B] * 4
    assert poll.counters.missing == 1
    assert poll.missing == {meter.ident}
    assert instance.store.readings(meter.ident) == []
    (entry,) = system_entries(instance, "meter_missing")
    assert entry["meter"] == meter.ident
    assert entry["reason"] == "no_reply_req_ud2"


def test_cut_line_reports_meters_missing_once_and_polling_resumes_after_restore(
    instance: GatewayInstance,
) -> None:
    """Cut: two polls miss both meters, one log entry each; restored: both are read again."""
    meters = population_meters(2)
    register(instance, meters)
    line = MbusLine(MbusSlave(m) for m in meters)

    async def body() -> LinePoller:
        async with tcp_line(line) as (url, _):
            poll = poller(instance, url, by_primary(meters), reply_timeout_s=0.1)
            async with opened(url) as link:
                await poll.poll(link)
                line.interrupt()
                await poll.poll(link)
                await poll.poll(link)
                line.restore()
                await poll.poll(link)
            return poll

    poll = asyncio.run(body())
    assert poll.counters.missing == 4
    assert poll.counters.retries == 4 * 3
    assert poll.missing == set()
    entries = system_entries(instance, "meter_missing")
    assert sorted(e["meter"] for e in entries) == sorted(m.ident for m in meters)
    assert {e["reason"] for e in entries} == {"no_reply_snd_nke"}
    for m in meters:
        assert len(stored_values(instance, m.ident)) == 2


def test_pty_line_at_8n1_is_polled(instance: GatewayInstance) -> None:
    """A line on a pseudo-terminal opened 8N1 gives the same values as over TCP."""
    meters = population_meters(2, seed=9)
    register(instance, meters)

    async def body() -> None:
        with MbusPtyPort(MbusLine(MbusSlave(m) for m in meters)) as port:
            poll = poller(instance, port.path, by_primary(meters), parity="N")
            async with opened(port.path, parity="N") as link:
                result = await poll.poll(link)
        assert len(result.accepted) == 2

    run(body)
    for m in meters:
        (values,) = stored_values(instance, m.ident)
        assert_meter_values(values, m)


def test_even_parity_on_a_pty_is_refused_naming_parity() -> None:
    """Opening a pty 8E1 fails with a ConfigError that says to use parity N."""

    async def body() -> None:
        with MbusPtyPort(MbusLine()) as port, pytest.raises(ConfigError, match="parity N"):
            await open_link(port.path, parity="E")

    run(body)


def test_unregistered_meter_is_rejected_and_not_stored(instance: GatewayInstance) -> None:
    """A meter answering but not in the registry gives an unknown_meter rejection in the log."""
    (meter,) = population_meters(1)

    async def body() -> None:
        async with tcp_line(MbusLine([MbusSlave(meter)])) as (url, _), opened(url) as link:
            result = await poller(instance, url, by_primary([meter])).poll(link)
        assert [str(r.reason) for r in result.rejected] == ["unknown_meter"]

    run(body)
    assert instance.store.readings(meter.ident) == []
    (entry,) = system_entries(instance, "frames_rejected")
    assert entry["rejections"][0]["meter"] == meter.ident


def test_serial_input_ingests_pushed_telegrams_between_garbage(instance: GatewayInstance) -> None:
    """Telegrams a meter pushes on a pty, with noise around them, are stored; noise is counted."""
    (meter,) = population_meters(1)
    register(instance, [meter])
    slave = MbusSlave(meter, records_per_telegram=2)
    telegrams = _pushed_telegrams(slave)

    async def body() -> SerialInput:
        ours, theirs = os.openpty()
        try:
            config = InputConfig(instance="gw0", url=os.ttyname(theirs), idle_s=0.1)
            listener = SerialInput(config, instance, lambda: START)
            async with opened(config.url, parity="N") as link:
                task = asyncio.create_task(listener.listen(link))
                os.write(ours, b"\x00\x13\x37" + b"".join(telegrams) + b"\xff")
                await _until(lambda: listener.counters.mbus_frames == len(telegrams), 5.0)
                task.cancel()
            return listener
        finally:
            os.close(ours)
            os.close(theirs)

    listener = asyncio.run(body())
    assert listener.counters.garbage_bytes >= 3
    (values,) = stored_values(instance, meter.ident)
    assert_meter_values(values, meter)


def _pushed_telegrams(slave: MbusSlave) -> list[bytes]:
    """Return the telegrams of one readout of ``slave`` (REQ_UD2 with toggling FCB)."""
    out: list[bytes] = []
    fcb = True
    while True:
        reply = slave.handle(ShortFrame(c=0x7B if fcb else 0x5B, a=slave.primary_address))
        assert reply is not None
        out.append(reply)
        if not _more_follow(reply):
            return out
        fcb = not fcb


def _more_follow(telegram: bytes) -> bool:
    payload = decode_response(telegram).payload
    return isinstance(payload, VariableData) and payload.block.more_follow


async def _until(condition: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


class LoopThread:
    """An event loop on its own thread, serving the slaves while the test waits on processes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def wired_config(
    path: Path, data_dir: Path, registry: Path, url: str, meters: Sequence[WiredMeter]
) -> None:
    """Write a gateway config with one wired line: meter 0 by primary, the rest by secondary."""
    targets = [f'{{meter = "{meters[0].ident}", primary = {meters[0].primary_address}}}']
    targets += [
        f'{{meter = "{m.ident}", secondary = "{MbusSlave(m).secondary_address}"}}'
        for m in meters[1:]
    ]
    path.write_text(
        "[gateway]\n"
        f'data_dir = "{data_dir}"\n'
        f'input_endpoint = "tcp://127.0.0.1:{free_port()}"\n'
        f'registry_file = "{registry}"\n'
        'synchronous = "NORMAL"\n'
        "heartbeat_s = 0.2\n"
        "[[gateway.wired_lines]]\n"
        'instance = "gw0"\n'
        f'url = "{url}"\n'
        "interval_s = 0.5\n"
        "reply_timeout_s = 0.5\n"
        f"meters = [{', '.join(targets)}]\n"
    )


def test_gateway_process_polls_its_wired_line_and_stores_the_readings(tmp_path: Path) -> None:
    """smtb gateway run with wired_lines: readings stored; a cut line: gateway.meter_missing."""
    meters = population_meters(2, seed=13)
    registry = tmp_path / "registry.csv"
    write_registry(
        registry,
        [
            {
                "gateway": "gw0",
                "meter": m.ident,
                "manufacturer": m.manufacturer,
                "key_hex": "",
                "security": "0",
                "tafs": "",
                "consumer": "",
                "emt": "",
            }
            for m in meters
        ],
    )
    loop = LoopThread()
    line = MbusLine(MbusSlave(m) for m in meters)
    server = MbusTcpServer(line)
    endpoints = random_endpoints()

    async def readings(client: BusClient, meter: str) -> list[dict[str, Any]]:
        params = {"gateway": "gw0", "meter": meter}
        rows: list[dict[str, Any]] = await gw(client, topics.GATEWAY_READINGS, params)
        return rows

    async def body() -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
        async with bus_client(endpoints) as client:
            sub = client.subscribe([topics.GATEWAY_METER_MISSING])
            await sub.wait_connected()
            found = []
            for m in meters:
                check = functools.partial(readings, client, m.ident)
                found.append(await wait_until(check, timeout=15.0))
            line.interrupt()  # a flag the server's thread reads; the line goes silent
            event = await wait_for_event(sub, lambda e: e.body["gateway"] == "gw0", timeout=20)
            return found, event.body

    try:
        loop.run(server.start())
        config = tmp_path / "gateway.toml"
        wired_config(config, tmp_path / "data", registry, f"tcp://127.0.0.1:{server.port}", meters)
        with (
            service_process("broker", endpoints, log_path=tmp_path / "broker.log"),
            configured_process("gateway", endpoints, config, tmp_path / "gateway.log"),
        ):
            found, missing = asyncio.run(body())
    finally:
        loop.run(server.close())
        loop.stop()
    for m, rows in zip(meters, found, strict=True):
        values = [(v["quantity"], v["unit"], v["value"]) for v in rows[0]["values"]]
        assert_meter_values(values, m)
    assert missing["meter"] in {m.ident for m in meters}
    assert missing["line"] == f"tcp://127.0.0.1:{server.port}"
    assert missing["reason"]
    assert missing["attempts"] >= 1
