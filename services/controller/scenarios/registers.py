"""What the meter-side scenarios read: a reading's main register, the farm's counter, logs.

Not a scenario (no ``SCENARIO``): helpers the scenario modules share.
"""

from __future__ import annotations

from typing import Any

from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenarios.truth import FARM_COLUMN, REGISTERS

__all__ = [
    "FARM_COLUMN",
    "REGISTERS",
    "farm_counter",
    "logged_rejections",
    "register",
    "still_stored",
    "stored_up_to_farm",
]


def register(readings: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Return the main register (energy Wh, else volume m^3) of readings as (t, value)."""
    for quantity, unit in REGISTERS:
        points = [
            (float(r["t_sim"]), float(v["value"]))
            for r in readings
            for v in r["values"]
            if (v["quantity"], v["unit"], v["storage_number"], v["tariff"], v["subunit"])
            == (quantity, unit, 0, 0, 0)
        ]
        if points:
            return points
    return []


async def farm_counter(ctl: Controller, meter: str) -> tuple[str, float]:
    """Return the farm's counter column of ``meter`` and its value now."""
    state = await ctl.meter(meter)
    column = FARM_COLUMN[state["kind"]]
    return column, float(state["values"][column])


async def logged_rejections(ctl: Controller, meter: str, reasons: tuple[str, ...]) -> list[Any]:
    """Return the system log's frame rejections of ``meter`` for one of ``reasons``."""
    return [
        r
        for e in await ctl.log("system", limit=10_000)
        if e["kind"] == "frames_rejected"
        for r in e["fields"]["rejections"]
        if r["meter"] == meter and r["reason"] in reasons
    ]


async def still_stored(ctl: Controller, meters: tuple[str, ...], since: float) -> None:
    """Check that each of ``meters`` has readings stored from ``since`` (s) on."""
    for meter in meters:
        rows = await ctl.readings(meter, t0=since)
        ctl.check(f"{meter} still stored", bool(rows), f"{len(rows)} readings since t={since}")


async def stored_up_to_farm(
    ctl: Controller, meter: str, since: float, what: str
) -> list[dict[str, Any]]:
    """Check that ``meter`` has readings stored from ``since`` on (check ``what``), the last
    one with the access number the farm sent last; return the readings."""
    after = await ctl.readings(meter, t0=since)
    ctl.check(what, bool(after), f"{len(after)} readings")
    state = await ctl.meter(meter)
    ctl.expect_equal(
        "last stored access number = the farm's last sent",
        after[-1]["access_number"],
        state["access_number"],
    )
    return after
