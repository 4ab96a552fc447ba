"""Tests of the meter population: generator, mix parsing, file loaders."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from smtestbed.proto.wmbus.fields import manufacturer_value
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.population import (
    MANUFACTURERS,
    Area,
    Population,
    empty,
    generate,
    parse_mix,
)
from smtestbed.services.sensorfarm.schema import DEVICE_TYPE, Interface, MeterKind


def _same(a: Population, b: Population) -> bool:
    return all(
        np.array_equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
    )


def test_generate_same_seed_gives_identical_arrays() -> None:
    """Two populations drawn with one seed are equal in every column."""
    assert _same(generate(2000, seed=7), generate(2000, seed=7))


def test_generate_other_seed_gives_other_ids() -> None:
    """A different seed draws different meter numbers."""
    assert not np.array_equal(generate(100, seed=1).ident, generate(100, seed=2).ident)


def test_generate_ids_are_unique_eight_digit_numbers() -> None:
    """Meter numbers are distinct and within 0..99999999."""
    pop = generate(50_000, seed=3)
    assert len(np.unique(pop.ident)) == 50_000
    assert int(pop.ident.max()) <= 99_999_999


def test_generate_follows_the_mix() -> None:
    """Kind shares match the requested mix within sampling error."""
    pop = generate(20_000, seed=4, mix={"electricity": 0.75, "water": 0.25})
    shares = np.bincount(pop.kind, minlength=4) / len(pop)
    assert shares[MeterKind.ELECTRICITY] == pytest.approx(0.75, abs=0.02)
    assert shares[MeterKind.GAS] == 0.0
    assert shares[MeterKind.WATER] == pytest.approx(0.25, abs=0.02)


def test_generate_uses_makers_and_device_type_of_each_kind() -> None:
    """Each meter's manufacturer builds its kind and its device type is the kind's medium."""
    pop = generate(5000, seed=5)
    for kind in MeterKind:
        rows = pop.kind == kind
        makers = {manufacturer_value(code) for code in MANUFACTURERS[kind]}
        assert set(pop.manufacturer[rows].tolist()) <= makers
        assert set(pop.device_type[rows].tolist()) == {DEVICE_TYPE[kind]}


def test_generate_places_meters_inside_the_area() -> None:
    """Positions lie within the configured rectangle."""
    pop = generate(3000, seed=6, area=Area(width_m=100.0, height_m=50.0))
    assert pop.x_m.min() >= 0
    assert pop.x_m.max() <= 100.0
    assert pop.y_m.min() >= 0
    assert pop.y_m.max() <= 50.0
    assert pop.x_m.max() > 90.0
    assert pop.y_m.max() > 45.0


def test_generate_draws_a_key_per_meter() -> None:
    """Keys differ between meters."""
    pop = generate(1000, seed=8)
    assert len({bytes(row) for row in pop.key}) == 1000


def test_generate_spreads_first_transmissions_over_one_interval() -> None:
    """First send times lie in [start, start + interval)."""
    pop = generate(1000, seed=9, interval_s=60.0, start_s=1000.0)
    assert pop.next_tx.min() >= 1000.0
    assert pop.next_tx.max() < 1060.0


def test_generate_gives_wired_meters_primary_addresses_1_to_250() -> None:
    """Wired meters get primary addresses 1..250 in order, repeating."""
    pop = generate(300, seed=1, interface=Interface.WIRED_MBUS)
    assert pop.primary_address[:3].tolist() == [1, 2, 3]
    assert pop.primary_address[250] == 1


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"security": 3}, "security"),
        ({"jitter": 1.0}, "jitter"),
        ({"interval_s": 0.0}, "interval_s"),
    ],
)
def test_generate_rejects_out_of_range_arguments(kwargs: dict[str, float], key: str) -> None:
    """Bad generator arguments raise ConfigError naming the argument."""
    with pytest.raises(ConfigError) as info:
        generate(10, seed=1, **kwargs)  # type: ignore[arg-type]
    assert info.value.key == key


def test_memory_per_meter_is_below_one_kib() -> None:
    """A meter takes the sum of its column item sizes, far below 1 KiB."""
    pop = empty(1000)
    assert pop.memory_bytes() / 1000 == 117


def test_index_of_finds_the_row_of_a_meter() -> None:
    """index_of returns the row holding the meter number."""
    pop = generate(100, seed=2)
    assert pop.index_of(int(pop.ident[42])) == 42


def test_index_of_rejects_an_unknown_meter() -> None:
    """An unknown meter number raises ConfigError."""
    pop = empty(3)
    pop.ident[:] = [1, 2, 3]
    with pytest.raises(ConfigError, match="no meter with ID 00000009"):
        pop.index_of(9)


def test_population_rejects_a_column_of_wrong_dtype() -> None:
    """Constructing with a mistyped column raises ConfigError naming it."""
    pop = empty(4)
    with pytest.raises(ConfigError) as info:
        dataclasses.replace(pop, scale=np.zeros(4))  # type: ignore[arg-type]
    assert info.value.key == "scale"


def test_parse_mix_reads_kind_shares() -> None:
    """parse_mix returns each kind's share as given."""
    assert parse_mix("electricity=0.5, gas=0.2,heat=0.3") == {
        "electricity": 0.5,
        "gas": 0.2,
        "heat": 0.3,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("electricity", "not KIND=SHARE"),
        ("oil=1", "unknown name 'oil'"),
        ("gas=x", "not a number"),
        ("gas=-1", ">= 0"),
        ("gas=0", "all shares are 0"),
        ("gas=1,gas=2", "twice"),
    ],
)
def test_parse_mix_rejects_bad_items(text: str, message: str) -> None:
    """Malformed mixes raise ConfigError with key 'mix' and a clear message."""
    with pytest.raises(ConfigError, match=message) as info:
        parse_mix(text)
    assert info.value.key == "mix"
