"""The sensor farm's meters as the scenarios' independent truth: counters over time.

Not a scenario (no ``SCENARIO``): what the radio-side scenarios share. A meter's
counter is read from the farm (``meter.get``) at checkpoints the controller steps
the clock to; a telegram sent between two checkpoints carries the counter at its
send time rounded down to the record's resolution (``records_for``: Wh for
electricity, 0.001 m^3 for gas and water), so a stored value from that telegram
must lie in ``[floor(C(before)), C(after)]``.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from smtestbed.services.controller.client import Controller

FARM_COLUMN = {"electricity": "energy_import_wh", "gas": "volume_m3", "water": "volume_m3"}
RESOLUTION = {"electricity": 1.0, "gas": 0.001, "water": 0.001}  # of the counter's record
REGISTERS = (("energy", "Wh"), ("volume", "m^3"))
SLACK = 1e-9  # float noise of raw * 10^-3 against the farm's value


def register_value(reading: dict[str, Any]) -> float | None:
    """Return a stored reading's primary counter (energy Wh, else volume m^3), or None."""
    for quantity, unit in REGISTERS:
        for v in reading["values"]:
            key = (v["quantity"], v["unit"], v["storage_number"], v["tariff"], v["subunit"])
            if key == (quantity, unit, 0, 0, 0) and v["function"] == "instantaneous":
                return float(v["value"])
    return None


@dataclass(slots=True)
class Checkpoints:
    """Each meter's farm counter and access number at the times the clock was stepped to."""

    times: list[float] = field(default_factory=list)
    counters: dict[str, list[float]] = field(default_factory=dict)
    access: dict[str, list[int]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)

    async def take(self, ctl: Controller, t: float, meters: tuple[str, ...]) -> None:
        """Read every meter's counter from the farm at clock time ``t``."""
        self.times.append(t)
        for meter in meters:
            state = await ctl.meter(meter)
            kind = str(state["kind"])
            self.kinds[meter] = kind
            self.counters.setdefault(meter, []).append(float(state["values"][FARM_COLUMN[kind]]))
            self.access.setdefault(meter, []).append(int(state["access_number"]))

    def at(self, meter: str, t: float) -> float:
        """Return the counter at checkpoint ``t`` exactly (KeyError if none was taken)."""
        i = bisect_left(self.times, t)
        if i == len(self.times) or self.times[i] != t:
            raise KeyError(f"no checkpoint at t={t}")
        return self.counters[meter][i]

    def bounds(self, meter: str, t_sent_after: float, t_sent_before: float) -> tuple[float, float]:
        """Return the range a value sent in ``[t_sent_after, t_sent_before]`` must lie in.

        Low: the counter at the last checkpoint at or before ``t_sent_after``, rounded
        down to the record's resolution; high: the counter at the first checkpoint at or
        after ``t_sent_before``. Outside the checkpoints the range is open (+-inf).
        """
        res = RESOLUTION[self.kinds[meter]]
        lo_i = bisect_right(self.times, t_sent_after) - 1
        hi_i = bisect_left(self.times, t_sent_before)
        low = math.floor(self.counters[meter][lo_i] / res) * res if lo_i >= 0 else -math.inf
        high = self.counters[meter][hi_i] if hi_i < len(self.times) else math.inf
        return low - SLACK, high + SLACK

    def access_span(self, meter: str, t_sent_after: float, t_sent_before: float) -> tuple[int, int]:
        """Return the access numbers a telegram sent in that span can carry.

        As (first, span): the number at the last checkpoint at or before
        ``t_sent_after``, and how many telegrams the farm sent from there to the first
        checkpoint at or after ``t_sent_before``; a telegram of that span carries
        ``first + 1 .. first + span`` (mod 256). Outside the checkpoints: (0, 256).
        """
        lo_i = bisect_right(self.times, t_sent_after) - 1
        hi_i = bisect_left(self.times, t_sent_before)
        if lo_i < 0 or hi_i >= len(self.times):
            return 0, 256
        an = self.access[meter]
        return an[lo_i], sum((b - a) % 256 for a, b in pairwise(an[lo_i : hi_i + 1]))

    def sent(self, meter: str) -> int:
        """Return the telegrams the meter sent between the first and last checkpoint.

        The farm adds one to a meter's access number per telegram sent (mod 256), so
        this is exact while fewer than 256 were sent between two checkpoints.
        """
        an = self.access[meter]
        return sum((b - a) % 256 for a, b in pairwise(an))
