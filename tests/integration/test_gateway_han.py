"""The gateway's HAN endpoint as a real process: displays, the technician, refusals over mutual TLS.

A broker and a gateway with ``han_listen`` run as processes on 127.0.0.1; the
gateway's registry file gives meter A to consumer ``alice`` and meter B to
consumer ``bob``. Certificates come from the CA code (profiles ``han-display``
and ``han-technician``); clients are the display client and ``openssl s_client``.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints, Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    random_endpoints,
    service_process,
)
from smtestbed.services.ca.authority import Authority
from smtestbed.services.wan.display import display_session
from smtestbed.services.wan.gwa import WanRequestError

from tests.integration.gateway_helpers import (
    KEY,
    T0,
    configured_process,
    feed,
    gateway_events,
    gw,
    lmn_pusher,
    next_event,
    wmbus_frame,
)
from tests.integration.wan_helpers import (
    GATEWAY_NAME,
    PASSPHRASE,
    Identity,
    Pki,
    client_context,
    issue,
    make_pki,
    s_client,
)

pytestmark = pytest.mark.timeout(90)
R = TypeVar("R")
METER_A, METER_B = "31000011", "31000012"
ENERGY_A, ENERGY_B = 111_111.0, 222_222.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Han:
    """A broker and a gateway whose HAN endpoint is at ``port``, with the HAN identities."""

    endpoints: Endpoints
    pki: Pki
    port: int
    lmn: str
    alice: Identity
    bob: Identity
    technician: Identity


def _han_identities(root: Path, pki: Pki) -> dict[str, Identity]:
    authority = Authority.open(pki.ca_dir, PASSPHRASE)
    try:
        out = {}
        for who, profile, name in (
            ("alice", "han-display", "display.alice.han.test.example"),
            ("bob", "han-display", "display.bob.han.test.example"),
            ("technician", "han-technician", "tech1.han.test.example"),
        ):
            folder = root / who  # issue() names files by the CN's first label
            folder.mkdir()
            out[who] = issue(authority, folder, profile, name)
        return out
    finally:
        authority.close()


def _gateway_toml(root: Path, pki: Pki, port: int, lmn: str) -> Path:
    registry = root / "registry.csv"
    registry.write_text(
        "gateway,meter,manufacturer,key_hex,security,tafs,consumer,emt\n"
        f"gw0,{METER_A},EMH,{KEY.hex()},5,taf1,alice,\n"
        f"gw0,{METER_B},EMH,{KEY.hex()},5,taf1,bob,\n"
    )
    lines = {
        "data_dir": str(root / "data"),
        "input_endpoint": lmn,
        "synchronous": "NORMAL",
        "heartbeat_s": 0.2,
        "clock_mode": "stepped",
        "clock_start": T0,
        "registry_file": str(registry),
        "han_listen": f"127.0.0.1:{port}",
        "han_cert": str(pki.gateway.cert),
        "han_key": str(pki.gateway.key),
        "han_chain": [str(pki.gateway.chain)],
        "han_trust": [str(pki.root)],
        "han_crls": [str(p) for p in pki.crls],
    }
    path = root / "gateway.toml"
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in lines.items())
    path.write_text(f"[gateway]\n{body}\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Han]:
    """Start broker and gateway with a HAN endpoint; store one reading of meters A and B."""
    root = tmp_path_factory.mktemp("han")
    endpoints = random_endpoints()
    port = free_port()
    pki = make_pki(root, "http://127.0.0.1:9")
    ids = _han_identities(root, pki)
    lmn = f"tcp://127.0.0.1:{free_port()}"
    with (
        service_process("broker", endpoints, log_path=root / "broker.log"),
        configured_process(
            "gateway", endpoints, _gateway_toml(root, pki, port, lmn), root / "gw.log"
        ),
    ):
        bed = Han(endpoints=endpoints, pki=pki, port=port, lmn=lmn, **ids)
        run(bed, lambda client, sub: _store_readings(lmn, sub))
        yield bed


Scenario = Callable[[BusClient, Subscription], Awaitable[R]]


def run(bed: Han, scenario: Scenario[R]) -> R:
    """Run ``scenario`` with a bus client and a subscription that reaches the gateway."""

    async def main() -> R:
        async with bus_client(bed.endpoints) as client:
            return await scenario(client, await gateway_events(client, "han."))

    return asyncio.run(main())


async def _store_readings(lmn: str, sub: Subscription) -> None:
    frames = [wmbus_frame(METER_A, access=1, energy=ENERGY_A)]
    frames.append(wmbus_frame(METER_B, access=1, energy=ENERGY_B))
    async with lmn_pusher(lmn) as pusher:
        await feed(pusher, frames, [T0 + 10, T0 + 11], t_sim=T0 + 20)
        event = await next_event(sub, topics.GATEWAY_FRAME_ACCEPTED, 10.0)
    assert event.body["count"] == 2


def _energy(reading: dict[str, Any]) -> float:
    return float(next(v["value"] for v in reading["values"] if v["quantity"] == "energy"))


async def _call(bed: Han, who: Identity, op: str, params: dict[str, Any] | None = None) -> Any:
    ctx = client_context(bed.pki, who)
    async with display_session("127.0.0.1", bed.port, ctx, GATEWAY_NAME, 20.0) as session:
        return await session.call(op, params)


def test_display_reads_its_own_consumers_readings(bed: Han) -> None:
    """Display alice sees meter A only: its meters, readings and latest values."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        meters = await _call(bed, bed.alice, "meters")
        readings = await _call(bed, bed.alice, "readings", {"meter": METER_A})
        latest = await _call(bed, bed.alice, "latest")
        assert [m["meter"] for m in meters] == [METER_A]
        assert [r["meter"] for r in readings] == [METER_A]
        assert _energy(readings[0]) == pytest.approx(ENERGY_A)
        assert latest["consumer"] == "alice"
        assert [(r["meter"], _energy(r)) for r in latest["readings"]] == [(METER_A, ENERGY_A)]

    run(bed, scenario)


