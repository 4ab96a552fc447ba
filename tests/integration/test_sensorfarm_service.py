"""The sensor farm as a real process: batches over PUSH/PULL, manipulation, wired meters on TCP."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq.asyncio
from smtestbed.proto import topics
from smtestbed.proto.wmbus import decode_telegram
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import BatchPuller, Endpoints
from smtestbed.services._runtime.errors import RemoteError
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    random_endpoints,
    service_process,
    wait_for_event,
)
from smtestbed.services.sensorfarm.population import Population, generate, parse_mix
from smtestbed.services.sensorfarm.schema import VALUE_COLUMNS, MeterKind

pytestmark = pytest.mark.timeout(90)

MIX = "electricity=0.4,gas=0.1,water=0.3,heat=0.2"
SEED = 5
METERS = 6
INTERVAL_S = 10.0
FARM = {
    "clock_mode": "scaled",
    "clock_scale": 100,  # a 10 s sending interval is 0.1 s of wall time
    "seed": SEED,
    "meters": METERS,
    "mix": MIX,
    "security": 5,
    "interval_s": INTERVAL_S,
    "window_s": 1.0,
    "heartbeat_s": 0.2,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningFarm:
    """A broker and a sensor farm process; the farm binds its batch output."""

    endpoints: Endpoints
    output: str
    pop: Population  # the farm's population as first generated (IDs and keys)
    proc: process.Popen


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """One telegram received from the farm, with its window."""

    row: int
    t_start: float
    t0: float
    t1: float
    frame: bytes


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningFarm]:
    """One broker and one generated sensor farm for the wireless tests (each uses its own meter)."""
    endpoints = random_endpoints()
    logs = tmp_path_factory.mktemp("sensorfarm")
    output = f"tcp://127.0.0.1:{free_port()}"
    settings = {**FARM, "output": output, "bind_output": "true"}
    pop = generate(METERS, seed=SEED, mix=parse_mix(MIX), security=5, interval_s=INTERVAL_S)
    with (
        service_process("broker", endpoints, log_path=logs / "broker.log"),
        service_process(
            "sensorfarm", endpoints, settings=settings, log_path=logs / "farm.log"
        ) as proc,
    ):
        yield RunningFarm(endpoints=endpoints, output=output, pop=pop, proc=proc)


@contextlib.asynccontextmanager
async def _puller(output: str) -> AsyncIterator[BatchPuller]:
    ctx = zmq.asyncio.Context()
    puller = BatchPuller(ctx, output, bind=False)
    try:
        yield puller
    finally:
        puller.close()
        ctx.term()


async def _collect(
    puller: BatchPuller, done: Callable[[list[Sent]], bool], *, timeout: float = 10.0
) -> list[Sent]:
    """Receive batches until ``done(telegrams so far)``; TimeoutError after ``timeout`` s."""
    got: list[Sent] = []

    async def run() -> list[Sent]:
        while not done(got):
            _env, batch = await puller.recv()
            rows = np.asarray(batch.columns["meter"]).tolist()
            starts = np.asarray(batch.columns["t_start"]).tolist()
            t0, t1 = batch.meta["t0"], batch.meta["t1"]
            got.extend(
                Sent(row=r, t_start=s, t0=t0, t1=t1, frame=bytes(f))
                for r, s, f in zip(rows, starts, batch, strict=True)
            )
        return got

    return await asyncio.wait_for(run(), timeout)


def _ident(pop: Population, row: int) -> str:
    return f"{int(pop.ident[row]):08d}"


def _meter_number(frame: bytes) -> int:
    return int(f"{decode_telegram(frame, records=False).link.address.ident:08x}")


def _after(sent: list[Sent], row: int, t_sim: float) -> list[Sent]:
    """Return meter ``row``'s telegrams of windows that ended after ``t_sim`` (built later)."""
    return [s for s in sent if s.row == row and s.t1 > t_sim]


