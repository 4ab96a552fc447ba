"""key-change-by-management: a meter's key changed by the GWA at gateway and meter.

The key is replaced the way a gateway administrator does it: the gateway's registry
entry is replaced through management (``gateway_add_meter`` with ``replace``, the same
entry with the new key), and the meter gets the new key one interval later
(``meter_key``). In between the meter still encrypts with the old key: each of those
frames must be refused as ``wrong_key`` or ``bad_mac`` (event, system-log entry) and
none stored. Once the meter has the new key its frames are stored again, the first
within one sending interval (plus a window) of the change, and the last stored one
carries the access number the farm last sent. Control: the gateway skips its MAC check
(``unsafe_skip_checks = ["mac"]``): the old-key frames are then not refused as wrong
key, and the scenario must fail.
"""

from __future__ import annotations

from typing import Any

from smtestbed.proto import topics
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.scenarios.registers import (
    logged_rejections,
    still_stored,
    stored_up_to_farm,
)
from smtestbed.services.controller.state import state_from_dict

NEW_KEY = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"
REASONS = ("wrong_key", "bad_mac")
INTERVAL_S = 300.0
WINDOW_S = 60.0


async def replace_at_gateway(ctl: Controller, victim: str) -> float:
    """Replace the victim's registry entry with one carrying the new key; return the time."""
    now = await ctl.advance(by=2 * INTERVAL_S)  # every meter has been stored
    entries: list[dict[str, Any]] = await ctl.call("meters")
    entry = next((e for e in entries if e["meter"] == victim), None)
    ctl.check(f"{victim} registered at the gateway", entry is not None, f"{len(entries)} entries")
    assert entry is not None
    fields = ("manufacturer", "security", "tafs", "consumer", "emt")
    await ctl.call(
        "gateway_add_meter",
        meter=victim,
        key=NEW_KEY,
        replace=True,
        **{f: entry[f] for f in fields},
    )
    return now


async def run(ctl: Controller) -> None:
    """Change the key at the gateway, then at the meter; check the gap and the resumption."""
    victim, others = ctl.meters[0], ctl.meters[1:]
    mark = ctl.mark()
    at_gateway = await replace_at_gateway(ctl, victim)
    at_meter = await ctl.advance(by=INTERVAL_S + WINDOW_S)  # >= 1 frame with the old key
    event = await ctl.expect_event(
        topics.GATEWAY_FRAME_REJECTED,
        {"meter": victim},
        since=mark,
        timeout_s=5.0,
        what=f"an old-key frame of {victim} rejected",
    )
    reason = event["body"]["reason"]
    ctl.check("rejected as wrong key or bad MAC", reason in REASONS, f"reason {reason!r}")
    between = await ctl.readings(victim, t0=at_gateway, t1=at_meter)
    ctl.expect_equal("old-key frames stored after the gateway's change", len(between), 0)
    logged = await logged_rejections(ctl, victim, REASONS)
    ctl.check("system log names the meter and reason", bool(logged), f"{len(logged)} entries")
    await ctl.call("meter_key", meter=victim, key=NEW_KEY)
    await ctl.advance(by=2 * INTERVAL_S)
    await resumed(ctl, victim, at_meter)
    await still_stored(ctl, others, at_gateway)


async def resumed(ctl: Controller, victim: str, at_meter: float) -> None:
    """Check new-key readings from the meter's change on: soon, and up to the farm's last."""
    after = await stored_up_to_farm(
        ctl, victim, at_meter, f"{victim} stored again with the new key"
    )
    gap = float(after[0]["t_sim"]) - at_meter
    ctl.check("first new-key reading within one interval", gap <= INTERVAL_S + WINDOW_S, f"{gap} s")


SCENARIO = Scenario(
    name="key-change-by-management",
    description="key replaced at gateway then meter: old-key frames refused, new-key ones stored",
    state=state_from_dict(
        {
            "seed": 19,
            "population": {"count": 3, "interval_s": INTERVAL_S, "security": 5},
            "clock": {"window_s": WINDOW_S},
        }
    ),
    run=run,
    control={"settings": {"gateway": {"unsafe_skip_checks": ["mac"]}}},
)
