"""Sensor farm, channel and gateway as real processes: a simulated day through the whole chain.

The farm runs a stepped clock from ten minutes before a UTC midnight, window after window as
fast as the chain takes them; the channel passes what receiver ``gw0`` hears to the gateway,
whose registry file holds every meter's key with TAF7 for one EMT. The test builds the same
telegrams itself with :class:`Farm` (same population, seed and windows) and checks the store
and the EMT queue against them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.proto.records.model import Record
from smtestbed.proto.wmbus import decode_telegram
from smtestbed.services._runtime.bus import Endpoints, Event, Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import (
    bus_client,
    endpoint_settings,
    free_port,
    random_endpoints,
    service_process,
    wait_until,
)
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.population import Area, Population, generate, parse_mix

from tests.integration.gateway_helpers import (
    DAY_S,
    configured_process,
    gateway_events,
    gw,
    write_registry,
)

pytestmark = pytest.mark.timeout(120)

MIDNIGHT = 19_677 * DAY_S  # 2023-11-16 00:00 UTC
START = MIDNIGHT - 600.0  # the farm's clock start: ten minutes before the profiled day
CUT = MIDNIGHT + DAY_S + 1200.0  # readings up to here are compared with the test's own farm
SEED = 11
METERS = 20
INTERVAL_S = 300.0
WINDOW_S = 300.0  # about one telegram per meter and window: a day is 288 windows
AREA_M = 200.0
MIX = "electricity=0.4,gas=0.1,water=0.3,heat=0.2"
EMT = "emt-1"


def population() -> Population:
    """Generate the farm's population exactly as the farm service does."""
    return generate(
        METERS,
        seed=SEED,
        mix=parse_mix(MIX),
        security=5,
        interval_s=INTERVAL_S,
        area=Area(width_m=AREA_M, height_m=AREA_M),
        start_s=START,
    )


def ident(pop: Population, row: int) -> str:
    """Return the 8-digit meter ID of population row ``row``."""
    return f"{int(pop.ident[row]):08d}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    """A telegram the farm sent: meter, access number, end of air time (s) and its values."""

    meter: str
    access: int
    t_end: float
    values: list[tuple[Any, ...]]


# The gateway names a record's quantity with its direction and limit VIFEs (its layouts'
# documented naming: electricity A- is "energy_negative"); the decoder keeps them apart.
QUALIFIERS = {0x3B: "_positive", 0x3C: "_negative", 0x40: "_lower_limit", 0x48: "_upper_limit"}


def _named(quantity: str, vife: tuple[int, ...]) -> str:
    return quantity + "".join(QUALIFIERS.get(code, "") for code in vife)


def _numeric(r: Record) -> bool:
    return isinstance(r.value, int | float)


def _value(r: Record) -> tuple[Any, ...]:
    """Return a decoded record as the gateway stores it (quantity, unit, value, dimensions)."""
    assert isinstance(r.value, int | float)
    return (
        _named(r.quantity, r.vife),
        r.unit,
        float(r.value),
        r.storage_number,
        r.tariff,
        r.subunit,
    )


def sent_telegrams(until: float) -> list[Sent]:
    """Run the farm's windows in this process up to ``until``; decode every telegram."""
    pop = population()
    farm = Farm(pop, seed=SEED)
    out: list[Sent] = []
    t0 = START
    while t0 < until:
        batch = farm.step(t0, t0 + WINDOW_S)
        rows = batch.columns["meter"].tolist()
        starts = batch.columns["t_start"].tolist()
        for row, t_start, frame in zip(rows, starts, batch, strict=True):
            telegram = decode_telegram(bytes(frame), key=bytes(pop.key[row]))
            assert telegram.tpl is not None
            assert telegram.records is not None
            values = [_value(r) for r in telegram.records.records if _numeric(r)]
            access = telegram.tpl.access_number or 0
            t_end = t_start + float(farm.airtime[row])
            out.append(Sent(meter=ident(pop, row), access=access, t_end=t_end, values=values))
        t0 += WINDOW_S
    return out


