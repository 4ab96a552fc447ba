"""The meter registry: which meters belong to a gateway, their keys, TAFs, consumer and EMT.

Backed by the ``meters`` table of the store's file (written through
:meth:`Store.transaction`) and mirrored in a dict, because
measurement processing looks a meter up for every frame. Every change is
validated first, written to the store, and only then applied to the dict, so
a refused or failed change leaves both as they were.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from typing import Any

from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.gateway.schema import MeterEntry, Taf
from smtestbed.services.gateway.store import Store

_METER = re.compile(r"[0-9]{8}")
_MANUFACTURER = re.compile(r"[A-Z]{3}")
_KEY_BYTES = 16
_SECURITY_MODES = (0, 5, 7)
_UPSERT = "INSERT OR REPLACE INTO meters VALUES (?, ?, ?, ?, ?, ?, ?)"


class Registry:
    """The meters of one gateway instance.

    Args:
        store: the instance's store; its ``meters`` table is loaded once here.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        rows = store.query("SELECT * FROM meters ORDER BY meter")
        self._meters = {r[0]: _entry(r) for r in rows}

    def get(self, meter: str) -> MeterEntry | None:
        """Return the entry of a meter, or None if it does not belong to this gateway."""
        return self._meters.get(meter)

    def all(self) -> list[MeterEntry]:
        """Return every registered meter, ordered by id."""
        return [self._meters[m] for m in sorted(self._meters)]

    def __len__(self) -> int:
        return len(self._meters)

    def __contains__(self, meter: object) -> bool:
        return meter in self._meters

    def add(self, entry: MeterEntry, *, replace: bool = False) -> MeterEntry:
        """Register a meter; return the stored entry (TAFs normalised to :class:`Taf`).

        Raises:
            RequestError: a field is invalid, or the meter is registered and not ``replace``.
        """
        checked = validate(entry)
        if checked.meter in self._meters and not replace:
            raise RequestError(f"meter {checked.meter} is already registered", field="meter")
        self._put(checked)
        self._meters[checked.meter] = checked
        return checked

    def add_many(self, entries: Iterable[MeterEntry]) -> list[MeterEntry]:
        """Register several meters in one transaction; return the stored entries.

        Either all are registered or, when one is refused, none.

        Raises:
            RequestError: an entry is invalid, or a meter is registered already (or twice
                in ``entries``); the field names the entry, e.g. ``entries[3].meter``.
        """
        checked: list[MeterEntry] = []
        seen: set[str] = set()
        for k, entry in enumerate(entries):
            try:
                one = validate(entry)
            except RequestError as exc:
                where = f"entries[{k}]" + ("" if exc.field == "entry" else f".{exc.field}")
                message = str(exc).removeprefix(f"{exc.field}: ")
                raise RequestError(message, field=where) from exc
            if one.meter in self._meters or one.meter in seen:
                raise RequestError(
                    f"meter {one.meter} is already registered", field=f"entries[{k}].meter"
                )
            seen.add(one.meter)
            checked.append(one)
        with self._store.transaction() as db:
            db.executemany(_UPSERT, [_row(e) for e in checked])
        self._meters.update((e.meter, e) for e in checked)
        return checked

    def remove(self, meter: str) -> MeterEntry:
        """Unregister a meter (its stored readings stay); return the removed entry.

        Raises:
            RequestError: the meter is not registered.
        """
        entry = self._known(meter)
        with self._store.transaction() as db:
            db.execute("DELETE FROM meters WHERE meter = ?", (meter,))
        del self._meters[meter]
        return entry

    def assign_tafs(self, meter: str, tafs: Iterable[Taf | str]) -> MeterEntry:
        """Replace the tariff use cases of a meter; return the new entry.

        Raises:
            RequestError: the meter is not registered or a TAF is unknown.
        """
        entry = dataclasses.replace(self._known(meter), tafs=_tafs(tafs))
        self._put(entry)
        self._meters[meter] = entry
        return entry

    def _put(self, entry: MeterEntry) -> None:
        with self._store.transaction() as db:
            db.execute(_UPSERT, _row(entry))

    def _known(self, meter: str) -> MeterEntry:
        entry = self._meters.get(meter)
        if entry is None:
            raise RequestError(f"meter {meter!r} is not registered", field="meter")
        return entry


def _row(entry: MeterEntry) -> tuple[Any, ...]:
    """Return the ``meters`` row of an entry (TAFs as a sorted JSON list)."""
    tafs = json.dumps(sorted(t.value for t in entry.tafs))
    return (
        entry.meter,
        entry.manufacturer,
        entry.key,
        entry.security,
        tafs,
        entry.consumer,
        entry.emt,
    )


def _entry(row: Any) -> MeterEntry:
    """Return the entry of a ``meters`` row (meter, manufacturer, key, security, tafs JSON, ...)."""
    tafs = frozenset(Taf(t) for t in json.loads(row[4]))
    return MeterEntry(
        meter=row[0],
        manufacturer=row[1],
        key=bytes(row[2]),
        security=row[3],
        tafs=tafs,
        consumer=row[5],
        emt=row[6],
    )


def validate(entry: object) -> MeterEntry:
    """Return the entry with TAFs as :class:`Taf` members if every field is valid.

    Rules: 8-digit id; three-letter upper-case manufacturer (FLAG code);
    security mode 0, 5 or 7; a 16-byte key for modes 5 and 7 and none for
    mode 0; known TAFs; consumer and EMT as strings.

    Raises:
        RequestError: naming the first invalid field.
    """
    if not isinstance(entry, MeterEntry):
        raise RequestError(f"expected a MeterEntry, got {type(entry).__name__}", field="entry")
    _match(_METER, entry.meter, "meter", "8 decimal digits")
    _match(_MANUFACTURER, entry.manufacturer, "manufacturer", "three upper-case letters")
    if isinstance(entry.security, bool) or entry.security not in _SECURITY_MODES:
        raise RequestError(
            f"must be one of {_SECURITY_MODES}, got {entry.security!r}", field="security"
        )
    _check_key(entry.key, entry.security)
    for name in ("consumer", "emt"):
        if not isinstance(getattr(entry, name), str):
            raise RequestError("must be a string", field=name)
    return dataclasses.replace(entry, key=bytes(entry.key), tafs=_tafs(entry.tafs))


def _match(pattern: re.Pattern[str], value: object, field: str, rule: str) -> None:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise RequestError(f"must be {rule}, got {value!r}", field=field)


def _check_key(key: object, security: int) -> None:
    if not isinstance(key, bytes):
        raise RequestError(f"must be bytes, got {type(key).__name__}", field="key")
    if security == 0 and key:
        raise RequestError("must be empty for security mode 0", field="key")
    if security != 0 and len(key) != _KEY_BYTES:
        raise RequestError(
            f"must be {_KEY_BYTES} bytes for security mode {security}, got {len(key)}", field="key"
        )


def _tafs(tafs: object) -> frozenset[Taf]:
    if isinstance(tafs, str | bytes) or not isinstance(tafs, Iterable):
        raise RequestError("must be a set of tariff use cases", field="tafs")
    out: set[Taf] = set()
    for taf in tafs:
        try:
            out.add(Taf(taf))
        except (TypeError, ValueError) as exc:
            known = ", ".join(t.value for t in Taf)
            raise RequestError(
                f"unknown tariff use case {taf!r} (known: {known})", field="tafs"
            ) from exc
    return frozenset(out)
