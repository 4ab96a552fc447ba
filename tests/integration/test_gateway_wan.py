"""The gateway's WAN endpoint as a real process: mutual TLS, refusals, CRLs, GWA administration.

A broker, the CA service (HTTP, serving CRLs) and a gateway with ``wan_listen``
run as processes on 127.0.0.1. Certificates come from the CA code; the clients
are ``openssl s_client`` and the GWA client library over real TLS.
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
from smtestbed.services.wan.gwa import GwaClient, WanConnectionError, WanRequestError

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
    Identity,
    Pki,
    client_context,
    make_pki,
    revoke,
    s_client,
)

pytestmark = pytest.mark.timeout(90)
R = TypeVar("R")
CRL_EVERY_S = 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Wan:
    """A broker, a CA service and a gateway whose WAN endpoint is at ``port``."""

    endpoints: Endpoints
    pki: Pki
    port: int
    lmn: str


def _gateway_toml(root: Path, pki: Pki, port: int, lmn: str, ca_url: str) -> Path:
    gateway = pki.gateway
    lines = {
        "data_dir": str(root / "data"),
        "input_endpoint": lmn,
        "synchronous": "NORMAL",
        "heartbeat_s": 0.2,
        "clock_mode": "stepped",
        "clock_start": T0,
        "wan_listen": f"127.0.0.1:{port}",
        "wan_cert": str(gateway.cert),
        "wan_key": str(gateway.key),
        "wan_chain": [str(gateway.chain)],
        "wan_trust": [str(pki.root)],
        "wan_crl_urls": [f"{ca_url}/crl/{name}.crl" for name in ("root", "emt")],
        "wan_crl_every_s": CRL_EVERY_S,
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
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wan]:
    """Start broker, CA service and gateway with a WAN endpoint."""
    root = tmp_path_factory.mktemp("wan")
    endpoints = random_endpoints()
    ca_port, wan_port = free_port(), free_port()
    ca_url = f"http://127.0.0.1:{ca_port}"
    pki = make_pki(root, ca_url)
    lmn = f"tcp://127.0.0.1:{free_port()}"
    ca_settings = {"data_dir": str(pki.ca_dir), "create": "false", "port": str(ca_port)}
    with (
        service_process("broker", endpoints, log_path=root / "broker.log"),
        service_process("ca", endpoints, settings=ca_settings, log_path=root / "ca.log"),
        configured_process(
            "gateway",
            endpoints,
            _gateway_toml(root, pki, wan_port, lmn, ca_url),
            root / "gw.log",
        ),
    ):
        yield Wan(endpoints=endpoints, pki=pki, port=wan_port, lmn=lmn)


Scenario = Callable[[BusClient, Subscription], Awaitable[R]]


def run(bed: Wan, scenario: Scenario[R]) -> R:
    """Run ``scenario`` with a bus client and a subscription that reaches the gateway."""

    async def main() -> R:
        async with bus_client(bed.endpoints) as client:
            return await scenario(client, await gateway_events(client, "wan."))

    return asyncio.run(main())


async def _refusal(
    bed: Wan, sub: Subscription, identity: Identity | None, reason: str
) -> dict[str, Any]:
    code, out = await s_client(bed.port, bed.pki, identity)
    assert code != 0, out
    assert '"field":"frame"' not in out
    # matched by reason: a stray connection to the port may be refused meanwhile (timeout)
    event = await next_event(sub, topics.WAN_TLS_REFUSED, 10.0, reason=reason)
    return dict(event.body)


def test_openssl_client_with_valid_certificate_completes_the_handshake(bed: Wan) -> None:
    """s_client -tls1_2 with the GWA certificate gets through TLS to the gateway's protocol."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        code, out = await s_client(bed.port, bed.pki, bed.pki.gwa)
        assert "Cipher is ECDHE-ECDSA-AES" in out
        assert "TLSv1.2" in out
        assert "Verify return code: 0 (ok)" in out
        # the 2-byte "{}" frame it sent was answered by the WAN protocol, so TLS held
        assert '"field":"frame"' in out, out
        assert code == 0

    run(bed, scenario)


