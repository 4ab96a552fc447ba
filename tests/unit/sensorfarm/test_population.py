"""Tests of the meter population: generator, mix parsing, file loaders."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from smtestbed.proto.wmbus.fields import manufacturer_value
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.population import (
    MANUFACTURERS,
    Area,
    Population,
    empty,
    from_rows,
    generate,
    load_csv,
    load_toml,
    parse_mix,
)
from smtestbed.services.sensorfarm.schema import DEVICE_TYPE, Interface, MeterKind, RadioMode


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


TOML_TEXT = """
[[meter]]
id = 12345678
manufacturer = "KAM"
kind = "heat"
mode = "t1"
security = 5
key = "000102030405060708090a0b0c0d0e0f"
energy_wh = 1500.5
flow_temperature_c = 60.0
x_m = 10.0

[[meter]]
id = "00000042"
manufacturer = "emh"
kind = "electricity"
interval_s = 60
"""

CSV_TEXT = """id,manufacturer,kind,mode,security,key,energy_import_wh,volume_m3
1,ESY,electricity,c1,0,,100.0,
2,ZRI,water,s1,7,ffeeddccbbaa99887766554433221100,,2.5
"""


def test_load_toml_reads_every_given_field_and_defaults_the_rest(tmp_path: Path) -> None:
    """TOML meters carry their fields; missing ones take the documented defaults."""
    path = tmp_path / "meters.toml"
    path.write_text(TOML_TEXT)
    pop = load_toml(path, seed=1, start_s=100.0)
    assert pop.ident.tolist() == [12345678, 42]
    assert pop.manufacturer.tolist() == [0x2C2D, manufacturer_value("EMH")]
    assert pop.kind.tolist() == [MeterKind.HEAT, MeterKind.ELECTRICITY]
    assert pop.mode.tolist() == [RadioMode.T1, RadioMode.C1]
    assert pop.device_type.tolist() == [0x04, 0x02]
    assert pop.security.tolist() == [5, 0]
    assert bytes(pop.key[0]) == bytes(range(16))
    assert pop.values[0].tolist() == [1500.5, 0.0, 0.0, 60.0, 0.0]
    assert pop.interval_s.tolist() == [900.0, 60.0]
    assert pop.x_m.tolist() == [10.0, 0.0]
    assert 100.0 <= pop.next_tx[1] < 160.0


def test_load_csv_reads_rows_and_leaves_empty_cells_at_defaults(tmp_path: Path) -> None:
    """CSV rows become meters; an empty cell takes the field's default."""
    path = tmp_path / "meters.csv"
    path.write_text(CSV_TEXT)
    pop = load_csv(path)
    assert pop.ident.tolist() == [1, 2]
    assert pop.mode.tolist() == [RadioMode.C1, RadioMode.S1]
    assert pop.security.tolist() == [0, 7]
    assert bytes(pop.key[1]).hex() == "ffeeddccbbaa99887766554433221100"
    assert pop.values[:, 0].tolist() == [100.0, 2.5]


def _rows(**fields: object) -> list[dict[str, object]]:
    good: dict[str, object] = {"id": 1, "manufacturer": "KAM", "kind": "water"}
    return [{"id": 9, "manufacturer": "DME", "kind": "gas"}, {**good, **fields}]


@pytest.mark.parametrize(
    ("fields", "key", "message"),
    [
        ({"id": None}, "row 2.id", "is missing"),
        ({"id": 100_000_000}, "row 2.id", "not in 0..99999999"),
        ({"id": 9}, "row 2.id", "already used in row 1"),
        ({"id": 1.5}, "row 2.id", "not an integer"),
        ({"manufacturer": "K1M"}, "row 2.manufacturer", "three letters"),
        ({"kind": "oil"}, "row 2.kind", "not one of electricity, gas"),
        ({"mode": "x"}, "row 2.mode", "not one of s1, t1, c1"),
        ({"security": 5}, "row 2.key", "is missing"),
        ({"security": 5, "key": "abcd"}, "row 2.key", "needs 32 hex digits"),
        ({"security": 6}, "row 2.security", "not 0, 5 or 7"),
        ({"jitter": 1.0}, "row 2.jitter", "not in"),
        ({"interval_s": "soon"}, "row 2.interval_s", "not a number"),
        ({"volume_m3": -1}, "row 2.volume_m3", "not in"),
        ({"energy_wh": 1}, "row 2.energy_wh", "not a field of water meters"),
        ({"colour": "red"}, "row 2.colour", "unknown field"),
        ({"primary_address": 251}, "row 2.primary_address", "not in 0..250"),
    ],
)
def test_from_rows_names_row_and_field_of_a_bad_value(
    fields: dict[str, object], key: str, message: str
) -> None:
    """Every bad field raises ConfigError whose key is 'row N.FIELD'."""
    with pytest.raises(ConfigError, match=message) as info:
        from_rows(_rows(**fields))
    assert info.value.key == key


def test_load_csv_rejects_a_row_longer_than_the_header(tmp_path: Path) -> None:
    """A row with more cells than header fields is named in the error."""
    path = tmp_path / "meters.csv"
    path.write_text("id,manufacturer,kind\n1,KAM,gas\n2,KAM,gas,extra\n")
    with pytest.raises(ConfigError) as info:
        load_csv(path)
    assert info.value.key == "row 2"


def test_load_toml_without_meter_tables_is_rejected(tmp_path: Path) -> None:
    """A TOML file lacking [[meter]] tables raises ConfigError with key 'meter'."""
    path = tmp_path / "meters.toml"
    path.write_text("meter = 3\n")
    with pytest.raises(ConfigError) as info:
        load_toml(path)
    assert info.value.key == "meter"


def test_load_csv_of_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing CSV file raises ConfigError naming the file."""
    with pytest.raises(ConfigError, match=r"absent\.csv"):
        load_csv(tmp_path / "absent.csv")
