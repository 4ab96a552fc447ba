"""Plots of a scenario's recorded events: channel load, collisions, gateway throughput.

What each event carries (see the services):

- ``channel.window`` (one per window, counts of that window only): ``offered``,
  ``delivered``, ``corrupted``, ``lost_to_noise``, ``collided``, ``receiver_down`` and
  ``receivers: {name: {same counts}}``;
- ``sensorfarm.window`` (at most one per wall second, counts since the farm started):
  ``sent``, ``bytes``, ``windows``: the report plots the differences between reports;
- ``gateway.frame_accepted`` ``{gateway, count, readings}`` and ``gateway.frame_rejected``
  ``{gateway, reason, ...}`` (one per rejected frame): summed per interval of simulated time.

Figures are PNG (Agg backend, no display) returned as bytes.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from smtestbed.proto import topics
from smtestbed.services.controller.report_data import RecordedEvent

BINS = 40  # gateway throughput intervals when no channel window gives the interval
MAX_POINTS = 150  # longer runs: windows summed in groups, gateway counts over longer intervals
PLOTTED = (
    topics.CHANNEL_WINDOW,
    topics.SENSORFARM_WINDOW,
    topics.GATEWAY_FRAME_ACCEPTED,
    topics.GATEWAY_FRAME_REJECTED,
)


@dataclass(slots=True)
class ChannelSeries:
    """Counts per channel window, in window order."""

    t: list[float] = field(default_factory=list)
    offered: list[int] = field(default_factory=list)
    delivered: list[int] = field(default_factory=list)
    collided: list[int] = field(default_factory=list)
    lost_to_noise: list[int] = field(default_factory=list)
    per_receiver: dict[str, list[int]] = field(default_factory=dict)


@dataclass(slots=True)
class FarmSeries:
    """Frames sent by the farm between two of its reports, per second of simulated time."""

    t: list[float] = field(default_factory=list)
    rate: list[float] = field(default_factory=list)


@dataclass(slots=True)
class GatewaySeries:
    """Frames accepted and rejected (by reason) per interval; ``t`` are interval starts."""

    t: list[float] = field(default_factory=list)
    width_s: float = 0.0
    accepted: list[int] = field(default_factory=list)
    rejected: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Totals:
    """One scenario's frames over its whole run."""

    offered: int
    collided: int
    accepted: int
    rejected: int


def _count(body: object, key: str) -> int:
    value = body.get(key, 0) if isinstance(body, dict) else 0
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def channel_series(events: Sequence[RecordedEvent]) -> ChannelSeries:
    """Return the counts of every ``channel.window`` event."""
    out = ChannelSeries()
    windows = [e for e in events if e.kind == topics.CHANNEL_WINDOW]
    names = sorted({n for e in windows for n in _receivers(e.body)})
    out.per_receiver = {n: [] for n in names}
    for e in windows:
        out.t.append(e.t_sim)
        out.offered.append(_count(e.body, "offered"))
        out.delivered.append(_count(e.body, "delivered"))
        out.collided.append(_count(e.body, "collided"))
        out.lost_to_noise.append(_count(e.body, "lost_to_noise"))
        per = _receivers(e.body)
        for n in names:
            out.per_receiver[n].append(_count(per.get(n), "collided"))
    return out


def coarsen(series: ChannelSeries, k: int) -> ChannelSeries:
    """Return the series with every ``k`` consecutive windows summed (time: the first's)."""
    if k <= 1:
        return series

    def sums(row: list[int]) -> list[int]:
        return [sum(row[i : i + k]) for i in range(0, len(row), k)]

    return ChannelSeries(
        t=series.t[::k],
        offered=sums(series.offered),
        delivered=sums(series.delivered),
        collided=sums(series.collided),
        lost_to_noise=sums(series.lost_to_noise),
        per_receiver={n: sums(row) for n, row in series.per_receiver.items()},
    )


def _receivers(body: object) -> dict[str, object]:
    per = body.get("receivers") if isinstance(body, dict) else None
    return {str(k): v for k, v in per.items()} if isinstance(per, dict) else {}


