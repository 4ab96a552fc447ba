"""billing-day: TAF1 billing values at the billing date equal the meters' counters then.

The stepped clock starts at noon before 2026-12-01 00:00 UTC (billing day 1) and the
controller advances it to that midnight exactly, reads every meter's counter in the
sensor farm (``meter.get``), then advances past the next midnight so the gateway's
tariff runner forms the billing values. Each TAF1 value for the date must equal the
farm's counter within what the gateway can know: it interpolates between the stored
readings around the date, so the allowed difference is the consumption between those
two readings. Control: the gateway's billing day moved to the 2nd; the scenario must
then find no billing value for the 1st and fail.
"""

from __future__ import annotations

from datetime import UTC, datetime

from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.scenarios.registers import farm_counter, register
from smtestbed.services.controller.state import state_from_dict

BILLING = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
DAY_S = 86_400.0
INTERVAL_S = 900.0
EMT = "emt-bill"
GRID = 1.0 / 1024


async def counters_at_date(ctl: Controller) -> dict[str, float]:
    """Advance to the billing date; return each meter's counter there from the farm."""
    now = await ctl.advance(to=BILLING)
    ctl.expect_equal("clock at the billing date", now, BILLING)
    out = {}
    for meter in ctl.meters:
        _, out[meter] = await farm_counter(ctl, meter)
    return out


async def run(ctl: Controller) -> None:
    """Advance over the billing date and compare TAF1 values with the farm's counters."""
    expected = await counters_at_date(ctl)
    await ctl.advance(to=BILLING + DAY_S + 3 * INTERVAL_S)
    queue = await ctl.emt_queue(EMT, limit=10_000)
    for meter, counter in expected.items():
        values = [
            v
            for r in queue
            if r["taf"] == "taf1" and r["meter"] == meter
            for v in r["payload"]["values"]
            if v["t"] == BILLING
        ]
        ctl.check(f"TAF1 value of {meter} at the billing date", len(values) == 1, f"{values}")
        value = values[0]["value"]
        ctl.check(f"TAF1 value of {meter} formed", value is not None, f"{values[0]}")
        points = register(await ctl.readings(meter, t0=BILLING - DAY_S, t1=BILLING + DAY_S))
        before = max((p for p in points if p[0] <= BILLING), default=None)
        after = min((p for p in points if p[0] >= BILLING), default=None)
        if before is None or after is None:
            ctl.check(f"readings of {meter} around the date", False, f"{len(points)} readings")
            return
        tolerance = abs(after[1] - before[1]) + GRID
        ctl.expect_close(f"TAF1 of {meter} = farm counter", float(value), counter, tolerance)


SCENARIO = Scenario(
    name="billing-day",
    description="TAF1 billing values at the billing date equal the meters' counters then",
    state=state_from_dict(
        {
            "seed": 5,
            "clock": {"start": BILLING - DAY_S / 2, "window_s": 900.0},
            "population": {"count": 4, "interval_s": INTERVAL_S, "security": 5},
            "registry": {"tafs": ["taf1"], "emt": EMT},
            "settings": {"gateway": {"billing_day": 1}},
        }
    ),
    run=run,
    control={"settings": {"gateway": {"billing_day": 2}}},
)
