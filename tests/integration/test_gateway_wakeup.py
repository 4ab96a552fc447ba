"""GWA wake-up as real processes: a signed UDP packet makes the gateway call the GWA over TLS.

A broker, the CA service and a gateway with ``wakeup_listen`` and no
``wan_listen`` (it listens for no administration at all) run as processes on
127.0.0.1. The GWA side is the library (:mod:`smtestbed.services.wan.gwa_wakeup`)
and ``smtb gwa wakeup``; certificates come from the CA code.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from smtestbed.proto import topics, wakeup
from smtestbed.services._runtime import pki as pki_files
from smtestbed.services._runtime import tls
from smtestbed.services._runtime.bus import Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import bus_client
from smtestbed.services.wan.gwa_wakeup import CallListener, send_datagram, send_wakeup

from tests.integration.gateway_helpers import next_event, smtb
from tests.integration.wakeup_helpers import (
    GWA_NAME,
    Bed,
    counters,
    events,
    issue_extra,
    log_entries,
    revoke_serial,
    running_bed,
)
from tests.integration.wan_helpers import GATEWAY_NAME, Identity, Pki

pytestmark = pytest.mark.timeout(120)
R = TypeVar("R")
SIG: dict[str, Identity] = {}


def _prepare(pki: Pki) -> None:
    """GWA signature certificates: good, revoked, and one from a foreign CA, same GWA name."""
    folder = pki.ca_dir.parent / "sig"
    SIG["good"] = issue_extra(pki, folder / "good", "gwa-sig", GWA_NAME)
    SIG["revoked"] = issue_extra(pki, folder / "revoked", "gwa-sig", GWA_NAME)
    SIG["foreign"] = issue_extra(pki, folder / "foreign", "gwa-sig", GWA_NAME, foreign=True)
    SIG["tls"] = pki.gwa  # the GWA's TLS certificate: not for signing wake-ups
    revoke_serial(pki, SIG["revoked"].serial)


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    """Broker, CA service and a gateway that only listens for wake-ups."""
    with running_bed(tmp_path_factory.mktemp("wakeup"), _prepare, wan_listen="") as running:
        yield running


def run(bed: Bed, scenario: Callable[[BusClient, Subscription], Awaitable[R]]) -> R:
    """Run ``scenario`` with a bus client and a live subscription to gateway.* and wan.*."""

    async def main() -> R:
        async with bus_client(bed.endpoints) as client:
            return await scenario(client, await events(client))

    return asyncio.run(main())


def gwa_context(bed: Bed) -> ssl.SSLContext:
    """Return the server context the GWA takes the gateway's call with."""
    gwa = bed.pki.gwa
    return tls.server_context(gwa.cert, gwa.key, [gwa.chain], [bed.pki.root], bed.pki.crls)


def packet(identity: Identity, **fields: Any) -> bytes:
    """Return a wake-up packet signed with ``identity``'s key (fields override the defaults)."""
    values: dict[str, Any] = {
        "gateway": GATEWAY_NAME,
        "gwa": GWA_NAME,
        "issued": time.time(),
        "nonce": os.urandom(wakeup.NONCE_BYTES),
        "key": pki_files.read_private_key(identity.key),
        "certificate": pki_files.read_certificates(identity.cert)[0],
    }
    return wakeup.sign(**{**values, **fields})


async def wake_and_read_log(bed: Bed, calls: CallListener) -> list[dict[str, Any]]:
    """Send a good wake-up, take the call and read the system log through it."""
    good = SIG["good"]
    send_wakeup(
        ("127.0.0.1", bed.wakeup_port),
        gateway=GATEWAY_NAME,
        gwa=GWA_NAME,
        key=pki_files.read_private_key(good.key),
        certificate=pki_files.read_certificates(good.cert)[0],
    )
    gwa = await calls.next_call(20.0)
    log = await gwa.call("read_log", {"log": "system", "limit": 100_000})
    gwa.writer.close()
    entries: list[dict[str, Any]] = log["entries"]
    return entries


