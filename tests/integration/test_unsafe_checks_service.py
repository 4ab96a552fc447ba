"""The gateway's test-only switches where the checks meet real parts: a wired M-Bus line on
TCP (``meter_missing``), signed update bundles (``update_signature``, ``update_version``)
and the signed logs verified over the bus (``gateway.verify_log``, ``log_chain``).

Each check is shown to fire normally and not to fire with its switch off; the suppressed
firing is counted in ``checks_skipped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.config import load_config
from smtestbed.services._runtime.errors import RemoteError
from smtestbed.services._runtime.testing import (
    bus_client,
    endpoint_settings,
    free_port,
    random_endpoints,
    service_in_process,
    service_process,
)
from smtestbed.services.gateway.config import GatewayConfig
from smtestbed.services.gateway.downloader import Downloader, Refusal
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.service import Gateway
from smtestbed.services.gateway.unsafe import parse
from smtestbed.services.sensorfarm.mbus_line import MbusLine
from smtestbed.services.sensorfarm.mbus_slave import MbusSlave

from tests.integration.test_gateway_wired import (
    by_primary,
    opened,
    poller,
    population_meters,
    register,
    system_entries,
    tcp_line,
)
from tests.unit.gateway.test_downloader import _bundle

pytestmark = pytest.mark.timeout(60)


def missing_after_garbled_line(folder: Path, skip: tuple[str, ...]) -> tuple[int, list[Any], int]:
    """Poll one wired meter whose replies are all garbled; return the poller's missing
    count, the meter_missing log entries and the checks skipped."""
    inst = GatewayInstance("gw0", folder, synchronous="NORMAL", skipped=parse(skip))
    (meter,) = population_meters(1)
    register(inst, [meter])
    reported: list[Any] = []

    async def body() -> int:
        async with tcp_line(MbusLine([MbusSlave(meter)])) as (url, relay):
            poll = poller(inst, url, by_primary([meter]))
            poll.on_missing = lambda name, body: reported.append(body)
            relay.garble = 1000
            async with opened(url) as link:
                await poll.poll(link)
                await poll.poll(link)
            return poll.counters.missing

    try:
        missed = asyncio.run(body())
        entries = system_entries(inst, "meter_missing")
        assert len(reported) == len(entries)
        return missed, entries, inst.skipped.total
    finally:
        inst.close()


def test_meter_missing_is_reported_and_not_with_the_check_off(tmp_path: Path) -> None:
    """A silent wired meter is reported once per outage; with ``meter_missing`` off the
    poller still sees it silent but reports nothing, and the suppressed report is counted."""
    missed, entries, skipped = missing_after_garbled_line(tmp_path / "normal", ())
    assert (missed, len(entries), skipped) == (2, 1, 0)
    missed, entries, skipped = missing_after_garbled_line(tmp_path / "off", ("meter_missing",))
    assert (missed, entries, skipped) == (2, [], 1)


def test_update_checks_refuse_and_install_with_the_check_off(tmp_path: Path) -> None:
    """A bundle signed by another key is bad_signature, an older one not_newer; with the
    matching switch off each installs (and only that refusal is lifted)."""
    maker = ec.generate_private_key(ec.BrainpoolP256R1())
    stranger = ec.generate_private_key(ec.BrainpoolP256R1())
    forged = _bundle(tmp_path / "forged", stranger, "2.0.0")
    older = _bundle(tmp_path / "older", maker, "0.9.0")
    for name, skip in (("normal", ()), ("off", ("update_signature", "update_version"))):
        skipped = parse(skip)
        downloader = Downloader(tmp_path / name, maker.public_key(), name="smgw", skipped=skipped)
        assert downloader.install(_bundle(tmp_path / name, maker, "1.0.0")).accepted
        results = [downloader.install(forged), downloader.install(older)]
        if name == "normal":
            assert [r.reason for r in results] == [Refusal.BAD_SIGNATURE, Refusal.NOT_NEWER]
            assert downloader.current_version() == "1.0.0"
        else:
            assert [r.accepted for r in results] == [True, True]
            assert downloader.current_version() == "0.9.0"
            assert skipped.counts == {"update_signature": 1, "update_version": 1}


def test_one_update_switch_leaves_the_other_check_on(tmp_path: Path) -> None:
    """With only ``update_version`` off, a forged bundle is still bad_signature."""
    maker = ec.generate_private_key(ec.BrainpoolP256R1())
    stranger = ec.generate_private_key(ec.BrainpoolP256R1())
    skipped = parse(["update_version"])
    downloader = Downloader(tmp_path / "root", maker.public_key(), name="smgw", skipped=skipped)
    assert downloader.install(_bundle(tmp_path, maker, "1.0.0")).accepted
    result = downloader.install(_bundle(tmp_path / "x", stranger, "0.5.0"))
    assert result.reason is Refusal.BAD_SIGNATURE
    assert skipped.total == 0


# -- gateway.verify_log over the bus --------------------------------------------------------


@contextlib.asynccontextmanager
async def gateway(
    endpoints: Endpoints, folder: Path, instance: str, skip: str = ""
) -> AsyncIterator[Gateway]:
    """Run a gateway service (one instance gw0) in this event loop."""
    overrides = {
        **endpoint_settings(endpoints),
        "instance": instance,
        "data_dir": str(folder),
        "input_endpoint": f"tcp://127.0.0.1:{free_port()}",
        "synchronous": "NORMAL",
        "heartbeat_s": 0.2,
        "clock_mode": "stepped",
        "unsafe_skip_checks": skip,
    }
    config = load_config(GatewayConfig, "gateway", env={}, overrides=overrides)
    async with service_in_process(Gateway(config)) as service:
        yield service


def tamper(log: Path) -> None:
    """Change one field of the log's second entry (the live file: the chain then breaks)."""
    lines = log.read_bytes().splitlines(keepends=True)
    entry = json.loads(lines[1])
    entry["fields"]["by"] = "someone else"
    lines[1] = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    log.write_bytes(b"".join(lines))