def farm_series(events: Sequence[RecordedEvent]) -> FarmSeries:
    """Return the farm's send rate between consecutive reports (its counters are totals).

    A total lower than the one before means the farm started over (a restart): its new
    total is then the count since the previous report.
    """
    out = FarmSeries()
    previous: tuple[float, int] | None = None
    for e in (e for e in events if e.kind == topics.SENSORFARM_WINDOW):
        sent = _count(e.body, "sent")
        if previous is not None and e.t_sim > previous[0]:
            delta = sent - previous[1] if sent >= previous[1] else sent
            out.t.append(e.t_sim)
            out.rate.append(delta / (e.t_sim - previous[0]))
        previous = (e.t_sim, sent)
    return out


def interval_s(events: Sequence[RecordedEvent], channel: ChannelSeries) -> float:
    """Return the interval gateway counts are summed over: the channel window, else 1/BINS."""
    gaps = sorted(b - a for a, b in zip(channel.t, channel.t[1:], strict=False) if b > a)
    if gaps:
        return gaps[len(gaps) // 2]
    times = [e.t_sim for e in events]
    span = max(times) - min(times) if times else 0.0
    return span / BINS if span > 0 else 1.0


def gateway_series(events: Sequence[RecordedEvent], width_s: float, t0: float) -> GatewaySeries:
    """Return accepted and rejected frames per ``width_s`` interval from ``t0``."""
    gw = [
        e
        for e in events
        if e.kind in (topics.GATEWAY_FRAME_ACCEPTED, topics.GATEWAY_FRAME_REJECTED)
    ]
    out = GatewaySeries(width_s=width_s)
    if not gw:
        return out
    slots = int((max(e.t_sim for e in gw) - t0) // width_s) + 1
    out.t = [t0 + i * width_s for i in range(slots)]
    out.accepted = [0] * slots
    for e in gw:
        slot = max(0, int((e.t_sim - t0) // width_s))
        if e.kind == topics.GATEWAY_FRAME_ACCEPTED:
            out.accepted[slot] += _count(e.body, "count")
        else:
            reason = e.body.get("reason") if isinstance(e.body, dict) else None
            row = out.rejected.setdefault(str(reason or "unknown"), [0] * slots)
            row[slot] += 1
    return out


def totals(events: Sequence[RecordedEvent]) -> Totals:
    """Return offered, collided, accepted and rejected frames over a whole scenario."""
    kinds = Counter[str]()
    for e in events:
        if e.kind == topics.CHANNEL_WINDOW:
            kinds["offered"] += _count(e.body, "offered")
            kinds["collided"] += _count(e.body, "collided")
        elif e.kind == topics.GATEWAY_FRAME_ACCEPTED:
            kinds["accepted"] += _count(e.body, "count")
        elif e.kind == topics.GATEWAY_FRAME_REJECTED:
            kinds["rejected"] += 1
    return Totals(
        offered=kinds["offered"],
        collided=kinds["collided"],
        accepted=kinds["accepted"],
        rejected=kinds["rejected"],
    )


def has_plot_data(events: Sequence[RecordedEvent]) -> bool:
    """Tell whether any event is of a kind the scenario figure plots."""
    return any(e.kind in PLOTTED for e in events)


def _time_axis(t: Sequence[float], t0: float, scale: float) -> list[float]:
    return [(x - t0) / scale for x in t]


def _scale(events: Sequence[RecordedEvent]) -> tuple[float, str]:
    times = [e.t_sim for e in events if e.kind in PLOTTED]
    span = max(times) - min(times) if times else 0.0
    if span > 7200:
        return 3600.0, "h"
    if span > 600:
        return 60.0, "min"
    return 1.0, "s"


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


class _Axis:
    """Simulated times to plot positions: time since ``t0`` in ``scale`` seconds."""

    def __init__(self, t0: float, scale: float) -> None:
        self.t0 = t0
        self.scale = scale

    def __call__(self, t: Sequence[float]) -> list[float]:
        return _time_axis(t, self.t0, self.scale)


def _plot_load(ax: Axes, ch: ChannelSeries, farm: FarmSeries, x: _Axis) -> None:
    ax.set_title("channel load")
    if ch.t:
        ax.plot(x(ch.t), ch.offered, "-", label="offered")
        ax.plot(x(ch.t), ch.delivered, "-", label="delivered")
        ax.set_ylabel("frames per window")
    if farm.t:
        twin = ax.twinx() if ch.t else ax
        twin.plot(x(farm.t), farm.rate, "k:", label="farm sent (frames/s)")
        twin.set_ylabel("farm: frames/s")
        twin.set_ylim(0, max(farm.rate, default=0.0) * 1.2 or 1.0)
        twin.legend(loc="upper right", fontsize="small")
    if not ch.t and not farm.t:
        _empty(ax, "no channel.window or sensorfarm.window events")
    elif ch.t:
        ax.legend(loc="upper left", fontsize="small")


def _plot_collisions(ax: Axes, ch: ChannelSeries, x: _Axis) -> None:
    ax.set_title("collisions")
    if not ch.t:
        _empty(ax, "no channel.window events")
        return
    if len(ch.per_receiver) > 1:
        for name, row in ch.per_receiver.items():
            ax.plot(x(ch.t), row, "-", label=f"collided at {name}")
    else:
        ax.plot(x(ch.t), ch.collided, "-", color="tab:red", label="lost to collision")
    ax.plot(x(ch.t), ch.lost_to_noise, "--", color="0.5", label="lost to noise")
    ax.set_ylabel("frames per window")
    ax.legend(loc="upper left", fontsize="small")


def _plot_gateway(ax: Axes, gw: GatewaySeries, x: _Axis) -> None:
    ax.set_title("gateway throughput")
    if not gw.t:
        _empty(ax, "no gateway.frame_accepted or gateway.frame_rejected events")
        return
    # each count holds for its whole interval: the last one ends one width later
    ts = x([*gw.t, gw.t[-1] + gw.width_s])
    ax.step(ts, [*gw.accepted, gw.accepted[-1]], where="post", color="tab:green", label="accepted")
    for reason, row in sorted(gw.rejected.items()):
        ax.step(ts, [*row, row[-1]], where="post", label=f"rejected: {reason}")
    ax.set_ylabel(f"frames per {gw.width_s:g} s")
    ax.legend(loc="upper left", fontsize="small")


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def scenario_figure(events: Sequence[RecordedEvent]) -> bytes:
    """Return the PNG of one scenario: load, collisions and throughput over simulated time."""
    ch = channel_series(events)
    per = math.ceil(len(ch.t) / MAX_POINTS)  # windows summed into one plotted point
    farm = farm_series(events)
    t0 = min(e.t_sim for e in events if e.kind in PLOTTED)
    span = max(e.t_sim for e in events if e.kind in PLOTTED) - t0
    width = max(interval_s(events, ch) * per, span / MAX_POINTS)
    gw = gateway_series(events, width, t0)
    scale, unit = _scale(events)
    x = _Axis(t0, scale)
    fig, axes = plt.subplots(3, 1, figsize=(9.0, 8.0), dpi=90, sharex=True)
    _plot_load(axes[0], coarsen(ch, per), farm, x)
    _plot_collisions(axes[1], coarsen(ch, per), x)
    if per > 1:
        for ax in axes[:2]:
            ax.set_ylabel(f"frames per {per} windows")
    _plot_gateway(axes[2], gw, x)
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[2].set_xlabel(f"simulated time since the first event, {unit}")
    fig.tight_layout()
    return _png(fig)


def totals_figure(rows: Sequence[tuple[str, Totals]]) -> bytes:
    """Return the PNG of every scenario's offered, collided, accepted and rejected frames."""
    fields = ("offered", "collided", "accepted", "rejected")
    fig, ax = plt.subplots(figsize=(9.0, 1.2 + 0.6 * len(rows)), dpi=90)
    height = 0.8 / len(fields)
    for k, name in enumerate(fields):
        ys = [i + k * height for i in range(len(rows))]
        ax.barh(ys, [getattr(t, name) for _, t in rows], height=height, label=name)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(rows))], [n for n, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("frames over the scenario")
    ax.set_title("all scenarios")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    return _png(fig)