def test_accepted_wakeup_makes_the_gateway_call_and_serve_the_gwa(bed: Bed) -> None:
    """A good packet: wan.wakeup_accepted; the gateway calls the GWA, which reads the log."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        async with CallListener(
            f"127.0.0.1:{bed.gwa_port}", gwa_context(bed), gateway=GATEWAY_NAME
        ) as calls:
            entries = await wake_and_read_log(bed, calls)
            accepted = await next_event(sub, topics.WAN_WAKEUP_ACCEPTED, 10.0)
            assert accepted.body["gwa"] == GWA_NAME
            assert accepted.body["calls"] == f"127.0.0.1:{bed.gwa_port}"
            kinds = [e["kind"] for e in entries]
            assert "wakeup_accepted" in kinds
            connected = [e for e in entries if e["kind"] == "wan_connected"]
            assert connected[-1]["fields"]["subject"] == GWA_NAME
            assert calls.refused == []
        totals = await counters(client)
        assert totals["wakeup_accepted"] >= 1
        assert totals["wan_refused"] == 0  # no TCP endpoint: nothing to refuse

    run(bed, scenario)


def _wrong_signature() -> bytes:
    data = bytearray(packet(SIG["good"]))
    data[-5] ^= 0x01  # inside the DER signature's last integer
    return bytes(data)


BAD_PACKETS: dict[str, tuple[str, Callable[[], bytes]]] = {
    "wrong_signature": ("bad_signature", _wrong_signature),
    "foreign_ca": ("untrusted", lambda: packet(SIG["foreign"])),
    "revoked": ("revoked", lambda: packet(SIG["revoked"])),
    "wrong_gateway": (
        "wrong_gateway",
        lambda: packet(SIG["good"], gateway="gw9.smgw.test.example"),
    ),
    "stale": ("stale", lambda: packet(SIG["good"], issued=time.time() - 3600)),
    "garbage": ("malformed", lambda: b"SMWU\x01\x00" + bytes(range(40))),
    "tls_cert": ("wrong_role", lambda: packet(SIG["tls"])),
}


@pytest.mark.parametrize("case", list(BAD_PACKETS))
def test_bad_wakeup_is_refused_with_its_reason_and_no_call(bed: Bed, case: str) -> None:
    """Each bad packet: wan.wakeup_refused with the reason, a system-log entry, no call out."""
    reason, make = BAD_PACKETS[case]

    async def scenario(client: BusClient, sub: Subscription) -> None:
        before = await counters(client)
        async with CallListener(
            f"127.0.0.1:{bed.gwa_port}", gwa_context(bed), gateway=GATEWAY_NAME
        ) as calls:
            send_datagram(("127.0.0.1", bed.wakeup_port), make())
            event = await next_event(sub, topics.WAN_WAKEUP_REFUSED, 10.0, reason=reason)
            assert event.body["gateway"] == "gw0"
            assert event.body["peer"].startswith("127.0.0.1:")
            # a good wake-up after it is served, and it is the only call the gateway made
            await wake_and_read_log(bed, calls)
            assert calls.calls.qsize() == 0
        after = await counters(client)
        assert after["wakeup_calls"] == before.get("wakeup_calls", 0) + 1
        assert after[f"wakeup_refused_{reason}"] == before.get(f"wakeup_refused_{reason}", 0) + 1
        refusals = await log_entries(client, "wakeup_refused")
        assert any(e["reason"] == reason for e in refusals)

    run(bed, scenario)


def test_replayed_packet_is_refused(bed: Bed) -> None:
    """The same packet twice: the first is served, the second refused as replayed."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        data = packet(SIG["good"])
        async with CallListener(
            f"127.0.0.1:{bed.gwa_port}", gwa_context(bed), gateway=GATEWAY_NAME
        ) as calls:
            send_datagram(("127.0.0.1", bed.wakeup_port), data)
            gwa = await calls.next_call(20.0)
            status = await gwa.call("status", {})
            assert status["gateway"] == "gw0"
            before = await counters(client)
            send_datagram(("127.0.0.1", bed.wakeup_port), data)
            event = await next_event(sub, topics.WAN_WAKEUP_REFUSED, 10.0, reason="replayed")
            assert event.body["gwa"] == GWA_NAME
            after = await counters(client)
            assert after["wakeup_calls"] == before["wakeup_calls"]
        assert any(e["reason"] == "replayed" for e in await log_entries(client, "wakeup_refused"))

    run(bed, scenario)


def test_smtb_gwa_wakeup_reads_the_system_log(bed: Bed) -> None:
    """smtb gwa wakeup sends the packet, takes the call and prints the system log."""
    gwa, good, pki = bed.pki.gwa, SIG["good"], bed.pki
    argv = ["gwa", "--cert", str(gwa.cert), "--key", str(gwa.key), "--chain", str(gwa.chain)]
    argv += ["--trust", str(pki.root), *(x for c in pki.crls for x in ("--crl", str(c)))]
    argv += ["wakeup", "--gateway", GATEWAY_NAME, "--to", f"127.0.0.1:{bed.wakeup_port}"]
    argv += ["--listen", f"127.0.0.1:{bed.gwa_port}"]
    argv += ["--sig-cert", str(good.cert), "--sig-key", str(good.key)]
    result = smtb(*argv, timeout=60.0)
    code, out = result.returncode, result.stdout + result.stderr
    assert code == 0, out
    assert '"log": "system"' in out
    assert "wakeup_accepted" in out


def test_cli_wakeup_without_a_call_fails_in_one_line(bed: Bed) -> None:
    """A wake-up to a gateway id that is not the gateway's: refused there, the CLI times out."""
    gwa, good, pki = bed.pki.gwa, SIG["good"], bed.pki
    argv = ["gwa", "--cert", str(gwa.cert), "--key", str(gwa.key), "--chain", str(gwa.chain)]
    argv += ["--trust", str(pki.root), *(x for c in pki.crls for x in ("--crl", str(c)))]
    argv += ["wakeup", "--gateway", "gw9.smgw.test.example", "--wait", "2"]
    argv += ["--to", f"127.0.0.1:{bed.wakeup_port}", "--listen", f"127.0.0.1:{bed.gwa_port}"]
    argv += ["--sig-cert", str(good.cert), "--sig-key", str(good.key)]
    result = smtb(*argv, timeout=60.0)
    code, out = result.returncode, result.stdout + result.stderr
    assert code == 1, out
    assert "did not call" in out
    assert "Traceback" not in out
