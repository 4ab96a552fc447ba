"""TAF1 and TAF2 through sensor farm, channel and gateway, checked by hand calculation.

The farm's stepped clock starts ten minutes before 2026-12-01 00:00 UTC (a Tuesday and a
billing date) and runs past the next midnight. Every meter is registered for TAF1 and
TAF2 with one EMT. The test reads the stored readings (``gateway.readings``) and works
out the billing value and the HT/NT registers itself, step by step, without the
gateway's tariff code; the EMT queue (``gateway.emt_queue``) must hold exactly those.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.proto.mbus.header import decode_manufacturer
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
from smtestbed.services.sensorfarm.population import Area, Population, generate, parse_mix

from tests.integration.gateway_helpers import (
    DAY_S,
    configured_process,
    gateway_events,
    gw,
    write_registry,
)

pytestmark = pytest.mark.timeout(90)

MIDNIGHT = datetime(2026, 12, 1, tzinfo=UTC).timestamp()  # Tuesday, billing day 1
NEXT_MIDNIGHT = MIDNIGHT + DAY_S
START = MIDNIGHT - 600.0
SEED = 5
METERS = 6
INTERVAL_S = 300.0
WINDOW_S = 300.0
AREA_M = 100.0
MIX = "electricity=0.5,gas=0.25,water=0.25"
EMT = "emt-bill"
HOUR_S = 3_600


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


def write_meters(path: Path) -> list[str]:
    """Register every meter with its key for TAF1 and TAF2 and the EMT; return the IDs."""
    pop = population()
    meters = [f"{int(pop.ident[i]):08d}" for i in range(METERS)]
    rows = [
        {
            "gateway": "gw0",
            "meter": meters[i],
            "manufacturer": decode_manufacturer(int(pop.manufacturer[i])),
            "key_hex": bytes(pop.key[i]).hex(),
            "security": "5",
            "tafs": "taf1;taf2",
            "consumer": "",
            "emt": EMT,
        }
        for i in range(METERS)
    ]
    write_registry(path, rows)
    return meters


def write_config(folder: Path, endpoints: Endpoints) -> Path:
    """Write the testbed TOML: farm, channel and gateway (default tariff schedule, day 1)."""
    farm_out = f"tcp://127.0.0.1:{free_port()}"
    lmn = f"tcp://127.0.0.1:{free_port()}"
    lines = ["[common]", *(f'{k} = "{v}"' for k, v in endpoint_settings(endpoints).items())]
    lines += ["heartbeat_s = 0.5", 'log_format = "json"', "", "[sensorfarm]"]
    lines += ['clock_mode = "stepped"', f"clock_start = {START}", f"seed = {SEED}"]
    lines += [f"meters = {METERS}", f'mix = "{MIX}"', "security = 5"]
    lines += [f"interval_s = {INTERVAL_S}", f"window_s = {WINDOW_S}", f"area_m = {AREA_M}"]
    lines += [f'output = "{farm_out}"', "", "[channel]", f'input_endpoint = "{farm_out}"']
    lines += [f'output_endpoint = "{lmn}"', "seed = 3", "shadowing_sigma_db = 0.0"]
    lines += [f'receivers = [{{name = "gw0", x = {AREA_M / 2}, y = {AREA_M / 2}}}]', ""]
    lines += ["[gateway]", 'clock_mode = "stepped"', f"clock_start = {START}"]
    lines += [f'input_endpoint = "{lmn}"', f'data_dir = "{folder / "data"}"']
    lines += [f'registry_file = "{folder / "registry.csv"}"', 'synchronous = "NORMAL"']
    lines += ["billing_day = 1"]
    path = folder / "testbed.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def _last_t(sub: Subscription, last: list[float]) -> None:
    while True:
        event: Event = await sub.recv()
        if event.kind == topics.GATEWAY_FRAME_ACCEPTED:
            last.append(max(t for _, _, t in event.body["readings"]))


async def _queue(client: BusClient) -> list[dict[str, Any]]:
    reply: list[dict[str, Any]] = await gw(
        client, topics.GATEWAY_EMT_QUEUE, {"emt": EMT, "limit": 10_000}
    )
    return reply


def run_chain(folder: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Run farm, channel and gateway past the next midnight; return the EMT queue and
    every meter's stored readings."""
    endpoints = random_endpoints()
    meters = write_meters(folder / "registry.csv")
    config = write_config(folder, endpoints)

    async def day_done(client: BusClient) -> list[dict[str, Any]] | None:
        queue = await _queue(client)
        taf2 = {r["meter"] for r in queue if r["taf"] == "taf2"}
        return queue if taf2 == set(meters) else None

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        last: list[float] = []
        async with bus_client(endpoints) as client:
            watch = asyncio.create_task(_last_t(await gateway_events(client), last))
            with configured_process("sensorfarm", endpoints, config, folder / "farm.log"):
                await wait_until(
                    lambda: max(last, default=0.0) > NEXT_MIDNIGHT + 2 * INTERVAL_S,
                    timeout=60,
                    interval=0.2,
                )
                queue = await wait_until(lambda: day_done(client), timeout=20, interval=0.2)
            watch.cancel()
            params = {"t0": START, "t1": NEXT_MIDNIGHT + DAY_S, "limit": 100_000}
            readings = {
                m: await gw(client, topics.GATEWAY_READINGS, {"meter": m, **params}) for m in meters
            }
        return queue, readings

    with contextlib.ExitStack() as stack:
        stack.enter_context(service_process("broker", endpoints, log_path=folder / "broker.log"))
        stack.enter_context(configured_process("gateway", endpoints, config, folder / "gw.log"))
        stack.enter_context(configured_process("channel", endpoints, config, folder / "ch.log"))
        return asyncio.run(scenario())


