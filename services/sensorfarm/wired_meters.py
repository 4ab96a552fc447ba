"""Wired M-Bus meters drawn from a population, with values that advance with time.

For standalone use (``smtb sensorfarm serve-mbus``) each meter's values move
linearly from their level at the start: counters grow at the meter's mean
household rate (``MEAN_RATE`` per kind times the meter's ``scale``), and the
instantaneous columns hold the matching rate. Units are those of
:data:`schema.VALUE_COLUMNS`:

- electricity: energy A+ grows at ``r`` Wh/s, A- stays, power = ``3600 r`` W;
- gas: volume grows at ``r`` m^3/s;
- water: volume grows at ``r`` m^3/s, flow = ``3600 r`` m^3/h;
- heat: energy grows at ``r`` Wh/s, volume at ``r / HEAT_WH_PER_M3`` m^3/s,
  flow = 3600 times that in m^3/h, flow and return temperature fixed.

The records are built by :func:`templates.records_for`, so a wired meter
sends the same records as the radio telegrams of its kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.proto.records import Record
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.mbus_slave import MAX_PRIMARY_ADDRESS, WiredMeter
from smtestbed.services.sensorfarm.population import Population
from smtestbed.services.sensorfarm.schema import MeterKind
from smtestbed.services.sensorfarm.templates import records_for

YEAR_S = 365.25 * 86400.0
MEAN_RATE: dict[MeterKind, float] = {
    MeterKind.ELECTRICITY: 3_500_000.0 / YEAR_S,
    MeterKind.GAS: 1_500.0 / YEAR_S,
    MeterKind.WATER: 130.0 / YEAR_S,
    MeterKind.HEAT: 13_000_000.0 / YEAR_S,
}
"""Mean consumption of a household (scale 1) in counter-0 units per second (Wh/s, m^3/s)."""
HEAT_WH_PER_M3 = 40_000.0
"""Heat energy per m^3 of water through a heat meter (as the population's start levels)."""
FLOW_TEMPERATURE_C = 65.0
RETURN_TEMPERATURE_C = 42.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LinearValues:
    """A meter's values as a linear function of time.

    Attributes:
        kind: the meter kind.
        start: the ``N_VALUES`` values at ``t0``.
        rate: counter-0 growth in its unit per second.
        t0: simulation time of ``start`` in s.
    """

    kind: MeterKind
    start: tuple[float, ...]
    rate: float
    t0: float

    def at(self, t: float) -> list[float]:
        """Return the values at simulation time ``t`` (never below those at ``t0``)."""
        dt = max(0.0, t - self.t0)
        values = list(self.start)
        values[0] += self.rate * dt
        if self.kind == MeterKind.ELECTRICITY:
            values[2] = self.rate * 3600.0
        elif self.kind == MeterKind.WATER:
            values[1] = self.rate * 3600.0
        elif self.kind == MeterKind.HEAT:
            volume_rate = self.rate / HEAT_WH_PER_M3
            values[1] += volume_rate * dt
            values[2] = volume_rate * 3600.0
            values[3], values[4] = FLOW_TEMPERATURE_C, RETURN_TEMPERATURE_C
        return values


def linear_values(pop: Population, row: int, *, t0: float) -> LinearValues:
    """Return the linear value model of meter ``row`` starting from its values at ``t0``."""
    kind = MeterKind(int(pop.kind[row]))
    return LinearValues(
        kind=kind,
        start=tuple(float(v) for v in pop.values[row]),
        rate=MEAN_RATE[kind] * float(pop.scale[row]),
        t0=t0,
    )


def wired_meters(
    pop: Population, *, clock: Callable[[], float], first_address: int = 1
) -> list[WiredMeter]:
    """Return every meter of ``pop`` as a wired meter at consecutive primary addresses.

    Args:
        pop: the meters.
        clock: simulation time in s; the values start at its value now.
        first_address: primary address of the first meter.

    Raises:
        ConfigError: the addresses would run past 250.
    """
    last = first_address + len(pop) - 1
    if first_address < 0 or last > MAX_PRIMARY_ADDRESS:
        raise ConfigError(
            f"{len(pop)} meters from address {first_address} need addresses up to {last}; "
            f"primary addresses are 0..{MAX_PRIMARY_ADDRESS}",
            key="first_address",
        )
    t0 = clock()
    return [_meter(pop, row, first_address + row, clock, t0) for row in range(len(pop))]


def _meter(
    pop: Population, row: int, address: int, clock: Callable[[], float], t0: float
) -> WiredMeter:
    model = linear_values(pop, row, t0=t0)

    def records() -> Sequence[Record]:
        return records_for(model.kind, model.at(clock()))

    return WiredMeter(
        ident=f"{int(pop.ident[row]):08d}",
        manufacturer=decode_manufacturer(int(pop.manufacturer[row])),
        version=int(pop.version[row]),
        medium=int(pop.device_type[row]),
        primary_address=address,
        records=records,
    )
