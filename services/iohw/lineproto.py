"""The board's line protocol over a serial line: ASCII commands, one per line.

Requests and answers end with ``\\n``; channel numbers count from 1:

=======================  =========================  ==================================
request                  answer                     meaning
=======================  =========================  ==================================
``ID?``                  ``ID <name> 16 4 4``       board name, relays, DAC, ADC count
``RELAY 3 OPEN``         ``OK``                     open relay 3 (``CLOSE``: close it)
``RELAY 3?``             ``RELAY 3 OPEN``           position of relay 3 (or ``CLOSED``)
``RELAYS?``              ``RELAYS 0x0005``          all 16 positions, bit 0 = relay 1
``DAC 1 2.5``            ``OK``                     set DAC 1 to the code nearest 2.5 V
``DAC 1?``               ``DAC 1 2.500611``         voltage DAC 1 puts out
``ADC 1?``               ``ADC 1 2.503053``         reading of ADC 1, V
anything wrong           ``ERR <reason>``           nothing changed
=======================  =========================  ==================================

:func:`answer` is the board's side (the simulated board answers exactly so on
``smtb iohw serve-serial``); :class:`SerialBackend` is the service's side.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import serial
from smtestbed.services._runtime.errors import PeerError, RequestError, TestbedError
from smtestbed.services.iohw.board import Converter, SimBoard
from smtestbed.services.iohw.wiring import RELAYS

BOARD_NAME = "smtestbed-sim"
MAX_LINE = 128


def _channel(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"bad channel {text[:16]!r}")
    return int(text)


def _set(board: SimBoard, words: list[str]) -> str:
    what, channel, value = words[0], _channel(words[1]), words[2]
    if what == "RELAY" and value in ("OPEN", "CLOSE"):
        board.set_relay(channel, value == "CLOSE")
        return "OK"
    if what == "DAC":
        volts = float(value)
        if not math.isfinite(volts):
            raise ValueError(f"bad voltage {value[:16]!r}")
        board.set_dac(channel, volts)
        return "OK"
    raise ValueError(f"cannot set {what} to {value[:16]!r}")


def _query(board: SimBoard, words: list[str]) -> str:
    what, channel = words[0], _channel(words[1].removesuffix("?"))
    if what == "RELAY":
        return f"RELAY {channel} {'CLOSED' if board.relay(channel) else 'OPEN'}"
    if what == "DAC":
        return f"DAC {channel} {board.dac_volts(channel):.6f}"
    if what == "ADC":
        return f"ADC {channel} {board.read_adc(channel):.6f}"
    raise ValueError(f"unknown query {what[:16]!r}")


def answer(board: SimBoard, line: str) -> str:
    """Return the board's answer to one request line (without the line end)."""
    words = line.strip().upper().split()
    try:
        if words == ["ID?"]:
            return f"ID {BOARD_NAME} {RELAYS} 4 4"
        if words == ["RELAYS?"]:
            return f"RELAYS 0x{board.dio_mask():04X}"
        if len(words) == 2 and words[1].endswith("?"):
            return _query(board, words)
        if len(words) == 3:
            return _set(board, words)
    except (ValueError, TestbedError) as exc:
        return f"ERR {exc}"
    return f"ERR unknown command {line.strip()[:32]!r}"


class SerialBackend:
    """A real board (or ``serve-serial``) behind a serial line, spoken to in the line protocol.

    Args:
        url: device path, pty or ``socket://HOST:PORT``.
        baudrate: bit/s.
        dac: range and resolution of the board's DACs (for request checks).
        adc: range and resolution of its ADCs.
        timeout_s: wait for each answer, s.
    """

    name = "serial"

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        dac: Converter | None = None,
        adc: Converter | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self.url = url
        self.dac = dac or Converter()
        self.adc = adc or Converter()
        try:
            self._serial: Any = serial.serial_for_url(url, baudrate=baudrate, timeout=timeout_s)
        except (serial.SerialException, ValueError) as exc:
            raise PeerError(f"cannot open the board line {url}: {exc}") from exc
        self._lock = asyncio.Lock()

    async def ask(self, request: str) -> str:
        """Send one request line; return the answer; PeerError on ``ERR`` or silence."""
        async with self._lock:
            reply: str = await asyncio.to_thread(self._exchange, request)
        if reply.startswith("ERR"):
            raise PeerError(f"the board refused {request!r}: {reply[4:]}")
        return reply

    def _exchange(self, request: str) -> str:
        try:
            self._serial.reset_input_buffer()
            self._serial.write(request.encode("ascii") + b"\n")
            raw: bytes = self._serial.read_until(b"\n", MAX_LINE)
        except (serial.SerialException, OSError) as exc:
            raise PeerError(f"board line {self.url}: {exc}") from exc
        if not raw.endswith(b"\n"):
            raise PeerError(f"no answer from the board on {self.url} to {request!r}")
        return raw.decode("ascii", errors="replace").strip()

    async def _value(self, request: str) -> str:
        words = (await self.ask(request)).split()
        if len(words) != 3:
            raise PeerError(f"the board answered {' '.join(words)!r} to {request!r}")
        return words[2]

    async def identify(self) -> str:
        """Return the board's ``ID?`` answer."""
        return await self.ask("ID?")

    async def relays(self) -> list[bool]:
        """Return the positions of relays 1..16 (True = closed)."""
        words = (await self.ask("RELAYS?")).split()
        try:
            mask = int(words[1], 16)
        except (IndexError, ValueError) as exc:
            raise PeerError(f"the board answered {' '.join(words)!r} to 'RELAYS?'") from exc
        return [bool(mask >> i & 1) for i in range(RELAYS)]

    async def set_relay(self, number: int, closed: bool) -> None:
        """Switch relay ``number``."""
        await self.ask(f"RELAY {number} {'CLOSE' if closed else 'OPEN'}")

    async def dac_volts(self, channel: int) -> float:
        """Return the voltage DAC ``channel`` puts out."""
        return _float(await self._value(f"DAC {channel}?"))

    async def set_dac(self, channel: int, volts: float) -> float:
        """Set DAC ``channel``; return what it puts out."""
        if not self.dac.contains(volts):
            raise RequestError(f"outside {self.dac.min_v:g}..{self.dac.max_v:g} V", field="volts")
        await self.ask(f"DAC {channel} {volts:.6f}")
        return await self.dac_volts(channel)

    async def read_adc(self, channel: int) -> float:
        """Return the reading of ADC ``channel``, V."""
        return _float(await self._value(f"ADC {channel}?"))

    async def drive_input(self, channel: int, volts: float) -> bool:
        """A real board measures its inputs itself: nothing to drive."""
        return False

    async def close(self) -> None:
        """Close the line."""
        self._serial.close()


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise PeerError(f"the board sent {text!r} for a voltage") from exc
    if not math.isfinite(value):
        raise PeerError(f"the board sent {text!r} for a voltage")
    return value
