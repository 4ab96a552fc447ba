"""CLS proxy channels as real processes: CLS device -> gateway HAN endpoint -> EMT, mutual TLS.

A broker, an EMT and a gateway with ``han_listen`` and ``cls_channels`` run as
processes on 127.0.0.1. Certificates come from the CA code: the gateway's
``smgw-tls`` (HAN server and client towards the EMT), the EMT's ``emt-tls`` and
``han-cls`` certificates of CLS devices (one with a channel, one without, one
revoked, one from a foreign CA). The CLS side is the client of
``smtestbed.services.han.cls``; the EMT side is driven over the bus.
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
from smtestbed.services._runtime.bus import Endpoints, Event, Subscription
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    random_endpoints,
    service_process,
    wait_for_event,
)
from smtestbed.services.ca.access import Requester
from smtestbed.services.ca.authority import Authority
from smtestbed.services.han.cls import ChannelClosedError, ChannelRefusedError, ClsChannel

from tests.integration.gateway_helpers import (
    T0,
    configured_process,
    gateway_events,
    gw,
    next_event,
)
from tests.integration.wan_helpers import (
    GATEWAY_NAME,
    PASSPHRASE,
    Identity,
    Pki,
    client_context,
    issue,
    make_pki,
)

pytestmark = pytest.mark.timeout(90)
R = TypeVar("R")
EMT, EMT_NAME = "emt-1", "emt1.emt.test.example"
HEATPUMP = "heatpump.cls.han.test.example"  # has a channel to EMT
WALLBOX = "wallbox.cls.han.test.example"  # no channel configured
BOILER = "boiler.cls.han.test.example"  # has a channel, but its certificate is revoked
PV = "pv.cls.han.test.example"  # a foreign CA's certificate
MAX_FRAME = 4096
OPENED = (topics.GATEWAY_CLS_CHANNEL_OPENED, topics.EMT_CLS_CHANNEL_OPENED)
CLOSED = (topics.GATEWAY_CLS_CHANNEL_CLOSED, topics.EMT_CLS_CHANNEL_CLOSED)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bed:
    """Broker, EMT and gateway; the HAN port, the EMT port and the CLS identities."""

    endpoints: Endpoints
    pki: Pki
    han_port: int
    emt_port: int
    devices: dict[str, Identity]


def _cls_identities(root: Path, pki: Pki) -> dict[str, Identity]:
    folder = root / "cls"
    folder.mkdir()
    authority = Authority.open(pki.ca_dir, PASSPHRASE)
    try:
        out = {cn: issue(authority, folder, "han-cls", cn) for cn in (HEATPUMP, WALLBOX, BOILER)}
        authority.revoke(out[BOILER].serial, "keyCompromise", Requester(admin=True))
    finally:
        authority.close()
    foreign = Authority.open(root / "foreign-ca", b"other")
    try:
        out[PV] = issue(foreign, folder, "han-cls", PV)
    finally:
        foreign.close()
    return out


def _gateway_toml(root: Path, pki: Pki, han_port: int, emt_port: int) -> Path:
    gateway = pki.gateway
    route = {"emt": EMT, "url": f"tls://127.0.0.1:{emt_port}", "server_name": EMT_NAME}
    lines: dict[str, Any] = {
        "data_dir": str(root / "data"),
        "input_endpoint": f"tcp://127.0.0.1:{free_port()}",
        "synchronous": "NORMAL",
        "heartbeat_s": 0.2,
        "clock_mode": "stepped",
        "clock_start": T0,
        "han_listen": f"127.0.0.1:{han_port}",
        "han_cert": str(gateway.cert),
        "han_key": str(gateway.key),
        "han_chain": [str(gateway.chain)],
        "han_trust": [str(pki.root)],
        "han_crls": [str(p) for p in pki.crls],
        "wan_cert": str(gateway.cert),
        "wan_key": str(gateway.key),
        "wan_chain": [str(gateway.chain)],
        "wan_trust": [str(pki.root)],
        "wan_crls": [str(p) for p in pki.crls],
        "cls_channels": [{"cls": HEATPUMP, **route}, {"cls": BOILER, **route}],
        "cls_max_frame": MAX_FRAME,
    }
    path = root / "gateway.toml"
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in lines.items())
    path.write_text(f"[gateway]\n{body}\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def _emt_settings(root: Path, pki: Pki, port: int) -> dict[str, Any]:
    return {
        "name": EMT,
        "listen": f"127.0.0.1:{port}",
        "data_dir": str(root / "emt"),
        "cert": str(pki.emt.cert),
        "key": str(pki.emt.key),
        "chain": str(pki.emt.chain),
        "trust": str(pki.root),
        "crls": ",".join(str(p) for p in pki.crls),
        "heartbeat_s": 0.2,
    }


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    """Start broker, EMT and a gateway whose HAN endpoint relays CLS channels to the EMT."""
    root = tmp_path_factory.mktemp("cls")
    endpoints = random_endpoints()
    han_port, emt_port = free_port(), free_port()
    pki = make_pki(root, "http://127.0.0.1:9")
    devices = _cls_identities(root, pki)
    emt = _emt_settings(root, pki, emt_port)
    with (
        service_process("broker", endpoints, log_path=root / "broker.log"),
        service_process("wan.emt", endpoints, settings=emt, log_path=root / "emt.log"),
        configured_process(
            "gateway", endpoints, _gateway_toml(root, pki, han_port, emt_port), root / "gw.log"
        ),
    ):
        yield Bed(
            endpoints=endpoints, pki=pki, han_port=han_port, emt_port=emt_port, devices=devices
        )


Scenario = Callable[[BusClient, Subscription], Awaitable[R]]


def run(bed: Bed, scenario: Scenario[R]) -> R:
    """Run ``scenario`` with a bus client and a subscription the gateway is known to reach."""

    async def main() -> R:
        async with bus_client(bed.endpoints) as client:
            sub = await gateway_events(client, "han.", "emt.", "wan.")
            await _emt_reaches(bed, sub)
            return await scenario(client, sub)

    return asyncio.run(main())


async def _emt_reaches(bed: Bed, sub: Subscription, attempts: int = 30) -> None:
    """Open channels until the EMT's event of one arrives: its publisher has the subscription."""
    for _ in range(attempts):
        async with _channel(bed, HEATPUMP) as channel:
            try:
                await next_event(sub, topics.EMT_CLS_CHANNEL_OPENED, 0.3, channel=channel.number)
                return
            except TimeoutError:
                continue
    raise TimeoutError("no EMT event reached the subscription")


