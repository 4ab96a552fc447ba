"""One window of the radio: frames in, the frames each receiver hears (with bit errors) out.

:class:`ChannelModel` turns a ``sim.frames`` batch into a ``sim.received`` batch and the
window's counters. Input columns (one value per frame): ``t_start`` (d, s), ``tx_power_dbm``
(f), ``x_m`` and ``y_m`` (f, m), ``mode`` (B: 0 S1, 1 T1, 2 C1), ``meter`` (I). Output
columns (one row per frame and receiver that hears it, ordered by ``t_rx`` then receiver):
``receiver`` (H, index into the configured receivers, whose names the batch's
``meta["receivers"]`` lists), ``t_rx`` (d, s: end of the frame),
``rssi_dbm`` (f), ``meter`` (I) and ``bit_errors`` (H).

Frames interfere only within one window: a frame still on air when the next window begins
does not disturb that window's frames.

Range cut-off (an approximation): at each receiver, a signal weaker than the receiver's
lowest noise floor minus ``interference_margin_db`` (default 10 dB) neither interferes nor is
received there. At 10 dB under the noise one such signal moves a SINR by at most 0.4 dB;
many of them overlapping one frame could add up to more, so raise the margin for dense
scenes where that matters (a margin of hundreds of dB cuts nothing; with noise off nothing
is cut). The cut is applied inside the sweep without branches: a cut signal adds exact zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from smtestbed.proto.batch import FrameBatch
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.channel import physics
from smtestbed.services.channel.arrays import B1, F4, F8, I64, U8, U16, U32
from smtestbed.services.channel.config import Scene
from smtestbed.services.channel.kernels import (
    MODE_CHANNEL,
    corrupt,
    interferer_power_mw,
    ordered_frames,
    ordered_links,
    received_power_dbm,
    time_order,
)
from smtestbed.services.channel.sweep import DELIVERED, OUTCOMES, decide, sweep_sorted

INPUT_COLUMNS = {
    "t_start": "d",
    "tx_power_dbm": "f",
    "x_m": "f",
    "y_m": "f",
    "mode": "B",
    "meter": "I",
}
COUNTER_NAMES = ("delivered", "corrupted", *OUTCOMES[1:])
LINK_COLUMNS = 3  # tx power, x and y: put in time order instead of more receivers' power rows


class ChannelInputError(ProtocolError):
    """A frame batch lacks a column the channel needs or carries a bad value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Frames:
    """The frames of one window as numpy arrays (views of the batch, no copies)."""

    data: U8
    offsets: U32
    t_start: F8
    tx_dbm: F4
    x: F4
    y: F4
    mode: U8
    meter: U32

    @classmethod
    def from_batch(cls, batch: FrameBatch) -> Frames:
        """Check the batch's columns and view them; raise ChannelInputError naming a bad one."""
        cols: dict[str, Any] = {}
        for name, code in INPUT_COLUMNS.items():
            col = batch.columns.get(name)
            if col is None or col.format != code:
                got = "missing" if col is None else f"typecode {col.format!r}"
                raise ChannelInputError(
                    f"column {name!r} must have typecode {code!r}, {got}", reason="batch_column"
                )
            cols[name] = np.frombuffer(col, dtype=np.dtype(code))
        frames = cls(
            data=np.frombuffer(batch.data, dtype=np.uint8),
            offsets=np.frombuffer(batch.offsets, dtype=np.uint32),
            t_start=cols["t_start"],
            tx_dbm=cols["tx_power_dbm"],
            x=cols["x_m"],
            y=cols["y_m"],
            mode=cols["mode"],
            meter=cols["meter"],
        )
        frames.check()
        return frames

    def check(self) -> None:
        """Raise ChannelInputError for modes, times or positions the kernels cannot take."""
        if self.mode.size and int(self.mode.max()) >= physics.N_MODES:
            raise ChannelInputError("column 'mode' holds a value above 2", reason="batch_value")
        for name, arr in (("t_start", self.t_start), ("x_m", self.x), ("y_m", self.y)):
            if not np.isfinite(arr).all():
                raise ChannelInputError(f"column {name!r} is not finite", reason="batch_value")
        if self.t_start.size and float(self.t_start.min()) < 0.0:
            raise ChannelInputError("column 't_start' is negative", reason="batch_value")
        if not np.isfinite(self.tx_dbm).all():
            raise ChannelInputError("column 'tx_power_dbm' is not finite", reason="batch_value")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ordered:
    """The per-frame columns in start-time order; row ``a`` is batch frame ``batch[a]``."""

    batch: I64
    t_start: F8
    end: F8
    mode: U8

    @classmethod
    def of(cls, frames: Frames) -> Ordered:
        """Sort the frames by start time (stably) once, so every later pass reads them in order.

        The meter column is not put in order here: only forced collisions and more receivers
        than :data:`LINK_COLUMNS` read it in order.
        """
        order, t_start, end, mode = ordered_frames(frames.t_start, frames.offsets, frames.mode)
        return cls(batch=order, t_start=t_start, end=end, mode=mode)

    def end_order(self) -> I64:
        """Return the rows ordered by end time, equal ends in batch order."""
        end = np.empty_like(self.end)
        end[self.batch] = self.end
        rank = np.empty_like(self.batch)
        rank[self.batch] = np.arange(self.batch.size)
        return rank[time_order(end)]


