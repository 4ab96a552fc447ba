"""Manipulation requests: each changes exactly what it says; a bad one changes nothing."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.sensorfarm import manipulation
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.population import Population, generate
from smtestbed.services.sensorfarm.schema import MeterKind

T0 = 1_767_225_600.0
Action = Callable[[Population, Any], dict[str, Any]]
Snapshot = dict[str, npt.NDArray[Any]]


@pytest.fixture
def pop() -> Population:
    """Twenty meters of every kind."""
    mix = {"electricity": 1.0, "gas": 1.0, "water": 1.0, "heat": 1.0}
    return generate(20, seed=21, mix=mix, security=5, interval_s=60.0, start_s=T0)


def _row(pop: Population, kind: MeterKind) -> int:
    return int(np.flatnonzero(pop.kind == kind)[0])


def _ident(pop: Population, kind: MeterKind) -> str:
    return f"{int(pop.ident[_row(pop, kind)]):08d}"


def _snapshot(pop: Population) -> Snapshot:
    return {f.name: getattr(pop, f.name).copy() for f in dataclasses.fields(pop)}


def _changes(before: Snapshot, pop: Population) -> set[tuple[str, int]]:
    """Return (column, row) of every changed cell (per row for 2-D columns)."""
    out: set[tuple[str, int]] = set()
    for name, old in before.items():
        new = getattr(pop, name)
        differs = old != new
        rows = np.flatnonzero(differs.any(axis=1) if differs.ndim == 2 else differs)
        out |= {(name, int(r)) for r in rows}
    return out


def test_set_counter_changes_that_value_only_and_returns_the_state(pop: Population) -> None:
    """Setting a heat meter's volume changes values[row, 1] alone; the reply shows old and new."""
    row = _row(pop, MeterKind.HEAT)
    before = _snapshot(pop)
    old = float(pop.values[row, 1])
    params = {"meter": _ident(pop, MeterKind.HEAT), "column": "volume_m3", "value": old + 12.5}
    reply = manipulation.set_counter(pop, params)
    assert _changes(before, pop) == {("values", row)}
    assert np.array_equal(np.delete(pop.values[row], 1), np.delete(before["values"][row], 1))
    assert float(pop.values[row, 1]) == old + 12.5
    assert reply["meter"] == _ident(pop, MeterKind.HEAT)
    assert reply["kind"] == "heat"
    assert reply["values"]["volume_m3"] == old + 12.5
    assert (reply["changed"], reply["old"]) == ("volume_m3", old)


def test_set_counter_goes_backwards_only_when_allowed(pop: Population) -> None:
    """allow_backwards lets a counter drop; a meter given as an int is found too."""
    row = _row(pop, MeterKind.GAS)
    params = {"meter": int(pop.ident[row]), "column": "volume_m3", "value": 1.5}
    reply = manipulation.set_counter(pop, {**params, "allow_backwards": True})
    assert float(pop.values[row, 0]) == 1.5
    assert reply["values"] == {"volume_m3": 1.5}


def test_momentary_values_may_go_down_or_negative(pop: Population) -> None:
    """Power is no counter: it may be set below its value, even negative (export)."""
    row = _row(pop, MeterKind.ELECTRICITY)
    params = {"meter": _ident(pop, MeterKind.ELECTRICITY), "column": "power_w", "value": -250}
    manipulation.set_counter(pop, params)
    assert float(pop.values[row, 2]) == -250.0


def test_set_key_replaces_the_key_only(pop: Population) -> None:
    """set_key stores the 16 bytes of the hex key in that meter's row and nothing else."""
    row = _row(pop, MeterKind.WATER)
    before = _snapshot(pop)
    key = "000102030405060708090A0B0C0D0E0F"
    reply = manipulation.set_key(pop, {"meter": _ident(pop, MeterKind.WATER), "key": key})
    assert _changes(before, pop) == {("key", row)}
    assert bytes(pop.key[row]) == bytes.fromhex(key)
    assert reply["meter"] == _ident(pop, MeterKind.WATER)


def test_stop_and_resume_flip_the_stopped_flag_only(pop: Population) -> None:
    """stop sets stopped[row]; resume clears it; the replies say so."""
    row = _row(pop, MeterKind.GAS)
    before = _snapshot(pop)
    stopped = manipulation.set_stopped(pop, {"meter": _ident(pop, MeterKind.GAS)}, stopped=True)
    assert _changes(before, pop) == {("stopped", row)}
    assert stopped["stopped"] is True
    resumed = manipulation.set_stopped(pop, {"meter": _ident(pop, MeterKind.GAS)}, stopped=False)
    assert _changes(before, pop) == set()
    assert resumed["stopped"] is False


def test_corrupt_sets_the_number_of_frames_to_corrupt(pop: Population) -> None:
    """corrupt with frames=4 sets corrupt_next[row] = 4; without frames it means 1."""
    row = _row(pop, MeterKind.HEAT)
    before = _snapshot(pop)
    reply = manipulation.corrupt(pop, {"meter": _ident(pop, MeterKind.HEAT), "frames": 4})
    assert _changes(before, pop) == {("corrupt_next", row)}
    assert int(pop.corrupt_next[row]) == 4 == reply["corrupt_next"]
    assert manipulation.corrupt(pop, {"meter": _ident(pop, MeterKind.HEAT)})["corrupt_next"] == 1


def test_set_interval_changes_the_interval_and_keeps_the_next_send(pop: Population) -> None:
    """set_interval stores the interval (s); next_tx is untouched."""
    row = _row(pop, MeterKind.ELECTRICITY)
    before = _snapshot(pop)
    reply = manipulation.set_interval(
        pop, {"meter": _ident(pop, MeterKind.ELECTRICITY), "interval_s": 120}
    )
    assert _changes(before, pop) == {("interval_s", row)}
    assert float(pop.interval_s[row]) == 120.0 == reply["interval_s"]
    assert reply["next_tx"] == float(before["next_tx"][row])