@pytest.mark.parametrize(
    ("op", "params", "field"),
    [
        ("readings", {"meter": METER_B}, "meter"),
        ("taf_data", {"meter": METER_B}, "meter"),
        ("consumer_log", {"consumer": "bob"}, "consumer"),
    ],
)
def test_display_asking_for_another_consumer_gets_an_error_and_a_system_log_entry(
    bed: Han, op: str, params: dict[str, Any], field: str
) -> None:
    """Display alice asking for bob's data: error naming the field, event and system-log entry."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        with pytest.raises(WanRequestError) as refused:
            await _call(bed, bed.alice, op, params)
        assert refused.value.field == field
        assert field in str(refused.value)
        asked = params[field]
        event = await next_event(sub, topics.HAN_ACCESS_REFUSED, 10.0, op=op)
        assert event.body["asked"] == asked
        assert event.body["subject"] == "display.alice.han.test.example"
        log = await gw(client, topics.GATEWAY_READ_LOG, {"limit": 100_000})
        entries = [e["fields"] for e in log["entries"] if e["kind"] == "han_access_refused"]
        wanted = {"op": op, "field": field, "asked": asked, "role": "DISPLAY"}
        assert any(wanted.items() <= e.items() for e in entries), entries

    run(bed, scenario)


def test_display_reads_its_consumer_log_and_not_another_meters_existence(bed: Han) -> None:
    """Bob's meter and an unregistered one get the same refusal; alice's consumer log is hers."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        errors = []
        for meter in (METER_B, "39999998"):
            with pytest.raises(WanRequestError) as refused:
                await _call(bed, bed.alice, "readings", {"meter": meter})
            errors.append(str(refused.value).replace(meter, "M"))
        assert errors[0] == errors[1]
        log = await _call(bed, bed.alice, "consumer_log")
        assert log["log"] == "consumer-alice"
        bob = await _call(bed, bed.bob, "latest")
        assert [(r["meter"], _energy(r)) for r in bob["readings"]] == [(METER_B, ENERGY_B)]

    run(bed, scenario)


def test_technician_gets_diagnostics_but_is_refused_readings(bed: Han) -> None:
    """The technician reads counters (no readings, no keys); asking for readings names the role."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        diagnostics = await _call(bed, bed.technician, "diagnostics")
        assert diagnostics["gateway"] == "gw0"
        assert diagnostics["accepted"] >= 2
        assert diagnostics["meters"] >= 2
        assert diagnostics["lmn_lines"] == {}
        assert diagnostics["han"]["han_sessions"] >= 1
        assert not {"key", "public_key", "readings", "values"} & diagnostics.keys()
        with pytest.raises(WanRequestError) as refused:
            await _call(bed, bed.technician, "readings", {"meter": METER_A})
        assert refused.value.field == "role"
        assert "role TECHNICIAN" in str(refused.value)
        event = await next_event(sub, topics.HAN_ACCESS_REFUSED, 10.0, role="TECHNICIAN")
        assert event.body["op"] == "readings"
        with pytest.raises(WanRequestError) as display_diag:
            await _call(bed, bed.alice, "diagnostics")
        assert display_diag.value.field == "role"

    run(bed, scenario)


@pytest.mark.parametrize(
    ("who", "reason"),
    [(None, "no_certificate"), ("revoked", "revoked"), ("foreign", "unknown_ca")],
)
def test_han_handshake_is_refused_with_the_reason_as_event(
    bed: Han, who: str | None, reason: str
) -> None:
    """No certificate, a revoked one or a foreign CA's: refused, han.tls_refused names why."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        identity = getattr(bed.pki, who) if who else None
        code, out = await s_client(bed.port, bed.pki, identity)
        assert code != 0, out
        event = await next_event(sub, topics.HAN_TLS_REFUSED, 10.0, reason=reason)
        assert event.body["gateway"] == "gw0"
        assert event.body["peer"].startswith("127.0.0.1:")
        log = await gw(client, topics.GATEWAY_READ_LOG, {"limit": 100_000})
        kinds = [e["fields"]["reason"] for e in log["entries"] if e["kind"] == "han_tls_refused"]
        assert reason in kinds

    run(bed, scenario)


def test_display_cli_prints_the_consumers_latest_readings(bed: Han) -> None:
    """`smtb display` (command in a child process) prints alice's meter A and not bob's meter B."""
    pki, alice = bed.pki, bed.alice
    args = [
        "--gateway", f"127.0.0.1:{bed.port}", "--name", GATEWAY_NAME,
        "--cert", str(alice.cert), "--key", str(alice.key),
        "--chain", str(alice.chain), "--trust", str(pki.root),
        *(x for crl in pki.crls for x in ("--crl", str(crl))),
    ]  # fmt: skip
    code = "from smtestbed.services.wan.display import command; command(prog_name='smtb display')"
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "consumer alice"
    assert any(line.startswith(METER_A) and "energy  111111" in line for line in lines)
    assert not any(METER_B in line for line in lines)
