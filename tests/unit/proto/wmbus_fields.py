"""Which fields of wmbusmeters' JSON come from standard records, and do ours equal them.

wmbusmeters names fields per driver but ends numeric ones with a unit suffix
(``total_m3``, ``total_energy_consumption_kwh``, ``flow_temperature_c``) and date
fields with ``date``/``datetime``. Such a field is *comparable*. It is *standard*
when one of our decoded records explains it:

- the record's unit, converted, is the suffix's unit (kWh, MJ and GJ are energy,
  l/h and m3h volume flow, ``hca`` needs VIF 0x6E, ``h`` needs a named duration
  quantity, ``c`` a temperature whose kind the name may narrow, and a ``c`` field
  named ``difference`` takes VIF 0x60 in K);
- the name fixes the storage number: a field naming a past value (``target_``,
  ``_at_``, ``due_``, ``last_``, ``prev_``, ``history``, ``set_date``, a month name)
  comes from storage 1 or above, any other from storage 0;
- ``max``/``min`` in the name select DIF function maximum/minimum, else
  instantaneous; ``tariff_N`` selects tariff N, else tariff 0; subunit is 0.

A comparable field that no record explains is *driver-specific*: wmbusmeters
reads it from manufacturer data (DIF 0x0F, VIF 0x7F/0xFF, CI 0xA0..0xB7),
from compact frames (CI 0x79) whose record headers the telegram does not
carry, or computes it (deltas, averages over other fields).
A standard field must equal the value of one of the records that explain it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from smtestbed.proto.records import Function, Record, Timestamp

# suffix -> (comparison unit, factor from the suffix unit to it)
SUFFIX_UNITS: dict[str, tuple[str, float]] = {
    "kwh": ("Wh", 1e3),
    "mwh": ("Wh", 1e6),
    "gj": ("Wh", 1e9 / 3600),
    "mj": ("Wh", 1e6 / 3600),
    "m3": ("m^3", 1.0),
    "l": ("m^3", 1e-3),
    "c": ("°C", 1.0),
    "w": ("W", 1.0),
    "kw": ("W", 1e3),
    "m3h": ("m^3/h", 1.0),
    "lh": ("m^3/h", 1e-3),
    "hca": ("", 1.0),
    "v": ("V", 1.0),
    "a": ("A", 1.0),
    "bar": ("bar", 1.0),
    "h": ("s", 3600.0),
}

# Our other units expressed in a comparison unit of SUFFIX_UNITS.
RECORD_UNITS: dict[str, tuple[str, float]] = {
    "J": ("Wh", 1 / 3600),
    "J/h": ("W", 1 / 3600),
    "m^3/min": ("m^3/h", 60.0),
    "m^3/s": ("m^3/h", 3600.0),
}

# Words of a field name that narrow the quantity behind a suffix.
TEMPERATURES = {
    "flow": "flow_temperature",
    "forward": "flow_temperature",
    "return": "return_temperature",
    "external": "external_temperature",
    "outside": "external_temperature",
}
DURATIONS = {
    "operating": "operating_time",
    "on": "on_time",
    "actuality": "actuality_duration",
}
MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
# Words naming what the driver tells apart by manufacturer data, VIFE or its own
# arithmetic: fields with them are driver-specific.
QUALIFIER_WORDS = frozenset(
    {
        "alarm",
        "average",
        "base",
        "button",
        "cooling",
        "delta",
        "error",
        "input1",
        "input2",
        "key",
        "leak",
        "period",
        "production",
        "remove",
        "reverse",
    }
)
# Words selecting the direction VIFEs 0x3B (forward only) and 0x3C (backward only).
DIRECTIONS = {
    "forward": 0x3B,
    "backflow": 0x3C,
    "backward": 0x3C,
    "backwards": 0x3C,
    "reverse": 0x3C,
}
# Orthogonal VIFEs that only scale the value (10^(n-6), 10^3); others qualify it.
SCALING_VIFES = frozenset({*range(0x70, 0x78), 0x7D})
TARIFF_WORD = re.compile(r"^tariff(\d+)$")
HISTORIC_WORDS = frozenset(
    {"target", "at", "due", "last", "prev", "previous", "history", "set", *MONTHS}
)
DATE_RE = re.compile(r"^(\d{4})-(\d\d)-(\d\d)(?: (\d\d):(\d\d))?$")


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldCheck:
    """One comparable field: is it standard, and does a record equal it.

    Attributes:
        name: wmbusmeters' field name.
        expected: its value there.
        standard: a record explains the field (see the module docstring).
        matched: a record that explains it holds the same value.
        candidates: the values of the records that explain it.
    """

    name: str
    expected: float | str
    standard: bool
    matched: bool
    candidates: tuple[object, ...]


def comparable_fields(expected: dict[str, Any]) -> dict[str, float | str]:
    """Return the numeric fields with a unit suffix and the date fields."""
    out: dict[str, float | str] = {}
    for name, value in expected.items():
        suffix = name.rsplit("_", 1)[-1]
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and suffix in SUFFIX_UNITS:
            out[name] = float(value)
        elif isinstance(value, str) and _is_date_name(name) and DATE_RE.match(value):
            out[name] = value
    return out


def _is_date_name(name: str) -> bool:
    words = name.lower().split("_")
    return "date" in words or "datetime" in words


def explaining_records(name: str, records: tuple[Record, ...], *, date: bool) -> list[Record]:
    """Return the records whose kind, storage, function and tariff fit the field name."""
    words = name.lower().split("_")
    tariff, words = _tariff(words)
    if QUALIFIER_WORDS.intersection(words) or _numbered(words, date=date):
        return []
    historic = bool(HISTORIC_WORDS.intersection(words))
    function = Function.INSTANTANEOUS
    if "max" in words or "maximum" in words:
        function = Function.MAXIMUM
    elif "min" in words or "minimum" in words:
        function = Function.MINIMUM
    return [
        record
        for record in records
        if (record.storage_number >= 1) == historic
        and record.tariff == tariff
        and record.subunit == 0
        and record.function is function
        and _qualifiers(record) == _wanted_qualifiers(words)
        and (_is_date(record) if date else _kind_fits(words, record))
    ]


def _qualifiers(record: Record) -> frozenset[int]:
    return frozenset(code for code in record.vife if code not in SCALING_VIFES)


def _wanted_qualifiers(words: list[str]) -> frozenset[int]:
    if words[-1] == "c":
        return frozenset()
    return frozenset(DIRECTIONS[word] for word in words if word in DIRECTIONS)


def _numbered(words: list[str], *, date: bool) -> bool:
    """Tell a numbered series (``history_3``, ``24h``); a unit suffix like ``m3`` is no number."""
    named = words if date else words[:-1]
    return any(char.isdigit() for word in named for char in word)


def _tariff(words: list[str]) -> tuple[int, list[str]]:
    """Return the tariff a name gives (``tariff_2``, ``tariff2``; else 0) and the other words."""
    for index, word in enumerate(words):
        found = TARIFF_WORD.match(word)
        if found:
            return int(found.group(1)), words[:index] + words[index + 1 :]
        if word == "tariff" and index + 1 < len(words) and words[index + 1].isdigit():
            return int(words[index + 1]), words[:index] + words[index + 2 :]
    return 0, words


def _is_date(record: Record) -> bool:
    """Tell a record holding a real calendar date (month 1..12) from "no date" fillers."""
    return isinstance(record.value, Timestamp) and 0 <= record.value.month <= 12


def _kind_fits(words: list[str], record: Record) -> bool:
    suffix = words[-1]
    if _comparison(record) is None:
        return False
    if suffix == "hca":
        return record.quantity == "hca_units" and "total" not in words
    if suffix == "c" and "difference" in words:
        return record.quantity == "temperature_difference"
    unit, _ = SUFFIX_UNITS[suffix]
    if _comparison_unit(record) != unit:
        return False
    if suffix == "c":
        wanted = {TEMPERATURES[w] for w in words if w in TEMPERATURES}
        return not wanted or record.quantity in wanted
    if suffix == "h":
        return record.quantity in {DURATIONS[w] for w in words if w in DURATIONS}
    return True


def _comparison_unit(record: Record) -> str:
    return RECORD_UNITS.get(record.unit, (record.unit, 1.0))[0]


def _comparison(record: Record) -> float | None:
    value = record.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) * RECORD_UNITS.get(record.unit, (record.unit, 1.0))[1]


def _number_equal(suffix: str, expected: float, record: Record) -> bool:
    """Compare in the suffix's unit, within half a unit of the last printed digit."""
    got = _comparison(record)
    if got is None:
        return False
    ours = got / SUFFIX_UNITS[suffix][1]
    exponent = Decimal(repr(expected)).as_tuple().exponent
    decimals = -exponent if isinstance(exponent, int) else 0
    return math.isclose(ours, expected, rel_tol=1e-9, abs_tol=0.5 * 10.0**-decimals + 1e-12)


