"""Wired buses of the I/O board with real processes: UART on a pty, RS-485 over TCP, I2C, SPI.

The far ends are real: ``smtb sensorfarm serve-mbus`` serves an M-Bus meter on a pseudo-terminal
(8N1) and one on TCP; the metering IC on I2C address 0x38 and SPI chip select 1 reads its
registers from meter 41000001 of a running sensor farm (scale 0: its counter holds still).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.client import BusClient
from smtestbed.services._runtime.errors import PeerError, RemoteError
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    random_endpoints,
    service_process,
    wait_until,
)

from tests.integration.gateway_helpers import configured_process

meterbus = pytest.importorskip("meterbus", reason="pyMeterBus (test extra) is not installed")

pytestmark = pytest.mark.timeout(90)

METER = "41000001"
POPULATION = f"""\
id,manufacturer,kind,interface,security,scale,energy_import_wh,energy_export_wh
{METER},EMH,electricity,wireless,0,0,123456.75,42.5
"""
REQ_UD2_1 = "105b015c16"  # REQ_UD2 to primary address 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Bench:
    """Broker, sensor farm, two serve-mbus lines and the I/O board."""

    endpoints: Endpoints
    pty_meter: str  # secondary address of the meter on the pty
    tcp_meter: str


@contextlib.contextmanager
def serve_mbus(*args: str) -> Iterator[tuple[str, str]]:
    """Run ``smtb sensorfarm serve-mbus ARGS``; yield (where, secondary address of meter 1)."""
    argv = [sys.executable, "-m", "smtestbed.services.sensorfarm.cli_mbus", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().split()
        serving = proc.stdout.readline().split()
        assert serving[:1] == ["serving"], serving
        yield serving[4], first[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def iohw_toml(pty: str, tcp_url: str) -> str:
    """Return the board's config: two ports, the metering IC on I2C and SPI, an EEPROM."""
    return (
        "[iohw]\n"
        "heartbeat_s = 0.2\n"
        "uarts = [\n"
        f'  {{port = "meter-pty", url = "{pty}", baudrate = 2400, parity = "N"}},\n'
        f'  {{port = "rs485", url = "{tcp_url}", mode = "rs485", inter_char_s = 0.05}},\n'
        "]\n"
        f'i2c = [{{address = 0x38, device = "metering_ic", meter = "{METER}"}}, '
        '{address = 0x50, device = "eeprom"}]\n'
        f'spi = [{{cs = 1, device = "metering_ic", meter = "{METER}"}}]\n'
    )


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """Start everything once for the module."""
    tmp = tmp_path_factory.mktemp("iohw_buses")
    endpoints = random_endpoints()
    (tmp / "meters.csv").write_text(POPULATION)
    farm = {
        "population_file": tmp / "meters.csv",
        "output": f"tcp://127.0.0.1:{free_port()}",
        "heartbeat_s": 0.2,
    }
    with (
        serve_mbus("--pty", "--meters", "1", "--seed", "3") as (pty, pty_meter),
        serve_mbus("--tcp", f"127.0.0.1:{free_port()}", "--meters", "1", "--seed", "4") as (
            url,
            tcp_meter,
        ),
        service_process("broker", endpoints, log_path=tmp / "broker.log"),
        service_process("sensorfarm", endpoints, settings=farm, log_path=tmp / "farm.log"),
    ):
        (tmp / "iohw.toml").write_text(iohw_toml(pty, url))
        with configured_process("iohw", endpoints, tmp / "iohw.toml", tmp / "iohw.log"):
            asyncio.run(farm_answers(endpoints))
            yield Bench(endpoints=endpoints, pty_meter=pty_meter, tcp_meter=tcp_meter)


async def farm_answers(endpoints: Endpoints) -> None:
    """Wait until the farm answers (its first window compiles the kernels when not cached)."""
    async with bus_client(endpoints) as client:

        async def answers() -> bool:
            try:
                await client.request("sensorfarm", topics.METER_GET, {"meter": METER})
            except PeerError:
                return False
            return True

        await wait_until(answers, timeout=60.0, interval=0.2)


async def iohw(client: BusClient, method: str, params: Any) -> Any:
    """Send a request to the board."""
    return await client.request("iohw", method, params, timeout=8.0)


def run(bench: Bench, *calls: tuple[str, Any]) -> list[Any]:
    """Send the requests in order; return each reply or the RemoteError it raised."""

    async def scenario() -> list[Any]:
        out: list[Any] = []
        async with bus_client(bench.endpoints) as client:
            for method, params in calls:
                try:
                    out.append(await iohw(client, method, params))
                except RemoteError as exc:
                    out.append(exc)
        return out

    return asyncio.run(scenario())


