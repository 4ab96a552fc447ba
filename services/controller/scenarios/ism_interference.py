"""ism-interference: an ISM emitter near one receiver corrupts frames there as predicted.

Two receivers 5 km apart, each with a ring of 12 unencrypted C1 electricity meters
50 m around it (registered at that receiver's gateway instance). A duty-cycled ISM
emitter 10 m from ``gw0`` sends a 0.1 s burst in every 0.5 s period on 868.95 MHz,
at a power that leaves a frame it overlaps at gw0 with an SINR of about 6 dB: such a
frame is delivered with a few bit errors. At ``gw1`` the emitter is about 80 dB under
the noise floor. The controller steps the clock and reads every meter's counter and
access number from the sensor farm at each step. Proved:

- gw0's share of corrupted deliveries is what the channel's model predicts: a frame of
  ``a`` s on air overlaps a burst with probability between ``burst/period`` and
  ``(burst + a)/period``, and then carries at least one bit error with probability
  ``1 - (1 - BER)^bits`` (``BER = 0.5 exp(-SINR B / 2 R_b)`` for the SINR the
  geometry gives; the frame length comes from the farm's counters), within four
  standard deviations of the binomial count;
- gw1 is unaffected: no corrupted delivery there, and it loses to range exactly the
  frames of gw0's ring (and gw0 those of gw1's);
- each gateway instance took in what the channel delivered to its receiver, rejected
  exactly the corrupted frames and accepted exactly the intact ones; per instance,
  what its meters sent minus what it stored equals the channel's losses of those
  meters' frames; every stored reading is one the farm sent (access number and
  counter between the checkpoints around it).

Control: the gateway's CRC check off (``unsafe_skip_checks = ["crc"]``): frames with
bit errors in their values only are stored, the counts no longer match the channel's,
and the scenario must fail.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from smtestbed.proto import topics
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenario import Scenario
from smtestbed.services.controller.scenarios import radio
from smtestbed.services.controller.state import state_from_dict

RECEIVERS = ({"name": "gw0", "x": 0.0, "y": 0.0}, {"name": "gw1", "x": 5000.0, "y": 0.0})
RING_M = 50.0
PER_RING = 12
INTERVAL_S = 6.0
TX_DBM = 14.0
BURST_S, PERIOD_S = 0.1, 0.5
ITF_DISTANCE_M = 10.0
ITF_DBM = -11.0
STEP_S = 60.0
STEPS = 10
SIGMAS = 4.0
# The channel's radio model, set in the state so the prediction uses what the channel does.
REFERENCE_LOSS_DB, PATH_LOSS_EXPONENT, NOISE_FIGURE_DB = 31.2, 2.7, 6.0
NOISE_DBM = -174.0 + 10 * math.log10(200e3) + NOISE_FIGURE_DB  # kTB over C1's 200 kHz + NF
C1_CHIP_RATE, C1_HEADER_CHIPS, C1_CHIPS_PER_BYTE = 100_000.0, 32 + 32, 8
C1_BANDWIDTH_OVER_RATE = 200e3 / 100e3


def ring(index: int, cx: float) -> list[dict[str, Any]]:
    """Return the meter rows of one ring around (cx, 0), ids 2<index>000001..."""
    rows = []
    for k in range(PER_RING):
        angle = 2 * math.pi * k / PER_RING
        rows.append(
            {
                "id": (21 + index) * 1_000_000 + k + 1,
                "manufacturer": "EMH",
                "kind": "electricity",
                "mode": "c1",
                "security": 0,
                "interval_s": INTERVAL_S,
                "x_m": cx + RING_M * math.cos(angle),
                "y_m": RING_M * math.sin(angle),
                "tx_power_dbm": TX_DBM,
                "energy_import_wh": 1000.0 * (k + 1),
            }
        )
    return rows


def interleaved() -> list[dict[str, Any]]:
    """Return both rings row by row, so the registry's round robin gives each its receiver."""
    return [row for pair in zip(ring(0, 0.0), ring(1, 5000.0), strict=True) for row in pair]


def path_loss_db(distance_m: float) -> float:
    """Return the channel's log-distance path loss (no shadowing, no obstacles), dB."""
    return REFERENCE_LOSS_DB + 10 * PATH_LOSS_EXPONENT * math.log10(distance_m)


def predicted_share(frame_bytes: int) -> tuple[float, float]:
    """Return the (low, high) share of gw0's delivered frames the emitter should corrupt."""
    airtime = (C1_HEADER_CHIPS + C1_CHIPS_PER_BYTE * frame_bytes) / C1_CHIP_RATE
    signal = 10 ** ((TX_DBM - path_loss_db(RING_M)) / 10)
    itf = 10 ** ((ITF_DBM - path_loss_db(ITF_DISTANCE_M)) / 10)
    sinr = signal / (itf + 10 ** (NOISE_DBM / 10))
    ber = 0.5 * math.exp(-0.5 * sinr * C1_BANDWIDTH_OVER_RATE)
    hit_errors = 1.0 - (1.0 - ber) ** (8 * frame_bytes)
    return BURST_S / PERIOD_S * hit_errors, (BURST_S + airtime) / PERIOD_S * hit_errors


