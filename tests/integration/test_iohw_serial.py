"""The serial backend against ``smtb iohw serve-serial`` on a pty: the line protocol, both sides.

``serve-serial`` runs as its own process (the simulated board, ADC 1 fed 2.5 V); the backend
talks to it directly, then ``smtb iohw run`` with ``backend = "serial"`` drives it over the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from smtestbed.proto import topics
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.errors import PeerError
from smtestbed.services._runtime.testing import bus_client, service_process
from smtestbed.services.iohw.lineproto import SerialBackend

pytestmark = pytest.mark.timeout(60)
ADC_2V5 = 1024 * 10 / 4095  # 2.5 V as a 12-bit 0..10 V ADC reads it


@contextlib.contextmanager
def serve_serial(*args: str) -> Iterator[str]:
    """Run ``smtb iohw serve-serial ARGS``; yield the pty path."""
    argv = [str(Path(sys.executable).with_name("smtb")), "iohw", "serve-serial", *args]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[:4] == ["serving", "the", "simulated", "board"], line
        yield line[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serial_backend_switches_relays_sets_dacs_and_reads_adcs() -> None:
    """Relay 3 closed and read back, DAC 2 quantised by the board, ADC 1 = 2.5 V quantised;
    a refused command is a PeerError with the board's reason."""

    async def scenario(path: str) -> tuple[Any, ...]:
        board = SerialBackend(path)
        try:
            ident = await board.identify()
            await board.set_relay(3, True)
            relays = await board.relays()
            dac = await board.set_dac(2, 1.0)
            adc = await board.read_adc(1)
            with pytest.raises(PeerError) as info:
                await board.ask("RELAY 99 OPEN")
            return ident, relays, dac, adc, str(info.value)
        finally:
            await board.close()

    with serve_serial("--adc", "1=2.5") as path:
        ident, relays, dac, adc, refused = asyncio.run(scenario(path))
    assert ident == "ID smtestbed-sim 16 4 4"
    assert [i + 1 for i, closed in enumerate(relays) if closed] == [3]
    assert dac == pytest.approx(410 * 10 / 4095, abs=1e-6)
    assert adc == pytest.approx(ADC_2V5, abs=1e-6)
    assert "relay" in refused


def test_service_with_the_serial_backend_drives_the_board_over_the_bus(
    endpoints: Endpoints, broker: Any, tmp_path: Path
) -> None:
    """iohw.relay, iohw.dac and iohw.adc through smtb iohw run --set backend=serial."""

    async def scenario() -> tuple[Any, ...]:
        async with bus_client(endpoints) as client:

            async def ask(method: str, params: dict[str, Any]) -> Any:
                return await client.request("iohw", method, params, timeout=5.0)

            relay = await ask(topics.IOHW_RELAY, {"relay": 5, "closed": True})
            dio = await ask(topics.IOHW_DIO, {})
            dac = await ask(topics.IOHW_DAC, {"channel": 4, "volts": 7.5})
            adc = await ask(topics.IOHW_ADC, {"channel": 1})
            status = await ask(topics.IOHW_STATUS, {})
            return relay, dio, dac, adc, status

    with serve_serial("--adc", "1=2.5") as path:
        settings = {"backend": "serial", "serial_url": path, "heartbeat_s": 0.2}
        log = tmp_path / "iohw.log"
        with service_process("iohw", endpoints, settings=settings, log_path=log):
            relay, dio, dac, adc, status = asyncio.run(scenario())
    assert (relay["closed"], relay["old"]) == (True, False)
    assert dio["mask"] == 1 << 4
    assert dac["volts"] == pytest.approx(3071 * 10 / 4095, abs=1e-6)
    assert adc["volts"] == pytest.approx(ADC_2V5, abs=1e-6)
    assert status["backend"] == "serial"
