"""Tests of the per-window kernels against slow pure-Python references."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.kernels import (
    BUDGET_S,
    Transmissions,
    advance_counters,
    select_transmitters,
    transmission_bound,
)
from smtestbed.services.sensorfarm.models import (
    WATER_HEAT_WH_PER_M3K,
    WindowRates,
    airtime_per_meter,
    window_rates,
)
from smtestbed.services.sensorfarm.population import Population, generate
from smtestbed.services.sensorfarm.schema import Interface, MeterKind, RadioMode

T0 = 1_700_000_000.0  # a Tuesday in November 2023, 22:13 UTC


def _population(n: int = 400, seed: int = 11) -> Population:
    return generate(n, seed=seed, interval_s=120.0, jitter=0.3, start_s=T0)


def _copy(pop: Population) -> Population:
    return dataclasses.replace(
        pop, **{f.name: getattr(pop, f.name).copy() for f in dataclasses.fields(pop)}
    )


def _equal(a: Population, b: Population) -> bool:
    return all(
        np.array_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
    )


def reference_advance(pop: Population, rates: WindowRates, rng: np.random.Generator) -> None:
    """Advance counters one meter at a time in plain Python floats."""
    noise = rng.standard_normal(len(pop))
    per_m3 = WATER_HEAT_WH_PER_M3K * (rates.flow_c - rates.return_c)
    for i in range(len(pop)):
        k = int(pop.kind[i])
        factor = float(pop.scale[i]) * max(0.0, 1.0 + float(rates.sigma[k]) * float(noise[i]))
        used = float(rates.mean[k]) * factor * rates.hours
        momentary = float(rates.now[k]) * factor
        pop.values[i, 0] += used
        if k == MeterKind.ELECTRICITY:
            pop.values[i, 2] = momentary
        elif k == MeterKind.WATER:
            pop.values[i, 1] = momentary
        elif k == MeterKind.HEAT:
            pop.values[i, 1] += used / per_m3
            pop.values[i, 2] = momentary / per_m3
            pop.values[i, 3] = rates.flow_c
            pop.values[i, 4] = rates.return_c


def _book(pop: Population, i: int, t: float, airtime: float) -> bool:
    hour = math.floor(t / 3600.0)
    if hour != pop.airtime_hour[i]:
        pop.airtime_hour[i] = hour
        pop.airtime_s[i] = 0.0
    spent = float(pop.airtime_s[i]) + airtime
    if spent > float(BUDGET_S[pop.mode[i]]):
        return False
    pop.airtime_s[i] = spent
    return True


def reference_select(
    pop: Population, t0: float, t1: float, airtime: np.ndarray, rng: np.random.Generator, bound: int
) -> tuple[list[tuple[int, float, int, int]], int]:
    """Walk each meter's schedule in plain Python; return (meter, time, AN, MC) rows and skips."""
    uniforms = iter(rng.random(bound).tolist())
    sent, skipped = [], 0
    for i in range(len(pop)):
        t = float(pop.next_tx[i])
        if pop.interface[i] != Interface.WIRELESS or t >= t1:
            continue
        interval, jitter = float(pop.interval_s[i]), float(pop.jitter[i])
        if t < t0:
            t = t0 + next(uniforms) * interval
        while t < t1:
            if pop.stopped[i]:
                pass
            elif _book(pop, i, t, float(airtime[i])):
                pop.access_number[i] = (int(pop.access_number[i]) + 1) % 256
                if pop.security[i] == 7:
                    pop.message_counter[i] = (int(pop.message_counter[i]) + 1) % 2**32
                sent.append((i, t, int(pop.access_number[i]), int(pop.message_counter[i])))
            else:
                skipped += 1
            t += interval * (1.0 + jitter * (2.0 * next(uniforms) - 1.0))
        pop.next_tx[i] = t
    return sent, skipped


def _rows(tx: Transmissions) -> list[tuple[int, float, int, int]]:
    return [
        (int(m), float(t), int(a), int(c))
        for m, t, a, c in zip(
            tx.meter, tx.time_s, tx.access_number, tx.message_counter, strict=True
        )
    ]


def test_advance_counters_matches_the_reference_exactly() -> None:
    """The compiled counter kernel gives bit-identical values to the Python reference."""
    pop = _population()
    pop.stopped[::3] = True
    expected = _copy(pop)
    rates = window_rates(T0, T0 + 900.0)
    advance_counters(pop, rates, np.random.default_rng(5))
    reference_advance(expected, rates, np.random.default_rng(5))
    assert np.array_equal(pop.values, expected.values)