@dataclass(slots=True)
class ReceiverFault:
    """A fault set on one receiver: extra attenuation, raised noise, or switched off."""

    extra_loss_db: float = 0.0
    noise_rise_db: float = 0.0
    down: bool = False


@dataclass(slots=True)
class ForcedCollisions:
    """Frames still to be collided on command: any next ``any`` frames, or per meter."""

    any: int = 0
    per_meter: dict[int, int] = field(default_factory=dict)

    def take(self, meter: U32, batch: I64) -> B1:
        """Return the mask of this window's frames (in start order) to collide; count them off.

        ``meter`` is the batch's column, ``batch[a]`` the batch frame of row ``a``.
        """
        forced = np.zeros(batch.size, dtype=np.bool_)
        if self.any:
            chosen = min(self.any, batch.size)
            forced[:chosen] = True
            self.any -= chosen
        ordered = meter[batch] if self.per_meter else meter
        for m, left in list(self.per_meter.items()):
            hits = np.flatnonzero(ordered == m)[:left]
            forced[hits] = True
            if left - hits.size > 0:
                self.per_meter[m] = left - hits.size
            else:
                del self.per_meter[m]
        return forced


def deliveries(outcome: U8, by_time: I64) -> tuple[I64, I64]:
    """Return (receiver, frame) of every delivery, ordered by frame time then receiver."""
    position, rows = np.nonzero((outcome[:, by_time] == DELIVERED).T)
    return rows.astype(np.int64), by_time[position]


@dataclass(frozen=True, slots=True, kw_only=True)
class WindowResult:
    """What one window produced: the received batch and its counters."""

    batch: FrameBatch
    counters: dict[str, Any]


