"""Controller-driven stepped time through sensor farm, channel and gateway (real processes).

The farm runs with ``clock_mode = "stepped"`` and ``step_control = "request"``: nothing
moves until the test (standing in for the controller) sends ``sensorfarm.advance``. After
each advance the test sends ``gateway.sync`` and then compares what each stage counted
with a replica of the farm built in the test from the same seed (the farm's windows are
deterministic, and so is the channel's model of them): frames sent, frames through the
channel, readings accepted and stored per meter, and the TAF7 load profiles queued up to
the synced time.

The clock starts 15 minutes before 2026-12-01 00:00 UTC; the first advance runs to one
hour before the next midnight, then eight steps of 15 minutes cross it, so that the
gateway's tariff run must queue the TAF7 day of 2026-12-01 during the steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.errors import RemoteError
from smtestbed.services._runtime.testing import (
    bus_client,
    endpoint_settings,
    free_port,
    random_endpoints,
    service_process,
)
from smtestbed.services.channel.config import ChannelConfig, scene_from_config
from smtestbed.services.channel.model import ChannelModel
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.population import Area, Population, generate, parse_mix
from smtestbed.services.sensorfarm.stepping import window_ends

from tests.integration.gateway_helpers import DAY_S, configured_process, write_registry

pytestmark = pytest.mark.timeout(120)

MIDNIGHT = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
NEXT_MIDNIGHT = MIDNIGHT + DAY_S
STEP_S = 900.0
START = MIDNIGHT - STEP_S
SEED = 11
METERS = 6
INTERVAL_S = 300.0
WINDOW_S = 300.0
AREA_M = 60.0
MIX = "electricity=0.5,water=0.5"
EMT = "emt-profile"
CHANNEL_SEED = 3
RECEIVER = {"name": "gw0", "x": AREA_M / 2, "y": AREA_M / 2}


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


def meter_ids(pop: Population) -> list[str]:
    """Return the meters' IDs as the gateway stores them."""
    return [f"{int(pop.ident[i]):08d}" for i in range(len(pop))]


@dataclass(slots=True, kw_only=True)
class Span:
    """What one advance produced in the replica."""

    windows: int = 0
    sent: int = 0
    heard: int = 0  # frames the channel delivered
    damaged: int = 0  # of those, frames with bit errors (the gateway rejects them)


class Replica:
    """Farm and channel recomputed in the test: intact frames heard per meter, cumulated."""

    def __init__(self) -> None:
        self.pop = population()
        self.farm = Farm(self.pop, seed=SEED)
        self.channel = ChannelModel(
            scene_from_config(
                ChannelConfig(seed=CHANNEL_SEED, shadowing_sigma_db=0.0, receivers=(RECEIVER,))
            )
        )
        self.ids = meter_ids(self.pop)
        self.now = START
        self.per_meter: Counter[str] = Counter()

    def advance(self, to: float) -> Span:
        """Run the windows up to ``to`` as the services do."""
        span = Span()
        for t1 in window_ends(self.now, to, WINDOW_S):
            batch = self.farm.step(self.now, t1)
            heard = self.channel.process(batch).batch
            intact = [e == 0 for e in heard.columns["bit_errors"]]
            meters = [int(m) for m in heard.columns["meter"]]
            self.per_meter.update(self.ids[m] for m, ok in zip(meters, intact, strict=True) if ok)
            span.windows += 1
            span.sent += batch.count
            span.heard += heard.count
            span.damaged += intact.count(False)
            self.now = t1
        return span


def write_config(folder: Path, endpoints: Endpoints) -> Path:
    """Write the testbed TOML: a farm on request, a quiet channel, a gateway with TAF7."""
    pop = population()
    rows = [
        {
            "gateway": "gw0",
            "meter": meter,
            "manufacturer": decode_manufacturer(int(pop.manufacturer[i])),
            "key_hex": bytes(pop.key[i]).hex(),
            "security": "5",
            "tafs": "taf7",
            "consumer": "",
            "emt": EMT,
        }
        for i, meter in enumerate(meter_ids(pop))
    ]
    write_registry(folder / "registry.csv", rows)
    farm_out = f"tcp://127.0.0.1:{free_port()}"
    lmn = f"tcp://127.0.0.1:{free_port()}"
    lines = ["[common]", *(f'{k} = "{v}"' for k, v in endpoint_settings(endpoints).items())]
    lines += ["heartbeat_s = 0.5", 'log_format = "json"', 'clock_mode = "stepped"']
    lines += [f"clock_start = {START}", "", "[sensorfarm]", 'step_control = "request"']
    lines += [f"seed = {SEED}", f"meters = {METERS}", f'mix = "{MIX}"', "security = 5"]
    lines += [f"interval_s = {INTERVAL_S}", f"window_s = {WINDOW_S}", f"area_m = {AREA_M}"]
    lines += [f'output = "{farm_out}"', "", "[channel]", f'input_endpoint = "{farm_out}"']
    lines += [f'output_endpoint = "{lmn}"', f"seed = {CHANNEL_SEED}"]
    lines += ["shadowing_sigma_db = 0.0"]
    lines += [f'receivers = [{{name = "gw0", x = {RECEIVER["x"]}, y = {RECEIVER["y"]}}}]', ""]
    lines += ["[gateway]", f'input_endpoint = "{lmn}"', f'data_dir = "{folder / "data"}"']
    lines += [f'registry_file = "{folder / "registry.csv"}"', 'synchronous = "NORMAL"']
    lines += [f"tariff_every_s = {STEP_S}"]
    path = folder / "testbed.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class Plane:
    """A broker, a gateway, a channel and a farm on request, as processes."""

    endpoints: Endpoints
    folder: Path


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    """Start the simulation plane once for this module's tests."""
    folder = tmp_path_factory.mktemp("stepped")
    endpoints = random_endpoints()
    config = write_config(folder, endpoints)
    with contextlib.ExitStack() as stack:
        stack.enter_context(service_process("broker", endpoints, log_path=folder / "broker.log"))
        for service in ("gateway", "channel", "sensorfarm"):
            stack.enter_context(
                configured_process(service, endpoints, config, folder / f"{service}.log")
            )
        yield Plane(endpoints=endpoints, folder=folder)


