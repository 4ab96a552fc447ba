"""Frame accounting between the sensor farm, the channel and the gateway (not a scenario).

Three independent counts of the same frames meet here:

- the farm: telegrams sent (``sensorfarm.advance`` replies; per meter the access
  number, which the farm raises by one per telegram sent);
- the channel: per window and receiver, frames offered, delivered (of those
  ``corrupted``: delivered with bit errors), ``collided``, ``lost_to_noise`` and
  ``receiver_down`` (``channel.window`` events);
- the gateway instance of that receiver: frames in, accepted, rejected by reason
  (``gateway.status``) and the readings it stored (``gateway.readings``).

A correct gateway accepts exactly the frames the channel delivered without bit
errors and rejects exactly the corrupted ones; per meter, what the farm sent minus
what was stored are the frames the channel lost or corrupted.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from smtestbed.proto import topics
from smtestbed.services.controller.client import Controller
from smtestbed.services.controller.scenarios.truth import Checkpoints, register_value

OUTCOMES = ("delivered", "corrupted", "collided", "lost_to_noise", "receiver_down")
EVENT_WAIT_S = 10.0
AIRTIME_MAX_S = 0.1  # longest frame on air (S1, 120 bytes: 60 ms): bounds a send time


@dataclass(slots=True)
class Traffic:
    """What the farm sent and the channel reported between two marks."""

    start: float
    mark: int
    points: Checkpoints = field(default_factory=Checkpoints)
    windows: int = 0
    sent: int = 0
    offered: int = 0
    channel: dict[str, Counter[str]] = field(default_factory=dict)

    def lost(self, receiver: str) -> int:
        """Return the frames the receiver did not get intact (not delivered, or corrupted)."""
        c = self.channel.get(receiver, Counter())
        return self.offered - c["delivered"] + c["corrupted"]


async def begin(ctl: Controller) -> Traffic:
    """Take the first checkpoint and the event mark before any traffic is counted."""
    now = (await ctl.call("clock"))["sensorfarm"]
    traffic = Traffic(start=float(now), mark=ctl.mark())
    await traffic.points.take(ctl, float(now), ctl.meters)
    return traffic


async def step(ctl: Controller, traffic: Traffic, by: float) -> float:
    """Advance by ``by`` s, count the farm's windows and telegrams, take a checkpoint."""
    result = await ctl.call("advance", by=by)
    now = float(result["now"])
    traffic.windows += int(result["sensorfarm"]["windows"])
    traffic.sent += int(result["sensorfarm"]["sent"])
    await traffic.points.take(ctl, now, ctl.meters)
    return now


async def collect_channel(ctl: Controller, traffic: Traffic) -> None:
    """Wait (bounded) for one ``channel.window`` event per farm window; sum their counters."""
    deadline = time.monotonic() + EVENT_WAIT_S
    events = ctl.events(topics.CHANNEL_WINDOW, since=traffic.mark)
    while len(events) < traffic.windows and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        events = ctl.events(topics.CHANNEL_WINDOW, since=traffic.mark)
    ctl.expect_equal("a channel report for every farm window", len(events), traffic.windows)
    for event in events:
        body = event["body"]
        traffic.offered += int(body["offered"])
        for name, row in body["receivers"].items():
            counts = traffic.channel.setdefault(name, Counter())
            counts.update({k: int(row[k]) for k in OUTCOMES})


def check_channel_saw_all(ctl: Controller, traffic: Traffic) -> None:
    """The channel was offered every telegram the farm sent, each meter's sum included."""
    ctl.expect_equal("channel offered = farm sent", traffic.offered, traffic.sent)
    per_meter = sum(traffic.points.sent(m) for m in ctl.meters)
    ctl.expect_equal("farm sent = sum of the meters' access-number steps", per_meter, traffic.sent)


def check_gateway_counts(
    ctl: Controller,
    receiver: str,
    traffic: Traffic,
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """The gateway instance took in, accepted and rejected what the channel says."""
    c = traffic.channel.get(receiver, Counter())
    frames = after["frames"] - before["frames"]
    accepted = after["accepted"] - before["accepted"]
    rejected = after["rejected_total"] - before["rejected_total"]
    reasons = Counter(after["rejected"]) - Counter(before["rejected"])
    ctl.expect_equal(f"{receiver}: frames in = channel delivered", frames, c["delivered"])
    ctl.check(
        f"{receiver}: rejected = channel corrupted",
        rejected == c["corrupted"],
        f"expected {c['corrupted']}, saw {rejected} {dict(reasons)}",
    )
    clean = c["delivered"] - c["corrupted"]
    ctl.expect_equal(f"{receiver}: accepted = channel delivered intact", accepted, clean)


async def check_stored(
    ctl: Controller, receiver: str, traffic: Traffic, meters: tuple[str, ...]
) -> int:
    """Check each meter's stored readings against the farm; return the frames lost in all.

    Every reading must carry an access number the farm used between the checkpoints
    around its receive time, the meter's counter then (within the checkpoints'
    counters), and access numbers must rise; what the farm sent minus what was
    stored is that meter's loss.
    """
    lost = 0
    for meter in meters:
        rows = await ctl.readings(meter, gateway=receiver, t0=traffic.start, limit=10_000)
        check_readings(ctl, traffic.points, meter, rows)
        sent = traffic.points.sent(meter)
        ctl.check(f"{meter}: stored <= sent", len(rows) <= sent, f"{len(rows)} of {sent}")
        lost += sent - len(rows)
    return lost


def check_readings(
    ctl: Controller, points: Checkpoints, meter: str, rows: list[dict[str, Any]]
) -> None:
    """Check each stored reading of ``meter`` against the farm's checkpoints."""
    wrong: list[str] = []
    last_acc: int | None = None
    for r in rows:
        t_rx, acc, value = float(r["t_sim"]), int(r["access_number"]), register_value(r)
        low, high = points.bounds(meter, t_rx - AIRTIME_MAX_S, t_rx)
        if value is None or not low <= value <= high:
            wrong.append(f"t={t_rx} value {value} outside [{low}, {high}]")
        first, span = points.access_span(meter, t_rx - AIRTIME_MAX_S, t_rx)
        if not 1 <= (acc - first) % 256 <= span:
            wrong.append(f"t={t_rx} access number {acc} not sent then ({first}+1..+{span})")
        if last_acc is not None and not 1 <= (acc - last_acc) % 256 < 128:
            wrong.append(f"t={t_rx} access number {acc} after {last_acc}")
        last_acc = acc
    detail = f"{len(rows)} readings" + (f"; {len(wrong)} wrong, first: {wrong[0]}" if wrong else "")
    ctl.check(f"{meter}: every stored reading is what the farm sent", not wrong, detail)
