"""Tariff use cases against hand calculations, a realistic simulated day and random series."""

from __future__ import annotations

import hashlib
import json
import math
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from smtestbed.services._runtime.errors import ConfigError, RequestError
from smtestbed.services.gateway.schema import Reading, Taf, Value
from smtestbed.services.gateway.store import Store
from smtestbed.services.gateway.tariffs import (
    BillingValue,
    IncompleteSeriesError,
    ProfileEntry,
    Readout,
    Status,
    TariffPeriod,
    TariffSchedule,
    billing_values,
    ht_nt_schedule,
    load_profile,
    monthly_dates,
    readout,
    stored_series,
    taf_payload,
    tariff_registers,
    value_at,
)

MONDAY = datetime(2024, 1, 1, tzinfo=UTC).timestamp()  # 2024-01-01 00:00 UTC was a Monday
HOUR = 3600.0

# Hand series (Wh): 0.5 Wh/s between 600 s and 1800 s, 100 Wh over the last quarter hour.
HAND = [(MONDAY, 1000.0), (MONDAY + 600, 1300.0), (MONDAY + 1800, 1900.0), (MONDAY + 2700, 2000.0)]


def _ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp()


# --- register values ---------------------------------------------------------------------


def test_value_between_readings_is_interpolated() -> None:
    """Between two readings the register value is linear in time (constant power)."""
    # 900 s lies 300 s into 600..1800 s, where 600 Wh flow in 1200 s: 1300 + 300 * 0.5.
    assert value_at(HAND, MONDAY + 900) == 1450.0


def test_value_is_not_extrapolated() -> None:
    """Before the first and after the last reading no value is formed."""
    assert value_at(HAND, MONDAY - 1) is None
    assert value_at(HAND, MONDAY + 2701) is None
    assert value_at(HAND, MONDAY + 2700) == 2000.0


def test_value_is_rounded_to_the_binary_grid() -> None:
    """Register values are multiples of 1/1024 of the unit, so sums of them are exact."""
    assert value_at([(0.0, 0.1)], 0.0) == 102 / 1024


def test_value_outside_the_exact_range_is_refused() -> None:
    """A register of 2**42 units or more cannot keep exact sums and raises ValueError."""
    with pytest.raises(ValueError, match="2\\*\\*42"):
        value_at([(0.0, 2.0**42)], 0.0)


def test_series_with_repeated_time_is_refused() -> None:
    """Series times must strictly increase; a repeated time is a ValueError."""
    with pytest.raises(ValueError, match="strictly increase"):
        load_profile([(MONDAY, 1.0), (MONDAY, 2.0)], MONDAY, MONDAY + 900)


# --- TAF7 ----------------------------------------------------------------------------------


def test_profile_matches_hand_calculation() -> None:
    """Quarter-hour values 1450, 1900, 2000 Wh give deltas 450, 450, 100 Wh."""
    profile = load_profile(HAND, MONDAY, MONDAY + 2700)
    assert [(e.start - MONDAY, e.end - MONDAY) for e in profile] == [
        (0, 900),
        (900, 1800),
        (1800, 2700),
    ]
    assert [e.value_at_end for e in profile] == [1450.0, 1900.0, 2000.0]
    assert [e.delta for e in profile] == [450.0, 450.0, 100.0]
    assert {e.status for e in profile} == {Status.OK}


def test_interval_after_last_reading_is_incomplete() -> None:
    """An interval whose end lies after the last reading has no value and no delta."""
    last = load_profile(HAND, MONDAY, MONDAY + 3600)[-1]
    assert last == ProfileEntry(
        start=MONDAY + 2700,
        end=MONDAY + 3600,
        value_at_end=None,
        delta=None,
        status=Status.INCOMPLETE,
    )


def test_interval_before_first_reading_keeps_its_end_value() -> None:
    """An interval starting before the first reading is incomplete but keeps its end value."""
    first = load_profile(HAND[1:], MONDAY, MONDAY + 900)[0]
    assert (first.value_at_end, first.delta, first.status) == (1450.0, None, Status.INCOMPLETE)


def _realistic_day(seed: int) -> list[tuple[float, float]]:
    """Return readings every 15 min +- 2 min from 30 min before to 30 min after a Monday."""
    rng = random.Random(seed)
    series, t, value = [], MONDAY - 1800, 4_182_530.0
    while t < MONDAY + 86_400 + 1800:
        jitter = rng.uniform(-120.0, 120.0)
        series.append((t + jitter, value))
        power_w = 300.0 + 2500.0 * rng.random()
        value = float(round(value + power_w * 900 / 3600))  # the meter counts whole Wh
        t += 900
    return series


