"""Per-window Numba kernels over the whole population.

Each simulation window [t0, t1) the sensor farm calls :func:`advance_counters`
(integrate consumption into the counters) and :func:`select_transmitters` (who
sends when, within the duty-cycle budget). Each is a private ``@njit`` kernel on
plain arrays behind a typed wrapper that validates its inputs and draws its
random numbers from the caller's seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.models import WATER_HEAT_WH_PER_M3K, WindowRates
from smtestbed.services.sensorfarm.population import Population
from smtestbed.services.sensorfarm.schema import (
    DUTY_CYCLE,
    Interface,
    MeterKind,
    RadioMode,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Air time allowed per hour in each mode (s), indexed by RadioMode.
BUDGET_S = np.array([3600.0 * DUTY_CYCLE[mode] for mode in RadioMode])

_ELECTRICITY = int(MeterKind.ELECTRICITY)
_GAS = int(MeterKind.GAS)
_WATER = int(MeterKind.WATER)
_WIRELESS = int(Interface.WIRELESS)
_MODE7 = 7


@njit(cache=True)
def _advance(
    kind: npt.NDArray[np.uint8],
    scale: npt.NDArray[np.float32],
    values: F64,
    noise: F64,
    hours: float,
    mean: F64,
    now: F64,
    sigma: F64,
    flow_c: float,
    return_c: float,
) -> None:
    """Add each meter's consumption over ``hours`` to its counters; set its momentary values."""
    per_m3 = WATER_HEAT_WH_PER_M3K * (flow_c - return_c)
    for i in range(kind.shape[0]):
        k = kind[i]
        factor = scale[i] * max(0.0, 1.0 + sigma[k] * noise[i])
        used = mean[k] * factor * hours
        momentary = now[k] * factor
        values[i, 0] += used
        if k == _ELECTRICITY:
            values[i, 2] = momentary
        elif k == _WATER:
            values[i, 1] = momentary
        elif k != _GAS:
            values[i, 1] += used / per_m3
            values[i, 2] = momentary / per_m3
            values[i, 3] = flow_c
            values[i, 4] = return_c


def advance_counters(pop: Population, rates: WindowRates, rng: np.random.Generator) -> None:
    """Advance every meter's counters over one window, in place.

    Draws one standard normal per meter from ``rng`` (in row order) for its noise
    factor ``max(0, 1 + sigma * z)``; counter increments are never negative.
    Counters of stopped meters advance too: stopping only stops sending. Columns:
    electricity energy import (Wh) and power (W); gas volume (m^3); water volume
    (m^3) and flow (m^3/h); heat energy (Wh), volume (m^3), flow (m^3/h), flow and
    return temperature (°C).

    Raises:
        ConfigError: negative rates or window length, or a flow temperature not above
            the return temperature.
    """
    _check_rates(rates)
    noise = rng.standard_normal(len(pop))
    _advance(
        pop.kind,
        pop.scale,
        pop.values,
        noise,
        rates.hours,
        rates.mean,
        rates.now,
        rates.sigma,
        rates.flow_c,
        rates.return_c,
    )


def _check_rates(rates: WindowRates) -> None:
    kinds = (len(MeterKind),)
    for name in ("mean", "now", "sigma"):
        column = getattr(rates, name)
        if column.shape != kinds or column.dtype != np.float64:
            raise ConfigError(f"{name} must be float64 of shape {kinds}", key=name)
        if not (np.all(np.isfinite(column)) and np.all(column >= 0)):
            raise ConfigError(f"{name} must be finite and >= 0", key=name)
    if not (math.isfinite(rates.hours) and rates.hours >= 0):
        raise ConfigError(f"window length must be >= 0 h, got {rates.hours}", key="hours")
    if not rates.flow_c > rates.return_c:
        raise ConfigError("flow temperature must exceed return temperature", key="flow_c")


@dataclass(frozen=True, slots=True, kw_only=True)
class Transmissions:
    """The telegrams due in one window, meter by meter and, per meter, in time order.

    Attributes:
        meter: row of the sending meter.
        time_s: simulation time the telegram starts (s).
        access_number: access number the telegram carries (already incremented).
        message_counter: mode-7 message counter it carries (incremented for mode 7 only).
        skipped: transmissions dropped because they would exceed the hour's air time.
    """

    meter: I64
    time_s: F64
    access_number: npt.NDArray[np.uint8]
    message_counter: npt.NDArray[np.uint32]
    skipped: int

    def __len__(self) -> int:
        return len(self.meter)


@njit(cache=True)
def _charge(
    i: int,
    t: float,
    airtime: F64,
    budget: float,
    airtime_s: npt.NDArray[np.float32],
    airtime_hour: npt.NDArray[np.int32],
) -> bool:
    """Book ``airtime[i]`` in the hour of ``t`` if the budget allows; return whether it did."""
    hour = math.floor(t / 3600.0)
    if hour != airtime_hour[i]:
        airtime_hour[i] = hour
        airtime_s[i] = 0.0
    spent = airtime_s[i] + airtime[i]
    if spent > budget:
        return False
    airtime_s[i] = spent
    return True