@pytest.mark.parametrize(
    ("who", "reason"),
    [(None, "no_certificate"), ("revoked", "revoked"), ("foreign", "unknown_ca")],
)
def test_openssl_client_is_refused_with_the_reason_as_event(
    bed: Wan, who: str | None, reason: str
) -> None:
    """No certificate, a revoked one or a foreign CA's: refused, wan.tls_refused names why."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        identity = getattr(bed.pki, who) if who else None
        body = await _refusal(bed, sub, identity, reason)
        assert body["peer"].startswith("127.0.0.1:")
        assert body["gateway"] == "gw0"
        status = await gw(client, topics.GATEWAY_STATUS)
        assert status["gateway"] == "gw0"
        log = await gw(client, topics.GATEWAY_READ_LOG, {"limit": 100_000})
        entries = [e for e in log["entries"] if e["kind"] == "tls_refused"]
        assert any(e["fields"]["reason"] == reason for e in entries)

    run(bed, scenario)


def test_gwa_adds_a_meter_and_reads_the_system_log_over_tls(bed: Wan) -> None:
    """A GWA-role client registers a meter over TLS; the bus API sees it and the log names it."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        ctx = client_context(bed.pki, bed.pki.gwa)
        async with GwaClient.connect("127.0.0.1", bed.port, ctx, GATEWAY_NAME) as gwa:
            assert gwa.peer.common_name == GATEWAY_NAME
            assert gwa.peer.role == "SMGW"
            added = await gwa.call(
                "add_meter", {"meter": "31000001", "manufacturer": "EMH", "key": KEY.hex()}
            )
            assert added["meter"] == "31000001"
            tafs = await gwa.call("assign_taf", {"meter": "31000001", "tafs": ["taf1", "taf6"]})
            assert tafs["tafs"] == ["taf1", "taf6"]
            log = await gwa.call("read_log", {"log": "system", "limit": 100_000})
            status = await gwa.call("status")
        meters = await gw(client, topics.GATEWAY_LIST_METERS)
        assert "31000001" in [m["meter"] for m in meters]
        added_entries = [e for e in log["entries"] if e["kind"] == "meter_added"]
        assert any(e["fields"].get("by") == "wan:gwa1.emt.test.example" for e in added_entries)
        assert status["meters"] >= 1
        assert status["gateway"] == "gw0"

    run(bed, scenario)


def test_gwa_bad_request_is_answered_naming_the_field(bed: Wan) -> None:
    """A bad parameter or unknown op over the WAN is an error naming the field, nothing changes."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        ctx = client_context(bed.pki, bed.pki.gwa)
        async with GwaClient.connect("127.0.0.1", bed.port, ctx, GATEWAY_NAME) as gwa:
            with pytest.raises(WanRequestError) as bad_key:
                await gwa.call(
                    "add_meter", {"meter": "31000002", "manufacturer": "EMH", "key": "zz"}
                )
            with pytest.raises(WanRequestError) as bad_op:
                await gwa.call("format_disk")
            with pytest.raises(WanRequestError) as bad_bundle:
                await gwa.call("push_update", {"bundle": "not base64!"})
            meters = await gwa.call("list_meters")
        assert bad_key.value.field == "key"
        assert bad_op.value.field == "op"
        assert bad_bundle.value.field == "bundle"
        assert "31000002" not in [m["meter"] for m in meters]

    run(bed, scenario)


def test_emt_certificate_is_refused_for_administration_naming_the_role(bed: Wan) -> None:
    """An EMT's valid certificate passes TLS but may not administer: error names role EMT."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        ctx = client_context(bed.pki, bed.pki.emt)
        async with GwaClient.connect("127.0.0.1", bed.port, ctx, GATEWAY_NAME) as emt:
            with pytest.raises(WanRequestError) as refused:
                await emt.call(
                    "add_meter", {"meter": "31000003", "manufacturer": "EMH", "key": KEY.hex()}
                )
        assert refused.value.field == "role"
        assert "role EMT" in str(refused.value)
        event = await next_event(sub, topics.WAN_ADMIN_REFUSED, 10.0, op="add_meter")
        assert event.body["role"] == "EMT"
        assert event.body["subject"] == "emt1.emt.test.example"
        meters = await gw(client, topics.GATEWAY_LIST_METERS)
        assert "31000003" not in [m["meter"] for m in meters]

    run(bed, scenario)