# -- the hand calculation ------------------------------------------------------------------


def counter(readings: list[dict[str, Any]]) -> tuple[str, list[tuple[float, float]]]:
    """Return a meter's TAF register (energy in Wh, else volume in m^3) as (t, value) pairs."""
    for quantity, unit in (("energy", "Wh"), ("volume", "m^3")):
        points = [
            (r["t_sim"], v["value"])
            for r in readings
            for v in r["values"]
            if (v["quantity"], v["unit"], v["storage_number"], v["tariff"], v["subunit"])
            == (quantity, unit, 0, 0, 0)
        ]
        if points:
            return unit, points
    raise AssertionError("meter has neither an energy nor a volume counter")


def value_at(points: list[tuple[float, float]], t: float) -> float:
    """Return the counter at ``t``: straight line between the readings around it, then
    rounded to a multiple of 1/1024 of the unit.

    A reading exactly at ``t`` is taken as it is (rounded). Otherwise, with the last
    reading (t0, v0) before ``t`` and the first (t1, v1) after it:
    ``v = v0 + (v1 - v0) * ((t - t0) / (t1 - t0))``, kept between v0 and v1, and
    ``round(v * 1024) / 1024``.
    """
    at = [v for tp, v in points if tp == t]
    if at:
        return round(at[-1] * 1024) / 1024
    t0, v0 = max((p for p in points if p[0] < t), key=lambda p: p[0])
    t1, v1 = min((p for p in points if p[0] > t), key=lambda p: p[0])
    v = v0 + (v1 - v0) * ((t - t0) / (t1 - t0))
    v = min(max(v, min(v0, v1)), max(v0, v1))
    return round(v * 1024) / 1024


def ht_nt(points: list[tuple[float, float]]) -> dict[str, float]:
    """Return the HT and NT consumption of the Tuesday 2026-12-01 by the default schedule.

    HT runs Mon-Fri 06:00-22:00 UTC, NT the rest: NT gets 00:00-06:00 and 22:00-24:00.
    """
    v00 = value_at(points, MIDNIGHT)
    v06 = value_at(points, MIDNIGHT + 6 * HOUR_S)
    v22 = value_at(points, MIDNIGHT + 22 * HOUR_S)
    v24 = value_at(points, NEXT_MIDNIGHT)
    return {"HT": v22 - v06, "NT": (v06 - v00) + (v24 - v22)}


@pytest.fixture(scope="module")
def chain(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """One run of the chain from 23:50 on 2026-11-30 to past 2026-12-02 00:00 UTC."""
    return run_chain(tmp_path_factory.mktemp("tariffs"))


def _one(queue: list[dict[str, Any]], taf: str, meter: str) -> dict[str, Any]:
    records: list[dict[str, Any]] = [
        r["payload"] for r in queue if r["taf"] == taf and r["meter"] == meter
    ]
    assert len(records) == 1, (taf, meter, records)
    return records[0]


def test_taf1_billing_value_at_december_first_equals_the_hand_calculation(
    chain: tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]],
) -> None:
    """Each meter's TAF1 record holds the counter at 2026-12-01 00:00 UTC as the test forms it."""
    queue, readings = chain
    for meter, rows in readings.items():
        unit, points = counter(rows)
        payload = _one(queue, "taf1", meter)
        assert (payload["meter"], payload["unit"]) == (meter, unit)
        assert payload["values"] == [
            {
                "t": MIDNIGHT,
                "time": "2026-12-01T00:00:00Z",
                "value": value_at(points, MIDNIGHT),
                "status": "ok",
            }
        ]


def test_taf2_registers_of_the_tuesday_equal_the_hand_calculation_and_sum_to_the_day(
    chain: tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]],
) -> None:
    """Each meter's TAF2 record of 2026-12-01 holds HT and NT as the test splits them.

    HT + NT is exactly the counter difference between the two midnights, and that
    difference is the day's consumption (positive for every meter).
    """
    queue, readings = chain
    for meter, rows in readings.items():
        unit, points = counter(rows)
        payload = _one(queue, "taf2", meter)
        registers = ht_nt(points)
        day = value_at(points, NEXT_MIDNIGHT) - value_at(points, MIDNIGHT)
        assert (payload["meter"], payload["unit"]) == (meter, unit)
        assert payload["values"] == [
            {
                "start": MIDNIGHT,
                "start_iso": "2026-12-01T00:00:00Z",
                "end": NEXT_MIDNIGHT,
                "end_iso": "2026-12-02T00:00:00Z",
                "registers": registers,
            }
        ]
        assert registers["HT"] + registers["NT"] == day
        assert day > 0
        assert registers["HT"] > 0
        assert registers["NT"] > 0