@njit(cache=True)
def _select(
    schedule: tuple[npt.NDArray[Any], ...],
    airtime: F64,
    budget_by_mode: F64,
    uniforms: F64,
    t0: float,
    t1: float,
    out_meter: I64,
    out_time: F64,
    out_an: npt.NDArray[np.uint8],
    out_mc: npt.NDArray[np.uint32],
) -> tuple[int, int]:
    """Walk each wireless meter's schedule through [t0, t1); return (sent, skipped)."""
    next_tx, interval, jitter, mode, interface, stopped, security, air_s, air_hour, an, mc = (
        schedule
    )
    sent, skipped, u = 0, 0, 0
    for i in range(next_tx.shape[0]):
        t = next_tx[i]
        if interface[i] != _WIRELESS or t >= t1:
            continue
        if t < t0:  # windows were skipped: re-phase after t0 instead of a burst at t0
            t = t0 + uniforms[u] * interval[i]
            u += 1
        while t < t1:
            if stopped[i]:
                pass
            elif _charge(i, t, airtime, budget_by_mode[mode[i]], air_s, air_hour):
                an[i] = (np.int64(an[i]) + 1) & 0xFF
                if security[i] == _MODE7:
                    mc[i] = (np.int64(mc[i]) + 1) & 0xFFFFFFFF
                out_meter[sent], out_time[sent] = i, t
                out_an[sent], out_mc[sent] = an[i], mc[i]
                sent += 1
            else:
                skipped += 1
            t += interval[i] * (1.0 + jitter[i] * (2.0 * uniforms[u] - 1.0))
            u += 1
        next_tx[i] = t
    return sent, skipped


@njit(cache=True)
def _bound(
    next_tx: F64,
    interval: npt.NDArray[np.float32],
    jitter: npt.NDArray[np.float32],
    interface: npt.NDArray[np.uint8],
    t0: float,
    t1: float,
) -> int:
    """Sum each due wireless meter's maximum schedule steps in [t0, t1) (see the wrapper).

    Returns ``-1 - i`` instead when meter ``i`` is due with an interval <= 0 or jitter >= 1.
    """
    total = 0
    for i in range(next_tx.shape[0]):
        t = next_tx[i]
        if interface[i] != _WIRELESS or t >= t1:
            continue
        extra = 3 if t < t0 else 2
        gap = np.float64(interval[i]) * (1.0 - np.float64(jitter[i]))
        if not (gap > 0.0 and jitter[i] >= 0.0):
            return -1 - i
        total += math.ceil((t1 - max(t, t0)) / gap) + extra
    return total


def transmission_bound(pop: Population, t0: float, t1: float) -> int:
    """Return an upper bound on the schedule steps of [t0, t1): the uniforms to draw.

    Each wireless meter due before ``t1`` takes one uniform per step of its
    schedule, at most ``ceil((t1 - max(next_tx, t0)) / (interval * (1 - jitter)))``,
    plus one to re-phase when it is overdue; two more per meter cover rounding.

    Raises:
        ConfigError: a bad window, or a due meter with an interval <= 0 s or a jitter
            outside [0, 1).
    """
    if not (math.isfinite(t0) and math.isfinite(t1) and t1 >= t0):
        raise ConfigError(f"window [{t0}, {t1}) is not a time window", key="window")
    bound = int(_bound(pop.next_tx, pop.interval_s, pop.jitter, pop.interface, t0, t1))
    if bound < 0:
        row = -1 - bound
        raise ConfigError(
            f"meter {int(pop.ident[row]):08d} (row {row}) needs an interval > 0 s and "
            f"0 <= jitter < 1, has {pop.interval_s[row]} s and {pop.jitter[row]}",
            key="interval_s",
        )
    return bound


def select_transmitters(
    pop: Population, t0: float, t1: float, airtime: F64, rng: np.random.Generator
) -> Transmissions:
    """Pick the telegrams wireless meters send in [t0, t1) and schedule the next ones.

    A meter sends at each ``next_tx`` in the window unless it is stopped (silent,
    schedule kept) or the telegram's air time would exceed its duty-cycle budget
    of that hour (:data:`BUDGET_S`; skipped and counted). The next send time is
    ``interval * (1 + jitter * (2u - 1))`` later, u uniform from ``rng``: the
    wrapper draws :func:`transmission_bound` uniforms up front, used in row order.
    A meter found overdue (``next_tx < t0``) is re-phased to ``t0 + u * interval``.
    Each sent telegram increments the access number (mod 256) and, for security
    mode 7, the message counter (mod 2^32). Wired meters are left alone.

    Args:
        airtime: air time in s of each meter's telegram (:func:`models.airtime_per_meter`).

    Raises:
        ConfigError: a bad window, an airtime array of wrong length or negative values, or a
            due meter with an interval <= 0 s or a jitter outside [0, 1).
    """
    _check_airtime(pop, airtime)
    uniforms = rng.random(transmission_bound(pop, t0, t1))
    size = len(uniforms)
    out = (np.empty(size, np.int64), np.empty(size), np.empty(size, np.uint8))
    out_mc = np.empty(size, np.uint32)
    sent, skipped = _select(
        _schedule_arrays(pop), airtime, BUDGET_S, uniforms, t0, t1, *out, out_mc
    )
    return Transmissions(
        meter=out[0][:sent].copy(),
        time_s=out[1][:sent].copy(),
        access_number=out[2][:sent].copy(),
        message_counter=out_mc[:sent].copy(),
        skipped=int(skipped),
    )


def _schedule_arrays(pop: Population) -> tuple[npt.NDArray[Any], ...]:
    return (
        pop.next_tx,
        pop.interval_s,
        pop.jitter,
        pop.mode,
        pop.interface,
        pop.stopped,
        pop.security,
        pop.airtime_s,
        pop.airtime_hour,
        pop.access_number,
        pop.message_counter,
    )


def _check_airtime(pop: Population, airtime: F64) -> None:
    if airtime.shape != (len(pop),) or airtime.dtype != np.float64:
        raise ConfigError(f"airtime must be float64 of shape ({len(pop)},)", key="airtime")
    if len(airtime) and not (np.all(np.isfinite(airtime)) and airtime.min() >= 0):
        raise ConfigError("airtime must be finite and >= 0 s", key="airtime")