def _channel(bed: Bed, device: str, emt: str = EMT, port: int = 0) -> Any:
    ctx = client_context(bed.pki, bed.devices[device])
    name = EMT_NAME if port else GATEWAY_NAME
    return ClsChannel.open("127.0.0.1", port or bed.han_port, ctx, name, emt=emt, timeout=20.0)


async def _system_log(client: BusClient, kind: str) -> list[dict[str, Any]]:
    log = await gw(client, topics.GATEWAY_READ_LOG, {"limit": 100_000})
    return [e["fields"] for e in log["entries"] if e["kind"] == kind]


async def _pair(sub: Subscription, gateway_kind: str, emt_kind: str, channel: int) -> list[Event]:
    """Return the gateway's and the EMT's event of one channel, in whatever order they come."""
    found: dict[str, Event] = {}

    def keep(event: Event) -> bool:
        if event.kind in (gateway_kind, emt_kind) and event.body.get("channel") == channel:
            found.setdefault(event.kind, event)
        return len(found) == 2

    await wait_for_event(sub, keep, timeout=10.0)
    return [found[gateway_kind], found[emt_kind]]


async def _received(sub: Subscription, channel: int) -> bytes:
    event = await next_event(sub, topics.EMT_CLS_RECEIVED, 10.0, channel=channel)
    assert event.body["gateway"] == GATEWAY_NAME
    return bytes.fromhex(event.body["data_hex"])


def test_cls_device_and_emt_exchange_byte_exact_frames_through_the_gateway(bed: Bed) -> None:
    """Device -> EMT and EMT -> device frames arrive unchanged; events count frames and bytes."""
    status = bytes(range(256)) * 4 + b"\x00\x00\x00\x04tail"  # a length-like prefix inside
    command = b"\x01SWITCH OFF\xff\x00\x1b\x1b\x1b\x1b"
    ack = b"ACK " + command

    async def scenario(client: BusClient, sub: Subscription) -> None:
        async with _channel(bed, HEATPUMP) as channel:
            number = channel.number
            opened, emt_opened = await _pair(sub, *OPENED, number)
            await channel.send(status)
            assert await _received(sub, number) == status
            sent = await client.request(
                "emt", topics.EMT_CLS_SEND, {"cls": HEATPUMP, "data_hex": command.hex()}, timeout=10
            )
            assert await channel.receive(10.0) == command
            await channel.send(ack)
            assert await _received(sub, number) == ack
        closed, emt_closed = await _pair(sub, *CLOSED, number)
        assert channel.emt == EMT
        assert (opened.body["emt"], opened.body["cls"]) == (EMT, HEATPUMP)
        assert emt_opened.body["cls"] == HEATPUMP
        assert emt_opened.body["gateway"] == GATEWAY_NAME
        assert sent == {"cls": HEATPUMP, "gateway": GATEWAY_NAME, "sent": len(command)}
        up, down = len(status) + len(ack), len(command)
        counts = {k: closed.body[k] for k in ("frames_up", "bytes_up", "frames_down", "bytes_down")}
        assert counts == {"frames_up": 2, "bytes_up": up, "frames_down": 1, "bytes_down": down}
        assert closed.body["reason"] == "cls_closed"
        assert (emt_closed.body["bytes_in"], emt_closed.body["bytes_out"]) == (up, down)
        entries = await _system_log(client, "cls_channel_closed")
        assert any(e["channel"] == number and e["bytes_up"] == up for e in entries)

    run(bed, scenario)


