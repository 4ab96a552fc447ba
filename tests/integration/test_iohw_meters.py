"""Relays, DAC and ADC of the I/O board wired to sensor farm meters (real processes, real bus).

Meter 31000001 (electricity, wireless) has its supply on relay 2, its consumption-rate input on
DAC 1 (5 V = its usual load) and its power output (5 mV per W) on ADC 1, its status output
("running", 5 V) on ADC 2. Meter 31000002 sends beside it, untouched, so a silent window is
known to be a window the farm did send in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import zmq.asyncio
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import BatchPuller, Endpoints
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.errors import PeerError
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    random_endpoints,
    service_process,
    wait_for_event,
    wait_until,
)

from tests.integration.gateway_helpers import configured_process

pytestmark = pytest.mark.timeout(90)

METER, OTHER = "31000001", "31000002"
POPULATION = f"""\
id,manufacturer,kind,interface,security,interval_s,jitter,scale
{METER},EMH,electricity,wireless,0,10,0,1
{OTHER},ESY,electricity,wireless,0,10,0,1
"""
FARM = {"clock_mode": "scaled", "clock_scale": 100, "window_s": 1.0, "heartbeat_s": 0.2}
WIRING = f"""\
[iohw]
heartbeat_s = 0.2
wiring = [
  {{kind = "power", name = "supply", relay = 2, meter = "{METER}"}},
  {{kind = "load", name = "load", dac = 1, meter = "{METER}", factor_per_volt = 0.2, volts = 5.0}},
  {{kind = "meter_output", name = "pulse", adc = 1, meter = "{METER}", value = "power_w", \
volts_per_unit = 0.005}},
  {{kind = "meter_output", name = "status", adc = 2, meter = "{METER}", value = "running", \
volts_per_unit = 5.0}},
]
"""
LSB = 10.0 / 4095


@dataclass(frozen=True, slots=True, kw_only=True)
class Bench:
    """Broker, sensor farm (batch output bound here) and the I/O board."""

    endpoints: Endpoints
    output: str


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """Start the three processes once for the module."""
    tmp = tmp_path_factory.mktemp("iohw_meters")
    endpoints = random_endpoints()
    (tmp / "meters.csv").write_text(POPULATION)
    (tmp / "iohw.toml").write_text(WIRING)
    output = f"tcp://127.0.0.1:{free_port()}"
    farm = {
        **FARM,
        "population_file": tmp / "meters.csv",
        "output": output,
        "bind_output": "true",
    }
    with (
        service_process("broker", endpoints, log_path=tmp / "broker.log"),
        service_process("sensorfarm", endpoints, settings=farm, log_path=tmp / "farm.log"),
        configured_process("iohw", endpoints, tmp / "iohw.toml", tmp / "iohw.log"),
    ):
        asyncio.run(farm_answers(endpoints))
        yield Bench(endpoints=endpoints, output=output)


async def farm_answers(endpoints: Endpoints) -> None:
    """Wait until the farm answers (its first window compiles the kernels when not cached)."""
    async with bus_client(endpoints) as client:

        async def answers() -> bool:
            try:
                await meter(client)
            except PeerError:
                return False
            return True

        await wait_until(answers, timeout=60.0, interval=0.2)


@contextlib.asynccontextmanager
async def puller(output: str) -> AsyncIterator[BatchPuller]:
    """Pull the farm's frame batches (as the channel does)."""
    ctx = zmq.asyncio.Context()
    pull = BatchPuller(ctx, output, bind=False)
    try:
        yield pull
    finally:
        pull.close()
        ctx.term()


@contextlib.asynccontextmanager
async def draining(output: str) -> AsyncIterator[None]:
    """Take the farm's batches meanwhile: without a reader its PUSH blocks and time stands still."""
    async with puller(output) as pull:

        async def drain() -> None:
            while True:
                await pull.recv()

        task = asyncio.create_task(drain())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def sent_after(
    pull: BatchPuller, t_sim: float, done: Callable[[dict[int, int]], bool]
) -> dict[int, int]:
    """Count telegrams per population row in windows ending after ``t_sim`` until ``done``."""
    counts: dict[int, int] = {0: 0, 1: 0}

    async def run() -> dict[int, int]:
        while not done(counts):
            _env, batch = await pull.recv()
            if batch.meta["t1"] <= t_sim:
                continue
            for row in np.asarray(batch.columns["meter"]).tolist():
                counts[row] = counts.get(row, 0) + 1
        return counts

    return await asyncio.wait_for(run(), 20.0)


async def iohw(client: BusClient, method: str, params: dict[str, Any]) -> Any:
    """Send a request to the board."""
    return await client.request("iohw", method, params, timeout=5.0)


async def meter(client: BusClient) -> Any:
    """Return the sensor farm's state of METER."""
    return await client.request("sensorfarm", topics.METER_GET, {"meter": METER}, timeout=5.0)