async def ask(client: BusClient, service: str, method: str, params: Any = None) -> Any:
    """Send one request (no retry: an advance is answered once it has run), return the reply."""
    return await client.request(service, method, params, timeout=30.0, retries=0)


async def counters(client: BusClient, service: str) -> dict[str, int]:
    """Return a service's counters."""
    reply: dict[str, int] = await ask(client, service, topics.SERVICE_COUNTERS_GET)
    return reply


async def stored_per_meter(client: BusClient, meters: list[str]) -> dict[str, list[float]]:
    """Return the times of every stored reading of each meter."""
    out: dict[str, list[float]] = {}
    for meter in meters:
        rows = await ask(client, "gateway", topics.GATEWAY_READINGS, {"meter": meter})
        out[meter] = [r["t_sim"] for r in rows]
    return out


async def taf7_ends(client: BusClient) -> dict[str, float]:
    """Return the end of the last TAF7 period queued for each meter."""
    queue = await ask(client, "gateway", topics.GATEWAY_EMT_QUEUE, {"emt": EMT, "limit": 10_000})
    ends: dict[str, float] = {}
    for record in queue:
        if record["taf"] == "taf7":
            end = float(record["payload"]["period"][1])
            ends[record["meter"]] = max(end, ends.get(record["meter"], end))
    return ends


def expected_taf7_end(times: list[float]) -> float | None:
    """Return the TAF7 end the tariff run must have reached for readings at ``times``.

    The first day profiled is the first whole UTC day after the first reading; days end
    at the midnight before the last reading.
    """
    first_day = math.ceil(min(times) / DAY_S) * DAY_S
    end = math.floor(max(times) / DAY_S) * DAY_S
    return float(end) if end > first_day else None


async def step_and_check(client: BusClient, replica: Replica, to: float) -> dict[str, Any]:
    """Advance farm and replica to ``to``, sync the gateway, compare every stage's counts."""
    before = {s: await counters(client, s) for s in ("sensorfarm", "channel", "gateway")}
    reply = await ask(client, "sensorfarm", topics.SENSORFARM_ADVANCE, {"to": to})
    span = replica.advance(to)
    assert reply == {"now": to, "windows": span.windows, "sent": span.sent}
    synced = await ask(client, "gateway", topics.GATEWAY_SYNC, {"until": to, "timeout_s": 20.0})
    after = {s: await counters(client, s) for s in ("sensorfarm", "channel", "gateway")}
    delta = {s: {k: after[s].get(k, 0) - before[s].get(k, 0) for k in after[s]} for s in after}
    assert delta["sensorfarm"]["sent"] == span.sent
    assert delta["sensorfarm"]["windows"] == span.windows
    assert delta["channel"]["windows"] == span.windows  # empty windows pass the channel too
    assert delta["channel"]["frames_in"] == span.sent
    assert delta["channel"]["frames_out"] == span.heard
    assert delta["gateway"]["frames"] == span.heard
    assert delta["gateway"]["accepted"] == span.heard - span.damaged
    assert delta["gateway"]["rejected"] == span.damaged
    assert synced["now"] == to
    assert synced["accepted"] == after["gateway"]["accepted"]
    stored = await stored_per_meter(client, replica.ids)
    assert {m: len(t) for m, t in stored.items() if t} == dict(replica.per_meter)
    assert all(t <= to + 1.0 for times in stored.values() for t in times)
    ends = await taf7_ends(client)
    expected = {m: expected_taf7_end(t) for m, t in stored.items() if t}
    assert ends == {m: e for m, e in expected.items() if e is not None}
    return {"windows": span.windows, "sent": span.sent, "heard": span.heard, "taf7": ends}


