"""A relay of the I/O board in a wired M-Bus TCP line, with real processes and sockets.

The sensor farm serves wired meters on M-Bus/TCP; ``smtb iohw run`` relays that line from
its own listen address while relay ``wired-line`` is closed. Masters on the far side are
pyMeterBus over pyserial (an outside tool) and the gateway's wired line poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.errors import RemoteError
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    service_process,
    wait_for_event,
    wait_until,
)

from tests.integration.gateway_helpers import configured_process, gw, write_registry

meterbus = pytest.importorskip("meterbus", reason="pyMeterBus (test extra) is not installed")
serial = pytest.importorskip("serial", reason="pyserial is not installed")

pytestmark = pytest.mark.timeout(90)

# scale 0: the counters hold still, so every readout can be compared exactly
WIRED_CSV = """\
id,manufacturer,kind,interface,primary_address,scale,energy_import_wh
12345678,EMH,electricity,wired_mbus,5,0,12345
23456789,ESY,electricity,wired_mbus,6,0,777
"""
FARM = {"clock_mode": "realtime", "window_s": 0.5, "heartbeat_s": 0.2, "seed": 3}


@dataclass(frozen=True, slots=True, kw_only=True)
class Bench:
    """Broker, sensor farm and I/O board processes; masters connect to ``board``."""

    endpoints: Endpoints
    farm_port: int
    board_port: int
    tmp: Path


def iohw_config(path: Path, *, listen: int, target: int, closed: bool = True) -> Path:
    """Write an ``[iohw]`` config with relay 1 in the wired line (named ``wired-line``)."""
    path.write_text(
        "[iohw]\n"
        "heartbeat_s = 0.2\n"
        "wiring = [\n"
        f'  {{kind = "line", name = "wired-line", relay = 1, closed = {str(closed).lower()}, '
        f'listen = "127.0.0.1:{listen}", target = "127.0.0.1:{target}"}},\n'
        "]\n"
    )
    return path


@contextlib.contextmanager
def bench(endpoints: Endpoints, tmp: Path) -> Iterator[Bench]:
    """Run the sensor farm with two wired meters and the board in front of their line."""
    population = tmp / "wired.csv"
    population.write_text(WIRED_CSV)
    farm_port, board_port = free_port(), free_port()
    farm = {
        **FARM,
        "population_file": population,
        "mbus_tcp": f"127.0.0.1:{farm_port}",
        "output": f"tcp://127.0.0.1:{free_port()}",
    }
    config = iohw_config(tmp / "iohw.toml", listen=board_port, target=farm_port)
    with (
        service_process("sensorfarm", endpoints, settings=farm, log_path=tmp / "farm.log"),
        configured_process("iohw", endpoints, config, tmp / "iohw.log"),
    ):
        yield Bench(endpoints=endpoints, farm_port=farm_port, board_port=board_port, tmp=tmp)


def read_meter(ser: Any, address: int) -> Any:
    """SND_NKE then REQ_UD2 with pyMeterBus; return the telegram, or None on silence."""
    meterbus.send_ping_frame(ser, address)
    if meterbus.recv_frame(ser, 1) != b"\xe5":
        return None
    meterbus.send_request_frame(ser, address)
    frame = meterbus.recv_frame(ser, 1)
    return meterbus.load(frame) if frame else None


async def set_relay(client: BusClient, relay: Any, closed: bool) -> Any:
    """Switch a relay of the board through the bus; return the reply."""
    params = {"relay": relay, "closed": closed}
    return await client.request("iohw", topics.IOHW_RELAY, params, timeout=5.0)


def test_open_relay_cuts_the_line_and_closing_it_brings_the_meters_back(
    endpoints: Endpoints, broker: Any, tmp_path: Path
) -> None:
    """Closed: REQ_UD2 is answered through the board; open: silence; closed again: answers."""
    with bench(endpoints, tmp_path) as b:
        ser = serial.serial_for_url(f"socket://127.0.0.1:{b.board_port}", timeout=1)

        async def switch(closed: bool) -> tuple[Any, Any]:
            async with bus_client(endpoints) as client:
                sub = client.subscribe([topics.IOHW_CHANGED])
                await sub.wait_connected()
                reply = await set_relay(client, "wired-line", closed)
                event = await wait_for_event(sub, lambda e: e.body["relay"] == 1)
                return reply, event.body

        try:
            before = read_meter(ser, 5)
            opened, opened_event = asyncio.run(switch(False))
            silent = read_meter(ser, 5)
            closed, closed_event = asyncio.run(switch(True))
            after = read_meter(ser, 5)
            other = read_meter(ser, 6)
        finally:
            ser.close()
    assert before.secondary_address.startswith("12345678")
    assert float(before.records[0].value) == 12345.0
    assert (opened["closed"], opened["old"], opened["changed"]) == (False, True, True)
    assert (opened_event["old"], opened_event["new"], opened_event["name"]) == (
        True,
        False,
        "wired-line",
    )
    assert silent is None
    assert (closed["closed"], closed_event["new"]) == (True, True)
    assert float(after.records[0].value) == 12345.0
    assert float(other.records[0].value) == 777.0


def test_a_bad_relay_request_names_the_field_and_changes_nothing(
    endpoints: Endpoints, broker: Any, tmp_path: Path
) -> None:
    """Unknown relay name, relay 17 and closed="yes" are refused naming the field; the line
    still passes; each refusal is an iohw.request_refused event."""

    async def scenario() -> tuple[list[RemoteError], list[dict[str, Any]], dict[str, Any]]:
        async with bus_client(endpoints) as client:
            sub = client.subscribe([topics.IOHW_REQUEST_REFUSED])
            await sub.wait_connected()
            errors = []
            for relay, closed in (("nowhere", False), (17, False), ("wired-line", "yes")):
                with pytest.raises(RemoteError) as info:
                    await set_relay(client, relay, closed)  # type: ignore[arg-type]
                errors.append(info.value)
            events = [(await wait_for_event(sub, lambda e: True)).body for _ in errors]
            state = await client.request("iohw", topics.IOHW_RELAY, {"relay": 1})
            return errors, events, state

    with bench(endpoints, tmp_path) as b:
        errors, events, state = asyncio.run(scenario())
        ser = serial.serial_for_url(f"socket://127.0.0.1:{b.board_port}", timeout=1)
        try:
            telegram = read_meter(ser, 5)
        finally:
            ser.close()
    assert [str(e).split(":")[0] for e in errors] == ["relay", "relay", "closed"]
    assert {e.code for e in errors} == {"RequestError"}
    assert [e["field"] for e in events] == ["relay", "relay", "closed"]
    assert state["closed"] is True
    assert float(telegram.records[0].value) == 12345.0


def gateway_config(path: Path, data_dir: Path, registry: Path, port: int) -> Path:
    """Write a gateway config polling meter 12345678 at primary 5 through the board."""
    path.write_text(
        "[gateway]\n"
        f'data_dir = "{data_dir}"\n'
        f'input_endpoint = "tcp://127.0.0.1:{free_port()}"\n'
        f'registry_file = "{registry}"\n'
        'synchronous = "NORMAL"\n'
        "heartbeat_s = 0.2\n"
        "[[gateway.wired_lines]]\n"
        'instance = "gw0"\n'
        f'url = "tcp://127.0.0.1:{port}"\n'
        "interval_s = 0.5\n"
        "reply_timeout_s = 0.3\n"
        'meters = [{meter = "12345678", primary = 5}]\n'
    )
    return path


def test_gateway_reports_the_meter_missing_while_the_relay_is_open(
    endpoints: Endpoints, broker: Any, tmp_path: Path
) -> None:
    """The gateway's poller reads the meter through the board; open relay: gateway.meter_missing;
    closed again: new readings are stored."""
    registry = tmp_path / "registry.csv"
    row = {"gateway": "gw0", "meter": "12345678", "manufacturer": "EMH", "key_hex": ""}
    write_registry(registry, [{**row, "security": "0", "tafs": "", "consumer": "", "emt": ""}])

    async def readings(client: BusClient) -> list[dict[str, Any]]:
        params = {"gateway": "gw0", "meter": "12345678"}
        rows: list[dict[str, Any]] = await gw(client, topics.GATEWAY_READINGS, params)
        return rows

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any], int, int]:
        async with bus_client(endpoints) as client:
            sub = client.subscribe([topics.GATEWAY_METER_MISSING])
            await sub.wait_connected()
            first = await wait_until(functools.partial(readings, client), timeout=20.0)
            await set_relay(client, "wired-line", False)
            missing = await wait_for_event(sub, lambda e: e.body["gateway"] == "gw0", timeout=20)
            at_close = len(await readings(client))
            await set_relay(client, 1, True)

            async def more() -> bool:
                return len(await readings(client)) > at_close

            await wait_until(more, timeout=20.0)
            return first, missing.body, at_close, len(await readings(client))

    with bench(endpoints, tmp_path) as b:
        config = gateway_config(tmp_path / "gw.toml", tmp_path / "gw", registry, b.board_port)
        with configured_process("gateway", endpoints, config, tmp_path / "gateway.log"):
            first, missing, at_close, final = asyncio.run(scenario())
    values = {v["quantity"]: v["value"] for v in first[0]["values"]}
    assert 12345.0 in values.values()
    assert missing["meter"] == "12345678"
    assert missing["line"] == f"tcp://127.0.0.1:{b.board_port}"
    assert final > at_close
