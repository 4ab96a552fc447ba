"""Wired M-Bus slaves over real TCP and a real pty, read by pyMeterBus as outside master."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from smtestbed.proto.mbus import encode_req_ud2, encode_snd_nke
from smtestbed.proto.records import new_record
from smtestbed.services._runtime.clock import SimClock
from smtestbed.services.sensorfarm.mbus_line import MbusLine
from smtestbed.services.sensorfarm.mbus_server import MbusPtyPort, MbusTcpServer
from smtestbed.services.sensorfarm.mbus_slave import MbusSlave, WiredMeter
from smtestbed.services.sensorfarm.population import generate
from smtestbed.services.sensorfarm.schema import Interface
from smtestbed.services.sensorfarm.templates import records_for
from smtestbed.services.sensorfarm.wired_meters import linear_values, wired_meters

meterbus = pytest.importorskip("meterbus", reason="pyMeterBus (test extra) is not installed")
serial = pytest.importorskip("serial", reason="pyserial is not installed")

pytestmark = pytest.mark.timeout(60)
T = TypeVar("T")
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0


class LoopThread:
    """An asyncio event loop on its own thread, for servers the blocking master talks to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    """A running event loop thread, stopped at teardown."""
    runner = LoopThread()
    yield runner
    runner.stop()


@contextlib.contextmanager
def tcp_master(loop_thread: LoopThread, line: MbusLine, timeout: float = 1.0) -> Iterator[Any]:
    """Serve ``line`` on a random 127.0.0.1 port; yield pyserial's socket:// port to it."""
    server = MbusTcpServer(line)
    loop_thread.run(server.start())
    ser = serial.serial_for_url(server.url, timeout=timeout)
    try:
        yield ser
    finally:
        ser.close()
        loop_thread.run(server.close())


def fixed_meter(ident: str, address: int, energy_wh: int) -> WiredMeter:
    record = new_record(quantity="energy", unit="Wh", value=energy_wh, exponent=0)
    return WiredMeter(
        ident=ident,
        manufacturer="ABC",
        version=1,
        medium=0x02,
        primary_address=address,
        records=lambda: [record],
    )


def read_primary(ser: Any, address: int) -> Any:
    """Ping, then REQ_UD2, as pyMeterBus's examples do; return the decoded telegram."""
    meterbus.send_ping_frame(ser, address)
    assert meterbus.recv_frame(ser, 1) == b"\xe5"
    meterbus.send_request_frame(ser, address)
    frame = meterbus.recv_frame(ser, 1)
    assert frame, f"no telegram from address {address}"
    return meterbus.load(frame)


def floats(telegram: Any) -> list[float]:
    """Return the record values; pyMeterBus lists DIF 0x1F as a record, which is skipped."""
    return [
        float(record.value) for record in telegram.records if not record.dib.more_records_follow
    ]


def test_pymeterbus_reads_the_values_the_meter_holds_at_that_moment(
    loop_thread: LoopThread,
) -> None:
    """Over socket://, pyMeterBus gets each meter's values at the simulation time of the read."""
    clock = SimClock("stepped", start=START)
    pop = generate(4, seed=11, interface=Interface.WIRED_MBUS, mix={"heat": 1, "electricity": 1})
    line = MbusLine(MbusSlave(m) for m in wired_meters(pop, clock=clock.now))
    models = [linear_values(pop, row, t0=START) for row in range(len(pop))]
    with tcp_master(loop_thread, line) as ser:
        for day in (0, 1, 30):
            clock.advance_to(START + day * DAY)
            for row, model in enumerate(models):
                telegram = read_primary(ser, row + 1)
                expected = [r.value for r in records_for(model.kind, model.at(clock.now()))]
                assert floats(telegram) == pytest.approx(expected, rel=1e-12)
                assert telegram.secondary_address.startswith(f"{int(pop.ident[row]):08d}")
    assert models[0].at(START + 30 * DAY)[0] > models[0].at(START)[0]


