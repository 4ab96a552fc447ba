"""What the meter-side scenarios read: a reading's main register, the farm's counter, logs.

Not a scenario (no ``SCENARIO``): helpers the scenario modules share.
"""

from __future__ import annotations

from typing import Any

from smtestbed.services.controller.client import Controller

FARM_COLUMN = {"electricity": "energy_import_wh", "gas": "volume_m3", "water": "volume_m3"}
"""The farm's counter column behind each kind's main register."""
REGISTERS = (("energy", "Wh"), ("volume", "m^3"))


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
