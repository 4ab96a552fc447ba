"""collision-storm: under frequent collisions the gateway loses exactly what the channel lost.

Many unencrypted (security 0) meters send every 10 s to one receiver, so frames
overlap often: some collide outright, some are captured by the stronger frame and
arrive with bit errors. The controller steps the clock and reads every meter's
counter and access number from the sensor farm at each step. Proved:

- the channel was offered every telegram the farm sent, and the storm happened
  (collisions and corrupted deliveries reported by the channel);
- the gateway took in every frame the channel delivered, rejected exactly the
  corrupted ones and accepted exactly the intact ones (``gateway.status`` against
  the channel's ``channel.window`` counters);
- per meter, what the farm sent minus what the gateway stored sums exactly to the
  channel's losses (not delivered plus corrupted). The channel reports per window and
  receiver, not per meter, so per meter the strongest check is that each stored
  reading is one the farm sent: its access number is one the meter used between the
  checkpoints around its receive time, access numbers rise, and its counter lies
  between the farm's counters at those checkpoints. Nothing wrong is stored.

Control: the gateway's CRC check off (``unsafe_skip_checks = ["crc"]``). Corrupted
frames of these unencrypted meters then reach the record checks, and those with bit
errors in their values only are stored: the counts and the stored values no longer
match, and the scenario must fail.
"""

from __future__ import annotations

from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.scenarios import radio
from smtestbed.services.controller.state import state_from_dict

RECEIVER = "gw0"
INTERVAL_S = 10.0
STEP_S = 30.0
STEPS = 10
MIN_COLLIDED = 0.03  # share of offered frames: below it there was no storm to speak of


async def run(ctl: Controller) -> None:
    """Step the storm, then match the farm's, channel's and gateway's counts and readings."""
    before = await ctl.call("gateway_status", gateway=RECEIVER)
    traffic = await radio.begin(ctl)
    for _ in range(STEPS):
        await radio.step(ctl, traffic, STEP_S)
    await radio.collect_channel(ctl, traffic)
    after = await ctl.call("gateway_status", gateway=RECEIVER)
    radio.check_channel_saw_all(ctl, traffic)
    seen = traffic.channel[RECEIVER]
    share = seen["collided"] / max(traffic.offered, 1)
    ctl.check("a storm: collisions", share >= MIN_COLLIDED, f"{dict(seen)} of {traffic.offered}")
    ctl.check("a storm: corrupted deliveries", seen["corrupted"] > 0, f"{dict(seen)}")
    radio.check_gateway_counts(ctl, RECEIVER, traffic, before, after)
    lost = await radio.check_stored(ctl, RECEIVER, traffic, ctl.meters)
    ctl.expect_equal("meters' losses (sent - stored) = channel's", lost, traffic.lost(RECEIVER))


SCENARIO = Scenario(
    name="collision-storm",
    description="frequent collisions: the gateway's losses per meter match the channel's",
    state=state_from_dict(
        {
            "seed": 13,
            "clock": {"window_s": STEP_S},
            "population": {"count": 120, "interval_s": INTERVAL_S, "security": 0},
        }
    ),
    run=run,
    control={"settings": {"gateway": {"unsafe_skip_checks": ["crc"]}}},
)