def test_uart_transaction_on_a_pty_reads_the_meters_telegram(bench: Bench) -> None:
    """REQ_UD2 written to the pty comes back as the meter's RSP_UD, read until the line rests."""
    (reply,) = run(bench, (topics.IOHW_UART, {"port": "meter-pty", "data": REQ_UD2_1}))
    telegram = meterbus.load(bytes.fromhex(reply["data"]))
    assert telegram.secondary_address == bench.pty_meter
    assert (reply["sent"], reply["timed_out"]) == (5, False)
    assert reply["bytes"] == len(bytes.fromhex(reply["data"]))


def test_rs485_transaction_over_tcp_and_silence_for_an_absent_address(bench: Bench) -> None:
    """The meter at address 1 answers; address 7 stays silent: empty answer, timed_out."""
    absent = "105b076216"
    answer, silent = run(
        bench,
        (topics.IOHW_UART, {"port": "rs485", "data": REQ_UD2_1}),
        (topics.IOHW_UART, {"port": "rs485", "data": absent, "timeout_s": 0.3}),
    )
    assert meterbus.load(bytes.fromhex(answer["data"])).secondary_address == bench.tcp_meter
    assert (silent["data"], silent["timed_out"]) == ("", True)


def test_metering_ic_on_i2c_and_spi_reads_the_meters_counters(bench: Bench) -> None:
    """Energy import/export registers equal the farm meter's counters (Wh, integer part)."""
    i2c_regs, spi = run(
        bench,
        (topics.IOHW_I2C_READ, {"address": 0x38, "register": 0x00, "length": 0x16}),
        (topics.IOHW_SPI_TRANSFER, {"cs": 1, "data": "84" + "00" * 8}),
    )
    regs = bytes.fromhex(i2c_regs["data"])
    part, status, _config, _pad, energy_in, energy_out, power, vrms, irms = struct.unpack(
        ">BBBBIIiHI", regs
    )
    assert part == 0x5A
    assert (energy_in, energy_out) == (123456, 42)
    assert (power, status) == (0, 0b11)  # scale 0: no load; the meter sends
    assert (vrms, irms) == (23000, 0)
    miso = bytes.fromhex(spi["data"])
    assert miso[0] == 0
    assert struct.unpack(">II", miso[1:]) == (123456, 42)


def test_i2c_nack_for_an_absent_address_and_eeprom_write_then_read(bench: Bench) -> None:
    """0x51 is not acknowledged (error on address); the EEPROM keeps what was written;
    the metering IC's energy register is read-only; a free chip select reads 0xFF."""
    nack, written, back, read_only, floating = run(
        bench,
        (topics.IOHW_I2C_READ, {"address": 0x51, "register": 0}),
        (topics.IOHW_I2C_WRITE, {"address": 0x50, "register": 0x10, "data": "c0ffee"}),
        (topics.IOHW_I2C_READ, {"address": 0x50, "register": 0x0F, "length": 5}),
        (topics.IOHW_I2C_WRITE, {"address": 0x38, "register": 0x04, "data": "00"}),
        (topics.IOHW_SPI_TRANSFER, {"cs": 2, "data": "8000"}),
    )
    assert isinstance(nack, RemoteError)
    assert str(nack).startswith("address: ")
    assert "NACK" in str(nack)
    assert written["written"] == 3
    assert back["data"] == "ffc0ffeeff"
    assert isinstance(read_only, RemoteError)
    assert str(read_only).startswith("register: ")
    assert floating["data"] == "ffff"


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        (topics.IOHW_UART, {"port": "nowhere", "data": "00"}, "port"),
        (topics.IOHW_UART, {"port": "rs485", "data": "zz"}, "data"),
        (topics.IOHW_UART, {"port": "rs485", "data": "00", "timeout_s": 60}, "timeout_s"),
        (topics.IOHW_UART, {"port": "rs485", "data": "00", "read_max": -1}, "read_max"),
        (topics.IOHW_I2C_READ, {"address": 0x80, "register": 0}, "address"),
        (topics.IOHW_I2C_READ, {"address": 0x50, "register": 256}, "register"),
        (topics.IOHW_I2C_READ, {"address": 0x50, "register": 0, "length": 65}, "length"),
        (topics.IOHW_SPI_TRANSFER, {"cs": 9, "data": "00"}, "cs"),
        (topics.IOHW_SPI_TRANSFER, {"cs": 1, "data": ""}, "data"),
    ],
)
def test_bad_bus_requests_name_their_field(
    bench: Bench, method: str, params: dict[str, Any], field: str
) -> None:
    """Each bad parameter comes back as a RequestError naming it."""
    (error,) = run(bench, (method, params))
    assert isinstance(error, RemoteError)
    assert error.code == "RequestError"
    assert str(error).split(":")[0] == field