def _date_equal(text: str, record: Record) -> bool:
    found = DATE_RE.match(text)
    stamp = record.value
    if found is None or not isinstance(stamp, Timestamp):
        return False
    year, month, day, hour, minute = (int(part) if part else None for part in found.groups())
    printed = ((year or 0) % 100, month, day)
    # wmbusmeters reads the 7-bit years 100..127 as 2100..2127, libmbus and we as 2000..2027;
    # some drivers print a "no date" as received, others carried by mktime.
    raw, carried = (stamp.year, stamp.month, stamp.day), _calendar(stamp)
    if printed not in {(y % 100, m, d) for y, m, d in (raw, carried)}:
        return False
    return hour is None or (stamp.hour, stamp.minute) == (hour, minute)


def _calendar(stamp: Timestamp) -> tuple[int, int, int]:
    """Return the date as wmbusmeters prints it: mktime carries month 0 and day 0 back.

    So the "no date" (2000, 0, 0) prints as 1999-11-30.
    """
    carried_year, month0 = divmod(stamp.year * 12 + stamp.month - 1, 12)
    first = dt.date(carried_year, month0 + 1, 1)
    day = first + dt.timedelta(days=stamp.day - 1)
    return day.year, day.month, day.day


def check_field(name: str, expected: float | str, records: tuple[Record, ...]) -> FieldCheck:
    """Classify one comparable field and compare it with the records that explain it."""
    date = isinstance(expected, str)
    found = explaining_records(name, records, date=date)
    if isinstance(expected, str):
        matched = any(_date_equal(expected, record) for record in found)
    else:
        suffix = name.rsplit("_", 1)[-1]
        matched = any(_number_equal(suffix, expected, record) for record in found)
    return FieldCheck(
        name=name,
        expected=expected,
        standard=bool(found),
        matched=matched,
        candidates=tuple(record.value for record in found),
    )


def check_row(expected: dict[str, Any], records: tuple[Record, ...]) -> list[FieldCheck]:
    """Check every comparable field of one row of wmbusmeters' output."""
    return [check_field(n, v, records) for n, v in comparable_fields(expected).items()]
