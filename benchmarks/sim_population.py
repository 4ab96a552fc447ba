"""Benchmark the sensor farm's per-window kernels and the population's memory.

Run: ``.venv/bin/python benchmarks/sim_population.py [SCALE]``. Prints one row per case:
the Numba kernel's rate next to a pure-Python loop (on a smaller population, per meter)
and a plain numpy version, all in the same run.

* counter advance: meters per s through :func:`kernels.advance_counters` (15-minute window);
* transmitter selection: meters scanned per s by :func:`kernels.select_transmitters`
  (60 s window of a 15-minute interval: about 7 % of the meters send);
* memory: bytes per meter of a :class:`Population` of 10^6 meters, next to one Python
  object per meter.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from smtestbed.services.sensorfarm.kernels import (
    BUDGET_S,
    advance_counters,
    select_transmitters,
)
from smtestbed.services.sensorfarm.models import (
    WATER_HEAT_WH_PER_M3K,
    WindowRates,
    airtime_per_meter,
    window_rates,
)
from smtestbed.services.sensorfarm.population import Population, generate

T0 = 1_700_000_000.0
Row = dict[str, object]


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    """Return the shortest wall time in s of ``repeat`` calls of ``fn``."""
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _best_on_copy(fn: Callable[[Population], object], pop: Population, repeat: int = 3) -> float:
    """Return the shortest wall time in s of ``fn`` on a fresh copy of ``pop`` (copy untimed)."""
    best = math.inf
    for _ in range(repeat):
        copy = _fresh(pop)
        start = time.perf_counter()
        fn(copy)
        best = min(best, time.perf_counter() - start)
    return best


def _fresh(pop: Population) -> Population:
    return dataclasses.replace(
        pop, **{f.name: getattr(pop, f.name).copy() for f in dataclasses.fields(pop)}
    )


def python_advance(pop: Population, rates: WindowRates, noise: list[float]) -> None:
    """Advance counters one meter at a time in plain Python (lists, not arrays)."""
    kinds, scales = pop.kind.tolist(), pop.scale.tolist()
    values = pop.values.tolist()
    mean, now, sigma = rates.mean.tolist(), rates.now.tolist(), rates.sigma.tolist()
    per_m3 = WATER_HEAT_WH_PER_M3K * (rates.flow_c - rates.return_c)
    for i, k in enumerate(kinds):
        factor = scales[i] * max(0.0, 1.0 + sigma[k] * noise[i])
        used, momentary, row = mean[k] * factor * rates.hours, now[k] * factor, values[i]
        row[0] += used
        if k == 0:
            row[2] = momentary
        elif k == 2:
            row[1] = momentary
        elif k == 3:
            row[1] += used / per_m3
            row[2] = momentary / per_m3
            row[3], row[4] = rates.flow_c, rates.return_c


def numpy_advance(pop: Population, rates: WindowRates, rng: np.random.Generator) -> None:
    """Advance counters with whole-array numpy operations."""
    kind, values = pop.kind, pop.values
    factor = pop.scale * np.maximum(0.0, 1.0 + rates.sigma[kind] * rng.standard_normal(len(pop)))
    used, momentary = rates.mean[kind] * factor * rates.hours, rates.now[kind] * factor
    values[:, 0] += used
    per_m3 = WATER_HEAT_WH_PER_M3K * (rates.flow_c - rates.return_c)
    for k, column in ((0, 2), (2, 1)):
        rows = kind == k
        values[rows, column] = momentary[rows]
    heat = kind == 3
    values[heat, 1] += used[heat] / per_m3
    values[heat, 2] = momentary[heat] / per_m3
    values[heat, 3], values[heat, 4] = rates.flow_c, rates.return_c


def python_select(pop: Population, t0: float, t1: float, airtime: list[float]) -> int:
    """Scan every meter in plain Python; send, book air time and reschedule the due ones."""
    next_tx, interval, jitter = pop.next_tx.tolist(), pop.interval_s.tolist(), pop.jitter.tolist()
    spent, hours, modes = pop.airtime_s.tolist(), pop.airtime_hour.tolist(), pop.mode.tolist()
    uniforms = np.random.default_rng(0).random(len(pop)).tolist()
    budget, sent = BUDGET_S.tolist(), 0
    for i, t in enumerate(next_tx):
        if not t0 <= t < t1:
            continue
        hour = math.floor(t / 3600.0)
        if hour != hours[i]:
            hours[i], spent[i] = hour, 0.0
        if spent[i] + airtime[i] <= budget[modes[i]]:
            spent[i] += airtime[i]
            sent += 1
        next_tx[i] = t + interval[i] * (1.0 + jitter[i] * (2.0 * uniforms[i] - 1.0))
    return sent


def numpy_select(pop: Population, t0: float, t1: float, airtime: npt.NDArray[np.float64]) -> int:
    """Select the due meters with numpy masks (at most one telegram per meter and window)."""
    rows = np.flatnonzero((pop.next_tx >= t0) & (pop.next_tx < t1) & (pop.interface == 0))
    t = pop.next_tx[rows]
    hour = np.floor(t / 3600.0).astype(np.int32)
    pop.airtime_s[rows[hour != pop.airtime_hour[rows]]] = 0.0
    pop.airtime_hour[rows] = hour
    spent = pop.airtime_s[rows] + airtime[rows]
    ok = (spent <= BUDGET_S[pop.mode[rows]]) & ~pop.stopped[rows]
    sending = rows[ok]
    pop.airtime_s[sending] = spent[ok]
    pop.access_number[sending] += 1
    pop.message_counter[sending[pop.security[sending] == 7]] += 1
    u = np.random.default_rng(0).random(len(rows))
    pop.next_tx[rows] = t + pop.interval_s[rows] * (1.0 + pop.jitter[rows] * (2.0 * u - 1.0))
    return len(sending)


@dataclass(slots=True)
class _PyMeter:
    """One meter as plain Python objects: what a population without arrays would hold."""

    ident: int
    manufacturer: int
    version: int
    kind: int
    device_type: int
    mode: int
    interface: int
    security: int
    key: bytes
    interval_s: float
    jitter: float
    x_m: float
    y_m: float
    tx_power_dbm: float
    values: list[float]
    scale: float
    next_tx: float
    access_number: int
    message_counter: int
    airtime_s: float
    airtime_hour: int
    stopped: bool
    corrupt_next: int
    primary_address: int


def _python_bytes_per_meter(pop: Population) -> float:
    """Return traced bytes per meter of ``pop`` held as one :class:`_PyMeter` each."""
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    columns = {f.name: getattr(pop, f.name).tolist() for f in dataclasses.fields(pop)}
    columns["key"] = [bytes(key) for key in columns["key"]]
    meters = [
        _PyMeter(**{name: column[i] for name, column in columns.items()}) for i in range(len(pop))
    ]
    del columns  # the meters keep what they reference
    size = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return size / len(meters)


def _advance_row(n: int, n_ref: int) -> Row:
    pop, small = generate(n, seed=1, start_s=T0), generate(n_ref, seed=1, start_s=T0)
    rates = window_rates(T0, T0 + 900.0)
    rng = np.random.default_rng(2)
    advance_counters(small, rates, rng)  # compiled or loaded from cache before timing
    noise = rng.standard_normal(n_ref).tolist()
    return {
        "case": f"counter advance, {n:,} meters",
        "unit": "meters/s",
        "rate": n / _best(lambda: advance_counters(pop, rates, rng)),
        "reference": n_ref / _best(lambda: python_advance(small, rates, noise), 1),
        "numpy": n / _best(lambda: numpy_advance(pop, rates, rng)),
        "target": ">= numpy",
    }


def _select_row(n: int, n_ref: int) -> Row:
    pop, small = generate(n, seed=3, start_s=T0), generate(n_ref, seed=3, start_s=T0)
    airtime, air_small = airtime_per_meter(pop.mode, 60), airtime_per_meter(small.mode, 60)
    t1 = T0 + 60.0
    rng = np.random.default_rng(4)
    select_transmitters(_fresh(small), T0, t1, air_small, rng)  # compile before timing
    return {
        "case": f"transmitter selection, {n:,} meters, 60 s window",
        "unit": "meters/s",
        "rate": n / _best_on_copy(lambda p: select_transmitters(p, T0, t1, airtime, rng), pop),
        "reference": n_ref
        / _best_on_copy(lambda p: python_select(p, T0, t1, air_small.tolist()), small, 1),
        "numpy": n / _best_on_copy(lambda p: numpy_select(p, T0, t1, airtime), pop),
        "target": ">= numpy",
    }


def _memory_row(n: int, n_ref: int) -> Row:
    pop = generate(n, seed=5)
    return {
        "case": f"memory, {n:,} meters",
        "unit": "bytes/meter",
        "rate": pop.memory_bytes() / n,
        "reference": _python_bytes_per_meter(generate(n_ref, seed=5)),
        "numpy": None,
        "target": "< 1024",
    }


def run(scale: float = 1.0) -> list[dict[str, object]]:
    """Run every case at ``scale`` x 10^6 meters (references on scale x 2 x 10^4)."""
    n, n_ref = max(1000, int(1_000_000 * scale)), max(100, int(20_000 * scale))
    return [_advance_row(n, n_ref), _select_row(n, n_ref), _memory_row(n, n_ref)]


def _print(rows: list[dict[str, object]]) -> None:
    print(f"{'case':52} {'unit':12} {'rate':>14} {'reference':>14} {'numpy':>14}  target")
    for row in rows:
        numpy_rate = row["numpy"]
        numpy_text = f"{numpy_rate:14,.0f}" if isinstance(numpy_rate, float) else f"{'-':>14}"
        print(
            f"{row['case']!s:52} {row['unit']!s:12} {row['rate']:14,.1f} "
            f"{row['reference']:14,.1f} {numpy_text}  {row['target']}"
        )


if __name__ == "__main__":
    _print(run(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0))