def frame_bytes(ctl: Controller, since: int) -> int:
    """Return the meters' frame length from the farm's counters (all frames are alike)."""
    farm = [e["body"] for e in ctl.events(topics.SENSORFARM_WINDOW, since) if e["body"]["sent"]]
    ctl.check("the farm reported its frames", bool(farm), f"{len(farm)} sensorfarm.window events")
    last = farm[-1]
    size, rest = divmod(int(last["bytes"]), int(last["sent"]))
    ctl.check("all frames have one length", rest == 0, f"{last['bytes']} B in {last['sent']}")
    return size


def check_prediction(ctl: Controller, traffic: radio.Traffic, size: int) -> None:
    """gw0's corrupted share is the predicted one; gw1 has no corrupted frame."""
    low, high = predicted_share(size)
    seen = traffic.channel["gw0"]
    share = seen["corrupted"] / max(seen["delivered"], 1)
    mid = (low + high) / 2
    slack = SIGMAS * math.sqrt(mid * (1 - mid) / max(seen["delivered"], 1))
    ctl.check(
        "gw0: corrupted share as the channel predicts",
        low - slack <= share <= high + slack,
        f"{seen['corrupted']}/{seen['delivered']} = {share:.4f}, predicted"
        f" {low:.4f}..{high:.4f} +- {slack:.4f} ({size} B frames)",
    )
    ctl.expect_equal("gw1: no corrupted frame", traffic.channel["gw1"]["corrupted"], 0)


async def run(ctl: Controller) -> None:
    """Step with the emitter on; check the prediction and each instance's accounting."""
    groups: dict[str, tuple[str, ...]] = ctl.testbed.layout.registered if ctl.testbed else {}
    ctl.check("each ring registered at its receiver", _rings_ok(groups), f"{groups}")
    before = {gw: await ctl.call("gateway_status", gateway=gw) for gw in groups}
    traffic = await radio.begin(ctl)
    for n in range(STEPS):
        await radio.step(ctl, traffic, STEP_S)
        if n == 0:
            await asyncio.sleep(1.1)  # the farm publishes its counters once a wall second
    await radio.collect_channel(ctl, traffic)
    radio.check_channel_saw_all(ctl, traffic)
    check_prediction(ctl, traffic, frame_bytes(ctl, traffic.mark))
    sent = {gw: sum(traffic.points.sent(m) for m in meters) for gw, meters in groups.items()}
    for gw, other in (("gw0", "gw1"), ("gw1", "gw0")):
        seen = traffic.channel[gw]["lost_to_noise"]
        ctl.expect_equal(f"{gw}: out of range of {other}'s ring", seen, sent[other])
        after = await ctl.call("gateway_status", gateway=gw)
        radio.check_gateway_counts(ctl, gw, traffic, before[gw], after)
        lost = await radio.check_stored(ctl, gw, traffic, groups[gw])
        expected = traffic.lost(gw) - sent[other]
        ctl.expect_equal(f"{gw}: its meters' losses (sent - stored) = channel's", lost, expected)


def _rings_ok(groups: dict[str, tuple[str, ...]]) -> bool:
    want = {f"gw{i}": {f"{row['id']:08d}" for row in ring(i, 0.0)} for i in (0, 1)}
    return {gw: set(meters) for gw, meters in groups.items()} == want


SCENARIO = Scenario(
    name="ism-interference",
    description="an ISM emitter near gw0 corrupts frames there as predicted; gw1 unaffected",
    state=state_from_dict(
        {
            "seed": 17,
            "clock": {"window_s": STEP_S},
            "meters": interleaved(),
            "channel": {
                "receivers": list(RECEIVERS),
                "interferers": [
                    {
                        "x": 0.0,
                        "y": ITF_DISTANCE_M,
                        "power_dbm": ITF_DBM,
                        "burst_s": BURST_S,
                        "period_s": PERIOD_S,
                    }
                ],
            },
            "settings": {
                "channel": {
                    "reference_loss_db": REFERENCE_LOSS_DB,
                    "path_loss_exponent": PATH_LOSS_EXPONENT,
                    "noise_figure_db": NOISE_FIGURE_DB,
                    "noise": True,
                }
            },
        }
    ),
    run=run,
    control={"settings": {"gateway": {"unsafe_skip_checks": ["crc"]}}},
)