def write_config(folder: Path, endpoints: Endpoints) -> Path:
    """Write the testbed TOML: common endpoints, farm, channel and gateway sections."""
    farm_out = f"tcp://127.0.0.1:{free_port()}"
    lmn = f"tcp://127.0.0.1:{free_port()}"
    lines = ["[common]", *(f'{k} = "{v}"' for k, v in endpoint_settings(endpoints).items())]
    lines += [
        "heartbeat_s = 0.2",
        'log_format = "json"',
        "",
        "[sensorfarm]",
        'clock_mode = "stepped"',
        f"clock_start = {START}",
        f"seed = {SEED}",
        f"meters = {METERS}",
        f'mix = "{MIX}"',
        "security = 5",
        f"interval_s = {INTERVAL_S}",
        f"window_s = {WINDOW_S}",
        f"area_m = {AREA_M}",
        f'output = "{farm_out}"',
        "",
        "[channel]",
        f'input_endpoint = "{farm_out}"',
        f'output_endpoint = "{lmn}"',
        "seed = 3",
        "shadowing_sigma_db = 0.0",
        f'receivers = [{{name = "gw0", x = {AREA_M / 2}, y = {AREA_M / 2}}}]',
        "",
        "[gateway]",
        'clock_mode = "stepped"',
        f"clock_start = {START}",
        f'input_endpoint = "{lmn}"',
        f'data_dir = "{folder / "data"}"',
        f'registry_file = "{folder / "registry.csv"}"',
        'synchronous = "NORMAL"',
    ]
    path = folder / "testbed.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def write_meters(path: Path) -> None:
    """Register every meter of the population with its key, TAF7 and the EMT."""
    pop = population()
    rows = [
        {
            "gateway": "gw0",
            "meter": ident(pop, i),
            "manufacturer": decode_manufacturer(int(pop.manufacturer[i])),
            "key_hex": bytes(pop.key[i]).hex(),
            "security": "5",
            "tafs": "taf7",
            "consumer": "",
            "emt": EMT,
        }
        for i in range(len(pop))
    ]
    write_registry(path, rows)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What the run left: announcements, stored readings and the EMT queue."""

    announced: list[tuple[str, int, float]]
    readings: dict[str, list[dict[str, Any]]]
    queue: list[dict[str, Any]]


async def _drain(sub: Subscription, into: list[Event]) -> None:
    while True:
        event = await sub.recv()
        if event.kind == topics.GATEWAY_FRAME_ACCEPTED:
            into.append(event)


async def _profiles(client: BusClient) -> list[dict[str, Any]]:
    queue = await gw(client, topics.GATEWAY_EMT_QUEUE, {"emt": EMT, "limit": 10_000})
    return [r for r in queue if r["payload"].get("period") == [MIDNIGHT, MIDNIGHT + DAY_S]]


async def _stored(client: BusClient, meters: list[str]) -> dict[str, list[dict[str, Any]]]:
    params = {"t1": CUT, "limit": 100_000}
    return {m: await gw(client, topics.GATEWAY_READINGS, {"meter": m, **params}) for m in meters}


@contextlib.contextmanager
def chain(folder: Path, endpoints: Endpoints, config: Path) -> Iterator[contextlib.ExitStack]:
    """Start broker, gateway and channel; the caller starts the farm on the returned stack."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(service_process("broker", endpoints, log_path=folder / "broker.log"))
        stack.enter_context(configured_process("gateway", endpoints, config, folder / "gw.log"))
        stack.enter_context(configured_process("channel", endpoints, config, folder / "ch.log"))
        yield stack


def run_day(folder: Path) -> Outcome:
    """Run the chain until the day's profiles are queued and the store is past CUT."""
    endpoints = random_endpoints()
    write_meters(folder / "registry.csv")
    config = write_config(folder, endpoints)
    meters = [ident(population(), i) for i in range(METERS)]

    async def scenario(stack: contextlib.ExitStack) -> Outcome:
        events: list[Event] = []
        async with bus_client(endpoints) as client:
            sub = await gateway_events(client)
            drain = asyncio.create_task(_drain(sub, events))
            farm = contextlib.ExitStack()
            farm.enter_context(
                configured_process("sensorfarm", endpoints, config, folder / "f.log")
            )
            try:
                await wait_until(
                    lambda: max((e.body["readings"][-1][2] for e in events), default=0) > CUT,
                    timeout=60,
                    interval=0.2,
                )
                queue = await wait_until(lambda: _queue_complete(client), timeout=20, interval=0.2)
            finally:
                farm.close()
            readings = await _stored(client, meters)
            await asyncio.sleep(0.5)  # the last announcements of readings before CUT
            drain.cancel()
        announced = [(m, rid, t) for e in events for m, rid, t in e.body["readings"] if t < CUT]
        return Outcome(announced=announced, readings=readings, queue=queue)

    async def _queue_complete(client: BusClient) -> list[dict[str, Any]] | None:
        profiles = await _profiles(client)
        return profiles if len(profiles) >= METERS else None

    with chain(folder, endpoints, config) as stack:
        return asyncio.run(scenario(stack))


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """One simulated day through farm, channel and gateway (shared by the tests here)."""
    return run_day(tmp_path_factory.mktemp("pipeline"))


