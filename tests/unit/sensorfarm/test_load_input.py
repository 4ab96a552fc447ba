"""meter.set_load: a meter's consumption-rate input, applied by the consumption model."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.sensorfarm import manipulation
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.models import LoadInputs
from smtestbed.services.sensorfarm.population import Population, generate
from smtestbed.services.sensorfarm.schema import MeterKind

T0 = 1_767_225_600.0
HOUR = 3600.0


def _pop() -> Population:
    mix = {"electricity": 1.0, "water": 1.0}
    return generate(8, seed=4, mix=mix, security=0, interval_s=600.0, start_s=T0)


def _electricity(pop: Population) -> tuple[int, str]:
    row = int(np.flatnonzero(pop.kind == MeterKind.ELECTRICITY)[0])
    return row, f"{int(pop.ident[row]):08d}"


def _used(pop: Population, factor: float) -> tuple[npt.NDArray[np.float64], float]:
    """Run an hour, the electricity meter at ``factor``; return every increment and its power."""
    row, ident = _electricity(pop)
    manipulation.set_load(pop, LoadInputs(pop.scale), {"meter": ident, "factor": factor})
    before = pop.values[:, 0].copy()
    Farm(pop, seed=9).step(T0, T0 + HOUR)
    return pop.values[:, 0] - before, float(pop.values[row, 2])


def test_load_factor_scales_the_meters_consumption_and_no_other_meter() -> None:
    """Factor 2.5 gives 2.5 times the energy of factor 1 under the same noise; others equal."""
    row, _ = _electricity(_pop())
    nominal, power_1 = _used(_pop(), 1.0)
    loaded, power_2 = _used(_pop(), 2.5)
    assert nominal[row] > 0
    assert loaded[row] == pytest.approx(2.5 * nominal[row], rel=1e-6)
    assert power_2 == pytest.approx(2.5 * power_1, rel=1e-6)
    others = np.arange(len(nominal)) != row
    np.testing.assert_array_equal(loaded[others], nominal[others])


def test_load_factor_zero_stops_consumption_and_one_restores_it() -> None:
    """Factor 0: counter still and power 0; back to 1: the meter's own scale again."""
    pop = _pop()
    row, ident = _electricity(pop)
    base = float(pop.scale[row])
    loads = LoadInputs(pop.scale)
    reply = manipulation.set_load(pop, loads, {"meter": ident, "factor": 0})
    before = float(pop.values[row, 0])
    Farm(pop, seed=1).step(T0, T0 + HOUR)
    assert (reply["load_factor"], reply["old"]) == (0.0, 1.0)
    assert float(pop.values[row, 0]) == before
    assert float(pop.values[row, 2]) == 0.0
    back = manipulation.set_load(pop, loads, {"meter": ident, "factor": 1.0})
    assert back["old"] == 0.0
    assert float(pop.scale[row]) == base


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"meter": "x", "factor": 1.0}, "meter"),
        ({"meter": 123_456_789, "factor": 1.0}, "meter"),
        ({"factor": -0.1}, "factor"),
        ({"factor": 101.0}, "factor"),
        ({"factor": float("nan")}, "factor"),
        ({"factor": True}, "factor"),
        ({"factor": "2"}, "factor"),
        ({}, "factor"),
    ],
)
def test_a_bad_load_request_names_its_field_and_changes_nothing(
    params: dict[str, object], field: str
) -> None:
    """Bad meter or factor: RequestError naming the field; the scale column is unchanged."""
    pop = _pop()
    _, ident = _electricity(pop)
    full = {"meter": ident, **params}
    scale = pop.scale.copy()
    with pytest.raises(RequestError) as info:
        manipulation.set_load(pop, LoadInputs(pop.scale), full)
    assert info.value.field == field
    np.testing.assert_array_equal(pop.scale, scale)
