"""replay-attack: a meter's recorded telegram re-sent on the radio is refused as replay.

An attacker records a meter's telegram and sends it again, byte-identical, after the
meter has sent a newer one (``meter_replay``: the sensor farm re-sends the meter's last
telegram at a chosen time, from the meter's place; nothing is written into the
gateway). The farm says when the meter sends next (``meter.get`` ``next_tx``), so the
replay is timed one window after that genuine telegram. The gateway must refuse the
copy as ``replay`` (event at the replay's time, system-log entry), keep exactly one
reading with the recorded access number (the genuine one, from before the replay),
and go on storing the meter's genuine telegrams up to the access number the farm
reports. The farm's own counter confirms the copy went out. Control: the gateway's
access-number check is off (``unsafe_skip_checks = ["replay"]``): the copy is then not
refused and the scenario must fail.
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

INTERVAL_S = 300.0
WINDOW_S = 60.0
AIRTIME_S = 1.0  # a telegram's time on air is far below this
REASON = ("replay",)


async def record(ctl: Controller, victim: str) -> dict[str, Any]:
    """Have the farm re-send the victim's last telegram one window after its next one."""
    await ctl.advance(by=2 * INTERVAL_S)  # every meter has been stored
    state = await ctl.meter(victim)
    at = float(state["next_tx"]) + WINDOW_S
    reply = await ctl.call("meter_replay", meter=victim, count=1, at=at)
    replay: dict[str, Any] = reply["replays"][0]
    ctl.expect_equal(
        "replay of the meter's last access number", replay["access_number"], state["access_number"]
    )
    return replay


async def run(ctl: Controller) -> None:
    """Replay one meter's telegram; check refusal, log, storage and the genuine frames."""
    victim, others = ctl.meters[0], ctl.meters[1:]
    mark = ctl.mark()
    replay = await record(ctl, victim)
    acc, at = int(replay["access_number"]), float(replay["at"])
    genuine = [r for r in await ctl.readings(victim) if r["access_number"] == acc]
    ctl.expect_equal("recorded telegram stored once when the meter sent it", len(genuine), 1)
    await ctl.advance(to=at + 2 * INTERVAL_S)
    farm = await ctl.call("counters", service="sensorfarm")
    ctl.expect_equal("telegrams the farm replayed", farm.get("replayed"), 1)
    event = await ctl.expect_event(
        topics.GATEWAY_FRAME_REJECTED,
        {"meter": victim, "reason": "replay"},
        since=mark,
        timeout_s=5.0,
        what=f"the replayed telegram of {victim} rejected as replay",
    )
    ctl.expect_close("refused at the replay's time", float(event["body"]["t_sim"]), at, AIRTIME_S)
    logged = await logged_rejections(ctl, victim, REASON)
    ctl.check("system log names the meter and reason", bool(logged), f"{len(logged)} entries")
    copies = [r for r in await ctl.readings(victim) if r["access_number"] == acc]
    ctl.expect_equal("readings with the replayed access number", len(copies), 1)
    kept = [(r["id"], r["t_sim"]) for r in copies]
    ctl.check("the one kept is the genuine", copies == genuine, f"kept (id, t) {kept}")
    await genuine_go_on(ctl, victim, at)
    await still_stored(ctl, others, at)


async def genuine_go_on(ctl: Controller, victim: str, at: float) -> None:
    """Check the victim's genuine telegrams after the replay are stored, up to the farm's."""
    await stored_up_to_farm(
        ctl, victim, at, f"{victim}'s genuine telegrams stored after the replay"
    )


SCENARIO = Scenario(
    name="replay-attack",
    description="a meter's recorded telegram re-sent on the radio: refused as replay, not stored",
    state=state_from_dict(
        {
            "seed": 17,
            "population": {"count": 3, "interval_s": INTERVAL_S, "security": 5},
            "clock": {"window_s": WINDOW_S},
        }
    ),
    run=run,
    control={"settings": {"gateway": {"unsafe_skip_checks": ["replay"]}}},
)
