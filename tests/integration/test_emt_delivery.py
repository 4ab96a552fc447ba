"""TAF delivery from a gateway process to an EMT process over mutual TLS, signed.

Everything is real: a test SM-PKI made in the test's folder, broker, gateway and EMT
as processes on 127.0.0.1, TLS 1.2 with brainpool certificates and CRLs, SQLite on
both sides. Records are queued in the gateway's store file before it starts (as the
tariff runner would have), except in the end-to-end test, where the sensor farm,
channel and tariff runner produce them.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints, Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import bus_client, random_endpoints, wait_until
from smtestbed.services.gateway import tariffs
from smtestbed.services.gateway.schema import Taf
from smtestbed.services.gateway.store import Store

from tests.integration.emt_helpers import (
    EMT,
    GATEWAY_CN,
    EmtSide,
    GatewaySide,
    TestPki,
    as_delivered,
    delivery_lines,
    emt_process,
    emt_records,
    emt_side,
    gateway_config,
    gateway_run,
    gateway_side,
    make_pki,
    pending_in,
    queue_records,
)
from tests.integration.gateway_helpers import DAY_S, configured_process, gw, next_event
from tests.integration.test_gateway_pipeline import (
    METERS,
    MIDNIGHT,
    chain,
    ident,
    population,
    write_config,
    write_meters,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    """A test SM-PKI in the test's folder."""
    return make_pki(tmp_path)


@pytest.fixture
def emt(pki: TestPki, tmp_path: Path) -> EmtSide:
    """The EMT's TLS credentials, port and data folder."""
    return emt_side(pki, tmp_path)


@pytest.fixture
def gateway(pki: TestPki) -> GatewaySide:
    """The gateway's TLS and signature credentials."""
    return gateway_side(pki)


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    """The store file of gateway instance gw0."""
    return tmp_path / "gw" / "gw0" / "store.sqlite"


def config(tmp_path: Path, endpoints: Endpoints, *sides: Any) -> Path:
    """Write the gateway's TOML with the delivery to the EMT."""
    pki, gateway, emt = sides
    return gateway_config(tmp_path, endpoints, tmp_path / "gw", delivery_lines(pki, gateway, emt))


async def queue_of(client: BusClient) -> list[dict[str, Any]]:
    """Return the gateway's undelivered records for the EMT."""
    result: list[dict[str, Any]] = await gw(
        client, topics.GATEWAY_EMT_QUEUE, {"emt": EMT, "limit": 10_000}
    )
    return result


async def subscribed(client: BusClient, prefixes: list[str]) -> Subscription:
    """Return a subscription the broker has confirmed."""
    sub = client.subscribe(prefixes)
    await sub.wait_connected()
    return sub


def test_a_gateway_delivers_its_queue_over_tls_and_the_emt_acknowledges_it(
    tmp_path: Path,
    endpoints: Endpoints,
    broker: process.Popen,
    pki: TestPki,
    emt: EmtSide,
    gateway: GatewaySide,
    store_file: Path,
) -> None:
    """Every queued record reaches the EMT unchanged, is acknowledged and leaves the queue."""
    sent = queue_records(store_file, 7)
    cfg = config(tmp_path, endpoints, pki, gateway, emt)

    async def scenario() -> list[dict[str, Any]]:
        async with bus_client(endpoints) as client:
            stored: list[dict[str, Any]] = await wait_until(
                lambda: _at_least(emt_records(client), len(sent)), timeout=30, interval=0.2
            )
            await wait_until(lambda: _empty(queue_of(client)), timeout=10, interval=0.2)
            return stored

    with (
        emt_process(pki, emt, endpoints, tmp_path / "emt.log"),
        gateway_run(endpoints, cfg, tmp_path / "gw.log"),
    ):
        stored = asyncio.run(scenario())
    assert as_delivered(stored) == sent
    assert {r["gateway"] for r in stored} == {GATEWAY_CN}
    assert pending_in(store_file) == []


def test_with_the_emt_down_records_stay_queued_across_a_gateway_restart_and_arrive_later(
    tmp_path: Path,
    endpoints: Endpoints,
    broker: process.Popen,
    pki: TestPki,
    emt: EmtSide,
    gateway: GatewaySide,
    store_file: Path,
) -> None:
    """Failed deliveries keep the records in SQLite; the restarted gateway delivers them."""
    sent = queue_records(store_file, 5)
    cfg = config(tmp_path, endpoints, pki, gateway, emt)

    async def unreachable() -> dict[str, Any]:
        async with bus_client(endpoints) as client:
            sub = await subscribed(client, ["gateway.emt_"])
            event = await next_event(sub, topics.GATEWAY_EMT_DELIVERY_FAILED, 20, emt=EMT)
            return dict(event.body)

    with gateway_run(endpoints, cfg, tmp_path / "gw-1.log"):
        failed = asyncio.run(unreachable())
    assert failed["reason"] == "unreachable"
    assert pending_in(store_file) == sent

    async def delivered() -> list[dict[str, Any]]:
        async with bus_client(endpoints) as client:
            return await wait_until(  # type: ignore[no-any-return]
                lambda: _at_least(emt_records(client), len(sent)), timeout=30, interval=0.2
            )

    with (
        emt_process(pki, emt, endpoints, tmp_path / "emt.log"),
        gateway_run(endpoints, cfg, tmp_path / "gw-2.log"),
    ):
        stored = asyncio.run(delivered())
    assert as_delivered(stored) == sent
    assert pending_in(store_file) == []


