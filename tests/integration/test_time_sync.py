"""The gateway sets its clock from the WAN time service over mutual TLS.

Everything is real: a test SM-PKI in the test's folder, broker, gateway and time
service as processes on 127.0.0.1 (both on the realtime clock), TLS 1.2 with
brainpool certificates and CRLs, SQLite. Readings are written into the gateway's
store file directly (the LMN path is not what these tests are about).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import (
    bus_client,
    endpoint_settings,
    free_port,
    service_process,
    wait_until,
)
from smtestbed.services.gateway.schema import Reading, Value
from smtestbed.services.gateway.store import Store

from tests.integration.emt_helpers import (
    Credentials,
    GatewaySide,
    TestPki,
    gateway_run,
    gateway_side,
    make_pki,
)
from tests.integration.gateway_helpers import gateway_events, gw, next_event

pytestmark = pytest.mark.timeout(120)

TIME_CN = "time1.emt.test.example"
METER = "12345678"
LIMIT_S = 3.0


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    """A test SM-PKI in the test's folder."""
    return make_pki(tmp_path)


@pytest.fixture
def gateway(pki: TestPki) -> GatewaySide:
    """The gateway's TLS and signature credentials."""
    return gateway_side(pki)


@pytest.fixture
def time_tls(pki: TestPki) -> Credentials:
    """The time service's TLS certificate (a gwa-tls one: role GWA)."""
    return pki.issue("gwa-tls", TIME_CN)


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    """The store file of gateway instance gw0."""
    return tmp_path / "gw" / "gw0" / "store.sqlite"


@contextlib.contextmanager
def time_service(
    pki: TestPki, creds: Credentials, port: int, endpoints: Endpoints, log: Path, skew_s: float
) -> Iterator[process.Popen]:
    """Run the time service as a process, its answers off by ``skew_s``, until the block ends."""
    settings = {
        "listen": f"127.0.0.1:{port}",
        "cert": str(creds.cert),
        "key": str(creds.key),
        "chain": str(pki.sub_ca("emt")),
        "trust": str(pki.root),
        "crls": ",".join(str(p) for p in pki.crls),
        "skew_s": skew_s,
        "heartbeat_s": 0.2,
    }
    with service_process("wan.timeservice", endpoints, settings=settings, log_path=log) as proc:
        yield proc


def gateway_config(
    folder: Path, endpoints: Endpoints, pki: TestPki, gw_side: GatewaySide, port: int
) -> Path:
    """Write the gateway's TOML: realtime clock, time sync every 0.5 s against ``port``."""
    common = [f"{k} = {json.dumps(v)}" for k, v in endpoint_settings(endpoints).items()]
    settings: dict[str, Any] = {
        "data_dir": str(folder / "gw"),
        "input_endpoint": f"tcp://127.0.0.1:{free_port()}",
        "synchronous": "NORMAL",
        "wan_cert": str(gw_side.tls.cert),
        "wan_key": str(gw_side.tls.key),
        "wan_chain": [str(pki.sub_ca("smgw"))],
        "wan_trust": [str(pki.root)],
        "wan_crls": [str(p) for p in pki.crls],
        "wan_handshake_timeout_s": 3.0,
        "time_service": f"tls://127.0.0.1:{port}",
        "time_server_name": TIME_CN,
        "time_sync_every_s": 0.5,
        "time_max_deviation_s": LIMIT_S,
    }
    gateway = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    text = ["[common]", *common, "heartbeat_s = 0.2", "", "[gateway]", *gateway]
    path = folder / "gateway.toml"
    path.write_text("\n".join(text) + "\n")
    return path


def store_readings(store_file: Path, first: int, count: int) -> list[int]:
    """Write ``count`` readings of METER into the store file; return their ids."""
    store_file.parent.mkdir(parents=True, exist_ok=True)
    store = Store(store_file, synchronous="NORMAL")
    try:
        readings = [
            Reading(
                meter=METER,
                t_sim=1_700_000_000.0 + k,
                access_number=k % 256,
                message_counter=k,
                frame_digest=hashlib.sha256(f"frame {k}".encode()).digest(),
                values=(Value(quantity="energy", unit="Wh", value=1000.0 + k),),
            )
            for k in range(first, first + count)
        ]
        return store.commit_readings(readings)
    finally:
        store.close()


async def log_entries(client: BusClient, log: str) -> list[dict[str, Any]]:
    """Return the entries of one of gw0's logs."""
    reply = await gw(client, topics.GATEWAY_READ_LOG, {"gateway": "gw0", "log": log})
    entries: list[dict[str, Any]] = reply["entries"]
    return entries


async def entries_of(client: BusClient, log: str, kind: str) -> list[dict[str, Any]] | None:
    """Return the entries of ``kind`` in a log, None while there are none."""
    found = [e for e in await log_entries(client, log) if e.get("kind") == kind]
    return found or None