def test_gwa_cli_prints_status_and_one_line_errors(bed: Wan) -> None:
    """`smtb gwa status` (group in a child process) prints status; EMT gets one error line."""
    pki = bed.pki

    def args(identity: Identity) -> list[str]:
        return [
            "--gateway", f"127.0.0.1:{bed.port}", "--name", GATEWAY_NAME,
            "--cert", str(identity.cert), "--key", str(identity.key),
            "--chain", str(identity.chain), "--trust", str(pki.root),
            *(x for crl in pki.crls for x in ("--crl", str(crl))),
        ]  # fmt: skip

    ok = gwa_cli(*args(pki.gwa), "status")
    assert ok.returncode == 0, ok.stderr
    assert '"gateway": "gw0"' in ok.stdout
    refused = gwa_cli(*args(pki.emt), "add-meter", "31000004", "--key", KEY.hex())
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1
    assert "role EMT" in refused.stderr


def test_revoked_gwa_is_refused_after_the_gateway_fetched_the_next_crl(bed: Wan) -> None:
    """Revoking the GWA at the CA takes effect at the first handshake after the next CRL fetch."""
    pki = bed.pki
    gwa2 = _issue_second_gwa(bed)

    async def connect_and_status() -> Any:
        ctx = client_context(pki, gwa2)
        async with GwaClient.connect("127.0.0.1", bed.port, ctx, GATEWAY_NAME) as gwa:
            return await gwa.call("status")

    async def scenario(client: BusClient, sub: Subscription) -> None:
        await _advance(bed, sub, T0 + 1 * CRL_EVERY_S + 1)  # the CRL with gwa2 unrevoked
        assert (await connect_and_status())["gateway"] == "gw0"
        revoke(pki, gwa2)
        # the gateway still holds the old CRL: the revoked GWA still gets in
        assert (await connect_and_status())["gateway"] == "gw0"
        await _advance(bed, sub, T0 + 2 * CRL_EVERY_S + 2)
        with pytest.raises(WanConnectionError):
            await connect_and_status()
        event = await next_event(sub, topics.WAN_TLS_REFUSED, 10.0, reason="revoked")
        assert event.body["gateway"] == "gw0"

    run(bed, scenario)


def gwa_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``smtb gwa`` command group in a child process."""
    code = "from smtestbed.services.wan.gwa_cli import group; group(prog_name='smtb gwa')"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=30
    )


def _issue_second_gwa(bed: Wan) -> Identity:
    from smtestbed.services.ca.authority import Authority

    from tests.integration.wan_helpers import PASSPHRASE, issue

    authority = Authority.open(bed.pki.ca_dir, PASSPHRASE)
    try:
        return issue(authority, bed.pki.ca_dir.parent, "gwa-tls", "gwa2.emt.test.example")
    finally:
        authority.close()


async def _advance(bed: Wan, sub: Subscription, t_sim: float) -> None:
    """Move the gateway's stepped clock to ``t_sim`` with an LMN batch; wait for its CRL fetch."""
    async with lmn_pusher(bed.lmn) as pusher:
        await feed(pusher, [wmbus_frame("39999999", access=1)], [t_sim], t_sim=t_sim)
        await next_event(sub, topics.WAN_CRL_UPDATED, 10.0)
