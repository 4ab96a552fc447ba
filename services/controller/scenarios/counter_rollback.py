"""counter-rollback: a meter whose counter is set lower is refused as counter going backwards.

After every meter has been stored, the controller sets one meter's counter in the
sensor farm to half of the value the gateway stored last (``meter_counter`` with
``allow_backwards``). The meter keeps sending, now with a total below the one accepted
before: each frame must be rejected as ``counter_backwards`` (event and system-log
entry) and nothing of it stored, while the farm still shows the counter below the last
stored value (so the frames really carried lower totals) and the other meters go on
being stored. Then the counter is set forward to where it was: the meter's frames are
stored again, with the total the farm reports. Control: the gateway skips its
plausibility check of counters going backwards (``unsafe_skip_checks =
["counter_backwards"]``); the lower totals are then stored and the scenario must fail.
"""

from __future__ import annotations

from smtestbed.proto import topics
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.scenarios.registers import (
    farm_counter,
    logged_rejections,
    register,
    still_stored,
)
from smtestbed.services.controller.state import state_from_dict

INTERVAL_S = 300.0
REASON = ("counter_backwards",)


async def rollback(ctl: Controller, victim: str) -> tuple[float, float, float]:
    """Set the victim's counter to half its last stored value; return (t, last, before)."""
    now = await ctl.advance(by=2 * INTERVAL_S)  # every meter has been stored
    stored = register(await ctl.readings(victim))
    ctl.check(f"{victim} stored before the rollback", bool(stored), f"{len(stored)} readings")
    last = stored[-1][1]
    column, before = await farm_counter(ctl, victim)
    ctl.check("stored total above zero (it can go back)", last > 0, f"last stored {last}")
    await ctl.call(
        "meter_counter", meter=victim, column=column, value=last / 2, allow_backwards=True
    )
    return now, last, before


async def run(ctl: Controller) -> None:
    """Roll one meter's counter back, advance, check refusals, storage, then restore it."""
    victim, others = ctl.meters[0], ctl.meters[1:]
    mark = ctl.mark()
    changed, last, before = await rollback(ctl, victim)
    await ctl.advance(by=3 * INTERVAL_S)
    event = await ctl.expect_event(
        topics.GATEWAY_FRAME_REJECTED,
        {"meter": victim, "reason": "counter_backwards"},
        since=mark,
        timeout_s=5.0,
        what=f"a frame of {victim} rejected as counter going backwards",
    )
    seen = float(event["body"]["t_sim"])
    ctl.check("rejected frame sent after the rollback", seen >= changed, f"t={seen}, {changed}")
    logged = await logged_rejections(ctl, victim, REASON)
    ctl.check("system log names the meter and reason", bool(logged), f"{len(logged)} entries")
    _, now_counter = await farm_counter(ctl, victim)
    ctl.check("farm counter still below the last stored", now_counter < last, f"{now_counter}")
    points = register(await ctl.readings(victim, t0=changed))
    ctl.expect_equal(f"readings of {victim} stored since the rollback", points, [])
    await still_stored(ctl, others, changed)
    await restore(ctl, victim, before)


async def restore(ctl: Controller, victim: str, before: float) -> None:
    """Set the counter forward to its value before the rollback; readings must resume."""
    column, _ = await farm_counter(ctl, victim)
    restored = float((await ctl.call("clock"))["sensorfarm"])
    await ctl.call("meter_counter", meter=victim, column=column, value=before)
    await ctl.advance(by=2 * INTERVAL_S)
    points = register(await ctl.readings(victim, t0=restored))
    ctl.check(f"{victim} stored again once restored", bool(points), f"{len(points)} readings")
    _, farm_now = await farm_counter(ctl, victim)
    latest = points[-1][1]
    ctl.check(
        "latest stored total between the restored and the farm's counter",
        before <= latest <= farm_now,
        f"restored {before}, stored {latest}, farm now {farm_now}",
    )


SCENARIO = Scenario(
    name="counter-rollback",
    description="a meter's counter set back: frames refused as counter_backwards, none stored",
    state=state_from_dict(
        {
            "seed": 13,
            "population": {"count": 3, "interval_s": INTERVAL_S, "security": 5},
            "clock": {"window_s": 60.0},
        }
    ),
    run=run,
    control={"settings": {"gateway": {"unsafe_skip_checks": ["counter_backwards"]}}},
)