def test_secondary_select_with_wildcards_reaches_the_one_matching_meter(
    loop_thread: LoopThread,
) -> None:
    """Selecting 2222FFFF + wildcards gets E5, and REQ_UD2 to 0xFD reads that meter."""
    meters = [fixed_meter("11112222", 1, 100), fixed_meter("22223333", 2, 200)]
    line = MbusLine(MbusSlave(m) for m in meters)
    with tcp_master(loop_thread, line) as ser:
        meterbus.send_select_frame(ser, "2222FFFFFFFFFFFF")
        assert meterbus.recv_frame(ser, 1) == b"\xe5"
        meterbus.send_request_frame(ser, 0xFD)
        telegram = meterbus.load(meterbus.recv_frame(ser, 1))
    assert telegram.secondary_address.startswith("22223333")
    assert floats(telegram) == [200.0]


def test_two_slaves_at_one_address_collide_for_the_master(loop_thread: LoopThread) -> None:
    """Two meters at address 1: pyMeterBus receives bytes that fail its checksum or framing."""
    meters = [fixed_meter("11111111", 1, 1000), fixed_meter("22222222", 1, 2345)]
    line = MbusLine(MbusSlave(m) for m in meters)
    with tcp_master(loop_thread, line) as ser:
        meterbus.send_request_frame(ser, 1)
        received = meterbus.recv_frame(ser, 1)
    assert received is False
    assert line.collisions == 1


def test_garbage_gets_silence_and_the_next_request_an_answer(loop_thread: LoopThread) -> None:
    """Noise and a bad checksum are not answered; the slave then answers a good request."""
    line = MbusLine([MbusSlave(fixed_meter("11111111", 1, 1000))], idle_timeout=0.1)
    with tcp_master(loop_thread, line, timeout=0.5) as ser:
        ser.write(b"\x00\x13\x37\xff\x68\x10\x10\x68\x53")
        assert meterbus.recv_frame(ser, 1) is None
        bad = bytearray(encode_req_ud2(1))
        bad[3] ^= 0xFF
        ser.write(bytes(bad))
        assert meterbus.recv_frame(ser, 1) is None
        assert floats(read_primary(ser, 1)) == [1000.0]


def test_server_keeps_serving_after_a_master_hangs_up_mid_frame(loop_thread: LoopThread) -> None:
    """A connection closed after half a frame does not disturb the next connection."""
    line = MbusLine([MbusSlave(fixed_meter("11111111", 1, 1000))])
    server = MbusTcpServer(line)
    loop_thread.run(server.start())
    try:
        first = serial.serial_for_url(server.url, timeout=1)
        first.write(encode_req_ud2(1)[:3])
        first.close()
        second = serial.serial_for_url(server.url, timeout=1)
        assert floats(read_primary(second, 1)) == [1000.0]
        second.close()
    finally:
        loop_thread.run(server.close())


def test_multi_telegram_readout_with_fcb_toggling(loop_thread: LoopThread) -> None:
    """REQ_UD2 with toggled FCB reads all parts; pyMeterBus sees DIF 0x1F on all but the last."""
    clock = SimClock("stepped", start=START)
    pop = generate(1, seed=5, interface=Interface.WIRED_MBUS, mix={"heat": 1})
    line = MbusLine(
        MbusSlave(m, records_per_telegram=2) for m in wired_meters(pop, clock=clock.now)
    )
    model = linear_values(pop, 0, t0=START)
    expected = [r.value for r in records_for(model.kind, model.at(START))]
    with tcp_master(loop_thread, line) as ser:
        ser.write(encode_snd_nke(1))
        assert meterbus.recv_frame(ser, 1) == b"\xe5"
        parts = []
        for fcb in (True, False, True):
            ser.write(encode_req_ud2(1, fcb=fcb))
            parts.append(meterbus.load(meterbus.recv_frame(ser, 1)))
    assert [part.more_records_follow for part in parts] == [True, True, False]
    values = [value for part in parts for value in floats(part)]
    assert values == pytest.approx(expected, rel=1e-12)


