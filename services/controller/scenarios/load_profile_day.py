"""load-profile-day: TAF7 over one simulated day equals the farm's counters, interval by interval.

A few meters send every 15 min (jitter +-10 %). The controller steps the clock in
quarter hours from 30 min before 2026-12-01 00:00 UTC to 30 min after the next
midnight and reads every meter's counter in the sensor farm (``meter.get``) at each
step. The gateway's tariff runner then queues the day's TAF7 profile. Proved, per
meter:

- one profile for the day with 96 quarter-hour intervals, all formed (``ok``);
- each interval boundary value equals the farm's counter at the boundary. Telegrams
  are not aligned to the quarter hours, so the gateway interpolates between the
  readings before and after the boundary; with every telegram received these were
  sent less than 990 s (15 min + 10 % jitter) from it, so both the interpolated value
  and the true counter lie between the farm's counters 30 min before and after (a
  telegram's value is its send-time counter rounded down to the record's
  resolution). The allowed difference is the farm's consumption over that hour plus
  one resolution step and the 1/1024 grid of TAF values;
- the 96 deltas sum exactly to the difference of the day's boundary values, and that
  equals the farm's counter difference between the day's start and end within the
  two boundary allowances.

Control: the receiver hears nothing (``channel.faults`` down); the gateway stores no
reading, forms no profile, and the scenario must fail.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.scenarios.truth import RESOLUTION, Checkpoints
from smtestbed.services.controller.state import state_from_dict

DAY = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
DAY_S = 86_400.0
QUARTER_S = 900.0
INTERVALS = 96
BRACKET_S = 1800.0  # every telegram received: the readings around a boundary are nearer
EMT = "emt-profile"
GRID = 1.0 / 1024
RECEIVER = "gw0"


async def step_through_day(ctl: Controller) -> Checkpoints:
    """Step the clock in quarter hours over the day; read the farm's counters at each."""
    points = Checkpoints()
    t = DAY - BRACKET_S
    end = DAY + DAY_S + BRACKET_S
    while t <= end:
        now = await ctl.advance(to=t)
        if now != t:
            ctl.check(f"clock stepped to {t:.0f}", False, f"the farm is at {now}")
        await points.take(ctl, t, ctl.meters)
        t += QUARTER_S
    return points


def profile_of(queue: list[dict[str, Any]], meter: str) -> list[dict[str, Any]]:
    """Return the TAF7 entries of ``meter`` for the day (every record covering it)."""
    return [
        v
        for r in queue
        if r["taf"] == "taf7" and r["meter"] == meter
        for v in r["payload"]["values"]
        if DAY <= float(v["start"]) < DAY + DAY_S
    ]


def allowance(points: Checkpoints, meter: str, b: float) -> float:
    """Return how far a boundary value at ``b`` may be from the farm's counter there.

    Telegrams are not aligned to the quarter hours: the gateway interpolates between
    its readings before and after ``b``, which (every telegram received, 900 s +-10 %
    apart) were sent within ``BRACKET_S`` of ``b``. Each carries its send-time counter
    rounded down to the record's resolution, so the interpolated value and the true
    counter C(b) both lie in ``[C(b - BRACKET_S) - resolution, C(b + BRACKET_S)]``;
    the boundary value is then put on the 1/1024 grid.
    """
    spread = points.at(meter, b + BRACKET_S) - points.at(meter, b - BRACKET_S)
    return spread + RESOLUTION[points.kinds[meter]] + GRID


def check_meter(ctl: Controller, points: Checkpoints, meter: str, entries: list[Any]) -> None:
    """Check one meter's day profile against the farm's counters."""
    starts = sorted(float(e["start"]) for e in entries)
    want = [DAY + k * QUARTER_S for k in range(INTERVALS)]
    span = f"{len(starts)} intervals" + (f" from {starts[0]} to {starts[-1]}" if starts else "")
    ctl.check(f"TAF7 profile of {meter} has the day's 96 intervals", starts == want, span)
    entries = sorted(entries, key=lambda e: float(e["start"]))
    bad = [e["start_iso"] for e in entries if e["status"] != "ok" or e["value"] is None]
    ctl.check(f"every interval of {meter} formed", not bad, f"not formed: {bad}")
    first = float(entries[0]["value"]) - float(entries[0]["delta"])
    values = [first, *(float(e["value"]) for e in entries)]
    for k, value in enumerate(values):
        b = DAY + k * QUARTER_S
        limit = allowance(points, meter, b)
        what = f"{meter} boundary {k} = farm counter"
        ctl.expect_close(what, value, points.at(meter, b), limit)
    total = sum(float(e["delta"]) for e in entries)
    ctl.expect_equal(f"{meter} deltas telescope", total, values[-1] - values[0])
    farm = points.at(meter, DAY + DAY_S) - points.at(meter, DAY)
    limit = allowance(points, meter, DAY) + allowance(points, meter, DAY + DAY_S)
    ctl.expect_close(f"{meter} day's sum = farm counter difference", total, farm, limit)


async def run(ctl: Controller) -> None:
    """Step over the day, then compare each meter's TAF7 profile with the farm."""
    points = await step_through_day(ctl)
    queue = await ctl.emt_queue(EMT, limit=10_000)
    for meter in ctl.meters:
        check_meter(ctl, points, meter, profile_of(queue, meter))


SCENARIO = Scenario(
    name="load-profile-day",
    description="TAF7 over one day: 96 intervals per meter matching the farm's counters",
    state=state_from_dict(
        {
            "seed": 7,
            "clock": {"start": DAY - 2 * 3600.0, "window_s": QUARTER_S},
            "population": {"count": 3, "interval_s": QUARTER_S, "security": 5},
            "registry": {"tafs": ["taf7"], "emt": EMT},
        }
    ),
    run=run,
    control={"channel": {"faults": [{"receiver": RECEIVER, "down": True}]}},
)
