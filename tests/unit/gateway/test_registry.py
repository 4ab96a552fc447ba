"""Gateway meter registry: validation, persistence in the store, cache consistency."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.gateway.registry import Registry
from smtestbed.services.gateway.schema import MeterEntry, Reading, Taf
from smtestbed.services.gateway.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A store on a fresh file, closed afterwards."""
    opened = Store(tmp_path / "gw.db")
    yield opened
    opened.close()


def entry(meter: str = "12345678", **change: Any) -> MeterEntry:
    """Return a valid mode-7 entry with TAF1 and TAF7, with fields changed as given."""
    base = MeterEntry(
        meter=meter,
        manufacturer="ABC",
        key=bytes(range(16)),
        security=7,
        tafs=frozenset({Taf.TAF1, Taf.TAF7}),
        consumer="flat-3",
        emt="supplier-1",
    )
    return dataclasses.replace(base, **change)


def test_added_meter_is_found_and_persisted(store: Store, tmp_path: Path) -> None:
    """An added entry is returned by get() and by a registry on the reopened file."""
    registry = Registry(store)
    registry.add(entry())
    registry.add(entry("00000001", security=0, key=b"", tafs=frozenset()))
    assert registry.get("12345678") == entry()
    assert registry.get("99999999") is None
    store.close()
    reopened = Store(tmp_path / "gw.db")
    try:
        again = Registry(reopened)
        assert again.all() == [entry("00000001", security=0, key=b"", tafs=frozenset()), entry()]
        assert len(again) == 2
        assert "12345678" in again
    finally:
        reopened.close()


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"meter": "1234567"}, "meter"),
    ({"meter": "1234567X"}, "meter"),
    ({"meter": 12345678}, "meter"),
    ({"manufacturer": "AB"}, "manufacturer"),
    ({"manufacturer": "abc"}, "manufacturer"),
    ({"security": 3}, "security"),
    ({"security": True}, "security"),
    ({"key": bytes(15)}, "key"),
    ({"key": "00" * 16}, "key"),
    ({"security": 5, "key": b""}, "key"),
    ({"security": 0}, "key"),
    ({"tafs": frozenset({"taf3"})}, "tafs"),
    ({"tafs": "taf1"}, "tafs"),
    ({"consumer": None}, "consumer"),
    ({"emt": 5}, "emt"),
]


@pytest.mark.parametrize(("change", "field"), INVALID)
def test_invalid_entry_is_refused_naming_the_field(
    store: Store, change: dict[str, Any], field: str
) -> None:
    """An invalid entry raises RequestError(field=...) and registers nothing."""
    registry = Registry(store)
    with pytest.raises(RequestError) as caught:
        registry.add(entry(**change))
    assert caught.value.field == field
    assert registry.all() == []
    assert Registry(store).all() == []


def test_taf_names_are_normalised(store: Store) -> None:
    """TAFs given as strings are stored as Taf members."""
    registry = Registry(store)
    added = registry.add(entry(tafs=frozenset({"taf2", "taf6"})))
    assert added.tafs == frozenset({Taf.TAF2, Taf.TAF6})
    assert all(isinstance(t, Taf) for t in Registry(store).all()[0].tafs)


def test_second_add_is_refused_unless_replacing(store: Store) -> None:
    """Adding a registered meter again raises; replace=True swaps the entry (new key)."""
    registry = Registry(store)
    registry.add(entry())
    with pytest.raises(RequestError, match="already registered") as caught:
        registry.add(entry(key=bytes(16)))
    assert caught.value.field == "meter"
    assert registry.get("12345678") == entry()
    registry.add(entry(key=bytes(16)), replace=True)
    assert registry.get("12345678") == entry(key=bytes(16))
    assert Registry(store).all() == [entry(key=bytes(16))]


def test_removed_meter_is_gone_but_its_readings_stay(store: Store) -> None:
    """remove() drops the entry from cache and table; its stored readings remain."""
    registry = Registry(store)
    registry.add(entry())
    digest = hashlib.sha256(b"frame").digest()
    store.commit_readings(
        [
            Reading(
                meter="12345678", t_sim=1.0, access_number=1, message_counter=1, frame_digest=digest
            )
        ]
    )
    assert registry.remove("12345678") == entry()
    assert registry.get("12345678") is None
    assert Registry(store).all() == []
    assert [r.frame_digest for _, r in store.readings("12345678")] == [digest]


def test_removing_unknown_meter_is_refused(store: Store) -> None:
    """remove() of a meter that is not registered raises RequestError on field meter."""
    with pytest.raises(RequestError) as caught:
        Registry(store).remove("12345678")
    assert caught.value.field == "meter"


def test_assign_tafs_replaces_the_set(store: Store) -> None:
    """assign_tafs() stores exactly the new set; an unknown TAF changes nothing."""
    registry = Registry(store)
    registry.add(entry())
    updated = registry.assign_tafs("12345678", [Taf.TAF2, "taf6"])
    assert updated == entry(tafs=frozenset({Taf.TAF2, Taf.TAF6}))
    with pytest.raises(RequestError) as caught:
        registry.assign_tafs("12345678", ["taf2", "taf12"])
    assert caught.value.field == "tafs"
    assert registry.get("12345678") == updated
    assert Registry(store).all() == [updated]
    with pytest.raises(RequestError, match="not registered"):
        registry.assign_tafs("87654321", [Taf.TAF1])


def test_add_many_registers_all_or_none(store: Store, tmp_path: Path) -> None:
    """add_many stores every entry in one go; a bad or repeated entry refuses all, naming it."""
    registry = Registry(store)
    registry.add(entry("00000009"))
    before = store.query("SELECT * FROM meters ORDER BY meter")
    refusals = [
        ([entry("00000001"), entry("0000000X")], "entries[1].meter"),
        ([entry("00000001"), entry("00000001")], "entries[1].meter"),
        ([entry("00000001"), entry("00000009")], "entries[1].meter"),
        ([entry("00000001", tafs=frozenset({"taf3"}))], "entries[0].tafs"),
        ([entry("00000001"), "00000002"], "entries[1]"),
    ]
    for entries, field in refusals:
        with pytest.raises(RequestError) as caught:
            registry.add_many(entries)  # type: ignore[arg-type]
        assert caught.value.field == field
        assert store.query("SELECT * FROM meters ORDER BY meter") == before
        assert registry.get("00000001") is None
    added = registry.add_many([entry("00000001", tafs=frozenset({"taf7"})), entry("00000002")])
    assert added[0].tafs == frozenset({Taf.TAF7})
    store.close()
    reopened = Store(tmp_path / "gw.db")
    try:
        assert [e.meter for e in Registry(reopened).all()] == ["00000001", "00000002", "00000009"]
    finally:
        reopened.close()