class ChannelModel:
    """The radio between the meters and the receivers, one window at a time."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.names = tuple(r.name for r in scene.receivers)
        self.faults = {name: ReceiverFault() for name in self.names}
        self.forced = ForcedCollisions()
        self._rx = np.array([[r.x, r.y, r.gain_dbi] for r in scene.receivers], dtype=np.float64)
        self._model = np.array(
            [scene.reference_loss_db, scene.path_loss_exponent, scene.shadowing_sigma_db]
        )
        self._box = np.array(
            [[o.x0, o.y0, o.x1, o.y1] for o in scene.obstacles], dtype=np.float64
        ).reshape(-1, 4)
        self._rect = np.array([o.kind == "rect" for o in scene.obstacles], dtype=np.bool_)
        self._loss = np.array([o.loss_db for o in scene.obstacles], dtype=np.float64)
        self._echo_delay = np.array([e.delay_s for e in scene.echoes], dtype=np.float64)
        self._echo_gain = np.array([10.0 ** (-e.loss_db / 10.0) for e in scene.echoes])
        self._itf_channel = np.array([i.channel for i in scene.interferers], dtype=np.uint8)
        self._itf_timing = np.array(
            [[i.burst_s, i.period_s] for i in scene.interferers], dtype=np.float64
        ).reshape(-1, 2)
        self._itf_mw = self._interferer_mw()

    def _interferer_mw(self) -> F8:
        """Return each interferer's received power at each receiver, mW (no shadowing)."""
        itf = self.scene.interferers
        dbm = received_power_dbm(
            np.array([i.power_dbm for i in itf], dtype=np.float32),
            np.array([i.x for i in itf], dtype=np.float32),
            np.array([i.y for i in itf], dtype=np.float32),
            np.arange(len(itf), dtype=np.uint32),
            receivers=self._rx,
            obstacles=self._box,
            obstacle_is_rect=self._rect,
            obstacle_loss_db=self._loss,
            model=np.array([self._model[0], self._model[1], 0.0]),
            seed=self.scene.seed,
        )
        return np.ascontiguousarray(10.0 ** (dbm / 10.0))

    def noise_mw(self) -> F8:
        """Return the noise power of each receiver per mode (0 with noise off), mW."""
        out = np.zeros((len(self.names), physics.N_MODES), dtype=np.float64)
        if not self.scene.noise:
            return out
        for r, name in enumerate(self.names):
            rise = self.faults[name].noise_rise_db
            for m, bandwidth in enumerate(physics.NOISE_BANDWIDTH_HZ):
                floor = physics.noise_floor_dbm(bandwidth, self.scene.noise_figure_db)
                out[r, m] = physics.db_to_mw(floor + rise)
        return out

    def warm_up(self) -> None:
        """Run every kernel once on three frames, so the first window waits for no compilation."""
        forced, self.forced = self.forced, ForcedCollisions()
        n = physics.N_MODES
        columns = {
            "t_start": np.zeros(n),
            "tx_power_dbm": np.zeros(n, dtype=np.float32),
            "x_m": np.ones(n, dtype=np.float32),
            "y_m": np.zeros(n, dtype=np.float32),
            "mode": np.arange(n, dtype=np.uint8),
            "meter": np.arange(n, dtype=np.uint32),
        }
        try:
            self.process(FrameBatch.from_frames([bytes(12)] * n, {}, columns))
        finally:
            self.forced = forced

    def process(self, batch: FrameBatch) -> WindowResult:
        """Run one window; raise ChannelInputError when the batch is malformed."""
        frames = Frames.from_batch(batch)
        ordered = Ordered.of(frames)
        power_dbm = self._power_dbm(frames, ordered)
        outcome, ber = self._fates(frames, ordered, power_dbm)
        rows, cols = deliveries(outcome, ordered.end_order())
        delivered = ordered.batch[cols]
        out_off, out_data, errors = corrupt(
            frames.data,
            frames.offsets,
            delivered,
            np.ascontiguousarray(ber[rows, cols]),
            meter=frames.meter,
            t_bits=frames.t_start.view(np.uint64),
            receiver=rows.astype(np.uint16),
            seed=self.scene.seed,
        )
        columns = {
            "receiver": rows.astype(np.uint16),
            "t_rx": np.ascontiguousarray(ordered.end[cols]),
            "rssi_dbm": power_dbm[rows, cols].astype(np.float32),
            "meter": frames.meter[delivered],
            "bit_errors": errors,
        }
        meta = {**batch.meta, "receivers": list(self.names)}
        out = FrameBatch.from_buffers(out_off, out_data, meta, columns)
        return WindowResult(batch=out, counters=self._counters(batch, outcome, rows, errors))

    def _power_dbm(self, frames: Frames, ordered: Ordered) -> F8:
        """Return the received power (dBm), (receivers, frames in start order).

        Whichever is fewer is put in start order: the links' transmit power and position
        (then the power comes out in order), or each receiver's row of power.
        """
        links = len(self.names) > LINK_COLUMNS
        if links:
            tx_dbm, x, y, meter = ordered_links(
                ordered.batch, frames.tx_dbm, frames.x, frames.y, frames.meter
            )
        else:
            tx_dbm, x, y, meter = frames.tx_dbm, frames.x, frames.y, frames.meter
        power = received_power_dbm(
            tx_dbm,
            x,
            y,
            meter,
            receivers=self._rx,
            obstacles=self._box,
            obstacle_is_rect=self._rect,
            obstacle_loss_db=self._loss,
            model=self._model,
            seed=self.scene.seed,
        )
        if not links:
            power = np.ascontiguousarray(power[:, ordered.batch])
        extra = np.array([self.faults[n].extra_loss_db for n in self.names])
        if extra.any():
            power -= extra[:, None]
        return power

    def _fates(self, batch: Frames, frames: Ordered, power_dbm: F8) -> tuple[U8, F8]:
        end = frames.end
        power_mw = np.divide(power_dbm, 10.0)
        np.power(10.0, power_mw, out=power_mw)  # 10 ** (dBm / 10), one array
        channel = MODE_CHANNEL[frames.mode]
        noise = self.noise_mw()
        floor = noise.min(axis=1) / physics.db_to_mw(self.scene.interference_margin_db)
        direct, echo, overlaps = sweep_sorted(
            frames.t_start,
            end,
            channel,
            power_mw,
            floor_mw=floor,
            echo_delay=self._echo_delay,
            echo_gain=self._echo_gain,
        )
        # without echoes ``echo`` holds zeros, and direct + 0.0 is direct (its sums are >= 0)
        interference = direct + echo if self._echo_delay.size else direct
        if self._itf_channel.size:
            interference = interference + interferer_power_mw(
                frames.t_start,
                end,
                channel,
                itf_channel=self._itf_channel,
                itf_timing=self._itf_timing,
                itf_mw=self._itf_mw,
                seed=self.scene.seed,
            )
        return decide(
            power_dbm,
            power_mw,
            interference,
            overlaps,
            direct,
            mode=frames.mode,
            forced=self.forced.take(batch.meter, frames.batch),
            rx=self._rx_state(),
            noise_mw=noise,
            capture_ratio=self._capture_ratio(),
        )

    def _rx_state(self) -> F8:
        rows = [
            [r.sensitivity_dbm, 1.0 if self.faults[r.name].down else 0.0]
            for r in self.scene.receivers
        ]
        return np.array(rows, dtype=np.float64)

    def _capture_ratio(self) -> float:
        if not self.scene.capture:
            return math.inf
        return physics.db_to_mw(self.scene.capture_threshold_db)

    def _counters(self, batch: FrameBatch, outcome: U8, rows: I64, errors: U16) -> dict[str, Any]:
        per_rx: dict[str, dict[str, int]] = {}
        for r, name in enumerate(self.names):
            counts = np.bincount(outcome[r], minlength=len(OUTCOMES))
            row = {n: int(c) for n, c in zip(OUTCOMES, counts, strict=True)}
            row["corrupted"] = int(np.count_nonzero(errors[rows == r]))
            per_rx[name] = row
        totals = {k: sum(row[k] for row in per_rx.values()) for k in COUNTER_NAMES}
        window = batch.meta.get("window")
        return {"window": window, "offered": batch.count, **totals, "receivers": per_rx}
