"""Date and time types of EN 13757-3: G (16-bit date), F (32-bit), I (48-bit).

Bit layouts (little-endian bytes):

- Type G: byte0 = day (4..0), year bits 2..0 (7..5); byte1 = month (3..0),
  year bits 6..3 (7..4).
- Type F: byte0 = minute (5..0), IV invalid flag (7); byte1 = hour (4..0),
  SU summer-time flag (7); bytes 2..3 = a type G date.
- Type I: byte0 = second (5..0), then type F in bytes 1..4, byte5 = day of
  week and week number (kept as received, not interpreted).

Two-digit years follow libmbus: 0..80 are 2000..2080, 81..99 are 1981..1999
and 100..127 are 2000..2027.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class Timestamp:
    """A calendar date or date+time as a meter sends it (fields may be out of range).

    Attributes:
        year: full year.
        month: 1..12, 0 or more when the meter sends no valid date.
        day: 1..31, or 0.
        hour: 0..23 (None for a date only).
        minute: 0..59 (None for a date only).
        second: 0..59 (None unless type I).
        invalid: the IV flag of type F/I.
        summer_time: the SU flag of type F/I.
    """

    year: int
    month: int
    day: int
    hour: int | None = None
    minute: int | None = None
    second: int | None = None
    invalid: bool = False
    summer_time: bool = False

    def iso(self) -> str:
        """Return ``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM:SS`` (no time zone)."""
        date = f"{self.year:04d}-{self.month:02d}-{self.day:02d}"
        if self.hour is None:
            return date
        return f"{date}T{self.hour:02d}:{self.minute or 0:02d}:{self.second or 0:02d}"

    def to_datetime(self) -> dt.datetime | None:
        """Return a naive datetime, or None when the fields are not a real time."""
        try:
            return dt.datetime(
                self.year, self.month, self.day, self.hour or 0, self.minute or 0, self.second or 0
            )
        except ValueError:
            return None


def _year(low: int, high: int) -> int:
    short = low | (high << 3)
    return 1900 + short if 81 <= short <= 99 else 2000 + (short % 100)


def decode_date(data: bytes) -> Timestamp:
    """Decode a type G date (2 bytes)."""
    return Timestamp(
        year=_year(data[0] >> 5, data[1] >> 4), month=data[1] & 0x0F, day=data[0] & 0x1F
    )


def decode_datetime(data: bytes) -> Timestamp:
    """Decode a type F (4 bytes) or type I (6 bytes) date and time."""
    second: int | None = None
    if len(data) == 6:
        second, data = data[0] & 0x3F, data[1:5]
    date = decode_date(data[2:4])
    return Timestamp(
        year=date.year,
        month=date.month,
        day=date.day,
        hour=data[1] & 0x1F,
        minute=data[0] & 0x3F,
        second=second,
        invalid=bool(data[0] & 0x80),
        summer_time=bool(data[1] & 0x80),
    )


def encode_date(stamp: Timestamp) -> bytes:
    """Encode a type G date (2 bytes); years 1981..2080 only."""
    if not 1981 <= stamp.year <= 2080 or not 0 <= stamp.month <= 15 or not 0 <= stamp.day <= 31:
        raise ValueError(f"date not representable as type G: {stamp.iso()}")
    short = stamp.year % 100
    return bytes([(stamp.day & 0x1F) | ((short & 0x07) << 5), stamp.month | ((short >> 3) << 4)])


def encode_datetime(stamp: Timestamp, *, size: int = 4) -> bytes:
    """Encode a type F (size 4) or type I (size 6) date and time."""
    hour, minute = stamp.hour or 0, stamp.minute or 0
    if not 0 <= hour <= 23 or not 0 <= minute <= 59 or not 0 <= (stamp.second or 0) <= 59:
        raise ValueError(f"time not representable as type F/I: {stamp.iso()}")
    body = bytes(
        [minute | (0x80 if stamp.invalid else 0), hour | (0x80 if stamp.summer_time else 0)]
    )
    body += encode_date(stamp)
    if size == 6:
        return bytes([stamp.second or 0]) + body + b"\x00"
    return body
