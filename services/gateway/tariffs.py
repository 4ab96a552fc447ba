"""Tariff use cases TAF1, TAF2, TAF6 and TAF7 as pure functions over counter series.

A *series* is one register of one meter (e.g. energy A+ in Wh) as the gateway
stored it: ``(t_sim, value)`` pairs, ``t_sim`` in s since the Unix epoch on the
simulation clock, strictly increasing.

Rules shared by all use cases:

- **Register value at a time t** is interpolated linearly between the readings
  before and after t. TR-03109 gateways form register values at interval
  boundaries (the quarter hour, the billing date), but meters send at their own
  times (wM-Bus every ~15 min with jitter). Taking the last reading before t
  would shift up to one transmission interval of consumption into the next
  interval; interpolation assumes constant power between two readings, which is
  the best estimate a gateway without finer data has, and the same assumption
  TAF2 uses to split consumption across tariff registers.
- **No extrapolation**: before the first reading or after the last one a value
  cannot be formed. Such an interval or date is marked ``incomplete`` and
  carries no invented value.
- **Exact sums**: boundary values are rounded to a binary grid of
  ``1 / 1024`` of the unit (about 1 mWh for Wh, 1 L for m³) and must stay below
  ``2**42`` units. Every difference and every sum of such values is then exact
  in IEEE-754 doubles, so deltas telescope: the deltas of a profile sum exactly
  to the difference of its boundary values, and the TAF2 registers sum exactly
  to the total counter difference.
- **Time is UTC without daylight saving**: the simulation clock is UTC, a day
  has 86 400 s and 96 quarter hours, and tariff schedules are in UTC.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from itertools import pairwise
from operator import itemgetter
from typing import Any, Protocol

from smtestbed.services._runtime.errors import ConfigError, RequestError, TestbedError
from smtestbed.services.gateway.schema import Taf

Series = Sequence[tuple[float, float]]
"""Counter readings ``(t_sim s, value)`` of one register, strictly increasing in time."""

GRID = 1024
"""Register values at boundaries are multiples of ``1 / GRID`` of the unit."""
MAX_VALUE = float(2**42)
"""Largest register magnitude for which grid sums and differences stay exact."""
DAY_S = 86_400
QUARTER_HOUR_S = 900
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0).


class Status(StrEnum):
    """Whether a value could be formed from the readings."""

    OK = "ok"
    INCOMPLETE = "incomplete"


class IncompleteSeriesError(TestbedError):
    """The readings do not cover a time a result needs (no extrapolation).

    Attributes:
        t: the first time, s, for which no register value can be formed.
    """

    def __init__(self, t: float) -> None:
        super().__init__(f"no readings around t={t:g} s ({iso_utc(t)}); value not formed")
        self.t = t


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileEntry:
    """One TAF7 interval ``[start, end)``.

    Attributes:
        start: interval start, s.
        end: interval end, s.
        value_at_end: register value at ``end`` (unit of the series), or None.
        delta: ``value_at_end`` minus the register value at ``start``, or None.
        status: ``incomplete`` when either boundary value cannot be formed.
    """

    start: float
    end: float
    value_at_end: float | None
    delta: float | None
    status: Status


@dataclass(frozen=True, slots=True, kw_only=True)
class BillingValue:
    """One TAF1 billing value: the register value at a set date (None if not formed)."""

    date: float
    value: float | None
    status: Status


@dataclass(frozen=True, slots=True, kw_only=True)
class Readout:
    """One TAF6 readout: the last reading at or before the requested time."""

    t: float
    value: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffPeriod:
    """TAF2 consumption per tariff register over ``[start, end)``."""

    start: float
    end: float
    registers: dict[str, float]


def iso_utc(t: float) -> str:
    """Format simulation time ``t`` (s) as ISO 8601 UTC, with ms only when fractional."""
    spec = "seconds" if float(t).is_integer() else "milliseconds"
    return datetime.fromtimestamp(t, UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def check_series(series: Series) -> None:
    """Raise ValueError unless the times of ``series`` strictly increase."""
    for (t_prev, _), (t_next, _) in pairwise(series):
        if not t_next > t_prev:
            raise ValueError(f"series times must strictly increase: {t_prev} then {t_next}")


def _on_grid(value: float) -> float:
    if not abs(value) < MAX_VALUE:
        raise ValueError(f"register value {value} outside the exact range (< 2**42)")
    return round(value * GRID) / GRID


def value_at(series: Series, t: float) -> float | None:
    """Return the register value at ``t``, linearly interpolated, on the 1/1024 grid.

    Returns None before the first and after the last reading (no extrapolation).
    """
    i = bisect_right(series, t, key=itemgetter(0))
    if i == 0:
        return None
    t_prev, v_prev = series[i - 1]
    if t_prev == t:
        return _on_grid(v_prev)
    if i == len(series):
        return None
    t_next, v_next = series[i]
    raw = v_prev + (v_next - v_prev) * ((t - t_prev) / (t_next - t_prev))
    # Clamp so float rounding cannot step outside the two readings (keeps profiles monotonic).
    return _on_grid(min(max(raw, min(v_prev, v_next)), max(v_prev, v_next)))


# --- TAF7: load profiles (Zählerstandsgang) ---------------------------------------------


def _check_window(t0: float, t1: float, period_s: int) -> None:
    if period_s <= 0 or DAY_S % period_s:
        raise RequestError(f"{period_s} s does not divide a day", field="period_s")
    for name, t in (("t0", t0), ("t1", t1)):
        if t % period_s:
            raise RequestError(f"{t} s is not a multiple of {period_s} s", field=name)
    if t1 <= t0:
        raise RequestError(f"end {t1} not after start {t0}", field="t1")


def load_profile(
    series: Series, t0: float, t1: float, period_s: int = QUARTER_HOUR_S
) -> list[ProfileEntry]:
    """Return the TAF7 profile of ``[t0, t1)``: one entry per ``period_s`` interval.

    Intervals are aligned to multiples of ``period_s`` on the simulation clock (UTC),
    so a day has 96 quarter hours. Each delta is the difference of the two boundary
    values, so the deltas of complete intervals telescope exactly.

    Raises:
        RequestError: ``t0``/``t1`` not aligned, or ``period_s`` does not divide a day.
    """
    _check_window(t0, t1, period_s)
    check_series(series)
    count = int((t1 - t0) // period_s)
    bounds = [t0 + k * period_s for k in range(count + 1)]
    values = [value_at(series, b) for b in bounds]
    entries = []
    for k in range(count):
        v0, v1 = values[k], values[k + 1]
        delta = None if v0 is None or v1 is None else v1 - v0
        status = Status.INCOMPLETE if delta is None else Status.OK
        entries.append(
            ProfileEntry(
                start=bounds[k], end=bounds[k + 1], value_at_end=v1, delta=delta, status=status
            )
        )
    return entries


# --- TAF1: billing values at set dates ----------------------------------------------------


def billing_values(series: Series, dates: Iterable[float]) -> list[BillingValue]:
    """Return the TAF1 billing value (register value at the date) for each date.

    The value is formed like a TAF7 boundary value, so a billing value on a quarter
    hour equals the profile's ``value_at_end`` there. A date outside the readings
    gives an ``incomplete`` entry without a value.
    """
    check_series(series)
    out = []
    for date in sorted(dates):
        value = value_at(series, date)
        status = Status.OK if value is not None else Status.INCOMPLETE
        out.append(BillingValue(date=date, value=value, status=status))
    return out


def monthly_dates(t0: float, t1: float, *, day: int = 1, hour: int = 0) -> list[float]:
    """Return the billing dates ``day`` of each month at ``hour``:00 UTC within ``[t0, t1]``.

    Raises:
        ConfigError: ``day`` outside 1..28 (every month has it) or ``hour`` outside 0..23.
    """
    if not 1 <= day <= 28:
        raise ConfigError(f"{day} is not a day every month has (1..28)", key="day")
    if not 0 <= hour <= 23:
        raise ConfigError(f"{hour} is not an hour (0..23)", key="hour")
    start = datetime.fromtimestamp(t0, UTC)
    year, month = start.year, start.month
    dates: list[float] = []
    while True:
        t = datetime(year, month, day, hour, tzinfo=UTC).timestamp()
        if t > t1:
            return dates
        if t >= t0:
            dates.append(t)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


# --- TAF6: readout on demand --------------------------------------------------------------


def readout(series: Series, t: float) -> Readout | None:
    """Return the last reading at or before ``t`` as it was stored (not interpolated).

    TAF6 answers "what did the meter last say", so the reading is not moved to ``t``.
    Returns None when no reading is that old.
    """
    i = bisect_right(series, t, key=itemgetter(0))
    if i == 0:
        return None
    t_read, value = series[i - 1]
    return Readout(t=t_read, value=value)


# --- TAF2: time-variable tariff registers -------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffRule:
    """Register ``register`` applies on ``weekdays`` (Mon = 0) from ``start`` to ``end``.

    Attributes:
        weekdays: days of the week the rule applies (0 = Monday ... 6 = Sunday, UTC).
        start: start as seconds after midnight UTC, inclusive.
        end: end as seconds after midnight UTC, exclusive; 86 400 is midnight at the end.
        register: tariff register name, e.g. ``HT`` or ``NT``.
    """

    weekdays: frozenset[int]
    start: int
    end: int
    register: str

    def describe(self) -> str:
        """Return the rule in the text form :func:`parse_rule` reads."""
        days = ",".join(WEEKDAYS[d] for d in sorted(self.weekdays))
        return f"{days} {_hhmm(self.start)}-{_hhmm(self.end)} {self.register}"


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}"


_RULE_TEXT = re.compile(r"^\s*(\S+)\s+(\d\d):(\d\d)-(\d\d):(\d\d)\s+(\S+)\s*$")


def _parse_days(text: str, key: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.partition("-")
        try:
            lo = WEEKDAYS.index(first)
            hi = WEEKDAYS.index(last) if last else lo
        except ValueError:
            raise ConfigError(f"unknown weekday in {part!r} (Mon..Sun)", key=key) from None
        if hi < lo:
            raise ConfigError(f"weekday range {part!r} runs backwards", key=key)
        days.update(range(lo, hi + 1))
    return frozenset(days)


def parse_rule(text: str, *, key: str = "rule") -> TariffRule:
    """Read a rule written as ``"Mon-Fri 06:00-22:00 HT"`` (days: ``Sat,Sun``, ``Mon-Sun``).

    Raises:
        ConfigError: the text does not have that form; ``key`` names it.
    """
    match = _RULE_TEXT.match(text)
    if match is None:
        raise ConfigError(f"{text!r} is not 'Days HH:MM-HH:MM REGISTER'", key=key)
    days, h0, m0, h1, m1, register = match.groups()
    return TariffRule(
        weekdays=_parse_days(days, key),
        start=int(h0) * 3600 + int(m0) * 60,
        end=int(h1) * 3600 + int(m1) * 60,
        register=register,
    )


def _check_rule(index: int, rule: TariffRule) -> None:
    key = f"rules[{index}]"
    if not rule.weekdays or not rule.weekdays <= frozenset(range(7)):
        raise ConfigError(
            f"weekdays {sorted(rule.weekdays)} not a non-empty subset of 0..6", key=key
        )
    if not 0 <= rule.start < rule.end <= DAY_S:
        raise ConfigError(
            f"{rule.start}..{rule.end} s is not a time span inside one day "
            "(split spans across midnight into two rules)",
            key=key,
        )
    if not rule.register:
        raise ConfigError("empty register name", key=key)


def _check_day(weekday: int, rules: Sequence[TariffRule]) -> None:
    """Raise ConfigError unless the rules of ``weekday`` tile the day exactly once."""
    spans = sorted((r.start, r.end, i) for i, r in enumerate(rules) if weekday in r.weekdays)
    day = WEEKDAYS[weekday]
    covered, previous = 0, -1
    for start, end, i in spans:
        if start < covered:
            raise ConfigError(
                f"rule {i} ({rules[i].describe()}) overlaps rule {previous} "
                f"({rules[previous].describe()}) on {day} {_hhmm(start)}-{_hhmm(covered)}",
                key=f"rules[{i}]",
            )
        if start > covered:
            raise ConfigError(
                f"{day} {_hhmm(covered)}-{_hhmm(start)} has no rule before rule {i} "
                f"({rules[i].describe()})",
                key=f"rules[{i}]",
            )
        covered, previous = end, i
    if covered < DAY_S:
        after = f" after rule {previous} ({rules[previous].describe()})" if spans else ""
        key = f"rules[{previous}]" if spans else "rules"
        raise ConfigError(f"{day} {_hhmm(covered)}-24:00 has no rule{after}", key=key)


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffSchedule:
    """Rules that assign every instant of the week to exactly one tariff register (UTC).

    Raises:
        ConfigError: a rule is malformed, two rules overlap, or an instant has no rule;
            the message and ``key`` (``rules[i]``) name the rule at fault.
    """

    rules: tuple[TariffRule, ...]

    def __post_init__(self) -> None:
        for index, rule in enumerate(self.rules):
            _check_rule(index, rule)
        for weekday in range(7):
            _check_day(weekday, self.rules)

    @classmethod
    def parse(cls, lines: Iterable[str]) -> TariffSchedule:
        """Build a schedule from rule texts such as ``"Mon-Fri 06:00-22:00 HT"``."""
        return cls(rules=tuple(parse_rule(text, key=f"rules[{i}]") for i, text in enumerate(lines)))

    @property
    def registers(self) -> tuple[str, ...]:
        """Return the register names in order of first appearance."""
        return tuple(dict.fromkeys(rule.register for rule in self.rules))

    def spans(self, t0: float, t1: float) -> Iterator[tuple[float, float, str]]:
        """Yield ``(start, end, register)`` pieces that tile ``[t0, t1)`` in time order."""
        day = int(t0 // DAY_S)
        while day * DAY_S < t1:
            base = day * DAY_S
            weekday = (day + _EPOCH_WEEKDAY) % 7
            todays = sorted((r for r in self.rules if weekday in r.weekdays), key=lambda r: r.start)
            for rule in todays:
                start, end = max(t0, base + rule.start), min(t1, base + rule.end)
                if start < end:
                    yield start, end, rule.register
            day += 1


def ht_nt_schedule() -> TariffSchedule:
    """Return the common two-register schedule: HT Mon-Fri 06:00-22:00 UTC, NT otherwise."""
    return TariffSchedule.parse(
        [
            "Mon-Fri 00:00-06:00 NT",
            "Mon-Fri 06:00-22:00 HT",
            "Mon-Fri 22:00-24:00 NT",
            "Sat,Sun 00:00-24:00 NT",
        ]
    )


def tariff_registers(
    series: Series, schedule: TariffSchedule, t0: float, t1: float
) -> dict[str, float]:
    """Return the TAF2 consumption of ``[t0, t1)`` per tariff register.

    Consumption between two readings is assumed to flow at constant power, so it
    is split across registers in proportion to time: each schedule piece gets the
    difference of the interpolated register values at its ends. Those differences
    telescope, so the registers sum exactly to ``value_at(t1) - value_at(t0)``.
    Registers of the schedule without consumption in the window are 0.0.

    Raises:
        RequestError: ``t1`` is not after ``t0``.
        IncompleteSeriesError: the readings do not reach back to ``t0`` or up to ``t1``.
    """
    if t1 <= t0:
        raise RequestError(f"end {t1} not after start {t0}", field="t1")
    check_series(series)
    totals = dict.fromkeys(schedule.registers, 0.0)
    for start, end, register in schedule.spans(t0, t1):
        v0, v1 = value_at(series, start), value_at(series, end)
        if v0 is None or v1 is None:
            raise IncompleteSeriesError(start if v0 is None else end)
        totals[register] += v1 - v0
    return totals


# --- EMT payloads -------------------------------------------------------------------------

Entry = ProfileEntry | BillingValue | Readout | TariffPeriod
_ENTRY_TYPE: dict[Taf, type] = {
    Taf.TAF1: BillingValue,
    Taf.TAF2: TariffPeriod,
    Taf.TAF6: Readout,
    Taf.TAF7: ProfileEntry,
}


def _span_json(start: float, end: float) -> dict[str, Any]:
    return {"start": start, "start_iso": iso_utc(start), "end": end, "end_iso": iso_utc(end)}


def _entry_json(entry: Entry) -> dict[str, Any]:
    match entry:
        case ProfileEntry():
            status = str(entry.status)
            value, delta = entry.value_at_end, entry.delta
            return {
                **_span_json(entry.start, entry.end),
                "value": value,
                "delta": delta,
                "status": status,
            }
        case BillingValue():
            t, iso = entry.date, iso_utc(entry.date)
            return {"t": t, "time": iso, "value": entry.value, "status": str(entry.status)}
        case Readout():
            return {"t": entry.t, "time": iso_utc(entry.t), "value": entry.value}
        case TariffPeriod():
            return {**_span_json(entry.start, entry.end), "registers": dict(entry.registers)}


def taf_payload(taf: Taf, meter: str, entries: Sequence[Entry], *, unit: str) -> dict[str, Any]:
    """Return what an EMT receives for ``taf``: JSON-ready, times as ISO 8601 UTC and raw s.

    Raises:
        ValueError: an entry is not of the kind ``taf`` produces.
    """
    kind = _ENTRY_TYPE[taf]
    for entry in entries:
        if not isinstance(entry, kind):
            raise ValueError(f"{taf} carries {kind.__name__} entries, not {type(entry).__name__}")
    return {
        "meter": meter,
        "taf": str(taf),
        "unit": unit,
        "values": [_entry_json(entry) for entry in entries],
    }


# --- reading the store --------------------------------------------------------------------


class SeriesSource(Protocol):
    """Where counter series come from: the gateway's store (``t0 <= t < t1``, oldest first)."""

    def counter_series(
        self,
        meter: str,
        quantity: str,
        unit: str,
        *,
        t0: float | None = None,
        t1: float | None = None,
    ) -> list[tuple[float, float]]: ...


def stored_series(
    source: SeriesSource,
    meter: str,
    t0: float,
    t1: float,
    *,
    quantity: str = "energy",
    unit: str = "Wh",
    margin_s: float = DAY_S,
) -> list[tuple[float, float]]:
    """Read one register of ``meter`` around ``[t0, t1]`` as a series for the functions here.

    The window is widened by ``margin_s`` on both sides so the readings around ``t0``
    and ``t1`` are there to interpolate from; a meter silent for longer than that
    leaves those boundaries incomplete. Of readings with the same time stamp the
    last one stored counts, since a series must strictly increase in time.
    """
    series: list[tuple[float, float]] = []
    for t, value in source.counter_series(
        meter, quantity, unit, t0=t0 - margin_s, t1=t1 + margin_s
    ):
        if series and series[-1][0] == t:
            series[-1] = (t, value)
        else:
            series.append((t, value))
    return series