def test_simulated_day_has_96_complete_intervals_summing_to_the_counter_difference() -> None:
    """Jittered readings over a day give 96 complete quarter hours whose deltas sum exactly."""
    series = _realistic_day(seed=7)
    profile = load_profile(series, MONDAY, MONDAY + 86_400)
    assert len(profile) == 96
    assert all(e.status is Status.OK for e in profile)
    start, end = value_at(series, MONDAY), value_at(series, MONDAY + 86_400)
    assert start is not None
    assert end is not None
    assert profile[-1].value_at_end == end
    assert sum(e.delta for e in profile if e.delta is not None) == end - start


def test_day_of_summer_time_change_still_has_96_utc_quarter_hours() -> None:
    """The clock is UTC without DST: 2024-03-31 has 96 intervals from 00:00Z."""
    day = _ts(2024, 3, 31)
    series = [(day - 60, 0.0), (day + 86_460, 24_000.0)]
    profile = load_profile(series, day, day + 86_400)
    assert len(profile) == 96
    assert taf_payload(Taf.TAF7, "1", profile[:1], unit="Wh")["values"][0]["start_iso"] == (
        "2024-03-31T00:00:00Z"
    )


def test_profile_window_must_be_aligned() -> None:
    """A window not on quarter-hour boundaries is refused, naming the parameter."""
    with pytest.raises(RequestError) as info:
        load_profile(HAND, MONDAY + 60, MONDAY + 900)
    assert info.value.field == "t0"


@st.composite
def _increasing_series(draw: st.DrawFn) -> list[tuple[float, float]]:
    steps = draw(
        st.lists(
            st.tuples(
                st.floats(min_value=0.5, max_value=4000.0),
                st.floats(min_value=0.0, max_value=1e6),
            ),
            min_size=2,
            max_size=60,
        )
    )
    t = MONDAY + draw(st.floats(min_value=-900.0, max_value=900.0))
    value = draw(st.floats(min_value=0.0, max_value=1e12))
    series = [(t, value)]
    for dt, dv in steps:
        t, value = t + dt, value + dv
        series.append((t, value))
    return series


@given(_increasing_series())
def test_profile_deltas_sum_exactly_to_the_counter_difference(
    series: list[tuple[float, float]],
) -> None:
    """For any increasing series the deltas are >= 0 and telescope exactly."""
    t0 = math.ceil(series[0][0] / 900) * 900
    t1 = math.floor(series[-1][0] / 900) * 900
    assume(t1 > t0)
    profile = load_profile(series, t0, t1)
    deltas = [e.delta for e in profile]
    start, end = value_at(series, t0), value_at(series, t1)
    assert start is not None
    assert end is not None
    assert all(d is not None and d >= 0 for d in deltas)
    assert sum(d for d in deltas if d is not None) == end - start


# --- TAF1 ----------------------------------------------------------------------------------


def test_monthly_dates_are_day_and_hour_of_each_month_in_utc() -> None:
    """Billing on the 15th at 06:00 UTC over a year end gives Dec 15 and Jan 15."""
    dates = monthly_dates(_ts(2023, 12, 1), _ts(2024, 1, 31), day=15, hour=6)
    assert dates == [_ts(2023, 12, 15, 6), _ts(2024, 1, 15, 6)]


def test_monthly_dates_refuse_a_day_not_every_month_has() -> None:
    """Day 29 does not exist in every February and is a configuration error."""
    with pytest.raises(ConfigError, match="day: 29"):
        monthly_dates(0.0, 1e6, day=29)


def test_billing_values_match_hand_calculation() -> None:
    """Feb 1 lies halfway between 5000 and 5200 Wh; Mar 1 a quarter of 400 Wh after 9000 Wh."""
    feb, mar = _ts(2024, 2, 1), _ts(2024, 3, 1)
    series = [(feb - HOUR, 5000.0), (feb + HOUR, 5200.0), (mar - 1800, 9000.0), (mar + 5400, 9400)]
    values = billing_values(series, monthly_dates(_ts(2024, 1, 1), mar))
    assert values == [
        BillingValue(date=_ts(2024, 1, 1), value=None, status=Status.INCOMPLETE),
        BillingValue(date=feb, value=5100.0, status=Status.OK),
        BillingValue(date=mar, value=9100.0, status=Status.OK),
    ]


def test_billing_value_equals_profile_value_at_the_same_boundary() -> None:
    """TAF1 and TAF7 form the register value at a time the same way."""
    series = _realistic_day(seed=3)
    noon = MONDAY + 12 * HOUR
    (billing,) = billing_values(series, [noon])
    profile = load_profile(series, noon - 900, noon)
    assert billing.value == profile[0].value_at_end