def test_stepping_two_hours_in_quarter_hours_keeps_every_stage_in_step(plane: Plane) -> None:
    """After each advance and sync, farm, channel and gateway counted exactly the
    replica's frames, the gateway stored them per meter, and TAF7 is queued to the
    last midnight before each meter's last reading (the day of 2026-12-01 appears
    in the step that crosses 2026-12-02 00:00)."""

    async def scenario() -> list[dict[str, Any]]:
        replica = Replica()
        async with bus_client(plane.endpoints) as client:
            now = await ask(client, "sensorfarm", topics.SENSORFARM_NOW)
            assert now == {"now": START, "mode": "stepped", "step_control": "request", "windows": 0}
            results = [await step_and_check(client, replica, NEXT_MIDNIGHT - 4 * STEP_S)]
            for k in range(1, 9):
                results.append(
                    await step_and_check(client, replica, NEXT_MIDNIGHT + (k - 4) * STEP_S)
                )
        return results

    results = asyncio.run(scenario())
    assert results[0]["windows"] == 93 * 3  # a day less an hour, in 300 s windows
    assert all(r["windows"] == 3 for r in results[1:])
    assert results[0]["taf7"] == {}  # no whole day yet
    assert set(results[-1]["taf7"].values()) == {NEXT_MIDNIGHT}
    sent = sum(r["sent"] for r in results)
    assert sent > METERS * 24 * 3600 / INTERVAL_S * 0.9
    assert sum(r["heard"] for r in results) > 0.9 * sent


def test_advance_with_bad_parameters_is_refused_naming_the_field(plane: Plane) -> None:
    """``to`` in the past, non-finite values, both or neither of to/by and unknown fields
    are refused naming the field and counted; the farm's time does not move."""

    async def scenario() -> None:
        async with bus_client(plane.endpoints) as client:
            before = await ask(client, "sensorfarm", topics.SENSORFARM_NOW)
            refused_before = (await counters(client, "sensorfarm"))["advances_refused"]
            now = before["now"]
            cases = [
                ({"to": now - 1.0}, "to"),
                ({"to": float("nan")}, "to"),
                ({"by": float("inf")}, "by"),
                ({"by": -5.0}, "by"),
                ({"by": "900"}, "by"),
                ({}, "to"),
                ({"to": now + 1.0, "by": 1.0}, "to"),
                ({"until": now + 1.0}, "until"),
                ([now + 1.0], "params"),
                ({"by": 1e12}, "by"),
            ]
            for params, field in cases:
                with pytest.raises(RemoteError) as info:
                    await ask(client, "sensorfarm", topics.SENSORFARM_ADVANCE, params)
                assert info.value.code == "RequestError", params
                assert str(info.value).startswith(f"{field}: "), (params, str(info.value))
            assert await ask(client, "sensorfarm", topics.SENSORFARM_NOW) == before
            refused = (await counters(client, "sensorfarm"))["advances_refused"]
            assert refused - refused_before == len(cases)

    asyncio.run(scenario())


def test_sync_beyond_the_farm_times_out_and_does_not_block_other_requests(plane: Plane) -> None:
    """A sync for a time the farm has not reached fails after timeout_s naming ``until``;
    while one waits, the gateway answers other requests, and it completes once the farm
    advances that far."""

    async def scenario() -> None:
        async with bus_client(plane.endpoints) as client:
            now = (await ask(client, "sensorfarm", topics.SENSORFARM_NOW))["now"]
            with pytest.raises(RemoteError) as info:
                await ask(
                    client, "gateway", topics.GATEWAY_SYNC, {"until": now + 60, "timeout_s": 0.5}
                )
            assert info.value.code == "SyncTimeoutError"
            assert str(info.value).startswith("until: not reached within 0.5 s")
            waiting = asyncio.create_task(
                ask(client, "gateway", topics.GATEWAY_SYNC, {"until": now + 60, "timeout_s": 20})
            )
            status = await ask(client, "gateway", topics.GATEWAY_STATUS, {})
            assert status["gateway"] == "gw0"
            assert not waiting.done()  # it cannot be done: the farm has not moved
            await ask(client, "sensorfarm", topics.SENSORFARM_ADVANCE, {"by": 60.0})
            reply = await asyncio.wait_for(waiting, 25)
            assert reply["now"] == now + 60
            for params, field in (
                ({"until": "soon"}, "until"),
                ({"until": now, "timeout_s": 0}, "timeout_s"),
                ({"until": now, "wait": 1}, "wait"),
            ):
                with pytest.raises(RemoteError) as bad:
                    await ask(client, "gateway", topics.GATEWAY_SYNC, params)
                assert str(bad.value).startswith(f"{field}: "), params

    asyncio.run(scenario())
