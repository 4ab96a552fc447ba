"""Wired meters from a population: identity, addresses and values that advance with time."""

from __future__ import annotations

import pytest
from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.services._runtime.clock import SimClock
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.population import generate
from smtestbed.services.sensorfarm.schema import COUNTER_COLUMNS, Interface, MeterKind
from smtestbed.services.sensorfarm.wired_meters import MEAN_RATE, linear_values, wired_meters

START = 1_767_225_600.0


def test_wired_meters_take_identity_from_the_population() -> None:
    """ID, manufacturer, version and medium come from the population row; addresses count up."""
    pop = generate(5, seed=2, interface=Interface.WIRED_MBUS)
    meters = wired_meters(pop, clock=lambda: START, first_address=10)
    assert [m.primary_address for m in meters] == [10, 11, 12, 13, 14]
    for row, meter in enumerate(meters):
        assert meter.ident == f"{int(pop.ident[row]):08d}"
        assert meter.manufacturer == decode_manufacturer(int(pop.manufacturer[row]))
        assert (meter.version, meter.medium) == (pop.version[row], pop.device_type[row])


def test_counters_grow_at_the_mean_rate_times_scale() -> None:
    """After one day the first counter has grown by rate * scale * 86400 s."""
    pop = generate(20, seed=3, interface=Interface.WIRED_MBUS)
    for row in range(len(pop)):
        model = linear_values(pop, row, t0=START)
        grown = model.at(START + 86_400.0)[0] - model.at(START)[0]
        expected = MEAN_RATE[model.kind] * float(pop.scale[row]) * 86_400.0
        assert grown == pytest.approx(expected, rel=1e-12)


def test_counters_never_go_backwards_even_before_the_start() -> None:
    """Every counter column at later times is >= its value at earlier times."""
    pop = generate(20, seed=4, interface=Interface.WIRED_MBUS)
    for row in range(len(pop)):
        model = linear_values(pop, row, t0=START)
        times = [START - 100.0, START, START + 1.0, START + 3600.0, START + 1e7]
        for column in COUNTER_COLUMNS[model.kind]:
            series = [model.at(t)[column] for t in times]
            assert series == sorted(series)


def test_records_follow_the_clock() -> None:
    """A meter's records read later carry a higher counter than read at the start."""
    clock = SimClock("stepped", start=START)
    pop = generate(1, seed=5, interface=Interface.WIRED_MBUS, mix={"electricity": 1})
    meter = wired_meters(pop, clock=clock.now)[0]
    before = meter.records()[0].value
    clock.advance_to(START + 30 * 86_400.0)
    after = meter.records()[0].value
    assert isinstance(before, int)
    assert isinstance(after, int)
    assert after > before
    assert linear_values(pop, 0, t0=START).kind == MeterKind.ELECTRICITY


def test_addresses_past_250_are_a_config_error() -> None:
    """Five meters from address 247 would need 251; the error names first_address."""
    pop = generate(5, seed=6, interface=Interface.WIRED_MBUS)
    with pytest.raises(ConfigError, match="first_address"):
        wired_meters(pop, clock=lambda: START, first_address=247)
