"""The gateway's HAN endpoint: CRLs fetched from the CA, time-flagged readings on the display.

A broker, the CA service (HTTP, serving CRLs), the WAN time service (600 s off)
and a gateway run as processes on 127.0.0.1. The gateway's clock is stepped:
LMN batches move it, so the HAN CRL refresh (``han_crl_every_s``) happens at a
known simulated time. Readings of alice's meter are in the store before the
gateway starts; its first time sync finds the deviation and flags them.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    random_endpoints,
    service_process,
    wait_until,
)
from smtestbed.services.ca.authority import Authority
from smtestbed.services.gateway.schema import Reading, Value
from smtestbed.services.gateway.store import Store
from smtestbed.services.wan.display import display_session
from smtestbed.services.wan.gwa import WanConnectionError

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
    revoke,
)

pytestmark = pytest.mark.timeout(90)
METER = "31000021"
CRL_EVERY_S = 3600.0
STORED = 3  # readings in the store before the gateway starts


@dataclass(frozen=True, slots=True, kw_only=True)
class Bed:
    """The processes' bus, the PKI, the HAN port, the LMN input and two displays of alice."""

    endpoints: Endpoints
    pki: Pki
    port: int
    lmn: str
    alice: Identity
    carol: Identity


def _displays(root: Path, pki: Pki) -> tuple[Identity, Identity]:
    authority = Authority.open(pki.ca_dir, PASSPHRASE)
    try:
        out = []
        for label in ("alice", "carol"):
            folder = root / label
            folder.mkdir()
            out.append(issue(authority, folder, "han-display", "display.alice.han.test.example"))
        return out[0], out[1]
    finally:
        authority.close()


def _store_readings(store_file: Path) -> None:
    store_file.parent.mkdir(parents=True, exist_ok=True)
    store = Store(store_file, synchronous="NORMAL")
    try:
        store.commit_readings(
            [
                Reading(
                    meter=METER,
                    t_sim=T0 - 3600.0 + 60 * k,
                    access_number=100 + k,
                    message_counter=k,
                    frame_digest=hashlib.sha256(f"stored {k}".encode()).digest(),
                    values=(Value(quantity="energy", unit="Wh", value=5000.0 + k),),
                )
                for k in range(STORED)
            ]
        )
    finally:
        store.close()


def _gateway_toml(root: Path, pki: Pki, port: int, lmn: str, ca_url: str, time_port: int) -> Path:
    registry = root / "registry.csv"
    registry.write_text(
        "gateway,meter,manufacturer,key_hex,security,tafs,consumer,emt\n"
        f"gw0,{METER},EMH,{KEY.hex()},5,taf1,alice,\n"
    )
    gateway = pki.gateway
    lines: dict[str, Any] = {
        "data_dir": str(root / "data"),
        "input_endpoint": lmn,
        "synchronous": "NORMAL",
        "heartbeat_s": 0.2,
        "clock_mode": "stepped",
        "clock_start": T0,
        "registry_file": str(registry),
        "han_listen": f"127.0.0.1:{port}",
        "han_cert": str(gateway.cert),
        "han_key": str(gateway.key),
        "han_chain": [str(gateway.chain)],
        "han_trust": [str(pki.root)],
        "han_crl_urls": [f"{ca_url}/crl/{name}.crl" for name in ("root", "smgw")],
        "han_crl_every_s": CRL_EVERY_S,
        "wan_cert": str(gateway.cert),
        "wan_key": str(gateway.key),
        "wan_chain": [str(gateway.chain)],
        "wan_trust": [str(pki.root)],
        "wan_crls": [str(p) for p in pki.crls],
        "time_service": f"tls://127.0.0.1:{time_port}",
        "time_server_name": "gwa1.emt.test.example",
        "time_sync_every_s": 1e9,  # one sync, at start
        "time_max_deviation_s": 3.0,
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


def _time_settings(pki: Pki, port: int) -> dict[str, Any]:
    return {
        "listen": f"127.0.0.1:{port}",
        "cert": str(pki.gwa.cert),
        "key": str(pki.gwa.key),
        "chain": str(pki.gwa.chain),
        "trust": str(pki.root),
        "crls": ",".join(str(p) for p in pki.crls),
        "skew_s": 600.0,
        "heartbeat_s": 0.2,
    }


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    """Start broker, CA, time service and a gateway fetching its HAN CRLs from the CA."""
    root = tmp_path_factory.mktemp("hancrl")
    endpoints = random_endpoints()
    ca_port, han_port, time_port = free_port(), free_port(), free_port()
    ca_url = f"http://127.0.0.1:{ca_port}"
    pki = make_pki(root, ca_url)
    alice, carol = _displays(root, pki)
    _store_readings(root / "data" / "gw0" / "store.sqlite")
    lmn = f"tcp://127.0.0.1:{free_port()}"
    ca_settings = {"data_dir": str(pki.ca_dir), "create": "false", "port": str(ca_port)}
    config = _gateway_toml(root, pki, han_port, lmn, ca_url, time_port)
    with (
        service_process("broker", endpoints, log_path=root / "broker.log"),
        service_process("ca", endpoints, settings=ca_settings, log_path=root / "ca.log"),
        service_process(
            "wan.timeservice",
            endpoints,
            settings=_time_settings(pki, time_port),
            log_path=root / "ts.log",
        ),
        configured_process("gateway", endpoints, config, root / "gw.log"),
    ):
        yield Bed(
            endpoints=endpoints,
            pki=pki,
            port=han_port,
            lmn=lmn,
            alice=alice,
            carol=carol,
        )


async def _call(bed: Bed, who: Identity, op: str, params: dict[str, Any] | None = None) -> Any:
    ctx = client_context(bed.pki, who)
    async with display_session("127.0.0.1", bed.port, ctx, GATEWAY_NAME, 20.0) as session:
        return await session.call(op, params)


async def _display_cli(bed: Bed) -> list[str]:
    """Run `smtb display` for alice in a child process; return its lines."""
    pki, alice = bed.pki, bed.alice
    args = [
        "--gateway", f"127.0.0.1:{bed.port}", "--name", GATEWAY_NAME,
        "--cert", str(alice.cert), "--key", str(alice.key),
        "--chain", str(alice.chain), "--trust", str(pki.root),
        *(x for crl in pki.crls for x in ("--crl", str(crl))),
    ]  # fmt: skip
    code = "from smtestbed.services.wan.display import command; command(prog_name='smtb display')"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30.0)
    assert proc.returncode == 0, err.decode()
    return out.decode().splitlines()


