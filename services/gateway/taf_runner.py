"""When the tariff use cases run, and what they queue for the EMTs.

The runner looks at every registered meter with an EMT and queues, for each
assigned TAF, what has become complete since its last run (simulation time):

- TAF7: the 96 quarter-hour profile of each UTC day that ended before the
  meter's last reading;
- TAF2: the tariff registers of each such day, by the configured schedule;
- TAF1: the billing value at each billing date passed by the last reading,
  a date at the start of the first processed day included.

The first day a meter is processed is the first whole UTC day after its first
reading. Marks (how far each meter and TAF got) are kept in
``tariff_marks.json`` in the instance folder, rewritten atomically after each
run; a record queued just before a crash may be queued again on restart, and
its payload's period tells the EMT it is the same.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from smtestbed.services.gateway import tariffs
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.schema import MeterEntry, Taf
from smtestbed.services.gateway.tariffs import TariffPeriod, TariffSchedule

DAY_S = tariffs.DAY_S
REGISTERS = (("energy", "Wh"), ("volume", "m^3"))


def primary_register(instance: GatewayInstance, meter: str) -> tuple[str, str] | None:
    """Return the (quantity, unit) a meter's TAF data is formed from: energy, else volume."""
    state = instance.store.state(meter)
    if state is None:
        return None
    present = {
        (q, u)
        for (q, u, storage, tariff, sub) in state.counters
        if storage == 0 and tariff == 0 and sub == 0
    }
    return next((reg for reg in REGISTERS if reg in present), None)


class TafRunner:
    """Run TAF1, TAF2 and TAF7 for one instance; answer TAF6 on demand."""

    def __init__(
        self, instance: GatewayInstance, schedule: TariffSchedule, *, billing_day: int = 1
    ) -> None:
        self.instance = instance
        self.schedule = schedule
        self.billing_day = billing_day
        self._path = instance.folder / "tariff_marks.json"
        self.marks: dict[str, float] = _load(self._path)
        self.queued = 0

    def run(self) -> int:
        """Queue everything that became complete; return how many records were queued."""
        before = self.queued
        for entry in self.instance.registry.all():
            if entry.emt and entry.tafs:
                self._meter(entry)
        if self.queued != before:
            _save(self._path, self.marks)
        return self.queued - before

    def _meter(self, entry: MeterEntry) -> None:
        register = primary_register(self.instance, entry.meter)
        state = self.instance.store.state(entry.meter)
        if register is None or state is None:
            return
        for taf in (Taf.TAF7, Taf.TAF2, Taf.TAF1):
            if taf in entry.tafs:
                self._taf(entry, taf, register, state.t_sim)

    def _taf(self, entry: MeterEntry, taf: Taf, register: tuple[str, str], last: float) -> None:
        key = f"{entry.meter}/{taf}"
        start = self.marks.get(key)
        if start is None:
            start = self._first_day(entry.meter)
            if start is None:
                return
        end = math.floor(last / DAY_S) * DAY_S
        if end <= start:
            return
        series = tariffs.stored_series(
            self.instance.store, entry.meter, start, end, quantity=register[0], unit=register[1]
        )
        first = key not in self.marks
        payload = self._payload(taf, entry.meter, series, start, end, register[1], first=first)
        if payload is not None:
            self.instance.store.enqueue(entry.emt, taf, entry.meter, payload, created=last)
            self.queued += 1
        self.marks[key] = end

    def _payload(
        self,
        taf: Taf,
        meter: str,
        series: list[tuple[float, float]],
        start: float,
        end: float,
        unit: str,
        *,
        first: bool,
    ) -> dict[str, Any] | None:
        entries: list[Any]
        if taf is Taf.TAF7:
            entries = tariffs.load_profile(series, start, end)
        elif taf is Taf.TAF2:
            entries = [
                TariffPeriod(
                    start=d,
                    end=d + DAY_S,
                    registers=tariffs.tariff_registers(series, self.schedule, d, d + DAY_S),
                )
                for d in range(int(start), int(end), DAY_S)
            ]
        else:
            dates = tariffs.monthly_dates(start, end, day=self.billing_day)
            if not first:  # a date at ``start`` was the previous run's end and is queued
                dates = [d for d in dates if d > start]
            if not dates:
                return None
            entries = tariffs.billing_values(series, dates)
        body = tariffs.taf_payload(taf, meter, entries, unit=unit)
        return {**body, "period": [start, end]}

    def _first_day(self, meter: str) -> float | None:
        first = self.instance.store.readings(meter, limit=1)
        if not first:
            return None
        return float(math.ceil(first[0][1].t_sim / DAY_S) * DAY_S)

    def readout(self, entry: MeterEntry, t: float) -> dict[str, Any] | None:
        """TAF6: the meter's last stored value at or before ``t``, queued for its EMT."""
        register = primary_register(self.instance, entry.meter)
        if register is None:
            return None
        series = tariffs.stored_series(
            self.instance.store,
            entry.meter,
            t - DAY_S,
            t,
            quantity=register[0],
            unit=register[1],
            margin_s=0,
        )
        value = tariffs.readout(series, t)
        if value is None:
            return None
        payload = tariffs.taf_payload(Taf.TAF6, entry.meter, [value], unit=register[1])
        if entry.emt:
            self.instance.store.enqueue(entry.emt, Taf.TAF6, entry.meter, payload, created=t)
        return payload


def _load(path: Path) -> dict[str, float]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}  # a broken marks file only makes the runner queue complete periods again
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}


def _save(path: Path, marks: dict[str, float]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(marks, sort_keys=True))
    os.replace(tmp, path)
