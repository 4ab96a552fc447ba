"""wrong-key: a meter's key changed at the meter only is refused, and only that meter.

The meter encrypts with a key the gateway does not have. Its frames must be rejected
as ``wrong_key`` or ``bad_mac`` (event and system-log entry), nothing must be stored
from it after the change, and the other meters must go on being stored. Control: the
gateway skips its MAC check (``unsafe_skip_checks = ["mac"]``); the scenario must then
fail.
"""

from __future__ import annotations

from smtestbed.proto import topics
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.scenarios.registers import logged_rejections, still_stored
from smtestbed.services.controller.state import state_from_dict

NEW_KEY = "00112233445566778899AABBCCDDEEFF"
REASONS = ("wrong_key", "bad_mac")
INTERVAL_S = 300.0


async def run(ctl: Controller) -> None:
    """Change one meter's key, advance, and check rejections, logs and storage."""
    victim, others = ctl.meters[0], ctl.meters[1:]
    await ctl.advance(by=2 * INTERVAL_S)  # every meter has been stored once
    mark = ctl.mark()
    await ctl.call("meter_key", meter=victim, key=NEW_KEY)
    await ctl.advance(by=3 * INTERVAL_S)
    first = await ctl.expect_event(
        topics.GATEWAY_FRAME_REJECTED,
        {"meter": victim},
        since=mark,
        what=f"a frame of {victim} rejected",
    )
    reason = first["body"]["reason"]
    ctl.check("rejected as wrong key or bad MAC", reason in REASONS, f"reason {reason!r}")
    changed = float(first["body"]["t_sim"])
    await ctl.advance(by=2 * INTERVAL_S)
    stored = await ctl.readings(victim, t0=changed)
    ctl.expect_equal(f"readings of {victim} stored since the change", len(stored), 0)
    logged = await logged_rejections(ctl, victim, REASONS)
    ctl.check("system log names the rejected meter", bool(logged), f"{len(logged)} rejections")
    await still_stored(ctl, others, changed)


SCENARIO = Scenario(
    name="wrong-key",
    description="a key changed at the meter only: its frames refused and logged, others unaffected",
    state=state_from_dict(
        {
            "seed": 11,
            "population": {"count": 4, "interval_s": INTERVAL_S, "security": 5},
            "clock": {"window_s": 60.0},
        }
    ),
    run=run,
    control={"settings": {"gateway": {"unsafe_skip_checks": ["mac"]}}},
)