async def _time_flagged(client: BusClient) -> Any:
    log = await gw(client, topics.GATEWAY_READ_LOG, {"log": "calibration", "limit": 1000})
    return [e for e in log["entries"] if e["kind"] == "time_deviation"]


def test_display_shows_readings_flagged_by_the_time_sync_as_flagged(bed: Bed) -> None:
    """Readings stored before a deviating sync come flagged over the HAN; a later one does not."""

    async def scenario() -> tuple[list[Any], dict[str, Any], list[str], list[Any]]:
        async with bus_client(bed.endpoints) as client:
            await wait_until(lambda: _time_flagged(client), timeout=30, interval=0.2)
            before = await _call(bed, bed.alice, "readings", {"meter": METER})
            latest = await _call(bed, bed.alice, "latest")
            printed = await _display_cli(bed)
            sub = await gateway_events(client, "han.")
            async with lmn_pusher(bed.lmn) as pusher:
                frame = wmbus_frame(METER, access=103, energy=6000.0)  # after the stored 100..102
                await feed(pusher, [frame], [T0 + 5], t_sim=T0 + 5)
                await next_event(sub, topics.GATEWAY_FRAME_ACCEPTED, 10.0, gateway="gw0")
            after = await _call(bed, bed.alice, "readings", {"meter": METER})
            return before, latest, printed, after

    before, latest, printed, after = asyncio.run(scenario())
    assert [r["flagged"] for r in before] == [True] * STORED
    assert [r["flagged"] for r in latest["readings"]] == [True]
    # smtb display marks the latest (stored, flagged) reading
    assert [line.startswith(METER) for line in printed] == [False, True], printed
    assert printed[1].endswith("energy  5002.0 Wh  [time flagged]"), printed
    assert [r["flagged"] for r in after] == [True] * STORED + [False]
    assert float(after[-1]["values"][0]["value"]) != float(before[-1]["values"][0]["value"])


def test_display_revoked_at_the_ca_is_refused_after_the_next_han_crl_fetch(bed: Bed) -> None:
    """Revoking a display takes effect at its first HAN handshake after the next CRL fetch."""

    async def scenario() -> dict[str, Any]:
        async with bus_client(bed.endpoints) as client:
            sub = await gateway_events(client, "han.")
            assert (await _call(bed, bed.carol, "latest"))["consumer"] == "alice"
            revoke(bed.pki, bed.carol)
            # the gateway still holds the CRL it fetched at start: carol still gets in
            assert (await _call(bed, bed.carol, "latest"))["consumer"] == "alice"
            async with lmn_pusher(bed.lmn) as pusher:
                t_sim = T0 + CRL_EVERY_S + 1
                await feed(pusher, [wmbus_frame("39999999", access=1)], [t_sim], t_sim=t_sim)
                updated = await next_event(sub, topics.HAN_CRL_UPDATED, 10.0, gateway="gw0")
            with pytest.raises(WanConnectionError):
                await _call(bed, bed.carol, "latest")
            refused = await next_event(sub, topics.HAN_TLS_REFUSED, 10.0, reason="revoked")
            assert (await _call(bed, bed.alice, "latest"))["consumer"] == "alice"
            assert updated.body["t_sim"] >= T0 + CRL_EVERY_S
            return dict(refused.body)

    body = asyncio.run(scenario())
    assert body["gateway"] == "gw0"
    assert body["peer"].startswith("127.0.0.1:")