def test_advance_counters_never_lowers_a_counter_and_moves_stopped_meters() -> None:
    """Over many windows every counter column only grows, stopped meters included."""
    pop = _population()
    pop.stopped[:] = True
    rng = np.random.default_rng(1)
    start = pop.values.copy()
    for step in range(20):
        before = pop.values.copy()
        advance_counters(pop, window_rates(T0 + step * 3600.0, T0 + (step + 1) * 3600.0), rng)
        for kind, columns in ((0, [0, 1]), (1, [0]), (2, [0]), (3, [0, 1])):
            rows = pop.kind == kind
            assert np.all(pop.values[rows][:, columns] >= before[rows][:, columns])
    assert np.all(pop.values[:, 0] > start[:, 0])


def test_advance_counters_integrates_the_mean_rate() -> None:
    """Without noise, a meter's energy grows by mean rate x scale x hours."""
    pop = _population(40)
    rates = dataclasses.replace(window_rates(T0, T0 + 7200.0), sigma=np.zeros(4))
    start = pop.values[:, 0].copy()
    advance_counters(pop, rates, np.random.default_rng(0))
    expected = start + rates.mean[pop.kind] * pop.scale.astype(np.float64) * 2.0
    assert pop.values[:, 0] == pytest.approx(expected, rel=1e-12)


def test_advance_counters_heat_volume_follows_energy_and_temperature_spread() -> None:
    """A heat meter's volume grows by energy / (1163 Wh/(m^3 K) x spread)."""
    pop = _population(400)
    heat = np.flatnonzero(pop.kind == MeterKind.HEAT)
    before = pop.values[heat].copy()
    rates = window_rates(T0, T0 + 900.0)
    advance_counters(pop, rates, np.random.default_rng(2))
    energy = pop.values[heat, 0] - before[:, 0]
    volume = pop.values[heat, 1] - before[:, 1]
    spread = rates.flow_c - rates.return_c
    assert volume == pytest.approx(energy / (WATER_HEAT_WH_PER_M3K * spread), rel=1e-9)
    assert np.all(pop.values[heat, 3] == rates.flow_c)


def test_advance_counters_same_seed_same_values() -> None:
    """Two runs with one seed end with identical populations."""
    a, b = _population(), _population()
    for pop in (a, b):
        rng = np.random.default_rng(9)
        for step in range(5):
            advance_counters(pop, window_rates(T0 + 900 * step, T0 + 900 * (step + 1)), rng)
    assert _equal(a, b)


def test_advance_counters_rejects_negative_rates() -> None:
    """A negative mean rate raises ConfigError naming it."""
    rates = dataclasses.replace(window_rates(T0, T0 + 1.0), mean=-np.ones(4))
    with pytest.raises(ConfigError) as info:
        advance_counters(_population(4), rates, np.random.default_rng(0))
    assert info.value.key == "mean"


def _select_case() -> tuple[Population, np.ndarray]:
    pop = _population(600)
    pop.interval_s[:50] = 2.0  # walk-by meters: several telegrams per window, some skipped
    pop.next_tx[50:80] = T0 - 500.0  # overdue
    pop.stopped[80:100] = True
    pop.interface[100:120] = Interface.WIRED_MBUS
    pop.security[::2] = 7
    pop.access_number[120:140] = 255
    airtime = airtime_per_meter(pop.mode, 80)
    airtime[:50] = 0.4
    return pop, airtime


def test_select_transmitters_matches_the_reference_exactly() -> None:
    """The compiled selection gives the reference's telegrams, skips and meter state."""
    pop, airtime = _select_case()
    expected = _copy(pop)
    bound = transmission_bound(pop, T0, T0 + 300.0)
    tx = select_transmitters(pop, T0, T0 + 300.0, airtime, np.random.default_rng(4))
    rows, skipped = reference_select(
        expected, T0, T0 + 300.0, airtime, np.random.default_rng(4), bound
    )
    assert _rows(tx) == rows
    assert tx.skipped == skipped
    assert skipped > 0
    assert _equal(pop, expected)


def test_select_transmitters_sends_due_meters_once_and_jitters_the_next_time() -> None:
    """With a window shorter than any gap, exactly the due meters send once each."""
    pop = _population(500)
    due = np.flatnonzero((pop.next_tx >= T0) & (pop.next_tx < T0 + 30.0))
    before = pop.next_tx.copy()
    tx = select_transmitters(
        pop, T0, T0 + 30.0, airtime_per_meter(pop.mode, 50), np.random.default_rng(3)
    )
    assert tx.meter.tolist() == due.tolist()
    assert tx.time_s.tolist() == before[due].tolist()
    gaps = pop.next_tx[due] - before[due]
    assert gaps.min() >= 120.0 * 0.7
    assert gaps.max() <= 120.0 * 1.3
    assert len(np.unique(gaps)) == len(due)