def test_batches_arrive_and_every_telegram_decodes_with_its_key(farm: RunningFarm) -> None:
    """Telegrams of several meters arrive; each decodes with its key and names its meter."""

    async def scenario() -> list[Sent]:
        async with _puller(farm.output) as puller:
            return await _collect(puller, lambda got: len({s.row for s in got}) >= 4)

    sent = asyncio.run(scenario())
    for s in sent:
        telegram = decode_telegram(s.frame, key=bytes(farm.pop.key[s.row]))
        assert _meter_number(s.frame) == int(farm.pop.ident[s.row])
        assert telegram.security.decrypted
        assert telegram.records is not None
        assert s.t0 <= s.t_start < s.t1
    assert farm.proc.poll() is None


def _counter_target(old: float) -> float:
    """Return a value well above ``old`` that every kind's first record sends exactly."""
    return 1000.0 * math.ceil((old + 1_000_000.0) / 1000.0)


def test_set_counter_shows_in_later_telegrams_and_as_an_event(farm: RunningFarm) -> None:
    """meter.set_counter is answered, published as meter.manipulated and sent from then on."""
    row = 1
    ident = _ident(farm.pop, row)
    column = VALUE_COLUMNS[MeterKind(int(farm.pop.kind[row]))][0]

    async def scenario() -> tuple[float, dict[str, Any], Any, str, list[Sent]]:
        async with bus_client(farm.endpoints) as client, _puller(farm.output) as puller:
            sub = client.subscribe(["meter."])
            await sub.wait_connected()
            state = await client.request("sensorfarm", topics.METER_GET, {"meter": ident})
            new = _counter_target(state["values"][column])
            params = {"meter": ident, "column": column, "value": new}
            reply = await client.request("sensorfarm", topics.METER_SET_COUNTER, params)
            event = await wait_for_event(
                sub, lambda e: e.kind == topics.METER_MANIPULATED and e.body["meter"] == ident
            )
            t_set = event.envelope.t_sim
            sent = await _collect(puller, lambda got: len(_after(got, row, t_set)) >= 2)
            return new, reply, event, client.name, _after(sent, row, t_set)

    new, reply, event, caller, later = asyncio.run(scenario())
    assert reply["values"][column] == new
    assert (reply["changed"], reply["meter"]) == (column, ident)
    assert event.body["action"] == topics.METER_SET_COUNTER
    assert event.body["by"] == caller
    assert event.body["values"][column] == new
    for s in later:
        telegram = decode_telegram(s.frame, key=bytes(farm.pop.key[row]))
        assert telegram.records is not None
        first = telegram.records.records[0].value
        assert isinstance(first, int | float)
        assert new <= first < new + 10_000.0  # the set value plus a few seconds of consumption


def test_a_malformed_request_names_its_field_and_the_farm_keeps_running(
    farm: RunningFarm,
) -> None:
    """A bad column comes back as RemoteError naming 'column'; requests and batches go on."""
    row = 2
    ident = _ident(farm.pop, row)

    async def scenario() -> tuple[RemoteError, dict[str, Any], list[Sent]]:
        async with bus_client(farm.endpoints) as client, _puller(farm.output) as puller:
            with pytest.raises(RemoteError) as info:
                await client.request(
                    "sensorfarm",
                    topics.METER_SET_COUNTER,
                    {"meter": ident, "column": "no_such_column", "value": 1.0},
                )
            state = await client.request("sensorfarm", topics.METER_GET, {"meter": ident})
            sent = await _collect(puller, lambda got: any(s.row == row for s in got))
            return info.value, state, sent

    error, state, sent = asyncio.run(scenario())
    assert error.code == "RequestError"
    assert str(error).startswith("column: ")
    assert "no_such_column" in str(error)
    assert state["meter"] == ident
    assert any(s.row == row for s in sent)
    assert farm.proc.poll() is None