@pytest.mark.parametrize(
    ("device", "emt", "field", "reason"),
    [(WALLBOX, EMT, "cls", "no_channel"), (HEATPUMP, "emt-2", "emt", "wrong_target")],
)
def test_channel_request_without_a_configured_channel_is_refused_with_the_reason(
    bed: Bed, device: str, emt: str, field: str, reason: str
) -> None:
    """No channel for the device, or another EMT: error naming the field, event, system log."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        with pytest.raises(ChannelRefusedError) as refused:
            async with _channel(bed, device, emt):
                pass
        assert refused.value.field == field
        event = await next_event(sub, topics.HAN_ACCESS_REFUSED, 10.0, subject=device)
        assert (event.body["reason"], event.body["field"], event.body["role"]) == (
            reason,
            field,
            "CLS",
        )
        entries = await _system_log(client, "han_access_refused")
        assert any(e["subject"] == device and e["reason"] == reason for e in entries), entries

    run(bed, scenario)


@pytest.mark.parametrize(("device", "reason"), [(BOILER, "revoked"), (PV, "unknown_ca")])
def test_cls_device_with_a_revoked_or_foreign_certificate_is_refused_at_the_handshake(
    bed: Bed, device: str, reason: str
) -> None:
    """A revoked CLS certificate or a foreign CA's: no channel, han.tls_refused names why."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        with pytest.raises(ChannelClosedError):
            async with _channel(bed, device):
                pass
        event = await next_event(sub, topics.HAN_TLS_REFUSED, 10.0, reason=reason)
        assert event.body["gateway"] == "gw0"
        entries = await _system_log(client, "han_tls_refused")
        assert any(e["reason"] == reason for e in entries)

    run(bed, scenario)


def test_cls_device_cannot_reach_the_emt_directly(bed: Bed) -> None:
    """The EMT admits only gateway certificates: a CLS device connecting itself is refused."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        with pytest.raises(ChannelClosedError):
            async with _channel(bed, HEATPUMP, port=bed.emt_port):
                pass
        event = await next_event(sub, topics.WAN_TLS_REFUSED, 10.0, emt=EMT)
        assert event.body["reason"] == "wrong_role"
        assert "'CLS'" in event.body["message"]

    run(bed, scenario)


def test_a_frame_over_the_limit_ends_the_channel_without_reaching_the_emt(bed: Bed) -> None:
    """A frame over cls_max_frame closes the channel; nothing of it was relayed."""

    async def scenario(client: BusClient, sub: Subscription) -> None:
        async with _channel(bed, HEATPUMP) as channel:
            await channel.send(b"\x55" * (MAX_FRAME + 1))
            with pytest.raises(ChannelClosedError):
                await channel.receive(10.0)
        number = channel.number
        closed, emt_closed = await _pair(sub, *CLOSED, number)
        assert closed.body["reason"] == "cls_frame_too_large"
        assert (closed.body["frames_up"], closed.body["bytes_up"]) == (0, 0)
        assert emt_closed.body["bytes_in"] == 0

    run(bed, scenario)


def test_cls_cli_opens_the_channel_and_its_frames_reach_the_emt(bed: Bed) -> None:
    """`smtb cls connect --send HEX` (child process): the EMT receives the bytes unchanged."""
    device, pki = bed.devices[HEATPUMP], bed.pki
    args = [
        "connect", "--gateway", f"127.0.0.1:{bed.han_port}", "--name", GATEWAY_NAME,
        "--emt", EMT, "--cert", str(device.cert), "--key", str(device.key),
        "--chain", str(device.chain), "--trust", str(pki.root),
        *(x for crl in pki.crls for x in ("--crl", str(crl))),
        "--send", "0a0b0c00ff",
    ]  # fmt: skip
    code = "from smtestbed.services.han.cls import group; group(prog_name='smtb cls')"

    async def scenario(client: BusClient, sub: Subscription) -> tuple[list[str], bytes]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30.0)
        assert proc.returncode == 0, err.decode()
        lines = out.decode().splitlines()
        number = int(lines[0].split()[1])
        return lines, await _received(sub, number)

    lines, data = run(bed, scenario)
    assert lines[0].endswith(f"to {EMT}")
    assert data == bytes.fromhex("0a0b0c00ff")
