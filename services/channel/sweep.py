"""Numba kernels of the collision sweep and of each frame's fate at each receiver.

Frames are visited in start-time order (the caller sorts with numpy); for each frame the sweep
looks ahead only while later frames can still overlap it or its echoes. Which pairs overlap
does not depend on the receiver, so each pair is found once and its sums are added at every
receiver in one loop over a frame-major (frames, receivers) copy of the powers: the cost is
the frames plus the overlapping pairs times the receivers, the inner loop branch-free (a
signal under a receiver's floor adds exact zeros), so every sum keeps the terms and the order
of a per-receiver sweep. Two frames interfere when their airtimes overlap on the same channel
(T1 and C1 share 868.95 MHz; S1 is at 868.3 MHz).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from smtestbed.services.channel.arrays import B1, F8, I32, I64, U8, same_size, want
from smtestbed.services.channel.kernels import BANDWIDTH_OVER_RATE

DELIVERED, LOST_TO_NOISE, COLLIDED, RECEIVER_DOWN = 0, 1, 2, 3
OUTCOMES = ("delivered", "lost_to_noise", "collided", "receiver_down")


@njit(cache=True)
def _transpose_f8(a: F8) -> F8:
    """Return a C-contiguous transpose, in blocks of rows that stay in cache."""
    rows, cols = a.shape
    out = np.empty((cols, rows), dtype=a.dtype)
    for lo in range(0, rows, 64):
        for c in range(cols):
            for r in range(lo, min(lo + 64, rows)):
                out[c, r] = a[r, c]
    return out


@njit(cache=True)
def _transpose_i4(a: I32) -> I32:
    rows, cols = a.shape
    out = np.empty((cols, rows), dtype=a.dtype)
    for lo in range(0, cols, 64):
        for r in range(rows):
            for c in range(lo, min(lo + 64, cols)):
                out[c, r] = a[r, c]
    return out


@njit(cache=True)
def _add_direct(a: int, b: int, power: F8, floor: F8, direct: F8, count: I32) -> None:
    """Add the overlap of frames ``a`` and ``b`` at every receiver that hears both."""
    pa, pb, da, db, ca, cb = power[a], power[b], direct[a], direct[b], count[a], count[b]
    for r in range(pa.size):  # branch-free (selects), so it vectorises over receivers
        both = pa[r] >= floor[r] and pb[r] >= floor[r]
        da[r] += pb[r] if both else 0.0
        db[r] += pa[r] if both else 0.0
        ca[r] += 1 if both else 0
        cb[r] += 1 if both else 0


@njit(cache=True)
def _add_echo(to: int, of: int, power: F8, floor: F8, echo: F8, gain: float) -> None:
    """Add frame ``of``'s echo (power times ``gain``) to frame ``to`` where both are heard."""
    p, q, e = power[of], power[to], echo[to]
    for r in range(p.size):
        e[r] += p[r] * gain if p[r] >= floor[r] and q[r] >= floor[r] else 0.0


@njit(cache=True)
def _sweep_sorted(
    start: F8, end: F8, channel: U8, power: F8, floor: F8, delay: F8, gain: F8
) -> tuple[F8, F8, I32]:
    """Visit each pair of frames that can overlap once, all receivers at a time.

    ``power`` is frame-major (n, receivers), frames in start order, so a pair touches two
    rows next to each other in memory. A signal under the floor adds exact zeros.
    """
    n, n_rx = power.shape
    direct = np.zeros((n, n_rx), dtype=np.float64)
    echo = np.zeros((n, n_rx), dtype=np.float64)
    count = np.zeros((n, n_rx), dtype=np.int32)
    reach = delay.max() if delay.size else 0.0
    for a in range(n):
        for k in range(delay.size):
            if start[a] + delay[k] < end[a]:
                _add_echo(a, a, power, floor, echo, gain[k])
        for b in range(a + 1, n):
            if start[b] >= end[a] + reach:
                break
            if channel[b] != channel[a]:
                continue
            if start[b] < end[a]:
                _add_direct(a, b, power, floor, direct, count)
            for k in range(delay.size):
                d = delay[k]
                if start[a] + d < end[b] and start[b] < end[a] + d:
                    _add_echo(b, a, power, floor, echo, gain[k])
                if start[b] + d < end[a]:
                    _add_echo(a, b, power, floor, echo, gain[k])
    return direct, echo, count