def test_a_stopped_meter_falls_silent_while_the_others_send(farm: RunningFarm) -> None:
    """After meter.stop no window ending later carries the meter; the other meters still send."""
    row = 3
    ident = _ident(farm.pop, row)

    async def scenario() -> tuple[dict[str, Any], float, list[Sent]]:
        async with bus_client(farm.endpoints) as client, _puller(farm.output) as puller:
            sub = client.subscribe(["meter."])
            await sub.wait_connected()
            await _collect(puller, lambda got: any(s.row == row for s in got))
            reply = await client.request("sensorfarm", topics.METER_STOP, {"meter": ident})
            event = await wait_for_event(
                sub, lambda e: e.kind == topics.METER_MANIPULATED and e.body["meter"] == ident
            )
            t_stop = event.envelope.t_sim
            # four sending intervals of windows that ended after the stop
            sent = await _collect(
                puller, lambda got: bool(got) and got[-1].t1 > t_stop + 4 * INTERVAL_S
            )
            await client.request("sensorfarm", topics.METER_RESUME, {"meter": ident})
            return reply, t_stop, sent

    reply, t_stop, sent = asyncio.run(scenario())
    assert reply["stopped"] is True
    assert _after(sent, row, t_stop) == []
    others = {s.row for s in sent if s.t1 > t_stop and s.row != row}
    assert len(others) >= 3


def test_cutting_a_line_without_wired_meters_is_refused_as_field_line(
    farm: RunningFarm,
) -> None:
    """meter.cut_line on a farm that serves no M-Bus line is a RemoteError naming 'line'."""

    async def scenario() -> RemoteError:
        async with bus_client(farm.endpoints) as client:
            with pytest.raises(RemoteError) as info:
                await client.request("sensorfarm", topics.METER_CUT_LINE, {})
            return info.value

    error = asyncio.run(scenario())
    assert error.code == "RequestError"
    assert str(error).startswith("line: ")
    assert farm.proc.poll() is None


# --- wired meters on M-Bus/TCP ------------------------------------------------------------

meterbus = pytest.importorskip("meterbus", reason="pyMeterBus (test extra) is not installed")
serial = pytest.importorskip("serial", reason="pyserial is not installed")

WIRED_CSV = """\
id,manufacturer,kind,interface,primary_address,scale,energy_import_wh
12345678,EMH,electricity,wired_mbus,5,0,12345
23456789,ESY,electricity,wired_mbus,6,0,777
"""


def _read(ser: Any, address: int) -> Any:
    """SND_NKE then REQ_UD2, as pyMeterBus's examples do; return the telegram or None."""
    meterbus.send_ping_frame(ser, address)
    if meterbus.recv_frame(ser, 1) != b"\xe5":
        return None
    meterbus.send_request_frame(ser, address)
    frame = meterbus.recv_frame(ser, 1)
    return meterbus.load(frame) if frame else None


def _energy(telegram: Any) -> float:
    return float(telegram.records[0].value)


def _request(endpoints: Endpoints, method: str, params: Any) -> Any:
    async def call() -> Any:
        async with bus_client(endpoints) as client:
            return await client.request("sensorfarm", method, params)

    return asyncio.run(call())


def test_wired_meter_is_read_over_tcp_and_a_cut_line_silences_it(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """pyMeterBus reads the held counter; after cut_line it gets nothing, after restore_line the
    new value."""
    population = tmp_path / "wired.csv"
    population.write_text(WIRED_CSV)
    port = free_port()
    settings = {
        **FARM,
        "population_file": population,
        "mbus_tcp": f"127.0.0.1:{port}",
        "output": f"tcp://127.0.0.1:{free_port()}",
    }
    log = tmp_path / "farm.log"
    with service_process("sensorfarm", endpoints, settings=settings, log_path=log) as proc:
        ser = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=1)
        try:
            first = _read(ser, 5)
            held = _request(endpoints, topics.METER_GET, {"meter": "12345678"})
            set_reply = _request(
                endpoints,
                topics.METER_SET_COUNTER,
                {"meter": "12345678", "column": "energy_import_wh", "value": 20000},
            )
            cut = _request(endpoints, topics.METER_CUT_LINE, {})
            silent = _read(ser, 5)
            restored = _request(endpoints, topics.METER_RESTORE_LINE, {})
            again = _read(ser, 5)
            other = _read(ser, 6)
        finally:
            ser.close()
        assert proc.poll() is None
    assert first.secondary_address.startswith("12345678")
    assert _energy(first) == 12345.0 == held["values"]["energy_import_wh"]
    assert set_reply["values"]["energy_import_wh"] == 20000.0
    assert cut["interrupted"] is True
    assert silent is None
    assert restored["interrupted"] is False
    assert _energy(again) == 20000.0
    assert other.secondary_address.startswith("23456789")
    assert _energy(other) == 777.0