def test_describe_gives_the_meter_state_with_named_values(pop: Population) -> None:
    """describe names each used value column of the kind and the sending state."""
    row = _row(pop, MeterKind.WATER)
    state = manipulation.describe(pop, row)
    assert state["meter"] == f"{int(pop.ident[row]):08d}"
    assert state["values"] == {
        "volume_m3": float(pop.values[row, 0]),
        "flow_m3h": float(pop.values[row, 1]),
    }
    assert (state["security"], state["stopped"], state["corrupt_next"]) == (5, False, 0)


def _bad(kind: MeterKind, action: Action, field: str, **params: Any) -> Any:
    return pytest.param(kind, action, params, field, id=f"{action.__name__}-{field}-{params}")


def _stop(pop: Population, params: Any) -> dict[str, Any]:
    return manipulation.set_stopped(pop, params, stopped=True)


E, G, W, H = MeterKind.ELECTRICITY, MeterKind.GAS, MeterKind.WATER, MeterKind.HEAT
SET = manipulation.set_counter
BAD_REQUESTS = [
    _bad(E, SET, "meter", meter="12345678x"),
    _bad(E, SET, "meter", meter=True),
    _bad(E, SET, "meter", meter=-1),
    _bad(E, SET, "meter", meter=None),
    _bad(E, _stop, "meter", meter=[1]),
    _bad(G, SET, "column", column="power_w", value=1.0),
    _bad(G, SET, "column", column="", value=1.0),
    _bad(W, SET, "column", column=None, value=1.0),
    _bad(H, SET, "column", column="energy_import_wh", value=1.0),
    _bad(E, SET, "value", column="energy_import_wh", value=0.5),
    _bad(E, SET, "value", column="energy_import_wh", value=math.nan),
    _bad(E, SET, "value", column="power_w", value=math.inf),
    _bad(E, SET, "value", column="power_w", value=-math.inf),
    _bad(E, SET, "value", column="power_w", value="12"),
    _bad(E, SET, "value", column="power_w", value=True),
    _bad(E, SET, "value", column="power_w"),
    _bad(G, SET, "value", column="volume_m3", value=-1.0, allow_backwards=True),
    _bad(G, SET, "allow_backwards", column="volume_m3", value=1.0, allow_backwards="yes"),
    _bad(W, manipulation.set_key, "key", key="zz" * 16),
    _bad(W, manipulation.set_key, "key", key="00" * 15),
    _bad(W, manipulation.set_key, "key", key="00" * 17),
    _bad(W, manipulation.set_key, "key", key=0),
    _bad(W, manipulation.set_key, "key"),
    _bad(H, manipulation.corrupt, "frames", frames=0),
    _bad(H, manipulation.corrupt, "frames", frames=65536),
    _bad(H, manipulation.corrupt, "frames", frames=1.5),
    _bad(H, manipulation.corrupt, "frames", frames=True),
    _bad(H, manipulation.corrupt, "frames", frames="3"),
    _bad(E, manipulation.set_interval, "interval_s", interval_s=0.5),
    _bad(E, manipulation.set_interval, "interval_s", interval_s=7 * 86400 + 1),
    _bad(E, manipulation.set_interval, "interval_s", interval_s=math.nan),
    _bad(E, manipulation.set_interval, "interval_s", interval_s="60"),
    _bad(E, manipulation.set_interval, "interval_s", interval_s=False),
    _bad(E, manipulation.set_interval, "interval_s"),
]


@pytest.mark.parametrize(("kind", "action", "params", "field"), BAD_REQUESTS)
def test_a_malformed_request_names_its_field_and_changes_nothing(
    pop: Population, kind: MeterKind, action: Action, params: dict[str, Any], field: str
) -> None:
    """Each malformed request raises RequestError naming the field; the population is unchanged."""
    before = _snapshot(pop)
    with pytest.raises(RequestError) as info:
        action(pop, {"meter": _ident(pop, kind), **params})
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    assert _changes(before, pop) == set()


@pytest.mark.parametrize("params", [None, [1, 2], "00000001", 42])
def test_parameters_that_are_not_a_map_are_refused(pop: Population, params: Any) -> None:
    """A request body that is not a map is refused as field 'params', nothing changed."""
    before = _snapshot(pop)
    with pytest.raises(RequestError, match=r"^params: ") as info:
        manipulation.set_counter(pop, params)
    assert info.value.field == "params"
    assert _changes(before, pop) == set()


def test_an_unknown_meter_is_refused_by_its_number(pop: Population) -> None:
    """A well-formed number no meter has is refused as field 'meter' with that number."""
    unused = next(i for i in range(1, 100) if i not in pop.ident.tolist())
    with pytest.raises(RequestError, match=rf"^meter: no meter {unused:08d}"):
        manipulation.corrupt(pop, {"meter": unused})


def test_a_value_too_large_for_the_telegram_is_refused_and_the_farm_keeps_running(
    pop: Population,
) -> None:
    """1e300 Wh cannot be sent: refused as 'value', and the next window builds its telegrams."""
    farm = Farm(pop, seed=1)
    before = _snapshot(pop)
    with pytest.raises(RequestError) as info:
        manipulation.set_counter(
            pop,
            {"meter": _ident(pop, MeterKind.ELECTRICITY), "column": "power_w", "value": 1e300},
        )
    assert info.value.field == "value"
    assert _changes(before, pop) == set()
    assert farm.step(T0, T0 + 120.0).count > 0