def sweep(
    order: I64,
    start: F8,
    end: F8,
    channel: U8,
    power_mw: F8,
    *,
    floor_mw: F8,
    echo_delay: F8,
    echo_gain: F8,
) -> tuple[F8, F8, I32]:
    """Sum, per receiver and frame, the power of the frames and echoes overlapping it.

    Args:
        order: frame indices sorted by start time (stable).
        start, end: each frame's airtime, s.
        channel: each frame's channel index.
        power_mw: (receivers, n) received power, mW.
        floor_mw: (receivers,) signals weaker than this neither interfere nor are received.
        echo_delay, echo_gain: each echo's delay (s) and linear power gain (< 1); an echo of
            frame ``j`` occupies ``[start_j + delay, end_j + delay]``, including over ``j`` itself
            (inter-symbol interference).

    Returns:
        ``direct`` (mW of other frames overlapping each frame), ``echo`` (mW of echoes
        overlapping it) and ``overlaps`` (how many other frames overlap it), each (receivers, n);
        each sum adds its terms in ``order``.
    """
    same_size(order, start, end, channel)
    want(order, np.int64, "order")
    if power_mw.ndim != 2 or power_mw.shape[1] != order.size:
        raise ValueError("power_mw must be (receivers, frames)")
    direct, echo, overlaps = sweep_sorted(
        start[order],
        end[order],
        channel[order],
        np.ascontiguousarray(power_mw[:, order]),
        floor_mw=floor_mw,
        echo_delay=echo_delay,
        echo_gain=echo_gain,
    )
    out_direct, out_echo, out_overlaps = (
        np.empty_like(direct),
        np.empty_like(echo),
        np.empty_like(overlaps),
    )
    out_direct[:, order] = direct
    out_echo[:, order] = echo
    out_overlaps[:, order] = overlaps
    return out_direct, out_echo, out_overlaps


def sweep_sorted(
    start: F8,
    end: F8,
    channel: U8,
    power_mw: F8,
    *,
    floor_mw: F8,
    echo_delay: F8,
    echo_gain: F8,
) -> tuple[F8, F8, I32]:
    """Do what :func:`sweep` does for frames already in start-time order (no ``order``)."""
    same_size(start, end, channel)
    want(start, np.float64, "start")
    want(end, np.float64, "end")
    want(channel, np.uint8, "channel")
    want(floor_mw, np.float64, "floor_mw")
    same_size(echo_delay, echo_gain)
    if power_mw.ndim != 2 or power_mw.shape != (floor_mw.size, start.size):
        raise ValueError("power_mw must be (receivers, frames)")
    if not power_mw.flags.c_contiguous or power_mw.dtype != np.float64:
        raise ValueError("power_mw must be contiguous float64")
    if echo_delay.size and float(echo_delay.min()) < 0.0:
        raise ValueError("echo delays must be >= 0")
    if start.size > 1 and bool((start[1:] < start[:-1]).any()):
        raise ValueError("frames must be in start-time order")
    n_rx, n = power_mw.shape
    one = n_rx == 1  # with one receiver both layouts are the same memory: reshape, no copy
    frame_major = power_mw.reshape(n, 1) if one else _transpose_f8(power_mw)
    direct, echo, overlaps = _sweep_sorted(
        start, end, channel, frame_major, floor_mw, echo_delay, echo_gain
    )
    if one:
        return direct.reshape(1, n), echo.reshape(1, n), overlaps.reshape(1, n)
    return _transpose_f8(direct), _transpose_f8(echo), _transpose_i4(overlaps)