def test_select_transmitters_skips_what_exceeds_the_hourly_budget() -> None:
    """A T1 meter with 1 s telegrams every 10 s sends 3 per hour (3.6 s budget), skips the rest."""
    pop = _population(1)
    pop.mode[0], pop.interval_s[0], pop.jitter[0], pop.next_tx[0] = RadioMode.T1, 10.0, 0.0, T0
    hour_end = (math.floor(T0 / 3600) + 1) * 3600.0
    tx = select_transmitters(pop, T0, hour_end, np.array([1.0]), np.random.default_rng(0))
    steps = math.ceil((hour_end - T0) / 10.0)
    assert len(tx) == 3
    assert tx.skipped == steps - 3
    nxt = select_transmitters(
        pop, hour_end, hour_end + 60.0, np.array([1.0]), np.random.default_rng(0)
    )
    assert len(nxt) == 3


def test_select_transmitters_wraps_access_number_and_counts_mode_7_only() -> None:
    """Access numbers wrap 255 -> 0; only security-7 meters step their message counter."""
    pop = _population(2)
    pop.next_tx[:] = T0
    pop.access_number[:] = 255
    pop.security[:] = [7, 5]
    pop.message_counter[:] = [41, 41]
    tx = select_transmitters(pop, T0, T0 + 1.0, np.zeros(2), np.random.default_rng(0))
    assert tx.access_number.tolist() == [0, 0]
    assert tx.message_counter.tolist() == [42, 41]


def test_select_transmitters_keeps_stopped_meters_silent_on_schedule() -> None:
    """A stopped meter sends nothing, but its next send time still moves on."""
    pop = _population(1)
    pop.next_tx[0], pop.stopped[0] = T0, True
    tx = select_transmitters(pop, T0, T0 + 1.0, np.zeros(1), np.random.default_rng(0))
    assert len(tx) == 0
    assert tx.skipped == 0
    assert pop.next_tx[0] >= T0 + 120.0 * 0.7


def test_select_transmitters_leaves_wired_meters_alone() -> None:
    """Meters on a wired interface neither send nor change state."""
    pop = generate(50, seed=1, interface=Interface.WIRED_MBUS, start_s=T0)
    before = _copy(pop)
    tx = select_transmitters(pop, T0, T0 + 2000.0, np.zeros(50), np.random.default_rng(0))
    assert len(tx) == 0
    assert _equal(pop, before)


def test_select_transmitters_rephases_overdue_meters_into_the_next_interval() -> None:
    """Overdue meters move to a uniform time within one interval after t0, not all to t0."""
    pop = _population(300)
    pop.next_tx[:] = T0 - 10_000.0
    select_transmitters(pop, T0, T0 + 1.0, np.zeros(300), np.random.default_rng(0))
    assert pop.next_tx.min() >= T0
    assert pop.next_tx.max() < T0 + 120.0 * 1.3 + 1.0
    assert len(np.unique(pop.next_tx)) == 300


def test_select_transmitters_rejects_airtime_of_wrong_length() -> None:
    """An airtime array not one per meter raises ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        select_transmitters(_population(3), T0, T0 + 1.0, np.zeros(2), np.random.default_rng(0))
    assert info.value.key == "airtime"


def test_select_transmitters_rejects_a_reversed_window() -> None:
    """A window ending before it starts raises ConfigError."""
    with pytest.raises(ConfigError, match="not a time window"):
        select_transmitters(_population(3), T0, T0 - 1.0, np.zeros(3), np.random.default_rng(0))


def reference_bound(pop: Population, t0: float, t1: float) -> int:
    """Sum the schedule steps of each due wireless meter in plain Python."""
    total = 0
    for i in range(len(pop)):
        t = float(pop.next_tx[i])
        if pop.interface[i] != Interface.WIRELESS or t >= t1:
            continue
        gap = float(pop.interval_s[i]) * (1.0 - float(pop.jitter[i]))
        total += math.ceil((t1 - max(t, t0)) / gap) + (3 if t < t0 else 2)
    return total


def test_transmission_bound_matches_the_reference_and_covers_the_steps() -> None:
    """The compiled bound equals the reference and is at least the uniforms used."""
    pop, airtime = _select_case()
    bound = transmission_bound(pop, T0, T0 + 300.0)
    assert bound == reference_bound(pop, T0, T0 + 300.0)
    rng = np.random.default_rng(4)
    tx = select_transmitters(pop, T0, T0 + 300.0, airtime, rng)
    assert bound >= len(tx) + tx.skipped


def test_select_transmitters_names_a_due_meter_with_jitter_of_one() -> None:
    """A due meter with jitter 1 raises ConfigError naming its ID and the interval field."""
    pop = _population(3)
    pop.next_tx[1], pop.jitter[1] = T0, 1.0
    with pytest.raises(ConfigError, match=f"meter {int(pop.ident[1]):08d} \\(row 1\\)") as info:
        select_transmitters(pop, T0, T0 + 1.0, np.zeros(3), np.random.default_rng(0))
    assert info.value.key == "interval_s"