def test_open_supply_relay_stops_the_meters_telegrams_and_closing_resumes_them(
    bench: Bench,
) -> None:
    """Relay 2 open: meter.stop reaches the farm, no telegram of the meter while the other one
    sends three, status output 0 V; closed: meter.resume, telegrams again, status 5 V."""

    async def scenario() -> tuple[Any, ...]:
        async with bus_client(bench.endpoints) as client, puller(bench.output) as pull:
            sub = client.subscribe([topics.METER_MANIPULATED])
            await sub.wait_connected()
            await iohw(client, topics.IOHW_RELAY, {"relay": "supply", "closed": False})
            stop = await wait_for_event(sub, lambda e: e.body["meter"] == METER)
            off = await sent_after(pull, stop.envelope.t_sim, lambda c: c[1] >= 3)
            status_off = await iohw(client, topics.IOHW_ADC, {"channel": 2})
            await iohw(client, topics.IOHW_RELAY, {"relay": 2, "closed": True})
            resume = await wait_for_event(sub, lambda e: e.body["meter"] == METER)
            on = await sent_after(pull, resume.envelope.t_sim, lambda c: c[0] >= 2)
            status_on = await iohw(client, topics.IOHW_ADC, {"channel": "status"})
            return stop.body, off, status_off, resume.body, on, status_on

    stop, off, status_off, resume, on, status_on = asyncio.run(scenario())
    assert (stop["action"], stop["stopped"]) == (topics.METER_STOP, True)
    assert off[0] == 0
    assert status_off["volts"] == 0.0
    assert (resume["action"], resume["stopped"]) == (topics.METER_RESUME, False)
    assert on[0] >= 2
    assert status_on["volts"] == pytest.approx(5.0, abs=LSB)


def test_dac_drives_the_meters_consumption_and_the_adc_reads_its_power_output(
    bench: Bench,
) -> None:
    """DAC 1 at 0 V: load factor 0, the counter stands still and ADC 1 reads 0 V; at 10 V: load
    factor 2, the counter runs again and ADC 1 reads the power output, quantised to 12 bit."""

    async def scenario() -> tuple[Any, ...]:
        async with bus_client(bench.endpoints) as client, draining(bench.output):
            sub = client.subscribe([topics.IOHW_CHANGED, topics.METER_MANIPULATED])
            await sub.wait_connected()
            zero = await iohw(client, topics.IOHW_DAC, {"channel": 1, "volts": 0.0})
            changed = await wait_for_event(sub, lambda e: e.kind == topics.IOHW_CHANGED)
            await asyncio.sleep(0.1)  # ten simulated windows: the last one ran at load 0
            still = [(await meter(client))["values"] for _ in range(2)]
            await asyncio.sleep(0.1)
            still.append((await meter(client))["values"])
            adc_zero = await iohw(client, topics.IOHW_ADC, {"channel": "pulse"})
            full = await iohw(client, topics.IOHW_DAC, {"channel": "load", "volts": 10.0})
            loaded = await wait_for_event(
                sub, lambda e: e.kind == topics.METER_MANIPULATED and e.body["load_factor"] == 2.0
            )
            energy = still[-1]["energy_import_wh"]

            async def running() -> bool:
                return bool((await meter(client))["values"]["energy_import_wh"] > energy)

            await wait_until(running, timeout=10.0)
            adc_full = await iohw(client, topics.IOHW_ADC, {"channel": 1})
            await iohw(client, topics.IOHW_DAC, {"channel": 1, "volts": 5.0})
            return zero, changed.body, still, adc_zero, full, loaded.body, adc_full

    zero, changed, still, adc_zero, full, loaded, adc_full = asyncio.run(scenario())
    assert (zero["volts"], zero["code"], zero["load_factor"]) == (0.0, 0, 0.0)
    assert zero["old"] == 10.0 * 2048 / 4095  # 5 V as the 12-bit DAC puts it out
    assert (changed["what"], changed["channel"], changed["new"]) == ("dac", 1, 0.0)
    assert changed["old"] == pytest.approx(5.0, abs=LSB)
    assert {v["energy_import_wh"] for v in still} == {still[0]["energy_import_wh"]}
    assert {v["power_w"] for v in still} == {0.0}
    assert (adc_zero["volts"], adc_zero["source"]) == (0.0, 0.0)
    assert (full["volts"], full["code"], full["load_factor"]) == (10.0, 4095, 2.0)
    assert loaded["meter"] == METER
    assert adc_full["source"] > 0
    expected = min(10.0, 0.005 * adc_full["source"])
    assert adc_full["volts"] == pytest.approx(expected, abs=LSB / 2 + 1e-9)
    assert adc_full["code"] == round(adc_full["volts"] / LSB)


def test_bad_dac_and_adc_requests_name_the_field_and_change_nothing(bench: Bench) -> None:
    """Out-of-range volts, channel 5 and an unknown name are refused naming the field."""

    async def scenario() -> tuple[list[str], Any]:
        async with bus_client(bench.endpoints) as client:
            before = await iohw(client, topics.IOHW_DAC, {"channel": 2})
            fields = []
            for method, params in (
                (topics.IOHW_DAC, {"channel": 2, "volts": 10.5}),
                (topics.IOHW_DAC, {"channel": 2, "volts": "1"}),
                (topics.IOHW_DAC, {"channel": 5, "volts": 1.0}),
                (topics.IOHW_ADC, {"channel": "nowhere"}),
                (topics.IOHW_ADC, [1]),
            ):
                try:
                    await iohw(client, method, params)  # type: ignore[arg-type]
                except Exception as exc:
                    fields.append(str(exc).split(":")[0])
            after = await iohw(client, topics.IOHW_DAC, {"channel": 2})
            return fields, (before, after)

    fields, (before, after) = asyncio.run(scenario())
    assert fields == ["volts", "volts", "channel", "channel", "params"]
    assert before == after