@njit(cache=True)
def _decide(
    power_dbm: F8,
    power_mw: F8,
    interference_mw: F8,
    overlaps: I32,
    direct: F8,
    mode: U8,
    forced: B1,
    rx: F8,
    noise_mw: F8,
    capture_ratio: float,
    bw_over_rate: F8,
) -> tuple[U8, F8]:
    n_rx, n = power_dbm.shape
    outcome = np.empty((n_rx, n), dtype=np.uint8)
    ber = np.zeros((n_rx, n), dtype=np.float64)
    for r in range(n_rx):
        for i in range(n):
            p = power_mw[r, i]
            if rx[r, 1] != 0.0:
                outcome[r, i] = RECEIVER_DOWN
            elif power_dbm[r, i] < rx[r, 0]:
                outcome[r, i] = LOST_TO_NOISE
            elif forced[i] or (overlaps[r, i] > 0 and p < capture_ratio * direct[r, i]):
                outcome[r, i] = COLLIDED
            else:
                outcome[r, i] = DELIVERED
                m = mode[i]
                den = interference_mw[r, i] + noise_mw[r, m]
                if den > 0.0:
                    ebn0 = p / den * bw_over_rate[m]
                    ber[r, i] = 0.5 * math.exp(-0.5 * ebn0)
    return outcome, ber


def decide(
    power_dbm: F8,
    power_mw: F8,
    interference_mw: F8,
    overlaps: I32,
    direct: F8,
    *,
    mode: U8,
    forced: B1,
    rx: F8,
    noise_mw: F8,
    capture_ratio: float,
) -> tuple[U8, F8]:
    """Decide each frame's fate at each receiver and the bit-error rate of delivered ones.

    In this order: a receiver marked down hears nothing; a frame below the receiver's
    sensitivity is lost to noise; a forced collision, or an overlap the frame does not capture
    (its power is below ``capture_ratio`` times the sum of the overlapping frames; ``inf``
    disables capture), is a collision; otherwise the frame is delivered with
    ``BER = 0.5 * exp(-Eb/N0 / 2)``, ``Eb/N0 = SINR * B / R_b``, ``SINR = P / (I + N)``.

    Args:
        power_dbm, power_mw: (receivers, n) received power in dBm and mW.
        interference_mw: (receivers, n) frames + echoes + ISM interferers overlapping, mW.
        overlaps, direct: from :func:`sweep`.
        mode: each frame's mode (0 S1, 1 T1, 2 C1).
        forced: frames to collide on command.
        rx: (receivers, 2) rows of sensitivity (dBm) and down flag (0 or 1).
        noise_mw: (receivers, 3) noise power per mode (0 when noise is off), mW.
        capture_ratio: linear capture threshold (``inf``: no capture).
    """
    shape = power_dbm.shape
    for arr in (power_mw, interference_mw, overlaps, direct):
        if arr.shape != shape or not arr.flags.c_contiguous:
            raise ValueError("per-receiver arrays must all be (receivers, frames) and contiguous")
    want(mode, np.uint8, "mode")
    want(forced, np.bool_, "forced")
    if mode.size != shape[1] or forced.size != shape[1] or rx.shape != (shape[0], 2):
        raise ValueError("mode and forced need one value per frame, rx one row per receiver")
    if noise_mw.shape != (shape[0], BANDWIDTH_OVER_RATE.size) or capture_ratio < 0:
        raise ValueError("noise_mw must be (receivers, 3) and capture_ratio >= 0")
    return _decide(
        power_dbm,
        power_mw,
        interference_mw,
        overlaps,
        direct,
        mode,
        forced,
        rx,
        noise_mw,
        capture_ratio,
        BANDWIDTH_OVER_RATE,
    )