def _match(sent: list[Sent]) -> dict[tuple[str, int], list[Sent]]:
    out: dict[tuple[str, int], list[Sent]] = {}
    for s in sent:
        out.setdefault((s.meter, s.access), []).append(s)
    return out


def test_stored_readings_equal_the_telegrams_the_meters_sent(day: Outcome) -> None:
    """Every stored reading is a telegram of the test's own farm run, with the same values.

    Readings are matched by meter, access number and time stamp (the end of the frame's air
    time); the channel may lose a few frames to collisions, nearly all arrive.
    """
    sent = [s for s in sent_telegrams(CUT) if s.t_end < CUT]
    by_key = _match(sent)
    stored = [r for rows in day.readings.values() for r in rows]
    for reading in stored:
        candidates = by_key.get((reading["meter"], reading["access_number"]), [])
        hits = [s for s in candidates if abs(s.t_end - reading["t_sim"]) < 0.05]
        assert len(hits) == 1, reading
        values = [
            (v["quantity"], v["unit"], v["value"], v["storage_number"], v["tariff"], v["subunit"])
            for v in reading["values"]
        ]
        assert values == hits[0].values
    assert len(sent) > METERS * DAY_S / INTERVAL_S * 0.9
    assert len(stored) >= 0.97 * len(sent)
    assert {r["meter"] for r in stored} == {s.meter for s in sent}


def test_taf7_profiles_cover_the_day_and_sum_to_the_counter_difference(day: Outcome) -> None:
    """Each meter has one queued TAF7 profile of 96 quarter hours whose deltas telescope.

    The counter at midnight and at the next midnight is interpolated from the stored
    readings here; the deltas sum to their difference and the last value is the latter.
    """
    assert sorted(r["meter"] for r in day.queue) == sorted(day.readings)
    for record in day.queue:
        payload = record["payload"]
        entries = payload["values"]
        series = _series(day.readings[record["meter"]], payload["unit"])
        start, end = _interpolate(series, MIDNIGHT), _interpolate(series, MIDNIGHT + DAY_S)
        assert record["taf"] == "taf7"
        assert len(entries) == 96
        assert [e["status"] for e in entries] == ["ok"] * 96
        assert entries[0]["start"] == MIDNIGHT
        assert [e["end"] - e["start"] for e in entries] == [900.0] * 96
        assert math.fsum(e["delta"] for e in entries) == pytest.approx(end - start, abs=0.01)
        assert entries[-1]["value"] == pytest.approx(end, abs=0.01)
        assert end > start


def _series(readings: list[dict[str, Any]], unit: str) -> list[tuple[float, float]]:
    quantity = "energy" if unit == "Wh" else "volume"
    return [
        (r["t_sim"], v["value"])
        for r in readings
        for v in r["values"]
        if (v["quantity"], v["unit"], v["storage_number"], v["tariff"], v["subunit"])
        == (quantity, unit, 0, 0, 0)
    ]


def _interpolate(series: list[tuple[float, float]], t: float) -> float:
    before = max((p for p in series if p[0] <= t), key=lambda p: p[0])
    after = min((p for p in series if p[0] > t), key=lambda p: p[0])
    return before[1] + (after[1] - before[1]) * (t - before[0]) / (after[0] - before[0])


def test_every_announced_reading_is_stored_once_and_every_stored_one_announced(
    day: Outcome,
) -> None:
    """frame_accepted announcements and the store agree exactly; no frame is stored twice."""
    stored = [(r["meter"], r["id"], r["t_sim"]) for rows in day.readings.values() for r in rows]
    keys = [(r["meter"], r["access_number"], r["t_sim"]) for v in day.readings.values() for r in v]
    assert sorted(day.announced) == sorted(stored)
    assert len({rid for _, rid, _ in stored}) == len(stored)
    assert len(set(keys)) == len(keys)