# --- TAF6 ----------------------------------------------------------------------------------


def test_readout_is_the_last_reading_at_or_before_the_time() -> None:
    """TAF6 returns the stored reading and its time, not an interpolated value."""
    assert readout(HAND, MONDAY + 1799) == Readout(t=MONDAY + 600, value=1300.0)
    assert readout(HAND, MONDAY + 1800) == Readout(t=MONDAY + 1800, value=1900.0)
    assert readout(HAND, MONDAY - 1) is None


# --- TAF2 ----------------------------------------------------------------------------------


def test_registers_split_consumption_in_proportion_to_time() -> None:
    """05:00-06:30 Monday: NT gets 60 + 60 Wh before 06:00, HT 60 Wh after."""
    series = [(MONDAY + 5 * HOUR, 0.0), (MONDAY + 5.5 * HOUR, 60.0), (MONDAY + 6.5 * HOUR, 180.0)]
    registers = tariff_registers(series, ht_nt_schedule(), MONDAY + 5 * HOUR, MONDAY + 6.5 * HOUR)
    assert registers == {"NT": 120.0, "HT": 60.0}


def test_registers_follow_the_weekend() -> None:
    """Fri 21:00 - Sat 01:00 at 100 Wh/h: HT until 22:00 (100 Wh), NT after (300 Wh)."""
    friday_21, saturday_01 = _ts(2024, 1, 5, 21), _ts(2024, 1, 6, 1)
    series = [(friday_21, 0.0), (saturday_01, 400.0)]
    registers = tariff_registers(series, ht_nt_schedule(), friday_21, saturday_01)
    assert registers == {"NT": 300.0, "HT": 100.0}


def test_registers_refuse_a_window_beyond_the_readings() -> None:
    """A window ending after the last reading raises IncompleteSeriesError at that time."""
    with pytest.raises(IncompleteSeriesError) as info:
        tariff_registers(HAND, ht_nt_schedule(), MONDAY, MONDAY + HOUR)
    assert info.value.t == MONDAY + HOUR


@given(_increasing_series())
def test_registers_sum_exactly_to_the_counter_difference(
    series: list[tuple[float, float]],
) -> None:
    """For any increasing series the TAF2 registers add up exactly to the total consumption."""
    schedule = TariffSchedule.parse(
        ["Mon-Sun 00:00-00:20 A", "Mon-Sun 00:20-01:07 B", "Mon-Sun 01:07-24:00 A"]
    )
    t0, t1 = series[0][0], series[-1][0]
    registers = tariff_registers(series, schedule, t0, t1)
    start, end = value_at(series, t0), value_at(series, t1)
    assert start is not None
    assert end is not None
    assert registers["A"] + registers["B"] == end - start


# --- schedule validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "key", "message"),
    [
        (["Mon-Sun 00:00-12:00 NT", "Mon-Sun 11:00-24:00 HT"], "rules[1]", "overlaps rule 0"),
        (["Mon-Sun 00:00-06:00 NT", "Mon-Sun 07:00-24:00 HT"], "rules[1]", "06:00-07:00 has no"),
        (["Mon-Sun 00:00-22:00 NT"], "rules[0]", "Mon 22:00-24:00 has no rule after rule 0"),
        (["Mon-Sat 00:00-24:00 NT"], "rules", "Sun 00:00-24:00 has no rule"),
        (["Mon-Sun 22:00-06:00 NT"], "rules[0]", "split spans across midnight"),
        (["Mon-Fry 00:00-24:00 NT"], "rules[0]", "unknown weekday"),
        (["Sun-Mon 00:00-24:00 NT"], "rules[0]", "runs backwards"),
        (["Mon-Sun 00:00-24:00 NT", "weekdays 6-22 HT"], "rules[1]", "is not 'Days"),
    ],
    ids=[
        "overlap",
        "gap",
        "gap-at-end",
        "day-missing",
        "across-midnight",
        "bad-day",
        "backwards",
        "form",
    ],
)
def test_schedule_not_covering_each_instant_once_names_the_rule(
    rules: list[str], key: str, message: str
) -> None:
    """Overlaps, gaps and malformed rules raise ConfigError keyed by the rule at fault."""
    with pytest.raises(ConfigError, match=message) as info:
        TariffSchedule.parse(rules)
    assert info.value.key == key


