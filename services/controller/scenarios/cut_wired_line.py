"""cut-wired-line: a wired M-Bus meter behind an opened relay is reported missing.

The sensor farm serves one wired electricity meter on M-Bus/TCP; the I/O board's relay
sits in that line and the gateway polls the meter through the board (every 0.5 s of
wall time, stamped with the simulation clock). First the readings arrive and carry the
farm's counter. Then the controller opens the relay (``relay`` operation): the gateway
must report the meter missing (``gateway.meter_missing`` event and a ``meter_missing``
system-log entry) and, while the board's own counters show it cutting the gateway's
further polls and simulated time moves on, store nothing new of the meter. Once the
relay closes, readings resume with the farm's counter at that time. Control: the
gateway does not report a wired meter going silent (``unsafe_skip_checks =
["meter_missing"]``); the scenario must then fail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from smtestbed.proto import topics
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.scenarios.registers import farm_counter, register
from smtestbed.services.controller.state import state_from_dict
from smtestbed.services.controller.wired import LINE_RELAY

METER = "12345678"
POLL_S = 0.5
WAIT_S = 20.0  # wall time for the poller to show an effect (it needs well below 5 s)
MISSING_WAIT_S = 10.0  # the control waits this long for the report that never comes
GRID_WH = 1.0  # the meter's energy record counts whole Wh
CUT_BYTES = 40  # more than the SND_NKE attempts of one poll (4 x 5 bytes) and its REQ_UD2


async def wait_for(ok: Callable[[], Awaitable[bool]], timeout_s: float = WAIT_S) -> bool:
    """Return True once ``ok()`` is true, False after ``timeout_s`` of wall time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await ok():
            return True
        await asyncio.sleep(0.2)
    return False


async def stored_since(ctl: Controller, t0: float) -> list[tuple[float, float]]:
    """Return the meter's energy register stored from ``t0`` (s) on."""
    return register(await ctl.readings(METER, t0=t0))


async def expect_reading(ctl: Controller, t0: float, what: str) -> None:
    """Wait for a reading from ``t0`` on; check it equals the farm's counter now."""

    async def arrived() -> bool:
        return bool(await stored_since(ctl, t0))

    came = await wait_for(arrived)
    points = await stored_since(ctl, t0)
    ctl.check(what, came, f"{len(points)} readings from t={t0} after at most {WAIT_S:g} s")
    _, counter = await farm_counter(ctl, METER)
    value = points[-1][1]
    ctl.expect_close(f"{what}: value = farm counter", value, counter, GRID_WH)


async def missing_entries(ctl: Controller) -> list[dict[str, Any]]:
    """Return the system log's ``meter_missing`` entries of the meter, oldest first."""
    entries = await ctl.log("system", limit=10_000)
    return [e for e in entries if e["kind"] == "meter_missing" and e["fields"]["meter"] == METER]


async def cut_bytes(ctl: Controller) -> int:
    """Return the bytes the board's line relays have cut so far."""
    return int((await ctl.call("counters", service="iohw"))["line_bytes_cut"])


async def run(ctl: Controller) -> None:
    """Poll through the relay, open it, check missing and silence, close it, check resume."""
    start = await ctl.advance(by=600.0)
    await expect_reading(ctl, start, "readings through the closed relay")
    logged = len(await missing_entries(ctl))  # the poller may have missed the meter at start
    mark = ctl.mark()
    await ctl.call("relay", relay=LINE_RELAY, closed=False)
    event = await ctl.expect_event(
        topics.GATEWAY_METER_MISSING,
        {"meter": METER},
        since=mark,
        timeout_s=MISSING_WAIT_S,
        what=f"gateway reports {METER} missing",
    )
    entries = (await missing_entries(ctl))[logged:]
    ctl.check(
        "system log names the missing meter",
        bool(entries),
        f"{len(entries)} new entries; event reason {event['body']['reason']}",
    )
    opened = await ctl.advance(by=600.0)
    cut = await cut_bytes(ctl)

    async def polled() -> bool:
        return await cut_bytes(ctl) >= cut + CUT_BYTES

    came = await wait_for(polled)
    ctl.check("board cuts the gateway's polls", came, f"{await cut_bytes(ctl) - cut} bytes more")
    ctl.expect_equal("readings stored while the relay is open", await stored_since(ctl, opened), [])
    await ctl.call("relay", relay=LINE_RELAY, closed=True)
    closed = await ctl.advance(by=600.0)
    await expect_reading(ctl, closed, "readings resume once the relay closes")


SCENARIO = Scenario(
    name="cut-wired-line",
    description="relay in a wired M-Bus line opened: meter reported missing, nothing stored",
    state=state_from_dict(
        {
            "seed": 23,
            "meters": [
                {
                    "id": int(METER),
                    "manufacturer": "EMH",
                    "kind": "electricity",
                    "interface": "wired_mbus",
                    "primary_address": 5,
                }
            ],
            "wired": {"enabled": True, "interval_s": POLL_S, "relay": "wired-line"},
            "clock": {"window_s": 60.0},
        }
    ),
    run=run,
    control={"settings": {"gateway": {"unsafe_skip_checks": ["meter_missing"]}}},
)