def test_verify_log_names_the_altered_entry_unless_log_chain_is_off(tmp_path: Path) -> None:
    """verify_log answers ok for intact logs; after one entry is altered it names it as
    ``altered``, except on the gateway with ``log_chain`` off, which answers ok, counts the
    suppressed finding and shows its switches in gateway.status."""
    endpoints = random_endpoints()
    meter = {"meter": "10000005", "manufacturer": "EMH", "key": "00" * 16, "consumer": "c5"}

    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with (
            bus_client(endpoints) as client,
            gateway(endpoints, tmp_path / "a", "gw-normal") as normal,
            gateway(endpoints, tmp_path / "b", "gw-unsafe", "log_chain") as unsafe,
        ):
            for service in (normal, unsafe):
                name = service.config.instance
                await client.request(name, topics.GATEWAY_ADD_METER, meter, timeout=10)
                await client.request(name, topics.GATEWAY_REMOVE_METER, meter, timeout=10)
                ask = {"log": "system"}
                out[f"{name}/intact"] = await client.request(
                    name, topics.GATEWAY_VERIFY_LOG, ask, timeout=10
                )
                tamper(service.instances["gw0"].logs.system.path)
                out[f"{name}/tampered"] = await client.request(
                    name, topics.GATEWAY_VERIFY_LOG, ask, timeout=10
                )
                out[f"{name}/status"] = await client.request(
                    name, topics.GATEWAY_STATUS, {}, timeout=10
                )
            with pytest.raises(RemoteError) as bad:
                await client.request(
                    "gw-normal", topics.GATEWAY_VERIFY_LOG, {"log": "consumer", "consumer": "zz"}
                )
            out["bad_consumer"] = str(bad.value)
            with pytest.raises(RemoteError) as bad:
                await client.request("gw-normal", topics.GATEWAY_VERIFY_LOG, {"log": "audit"})
            out["bad_log"] = str(bad.value)
        return out

    with service_process("broker", endpoints, log_path=tmp_path / "broker.log"):
        out = asyncio.run(scenario())
    for name in ("gw-normal", "gw-unsafe"):
        intact = out[f"{name}/intact"]
        assert intact["ok"] is True
        assert intact["entries"] >= 3  # log_created, meter_added, meter_removed
        assert (intact["first_bad"], intact["problem"]) == (None, None)
    tampered = out["gw-normal/tampered"]
    assert (tampered["ok"], tampered["first_bad"], tampered["problem"]) == (False, 1, "altered")
    assert tampered["entries"] == 1
    assert out["gw-unsafe/tampered"] == {**out["gw-unsafe/intact"], "ok": True}
    assert out["gw-normal/status"]["unsafe_skip_checks"] == []
    assert out["gw-normal/status"]["checks_skipped"] == 0
    assert out["gw-unsafe/status"]["unsafe_skip_checks"] == ["log_chain"]
    assert out["gw-unsafe/status"]["checks_skipped"] == 1
    assert out["bad_consumer"].startswith("consumer: no consumer log 'zz'")
    assert out["bad_log"].startswith("log: must be system, calibration or consumer")
