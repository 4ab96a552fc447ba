"""Consumption models and telegram air time: what the per-window kernels integrate.

Consumption of a meter of kind ``k`` at simulation time ``t`` (s since the Unix
epoch, UTC) is ``BASE_RATE[k] * scale * shape_k(t) * max(0, 1 + SIGMA[k] * z)``
with ``z`` one standard normal draw per meter and window. ``shape_k`` has a
yearly mean near 1 and is built from

* hour-of-week profiles (weekday and weekend days, linear between full hours):
  electricity with morning and evening peaks, water with a morning peak, gas and
  heat hot-water use in the morning and evening;
* for heat and gas, space heating proportional to heating degrees
  ``max(0, 18 °C - T_out)`` with a seasonal and daily outdoor temperature.

Rates are W for energy (electricity, heat) and m^3/h for volume (gas, water).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.schema import MeterKind, RadioMode

F64 = npt.NDArray[np.float64]

# Yearly mean rate at scale 1 (a household): 3500 kWh/a, 1500 m^3/a gas,
# 130 m^3/a water, 13 MWh/a heat.
BASE_RATE = np.array([400.0, 0.17, 0.015, 1500.0])
# Spread of the per-window noise factor, per kind.
SIGMA = np.array([0.25, 0.15, 0.5, 0.1])
# Share of space heating in the consumption of gas and heat meters.
HEATING_SHARE = {MeterKind.GAS: 0.7, MeterKind.HEAT: 0.85}
HEATING_LIMIT_C = 18.0
# Water: 1.163 Wh per kg and K, so 1163 Wh per m^3 and K.
WATER_HEAT_WH_PER_M3K = 1163.0

# Relative use per hour of day 0..23 in percent (weekday, weekend), normalised below.
_DAILY: dict[MeterKind, tuple[str, str]] = {
    MeterKind.ELECTRICITY: (
        "50 40 40 40 40 50 90 130 110 80 70 80 100 90 80 80 90 120 170 200 180 140 100 70",
        "60 50 40 40 40 40 50 80 120 140 130 130 140 120 100 90 100 130 170 190 170 140 110 80",
    ),
    MeterKind.WATER: (
        "10 5 5 5 10 40 190 240 160 100 80 90 110 90 80 80 90 120 150 160 140 110 70 30",
        "20 10 5 5 5 10 40 110 190 210 170 140 130 110 90 90 100 120 140 150 130 110 80 40",
    ),
    MeterKind.GAS: (
        "30 20 20 20 30 70 160 180 120 90 80 100 120 90 80 80 90 130 170 160 130 100 70 40",
        "30 30 20 20 20 30 60 120 160 160 130 130 140 110 90 90 100 130 160 150 130 100 70 40",
    ),
    MeterKind.HEAT: (
        "50 40 40 40 60 120 160 150 110 90 90 90 100 90 90 90 100 120 140 140 120 100 80 60",
        "50 50 40 40 40 60 100 140 150 140 120 110 110 100 100 100 110 120 130 130 120 100 80 60",
    ),
}

HOURS_PER_WEEK = 168
# 1970-01-01 (t = 0) was a Thursday: hour-of-week 0 is Monday 00:00 UTC.
_EPOCH_HOUR_OF_WEEK = 72
_YEAR_S = 365.2425 * 86400.0


def _week_profile(kind: MeterKind) -> F64:
    """Return the 168 hourly factors of ``kind`` from Monday 00:00, weekly mean 1."""
    weekday, weekend = (np.array(day.split(), dtype=np.float64) for day in _DAILY[kind])
    week = np.concatenate([np.tile(weekday, 5), np.tile(weekend, 2)])
    return np.asarray(week / week.mean(), dtype=np.float64)


WEEK_PROFILE = np.stack([_week_profile(kind) for kind in MeterKind])
"""Hourly factors per kind (rows in MeterKind order) over one week from Monday 00:00."""


def week_shape(kind: MeterKind, t: npt.ArrayLike) -> F64:
    """Return the hour-of-week factor of ``kind`` at times ``t`` (s), linear between hours."""
    hours = (np.asarray(t, dtype=np.float64) / 3600.0 + _EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK
    profile = WEEK_PROFILE[kind]
    low = np.floor(hours).astype(np.int64)
    frac = hours - low
    return np.asarray(profile[low] * (1 - frac) + profile[(low + 1) % HOURS_PER_WEEK] * frac)


def outdoor_temperature_c(t: npt.ArrayLike) -> F64:
    """Return the outdoor temperature in °C at times ``t`` (s).

    Yearly mean 9.5 °C, seasonal amplitude 9 K (coldest on 15 January), daily
    amplitude 4 K (coldest at 05:00 UTC, warmest at 17:00).
    """
    times = np.asarray(t, dtype=np.float64)
    season = np.cos(2 * math.pi * ((times / _YEAR_S) % 1.0 - 14.5 / 365.2425))
    day = np.cos(2 * math.pi * ((times / 86400.0) % 1.0 - 17.0 / 24.0))
    return np.asarray(9.5 - 9.0 * season + 4.0 * day)


def _heating_degrees(t: npt.ArrayLike) -> F64:
    return np.maximum(0.0, HEATING_LIMIT_C - outdoor_temperature_c(t))


# Mean heating degrees over a year, sampled hourly: divides heating demand to mean 1.
_MEAN_HEATING_DEGREES = float(_heating_degrees(np.arange(0.0, _YEAR_S, 3600.0)).mean())


def rate_factor(kind: MeterKind, t: npt.ArrayLike) -> F64:
    """Return ``shape_k(t)``: consumption relative to the yearly mean, at times ``t`` (s)."""
    use = week_shape(kind, t)
    share = HEATING_SHARE.get(kind)
    if share is None:
        return use
    heating = _heating_degrees(t) / _MEAN_HEATING_DEGREES
    return np.asarray(share * heating * week_shape(MeterKind.HEAT, t) + (1 - share) * use)


def flow_temperatures_c(t: float) -> tuple[float, float]:
    """Return the (flow, return) temperatures in °C of a heat meter's circuit at ``t`` (s).

    Heating curve: flow = 20 °C + 1.2 * (20 °C - T_out), held within 35..70 °C; the
    spread between flow and return grows from 5 K (no heating) to 20 K (full load).
    """
    outdoor = float(outdoor_temperature_c(np.array([t]))[0])
    flow = min(70.0, max(35.0, 20.0 + 1.2 * (20.0 - outdoor)))
    load = min(1.0, max(0.0, HEATING_LIMIT_C - outdoor) / 25.0)
    return flow, flow - (5.0 + 15.0 * load)


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowRates:
    """What the counter kernel needs for one window, per kind (rows in MeterKind order).

    Attributes:
        hours: window length in h.
        mean: mean rate over the window at scale 1 (W or m^3/h).
        now: rate at the window's end at scale 1 (W or m^3/h): the instantaneous column.
        sigma: spread of the per-meter noise factor.
        flow_c: heat meters' flow temperature in °C at the window's end.
        return_c: heat meters' return temperature in °C at the window's end.
    """

    hours: float
    mean: F64
    now: F64
    sigma: F64
    flow_c: float
    return_c: float


def window_rates(t0: float, t1: float, *, step_s: float = 900.0) -> WindowRates:
    """Return the rates of the window [t0, t1) (s), averaged over sub-steps of at most ``step_s``.

    Raises:
        ConfigError: ``t1 < t0`` or ``step_s <= 0``.
    """
    if not (math.isfinite(t0) and math.isfinite(t1) and t1 >= t0):
        raise ConfigError(f"window [{t0}, {t1}) is not a time window", key="window")
    if not step_s > 0:
        raise ConfigError(f"step must be > 0 s, got {step_s}", key="step_s")
    steps = max(1, math.ceil((t1 - t0) / step_s))
    mids = t0 + (np.arange(steps, dtype=np.float64) + 0.5) * ((t1 - t0) / steps)
    end = np.array([t1])
    mean = np.array([rate_factor(kind, mids).mean() for kind in MeterKind]) * BASE_RATE
    now = np.array([rate_factor(kind, end)[0] for kind in MeterKind]) * BASE_RATE
    flow_c, return_c = flow_temperatures_c(t1)
    return WindowRates(
        hours=(t1 - t0) / 3600.0,
        mean=mean,
        now=now,
        sigma=SIGMA.copy(),
        flow_c=flow_c,
        return_c=return_c,
    )


MAX_LOAD_FACTOR = 100.0


class LoadInputs:
    """Each meter's consumption-rate input: a load factor on its household scale.

    The consumption model multiplies a meter's rate by ``scale``; a load factor
    ``f`` makes that ``f * base`` (the scale the meter was created with), so 0
    stops consumption, 1 restores it and 2 doubles it. Counters go on integrating
    whatever rate results.

    Args:
        scale: the population's ``scale`` column, changed in place.
    """

    def __init__(self, scale: npt.NDArray[np.float32]) -> None:
        self._scale = scale
        self._base = scale.copy()
        self.factor = np.ones(len(scale), dtype=np.float64)

    def set(self, row: int, factor: float) -> float:
        """Apply ``factor`` (0..MAX_LOAD_FACTOR) to meter ``row``; return the previous factor.

        Raises:
            ConfigError: ``factor`` is not a finite number within 0..MAX_LOAD_FACTOR.
        """
        if not (math.isfinite(factor) and 0.0 <= factor <= MAX_LOAD_FACTOR):
            raise ConfigError(f"must be 0..{MAX_LOAD_FACTOR:g}, got {factor!r}", key="factor")
        old = float(self.factor[row])
        self.factor[row] = factor
        self._scale[row] = self._base[row] * factor
        return old


@dataclass(frozen=True, slots=True, kw_only=True)
class PhyTiming:
    """On-air timing of an EN 13757-4 meter-to-other mode.

    Attributes:
        chip_rate: chips per s.
        header_chips: preamble plus synchronisation word, in chips.
        chips_per_byte: data encoding (Manchester 16, 3-out-of-6 12, NRZ 8).
        postamble_chips: trailer after the last byte (the minimum, 2 chips).
    """

    chip_rate: float
    header_chips: int
    chips_per_byte: int
    postamble_chips: int = 2


PHY: dict[RadioMode, PhyTiming] = {
    # S1: 32.768 kcps Manchester; long preamble of 279 "01" chip pairs, 18-chip sync word.
    RadioMode.S1: PhyTiming(chip_rate=32_768.0, header_chips=2 * 279 + 18, chips_per_byte=16),
    # T1: 100 kcps 3-out-of-6 (12 chips per byte); 19 "01" pairs, 10-chip sync word.
    RadioMode.T1: PhyTiming(chip_rate=100_000.0, header_chips=2 * 19 + 10, chips_per_byte=12),
    # C1: 100 kcps NRZ; 16 "01" pairs, then 0x543D and the frame-format word (32 chips).
    RadioMode.C1: PhyTiming(chip_rate=100_000.0, header_chips=2 * 16 + 32, chips_per_byte=8),
}


def airtime_s(mode: RadioMode | int, frame_bytes: int) -> float:
    """Return the air time in s of a frame of ``frame_bytes`` bytes sent in ``mode``.

    ``frame_bytes`` counts every byte from the L-field to the last CRC as sent;
    preamble, synchronisation word and postamble come on top (see :data:`PHY`).
    A 50-byte frame takes about 42 ms in S1, 6.5 ms in T1 and 4.6 ms in C1.

    Raises:
        ConfigError: unknown mode or a negative length.
    """
    if mode not in RadioMode.__members__.values():
        raise ConfigError(f"unknown radio mode {mode!r}", key="mode")
    if frame_bytes < 0:
        raise ConfigError(f"frame length must be >= 0, got {frame_bytes}", key="frame_bytes")
    phy = PHY[RadioMode(mode)]
    chips = phy.header_chips + phy.chips_per_byte * frame_bytes + phy.postamble_chips
    return chips / phy.chip_rate


def airtime_per_meter(mode: npt.NDArray[np.uint8], frame_bytes: npt.ArrayLike) -> F64:
    """Return :func:`airtime_s` for each meter's mode and frame length (arrays of one length).

    Raises:
        ConfigError: a mode outside :class:`RadioMode` or a negative length.
    """
    lengths = np.broadcast_to(np.asarray(frame_bytes, dtype=np.float64), mode.shape)
    if mode.size and int(mode.max()) >= len(RadioMode):
        raise ConfigError(f"unknown radio mode {int(mode.max())}", key="mode")
    if lengths.size and float(lengths.min()) < 0:
        raise ConfigError("frame length must be >= 0", key="frame_bytes")
    table = [PHY[m] for m in RadioMode]
    header = np.array([p.header_chips + p.postamble_chips for p in table], np.float64)
    per_byte = np.array([p.chips_per_byte for p in table], np.float64)
    rate = np.array([p.chip_rate for p in table])
    return np.asarray((header[mode] + per_byte[mode] * lengths) / rate[mode])