def test_pty_line_answers_a_pyserial_master_at_8n1(loop_thread: LoopThread) -> None:
    """A pty opened with pyserial at 2400 8N1 carries SND_NKE/E5 and a full readout."""
    line = MbusLine([MbusSlave(fixed_meter("11111111", 7, 4321))])
    port = MbusPtyPort(line)

    async def open_port() -> str:
        return port.open()

    async def close_port() -> None:
        port.close()

    path = loop_thread.run(open_port())
    try:
        ser = serial.Serial(
            path, baudrate=2400, bytesize=8, parity=serial.PARITY_NONE, stopbits=1, timeout=1
        )
        try:
            telegram = read_primary(ser, 7)
        finally:
            ser.close()
    finally:
        loop_thread.run(close_port())
    assert path.startswith("/dev/")
    assert floats(telegram) == [4321.0]


# --- the command line -----------------------------------------------------------------


def serve_mbus(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "smtestbed.services.sensorfarm.cli_mbus", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_serving(proc: subprocess.Popen[str], timeout: float = 30.0) -> list[str]:
    """Return the lines up to and including ``serving ...``."""
    assert proc.stdout is not None
    deadline, lines = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("serving "):
            return lines
    raise AssertionError(f"no 'serving' line; got {lines}")


@contextlib.contextmanager
def running(*args: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    proc = serve_mbus(*args)
    try:
        yield proc, wait_serving(proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_serve_mbus_tcp_serves_the_seeded_meters_at_their_current_values() -> None:
    """serve-mbus --tcp: meter 2 is the seeded population's second meter, read at its value now.

    The server's values start when it starts (between launching it and its "serving" line)
    and move linearly, so the counter read lies between the model's values at the
    earliest and latest moments the read can correspond to.
    """
    pop = generate(3, seed=7, interface=Interface.WIRED_MBUS)
    launched = time.time()
    with running("--tcp", "127.0.0.1:0", "--meters", "3", "--seed", "7") as (proc, lines):
        serving = time.time()
        url = lines[-1].split(" on ")[1]
        ser = serial.serial_for_url(url, timeout=2)
        telegram = read_primary(ser, 2)
        ser.close()
        done = time.time()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert len(lines) == 4
    assert lines[1].split()[:2] == ["2", telegram.secondary_address]
    assert telegram.secondary_address.startswith(f"{int(pop.ident[1]):08d}")
    model = linear_values(pop, 1, t0=0.0)
    earliest = records_for(model.kind, model.at(max(0.0, launched - serving)))
    latest = records_for(model.kind, model.at(done - launched))
    low, high = earliest[0].value, latest[0].value
    assert isinstance(low, int | float)
    assert isinstance(high, int | float)
    assert low <= floats(telegram)[0] <= high


def test_serve_mbus_pty_prints_the_device_path() -> None:
    """serve-mbus --pty prints a /dev/pts path that answers SND_NKE with E5."""
    with running("--pty", "--meters", "1", "--first-address", "9") as (_, lines):
        path = lines[-1].split(" on ")[1].split()[0]
        assert os.path.exists(path)
        ser = serial.Serial(path, baudrate=2400, timeout=2)
        meterbus.send_ping_frame(ser, 9)
        assert meterbus.recv_frame(ser, 1) == b"\xe5"
        ser.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--meters", "2"], "--tcp/--pty: give exactly one"),
        (["--tcp", "localhost", "--meters", "2"], "--tcp: expected HOST:PORT"),
        (["--pty", "--meters", "0"], "--meters: must be 1..251"),
        (["--pty", "--meters", "5", "--first-address", "248"], "--first-address:"),
        (["--pty", "--meters", "x"], "'x' is not a valid integer"),
    ],
)
def test_serve_mbus_bad_options_give_one_error_line(args: list[str], message: str) -> None:
    """Bad options end with exit code 1 and one 'Error:' line naming the option."""
    proc = serve_mbus(*args)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.strip().count("\n") == 0
    assert err.startswith("Error: ")
    assert message in err


def test_serve_mbus_on_a_busy_port_gives_one_error_line() -> None:
    """A TCP port already in use ends with exit code 1 and one line naming the address."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = serve_mbus("--tcp", f"127.0.0.1:{port}", "--meters", "1")
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.strip().count("\n") == 0
    assert err.startswith(f"Error: cannot listen on 127.0.0.1:{port}")
