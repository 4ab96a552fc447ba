"""The simulated board: 16 relays on digital outputs, 4 DAC outputs, 4 ADC inputs.

Converters are quantised like real ones: an ``n``-bit converter over
``[min_v, max_v]`` has ``2**n`` codes, code ``k`` standing for
``min_v + k * (max_v - min_v) / (2**n - 1)``. A DAC outputs the code nearest
to the requested voltage; an ADC reports the code nearest to its input,
clipped to the range (a saturated input reads as the range's end).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from smtestbed.services._runtime.errors import ConfigError, RequestError
from smtestbed.services.iohw.wiring import ADC_CHANNELS, DAC_CHANNELS, RELAYS


@dataclass(frozen=True, slots=True, kw_only=True)
class Converter:
    """Range and resolution of a DAC or ADC.

    Attributes:
        min_v: lower end of the range, V.
        max_v: upper end of the range, V.
        bits: resolution, 1..24 bits.
    """

    min_v: float = 0.0
    max_v: float = 10.0
    bits: int = 12

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_v) and math.isfinite(self.max_v)):
            raise ConfigError("converter range must be finite", key="range")
        if not self.max_v > self.min_v:
            raise ConfigError(f"max {self.max_v} V must exceed min {self.min_v} V", key="range")
        if not 1 <= self.bits <= 24:
            raise ConfigError(f"must be 1..24, got {self.bits}", key="bits")

    @property
    def top(self) -> int:
        """Return the highest code, ``2**bits - 1``."""
        return (1 << self.bits) - 1

    @property
    def lsb_v(self) -> float:
        """Return the voltage step of one code, V."""
        return (self.max_v - self.min_v) / self.top

    def code(self, volts: float) -> int:
        """Return the code nearest to ``volts``, clipped to 0..top."""
        raw = round((volts - self.min_v) / self.lsb_v)
        return min(self.top, max(0, raw))

    def volts(self, code: int) -> float:
        """Return the voltage code ``code`` stands for."""
        return self.min_v + code * self.lsb_v

    def quantise(self, volts: float) -> float:
        """Return ``volts`` as the converter outputs or reads it."""
        return self.volts(self.code(volts))

    def contains(self, volts: float) -> bool:
        """Return True when ``volts`` lies within the range."""
        return math.isfinite(volts) and self.min_v <= volts <= self.max_v


def check_channel(value: object, count: int, field: str) -> int:
    """Return ``value`` as a channel number 1..count; RequestError naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= count:
        raise RequestError(f"must be an integer 1..{count}, got {value!r}", field=field)
    return value


class SimBoard:
    """State of the simulated board: relays, DAC codes and the voltages at the ADC inputs.

    Args:
        dac: range and resolution of the 4 DAC outputs.
        adc: range and resolution of the 4 ADC inputs.
        relays: initial position of relays 1..16 (True = closed); default all open.
    """

    def __init__(
        self,
        *,
        dac: Converter | None = None,
        adc: Converter | None = None,
        relays: dict[int, bool] | None = None,
    ) -> None:
        self.dac = dac or Converter()
        self.adc = adc or Converter()
        self._relays = [False] * RELAYS
        for number, closed in (relays or {}).items():
            self._relays[check_channel(number, RELAYS, "relay") - 1] = closed
        self._dac_codes = [self.dac.code(self.dac.min_v)] * DAC_CHANNELS
        self._adc_inputs = [self.adc.min_v] * ADC_CHANNELS

    def relay(self, number: int) -> bool:
        """Return True when relay ``number`` (1..16) is closed."""
        return self._relays[check_channel(number, RELAYS, "relay") - 1]

    def set_relay(self, number: int, closed: bool) -> bool:
        """Switch relay ``number``; return its previous position."""
        index = check_channel(number, RELAYS, "relay") - 1
        old = self._relays[index]
        self._relays[index] = closed
        return old

    def relays(self) -> list[bool]:
        """Return the positions of relays 1..16 (True = closed)."""
        return list(self._relays)

    def dio_mask(self) -> int:
        """Return the 16 digital outputs as a bit mask (bit 0 = relay 1; 1 = closed)."""
        return sum(1 << i for i, closed in enumerate(self._relays) if closed)

    def dac_volts(self, channel: int) -> float:
        """Return the voltage DAC ``channel`` (1..4) outputs."""
        return self.dac.volts(self._dac_codes[check_channel(channel, DAC_CHANNELS, "channel") - 1])

    def set_dac(self, channel: int, volts: float) -> float:
        """Set DAC ``channel`` to the code nearest ``volts``; return the output voltage.

        Raises:
            RequestError: ``volts`` lies outside the DAC range (nothing changes then).
        """
        index = check_channel(channel, DAC_CHANNELS, "channel") - 1
        if not self.dac.contains(volts):
            raise RequestError(
                f"must be within {self.dac.min_v:g}..{self.dac.max_v:g} V, got {volts!r}",
                field="volts",
            )
        self._dac_codes[index] = self.dac.code(volts)
        return self.dac.volts(self._dac_codes[index])

    def drive_input(self, channel: int, volts: float) -> None:
        """Put ``volts`` on ADC input ``channel`` (what the wired source outputs)."""
        index = check_channel(channel, ADC_CHANNELS, "channel") - 1
        self._adc_inputs[index] = volts if math.isfinite(volts) else self.adc.max_v

    def read_adc(self, channel: int) -> float:
        """Return the converted reading of ADC ``channel`` (quantised, clipped to the range)."""
        index = check_channel(channel, ADC_CHANNELS, "channel") - 1
        return self.adc.quantise(self._adc_inputs[index])
