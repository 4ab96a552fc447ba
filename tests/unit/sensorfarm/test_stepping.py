"""Parameters and windows of ``sensorfarm.advance``."""

from __future__ import annotations

import math

import pytest
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.sensorfarm.stepping import (
    MAX_WINDOWS,
    parse_advance,
    target,
    window_ends,
)


def test_windows_are_whole_then_one_shorter_ending_exactly_at_to() -> None:
    """A span of 2.5 windows is two whole windows and a half one ending at ``to``."""
    assert window_ends(100.0, 350.0, 100.0) == [200.0, 300.0, 350.0]
    assert window_ends(100.0, 300.0, 100.0) == [200.0, 300.0]
    assert window_ends(100.0, 150.0, 100.0) == [150.0]
    assert window_ends(100.0, 100.0, 100.0) == []


def test_a_rounding_remainder_is_merged_into_the_last_window() -> None:
    """``to`` a hair above a window edge gives no window of almost no time."""
    start = 1_796_166_000.1
    ends = window_ends(start, start + 0.3, 0.1)
    assert ends[-1] == start + 0.3
    assert len(ends) == 3
    assert all(b - a > 0.05 for a, b in zip([start, *ends], ends, strict=False))


def test_too_many_windows_are_refused_naming_the_field() -> None:
    """More than MAX_WINDOWS windows in one request is an error naming the field given."""
    with pytest.raises(RequestError, match=r"^by: would run"):
        window_ends(0.0, (MAX_WINDOWS + 1) * 1.0, 1.0, field="by")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (None, "params"),
        ({}, "to"),
        ({"to": 1.0, "by": 1.0}, "to"),
        ({"to": math.nan}, "to"),
        ({"to": True}, "to"),
        ({"by": -1.0}, "by"),
        ({"by": math.inf}, "by"),
        ({"at": 1.0}, "at"),
    ],
)
def test_bad_parameters_name_their_field(params: object, field: str) -> None:
    """Every malformed request names the field at fault."""
    with pytest.raises(RequestError) as info:
        parse_advance(params)
    assert info.value.field == field


def test_to_before_now_is_refused_and_by_counts_from_now() -> None:
    """``to`` may not lie in the past; ``by`` adds to the farm's time."""
    assert target("by", 900.0, 1000.0) == 1900.0
    assert target("to", 1000.0, 1000.0) == 1000.0
    with pytest.raises(RequestError, match=r"^to: 999\.0 is before"):
        target("to", 999.0, 1000.0)
    with pytest.raises(RequestError) as info:
        target("by", 1.7e308, 1.7e308)
    assert info.value.field == "by"
