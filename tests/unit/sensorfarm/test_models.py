"""Tests of the consumption models and the EN 13757-4 air time."""

from __future__ import annotations

import calendar

import numpy as np
import pytest
from smtestbed.services._runtime.errors import ConfigError
from smtestbed.services.sensorfarm.models import (
    BASE_RATE,
    WEEK_PROFILE,
    airtime_per_meter,
    airtime_s,
    flow_temperatures_c,
    outdoor_temperature_c,
    rate_factor,
    week_shape,
    window_rates,
)
from smtestbed.services.sensorfarm.schema import MeterKind, RadioMode


def _utc(year: int, month: int, day: int, hour: float = 0.0) -> float:
    return calendar.timegm((year, month, day, 0, 0, 0)) + hour * 3600.0


MONDAY = _utc(2024, 1, 15)
SATURDAY = _utc(2024, 1, 20)


@pytest.mark.parametrize(
    ("mode", "frame_bytes", "seconds"),
    [
        (RadioMode.S1, 50, (558 + 18 + 16 * 50 + 2) / 32_768),
        (RadioMode.T1, 50, (38 + 10 + 12 * 50 + 2) / 100_000),
        (RadioMode.C1, 50, (32 + 32 + 8 * 50 + 2) / 100_000),
        (RadioMode.C1, 0, 66 / 100_000),
    ],
)
def test_airtime_counts_preamble_sync_coded_bytes_and_postamble(
    mode: RadioMode, frame_bytes: int, seconds: float
) -> None:
    """Air time = (header chips + chips per byte x bytes + 2) / chip rate."""
    assert airtime_s(mode, frame_bytes) == seconds


def test_airtime_of_a_t1_frame_is_6_5_ms() -> None:
    """A 50-byte T1 frame takes 6.5 ms: 554 of them fill the 0.1 % hourly budget."""
    assert airtime_s(RadioMode.T1, 50) == pytest.approx(0.0065)
    assert int(3.6 / airtime_s(RadioMode.T1, 50)) == 553


def test_airtime_per_meter_equals_the_scalar_function() -> None:
    """The array form gives the scalar air time of each meter's mode and length."""
    modes = np.array([0, 1, 2, 2], np.uint8)
    lengths = [20, 50, 120, 255]
    expected = [airtime_s(int(m), n) for m, n in zip(modes, lengths, strict=True)]
    assert airtime_per_meter(modes, lengths).tolist() == expected


def test_airtime_rejects_unknown_mode_and_negative_length() -> None:
    """Mode 3 and a negative frame length raise ConfigError naming the argument."""
    with pytest.raises(ConfigError) as mode_error:
        airtime_s(3, 10)
    with pytest.raises(ConfigError) as length_error:
        airtime_per_meter(np.array([1], np.uint8), -1)
    assert (mode_error.value.key, length_error.value.key) == ("mode", "frame_bytes")


def test_week_profiles_average_one() -> None:
    """Every kind's hour-of-week profile has mean 1."""
    assert WEEK_PROFILE.mean(axis=1) == pytest.approx(np.ones(4))


def test_electricity_peaks_in_the_evening_not_at_night() -> None:
    """Household electricity at 19:00 is more than three times that at 03:00."""
    evening, night = week_shape(
        MeterKind.ELECTRICITY, np.array([MONDAY + 19 * 3600, MONDAY + 3 * 3600])
    )
    assert evening > 3 * night


def test_water_morning_peak_is_later_on_weekends() -> None:
    """Water use peaks at 07:00 on weekdays and at 09:00 on Saturdays."""
    hours = np.arange(24) * 3600.0
    assert int(np.argmax(week_shape(MeterKind.WATER, MONDAY + hours))) == 7
    assert int(np.argmax(week_shape(MeterKind.WATER, SATURDAY + hours))) == 9


def test_week_shape_interpolates_between_hours() -> None:
    """Half past an hour lies halfway between the two hourly factors."""
    at = week_shape(
        MeterKind.GAS, np.array([MONDAY + 6 * 3600, MONDAY + 6.5 * 3600, MONDAY + 7 * 3600])
    )
    assert at[1] == pytest.approx((at[0] + at[2]) / 2)


def test_outdoor_temperature_is_cold_in_january_and_warm_in_july() -> None:
    """Mid-January afternoons are about 18 K colder than mid-July ones."""
    january, july = outdoor_temperature_c(np.array([_utc(2024, 1, 15, 15), _utc(2024, 7, 15, 15)]))
    assert july - january == pytest.approx(18.0, abs=0.5)
    assert january < 5.0


def test_heat_demand_follows_the_season_and_averages_one() -> None:
    """Heat use in January is many times that of July; its yearly mean is near 1."""
    year = _utc(2023, 1, 1) + np.arange(0, 365 * 86400, 3600.0)
    factor = rate_factor(MeterKind.HEAT, year)
    january, july = factor[: 31 * 24].mean(), factor[181 * 24 : 212 * 24].mean()
    assert january > 5 * july
    assert factor.mean() == pytest.approx(1.0, abs=0.1)


def test_flow_temperature_exceeds_return_within_the_heating_curve() -> None:
    """Flow stays within 35..70 °C and above return, with a wider spread in winter."""
    winter = flow_temperatures_c(_utc(2024, 1, 15, 5))
    summer = flow_temperatures_c(_utc(2024, 7, 15, 15))
    assert 35.0 <= winter[0] <= 70.0
    assert winter[1] < winter[0]
    assert summer == (35.0, 30.0)
    assert winter[0] - winter[1] > summer[0] - summer[1]


def test_window_rates_average_the_sub_step_midpoints() -> None:
    """The mean rate is the base rate times the factor averaged over sub-step midpoints."""
    rates = window_rates(MONDAY, MONDAY + 3600.0, step_s=900.0)
    mids = MONDAY + np.array([450.0, 1350.0, 2250.0, 3150.0])
    for kind in MeterKind:
        assert rates.mean[kind] == pytest.approx(BASE_RATE[kind] * rate_factor(kind, mids).mean())
    assert rates.hours == 1.0
    assert rates.now[0] == pytest.approx(
        BASE_RATE[0] * rate_factor(MeterKind.ELECTRICITY, np.array([MONDAY + 3600.0]))[0]
    )


def test_window_rates_reject_a_reversed_window() -> None:
    """A window whose end precedes its start raises ConfigError."""
    with pytest.raises(ConfigError, match="not a time window"):
        window_rates(10.0, 5.0)