async def flags(client: BusClient) -> dict[int, bool]:
    """Return reading id -> flagged for METER."""
    rows = await gw(client, topics.GATEWAY_READINGS, {"gateway": "gw0", "meter": METER})
    return {r["id"]: bool(r.get("flagged", False)) for r in rows}


def test_a_small_deviation_adjusts_the_clock_without_a_calibration_entry(
    tmp_path: Path,
    endpoints: Endpoints,
    broker: process.Popen,
    pki: TestPki,
    gateway: GatewaySide,
    time_tls: Credentials,
    store_file: Path,
) -> None:
    """A time service 1 s off (limit 3 s): a time_synced entry, no calibration entry, no flag."""
    ids = store_readings(store_file, 0, 3)
    port = free_port()
    cfg = gateway_config(tmp_path, endpoints, pki, gateway, port)

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[int, bool]]:
        async with bus_client(endpoints) as client:
            synced = await wait_until(
                lambda: entries_of(client, "system", "time_synced"), timeout=30, interval=0.2
            )
            return synced, await log_entries(client, "calibration"), await flags(client)

    with (
        time_service(pki, time_tls, port, endpoints, tmp_path / "ts.log", skew_s=1.0),
        gateway_run(endpoints, cfg, tmp_path / "gw.log"),
    ):
        synced, calibration, flagged = asyncio.run(scenario())
    deviation = synced[0]["fields"]["deviation_s"]
    assert 0.5 < deviation < 1.5
    assert [e for e in calibration if e.get("kind") == "time_deviation"] == []
    assert flagged == dict.fromkeys(ids, False)


def test_a_large_deviation_is_logged_announced_and_flags_the_readings_since_the_last_good_sync(
    tmp_path: Path,
    endpoints: Endpoints,
    broker: process.Popen,
    pki: TestPki,
    gateway: GatewaySide,
    time_tls: Credentials,
    store_file: Path,
) -> None:
    """After a good sync, a service 600 s off: calibration entry, event, later readings flagged."""
    before = store_readings(store_file, 0, 3)
    port = free_port()
    cfg = gateway_config(tmp_path, endpoints, pki, gateway, port)
    ts_log = tmp_path / "ts.log"

    async def good_sync(client: BusClient) -> None:
        await wait_until(
            lambda: entries_of(client, "system", "time_synced"), timeout=30, interval=0.2
        )

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], dict[int, bool]]:
        async with bus_client(endpoints) as client:
            with time_service(pki, time_tls, port, endpoints, ts_log, skew_s=0.0):
                await good_sync(client)
                sub = await gateway_events(client)
            after = store_readings(store_file, 10, 2)  # stored while no sync can happen
            with time_service(pki, time_tls, port, endpoints, ts_log, skew_s=600.0):
                event = await next_event(sub, topics.GATEWAY_TIME_DEVIATION, timeout=30)
            entries = await wait_until(
                lambda: entries_of(client, "calibration", "time_deviation"), timeout=10
            )
            assert after
            return event.body, entries, await flags(client)

    with gateway_run(endpoints, cfg, tmp_path / "gw.log"):
        body, entries, flagged = asyncio.run(scenario())
    assert body["gateway"] == "gw0"
    assert 599.0 < body["deviation_s"] < 601.0
    assert body["flagged_readings"] == 2
    assert len(entries) == 1
    assert entries[0]["fields"]["deviation_s"] == body["deviation_s"]
    assert entries[0]["fields"]["limit_s"] == LIMIT_S
    assert [flagged[i] for i in before] == [False, False, False]
    assert sorted(i for i, f in flagged.items() if f) == sorted(set(flagged) - set(before))


def test_an_unreachable_time_service_is_a_system_log_entry_and_the_gateway_keeps_running(
    tmp_path: Path,
    endpoints: Endpoints,
    broker: process.Popen,
    pki: TestPki,
    gateway: GatewaySide,
) -> None:
    """Nothing listens at the time service's port: time_sync_failed (unreachable); it runs on."""
    cfg = gateway_config(tmp_path, endpoints, pki, gateway, free_port())

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        async with bus_client(endpoints) as client:
            failed = await wait_until(
                lambda: entries_of(client, "system", "time_sync_failed"), timeout=30, interval=0.2
            )
            status: dict[str, Any] = await gw(client, topics.GATEWAY_STATUS, {"gateway": "gw0"})
            return failed, status

    with gateway_run(endpoints, cfg, tmp_path / "gw.log") as proc:
        failed, status = asyncio.run(scenario())
        assert proc.poll() is None
    assert failed[0]["fields"]["reason"] == "unreachable"
    assert status["gateway"] == "gw0"
