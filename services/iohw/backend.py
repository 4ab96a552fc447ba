"""The seam between the service and a board: simulated, or a real one behind a serial line.

Every backend switches relays, sets DAC outputs and reads ADC inputs with
the board's channel numbers (relays 1..16, DAC and ADC 1..4). A simulated
backend also lets the service put a voltage on an ADC input (what a wired
meter output would drive); a real board measures its inputs itself.
"""

from __future__ import annotations

from typing import Protocol

from smtestbed.services.iohw.board import Converter, SimBoard


class Backend(Protocol):
    """A board the service drives."""

    name: str
    dac: Converter
    adc: Converter

    async def relays(self) -> list[bool]:
        """Return the positions of relays 1..16 (True = closed)."""
        ...

    async def set_relay(self, number: int, closed: bool) -> None:
        """Switch relay ``number``."""
        ...

    async def dac_volts(self, channel: int) -> float:
        """Return the voltage DAC ``channel`` outputs."""
        ...

    async def set_dac(self, channel: int, volts: float) -> float:
        """Set DAC ``channel``; return the (quantised) output voltage."""
        ...

    async def read_adc(self, channel: int) -> float:
        """Return the (quantised) reading of ADC ``channel``, V."""
        ...

    async def drive_input(self, channel: int, volts: float) -> bool:
        """Put ``volts`` on ADC input ``channel``; False when the board measures real inputs."""
        ...

    async def close(self) -> None:
        """Release the board."""
        ...


class SimBackend:
    """The simulated board in this process."""

    name = "sim"

    def __init__(self, board: SimBoard) -> None:
        self.board = board
        self.dac = board.dac
        self.adc = board.adc

    async def relays(self) -> list[bool]:
        """Return the positions of relays 1..16 (True = closed)."""
        return self.board.relays()

    async def set_relay(self, number: int, closed: bool) -> None:
        """Switch relay ``number``."""
        self.board.set_relay(number, closed)

    async def dac_volts(self, channel: int) -> float:
        """Return the voltage DAC ``channel`` outputs."""
        return self.board.dac_volts(channel)

    async def set_dac(self, channel: int, volts: float) -> float:
        """Set DAC ``channel``; return the (quantised) output voltage."""
        return self.board.set_dac(channel, volts)

    async def read_adc(self, channel: int) -> float:
        """Return the (quantised) reading of ADC ``channel``, V."""
        return self.board.read_adc(channel)

    async def drive_input(self, channel: int, volts: float) -> bool:
        """Put ``volts`` on ADC input ``channel``."""
        self.board.drive_input(channel, volts)
        return True

    async def close(self) -> None:
        """Nothing to release."""