def test_a_revoked_signature_certificate_is_refused_by_the_emt_and_nothing_is_acknowledged(
    tmp_path: Path,
    endpoints: Endpoints,
    broker: process.Popen,
    pki: TestPki,
    emt: EmtSide,
    gateway: GatewaySide,
    store_file: Path,
) -> None:
    """The TLS session stands, but a batch signed with a revoked certificate is refused."""
    sent = queue_records(store_file, 3)
    pki.revoke(gateway.sig.serial)
    cfg = config(tmp_path, endpoints, pki, gateway, emt)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[Any], list[Any]]:
        async with bus_client(endpoints) as client:
            sub = await subscribed(client, ["emt.", "gateway.emt_"])
            refused = await next_event(sub, topics.EMT_DELIVERY_REFUSED, 20)
            failed = await next_event(sub, topics.GATEWAY_EMT_DELIVERY_FAILED, 20)
            return refused.body, failed.body, await queue_of(client), await emt_records(client)

    with (
        emt_process(pki, emt, endpoints, tmp_path / "emt.log"),
        gateway_run(endpoints, cfg, tmp_path / "gw.log"),
    ):
        refused, failed, queue, stored = asyncio.run(scenario())
    assert (refused["reason"], refused["gateway"]) == ("revoked", GATEWAY_CN)
    assert failed["reason"] == "revoked"
    assert queue == sent
    assert stored == []


def test_a_gateway_with_a_revoked_tls_certificate_is_refused_at_the_handshake(
    tmp_path: Path,
    endpoints: Endpoints,
    broker: process.Popen,
    pki: TestPki,
    emt: EmtSide,
    gateway: GatewaySide,
    store_file: Path,
) -> None:
    """The EMT's handshake checks the CRL: wan.tls_refused with reason revoked, data stays."""
    sent = queue_records(store_file, 2)
    pki.revoke(gateway.tls.serial)
    cfg = config(tmp_path, endpoints, pki, gateway, emt)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        async with bus_client(endpoints) as client:
            sub = await subscribed(client, ["wan.", "gateway.emt_"])
            refused = await next_event(sub, topics.WAN_TLS_REFUSED, 20, emt=EMT)
            failed = await next_event(sub, topics.GATEWAY_EMT_DELIVERY_FAILED, 20)
            return refused.body, failed.body, await queue_of(client)

    with (
        emt_process(pki, emt, endpoints, tmp_path / "emt.log"),
        gateway_run(endpoints, cfg, tmp_path / "gw.log"),
    ):
        refused, failed, queue = asyncio.run(scenario())
    assert refused["reason"] == "revoked"
    assert failed["emt"] == EMT
    assert queue == sent


async def _at_least(records: Any, count: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await records
    return found if len(found) >= count else None


async def _empty(queue: Any) -> bool:
    return not await queue


def day_profile(store: Store, meter: str, unit: str) -> dict[str, Any]:
    """Return the TAF7 payload the gateway's store yields for the profiled day."""
    quantity = "energy" if unit == "Wh" else "volume"
    day = (MIDNIGHT, MIDNIGHT + DAY_S)
    series = tariffs.stored_series(store, meter, *day, quantity=quantity, unit=unit)
    entries = tariffs.load_profile(series, *day)
    return {**tariffs.taf_payload(Taf.TAF7, meter, entries, unit=unit), "period": list(day)}


def _of_the_day(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r["payload"].get("period") == [MIDNIGHT, MIDNIGHT + DAY_S]]


def test_end_to_end_taf7_profiles_from_the_sensor_farm_reach_the_emt_and_equal_the_store(
    tmp_path: Path, pki: TestPki, emt: EmtSide, gateway: GatewaySide
) -> None:
    """Acceptance: farm -> channel -> gateway -> TLS -> EMT; each meter's TAF7 day arrives.

    Each profile the EMT holds is the gateway's queued record (id, payload, time) and
    equals the profile computed again from the gateway's stored readings; its deltas
    sum to the counter difference interpolated from those readings.
    """
    endpoints = random_endpoints()
    write_meters(tmp_path / "registry.csv")
    cfg = write_config(tmp_path, endpoints)
    with cfg.open("a") as out:  # [gateway] is the file's last table
        out.write("\n".join(delivery_lines(pki, gateway, emt)) + "\n")

    async def scenario() -> list[dict[str, Any]]:
        async with bus_client(endpoints) as client:
            with configured_process("sensorfarm", endpoints, cfg, tmp_path / "farm.log"):
                found: list[dict[str, Any]] = await wait_until(
                    lambda: _day_complete(client), timeout=90, interval=0.5
                )
            return found

    with (
        chain(tmp_path, endpoints, cfg),
        emt_process(pki, emt, endpoints, tmp_path / "emt.log"),
    ):
        received = asyncio.run(scenario())
    store = Store(tmp_path / "data" / "gw0" / "store.sqlite", synchronous="NORMAL")
    try:
        queued = store.query(
            "SELECT id, taf, meter, payload, created, delivered FROM emt_queue WHERE emt = ?",
            (EMT,),
        )
        expected = {m: day_profile(store, m, r["payload"]["unit"]) for m, r in _by_meter(received)}
    finally:
        store.close()
    rows = {row[0]: row for row in queued}
    assert len(received) == METERS
    assert {r["meter"] for r in received} == {ident(population(), i) for i in range(METERS)}
    for record in received:
        row = rows[record["id"]]
        assert (row[1], row[2], json.loads(row[3]), row[4]) == (
            record["taf"],
            record["meter"],
            record["payload"],
            record["created"],
        )
        assert row[5] is not None  # acknowledged
        assert record["payload"] == expected[record["meter"]]
        assert record["gateway"] == GATEWAY_CN
        assert len(record["payload"]["values"]) == 96


async def _day_complete(client: BusClient) -> list[dict[str, Any]] | None:
    day = _of_the_day(await emt_records(client, taf="taf7"))
    return day if len(day) >= METERS else None


def _by_meter(records: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(r["meter"], r) for r in records]