def test_ht_nt_schedule_has_ht_only_on_weekday_daytime() -> None:
    """The HT/NT schedule splits a Monday 6 h NT, 16 h HT, 2 h NT and a Saturday all NT."""
    monday = [
        (round((e - s) / HOUR), r) for s, e, r in ht_nt_schedule().spans(MONDAY, MONDAY + 86_400)
    ]
    saturday = _ts(2024, 1, 6)
    weekend = list(ht_nt_schedule().spans(saturday, saturday + 86_400))
    assert monday == [(6, "NT"), (16, "HT"), (2, "NT")]
    assert weekend == [(saturday, saturday + 86_400, "NT")]


# --- EMT payloads --------------------------------------------------------------------------


def test_profile_payload_is_json_with_iso_and_raw_times() -> None:
    """A TAF7 payload names meter, TAF and unit and gives each interval in ISO 8601 UTC and s."""
    payload = taf_payload(Taf.TAF7, "12345678", load_profile(HAND, MONDAY, MONDAY + 900), unit="Wh")
    assert json.loads(json.dumps(payload)) == {
        "meter": "12345678",
        "taf": "taf7",
        "unit": "Wh",
        "values": [
            {
                "start": MONDAY,
                "start_iso": "2024-01-01T00:00:00Z",
                "end": MONDAY + 900,
                "end_iso": "2024-01-01T00:15:00Z",
                "value": 1450.0,
                "delta": 450.0,
                "status": "ok",
            }
        ],
    }


def test_readout_and_register_payloads_carry_their_fields() -> None:
    """TAF6 payloads give the reading time with ms; TAF2 payloads give the registers."""
    taf6 = taf_payload(Taf.TAF6, "1", [Readout(t=MONDAY + 0.25, value=7.0)], unit="m^3")
    period = TariffPeriod(start=MONDAY, end=MONDAY + HOUR, registers={"HT": 1.0, "NT": 2.0})
    taf2 = taf_payload(Taf.TAF2, "1", [period], unit="Wh")
    assert taf6["values"] == [
        {"t": MONDAY + 0.25, "time": "2024-01-01T00:00:00.250Z", "value": 7.0}
    ]
    assert taf2["values"][0]["registers"] == {"HT": 1.0, "NT": 2.0}
    assert taf2["values"][0]["end_iso"] == "2024-01-01T01:00:00Z"


def test_payload_refuses_entries_of_another_taf() -> None:
    """A TAF1 payload cannot carry TAF7 profile entries."""
    profile = load_profile(HAND, MONDAY, MONDAY + 900)
    with pytest.raises(ValueError, match="BillingValue"):
        taf_payload(Taf.TAF1, "1", profile, unit="Wh")


# --- store adapter -------------------------------------------------------------------------


def _reading(meter: str, t_sim: float, wh: float, number: int) -> Reading:
    return Reading(
        meter=meter,
        t_sim=t_sim,
        access_number=number % 256,
        message_counter=number,
        frame_digest=hashlib.sha256(f"{meter}/{number}".encode()).digest(),
        values=(Value(quantity="energy", unit="Wh", value=wh),),
    )


def test_stored_day_gives_a_queued_profile_of_96_intervals(tmp_path: Path) -> None:
    """Readings committed to a real store yield a 96-interval TAF7 record queued for the EMT."""
    day = _realistic_day(seed=11)
    store = Store(tmp_path / "gw.sqlite")
    try:
        store.commit_readings([_reading("12345678", t, v, n) for n, (t, v) in enumerate(day)])
        series = stored_series(store, "12345678", MONDAY, MONDAY + 86_400)
        profile = load_profile(series, MONDAY, MONDAY + 86_400)
        store.enqueue(
            "supplier", Taf.TAF7, "12345678", taf_payload(Taf.TAF7, "12345678", profile, unit="Wh")
        )
        (record,) = store.pending("supplier")
    finally:
        store.close()
    values = record.payload["values"]
    start, end = value_at(day, MONDAY), value_at(day, MONDAY + 86_400)
    assert start is not None
    assert end is not None
    assert series == day
    assert len(values) == 96
    assert values[-1]["value"] == end
    assert sum(v["delta"] for v in values) == end - start


def test_stored_readings_at_one_time_keep_the_last(tmp_path: Path) -> None:
    """Two stored readings with the same time stamp become one series point, the later value."""
    store = Store(tmp_path / "gw.sqlite")
    try:
        store.commit_readings(
            [
                _reading("1", MONDAY, 10.0, 1),
                _reading("1", MONDAY, 11.0, 2),
                _reading("1", MONDAY + 900, 20.0, 3),
            ]
        )
        series = stored_series(store, "1", MONDAY, MONDAY + 900)
    finally:
        store.close()
    assert series == [(MONDAY, 11.0), (MONDAY + 900, 20.0)]
