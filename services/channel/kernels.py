"""Numba kernels of the channel: airtime, received power, interferers, bit errors.

Each kernel is a private ``@njit(cache=True)`` function on numpy arrays and scalars with one
typed public wrapper that checks its inputs. The collision sweep lives in ``sweep.py``.
Formulas are those of ``physics.py``.

Random draws come from a counter-based generator (SplitMix64 over a hash of the seed and the
draw's identity: link, frame, interferer period), so a frame's shadowing, bit errors and the
interferers' burst times do not depend on how frames are grouped into windows or batches.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from smtestbed.services.channel import physics
from smtestbed.services.channel.arrays import (
    B1,
    F4,
    F8,
    I64,
    U8,
    U16,
    U32,
    U64,
    same_size,
    want,
    want_2d,
)

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
TAG_SHADOW, TAG_BURST = np.uint64(1), np.uint64(2)

# per-mode constants as arrays the kernels index with the mode number
HEAD_CHIPS = np.add(physics.PREAMBLE_CHIPS, physics.SYNC_CHIPS, dtype=np.float64)
CHIPS_PER_BYTE = np.array(physics.CHIPS_PER_BYTE, dtype=np.float64)
CHIP_RATE = np.array(physics.CHIP_RATE, dtype=np.float64)
BANDWIDTH_OVER_RATE = np.divide(physics.NOISE_BANDWIDTH_HZ, physics.BIT_RATE, dtype=np.float64)
MODE_CHANNEL = np.array(physics.MODE_CHANNEL, dtype=np.uint8)


@njit(cache=True)
def _mix(z: np.uint64) -> np.uint64:  # pragma: no cover - compiled
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def _hash3(seed: np.uint64, a: np.uint64, b: np.uint64, c: np.uint64) -> np.uint64:
    h = _mix(seed + GOLDEN)
    h = _mix(h ^ a)
    h = _mix(h ^ b)
    return _mix(h ^ c)


@njit(cache=True)
def _uniform(z: np.uint64) -> float:
    """Map 64 random bits to a float in (0, 1) (53 bits, never 0 or 1)."""
    return (float(z >> _S11) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True)
def _normal(key: np.uint64) -> float:
    """Return one standard normal draw (Box-Muller) for ``key``."""
    u1 = _uniform(_mix(key + GOLDEN))
    u2 = _uniform(_mix(key + GOLDEN + GOLDEN))
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


# -- airtime ------------------------------------------------------------------------------


@njit(cache=True)
def _airtime(mode: U8, nbytes: I64, head: F8, per_byte: F8, rate: F8) -> F8:
    out = np.empty(mode.size, dtype=np.float64)
    for i in range(mode.size):
        m = mode[i]
        out[i] = (head[m] + per_byte[m] * nbytes[i]) / rate[m]
    return out


def airtime(mode: U8, nbytes: I64) -> F8:
    """Return each frame's time on air, s, from its mode (0 S1, 1 T1, 2 C1) and size in bytes."""
    same_size(mode, nbytes)
    want(mode, np.uint8, "mode")
    want(nbytes, np.int64, "nbytes")
    if mode.size and int(mode.max()) >= physics.N_MODES:
        raise ValueError(f"mode {int(mode.max())} is not 0 (S1), 1 (T1) or 2 (C1)")
    return _airtime(mode, nbytes, HEAD_CHIPS, CHIPS_PER_BYTE, CHIP_RATE)


_SIGN = np.uint64(1) << np.uint64(63)


@njit(cache=True)
def _sort_keys(t: F8, bits: int) -> U64:
    """Return per time a key that sorts as the time does, its low ``bits`` bits the index.

    The float's bits are made monotone (sign flipped, negatives inverted, -0.0 as 0.0) and
    their ``bits`` lowest bits give way to the index, so keys sort by time and then index;
    times that share the kept high bits are sorted exactly afterwards (``_fix_runs``).
    """
    shift = np.uint64(bits)
    bits_of = t.view(np.uint64)
    out = np.empty(t.size, dtype=np.uint64)
    for i in range(t.size):
        if math.isnan(t[i]):
            raise ValueError("times must not be NaN")
        x = bits_of[i] if t[i] != 0.0 else np.uint64(0)
        x = ~x if x & _SIGN else x | _SIGN
        out[i] = ((x >> shift) << shift) | np.uint64(i)
    return out


@njit(cache=True)
def _fix_run(lo: int, hi: int, t: F8, columns: tuple[I64, F8, F8, U8]) -> None:
    """Sort rows ``lo:hi`` (in index order, times sharing their key) by time, stably."""
    perm = np.argsort(t[lo:hi], kind="mergesort") + lo
    order, t_out, end, mode = columns
    order[lo:hi], t_out[lo:hi] = order[perm], t_out[perm]
    end[lo:hi], mode[lo:hi] = end[perm], mode[perm]


@njit(cache=True)
def _unpack_frames(
    keys: U64, bits: int, t: F8, offsets: U32, mode: U8, head: F8, per_byte: F8, rate: F8
) -> tuple[I64, F8, F8, U8]:
    n = keys.size
    order, t_out = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.float64)
    end, mode_out = np.empty(n, dtype=np.float64), np.empty(n, dtype=np.uint8)
    columns = (order, t_out, end, mode_out)
    shift = np.uint64(bits)
    mask = (np.uint64(1) << shift) - np.uint64(1)
    run = 0
    for a in range(n):
        i = np.int64(keys[a] & mask)
        m = mode[i]
        order[a], t_out[a], mode_out[a] = i, t[i], m
        nbytes = np.int64(offsets[i + 1]) - np.int64(offsets[i])
        end[a] = t[i] + (head[m] + per_byte[m] * nbytes) / rate[m]
        if a and (keys[a] >> shift) != (keys[a - 1] >> shift):
            if a - run > 1:
                _fix_run(run, a, t_out, columns)
            run = a
    if n - run > 1:
        _fix_run(run, n, t_out, columns)
    return order, t_out, end, mode_out


@njit(cache=True)
def _unpack(keys: U64, bits: int, t: F8) -> I64:
    n = keys.size
    order, t_out = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.float64)
    shift = np.uint64(bits)
    mask = (np.uint64(1) << shift) - np.uint64(1)
    run = 0
    for a in range(n):
        order[a] = i = np.int64(keys[a] & mask)
        t_out[a] = t[i]
        if a and (keys[a] >> shift) != (keys[a - 1] >> shift):
            if a - run > 1:
                _fix_run_order(run, a, t_out, order)
            run = a
    if n - run > 1:
        _fix_run_order(run, n, t_out, order)
    return order


@njit(cache=True)
def _fix_run_order(lo: int, hi: int, t: F8, order: I64) -> None:
    perm = np.argsort(t[lo:hi], kind="mergesort") + lo
    order[lo:hi], t[lo:hi] = order[perm], t[perm]


def _sorted_keys(t: F8) -> tuple[U64, int]:
    """Return the sort keys of ``t`` in order (numpy's sort) and how many index bits they hold."""
    want(t, np.float64, "times")
    bits = max(1, (t.size - 1).bit_length())
    keys = _sort_keys(t, bits)
    keys.sort()
    return keys, bits


def time_order(times: F8) -> I64:
    """Return the indices that sort ``times``, equal times in index order (a stable sort).

    Equal to ``np.argsort(times, kind="stable")`` (NaN refused) at about the cost of numpy's
    sort of plain numbers: each key holds the time's high bits above the index, and times
    whose keys tie on those bits are put in order exactly after the sort.
    """
    keys, bits = _sorted_keys(times)
    return _unpack(keys, bits, times)


def ordered_frames(t_start: F8, offsets: U32, mode: U8) -> tuple[I64, F8, F8, U8]:
    """Return the frames' start-time order (stable) and start, end and mode in that order.

    ``end`` is start + airtime (s). The order is that of :func:`time_order`; the columns come
    out of the same pass that reads the sorted keys.
    """
    same_size(t_start, mode, offsets[1:])
    want(offsets, np.uint32, "offsets")
    want(mode, np.uint8, "mode")
    if mode.size and int(mode.max()) >= physics.N_MODES:
        raise ValueError(f"mode {int(mode.max())} is not 0 (S1), 1 (T1) or 2 (C1)")
    keys, bits = _sorted_keys(t_start)
    return _unpack_frames(keys, bits, t_start, offsets, mode, HEAD_CHIPS, CHIPS_PER_BYTE, CHIP_RATE)


@njit(cache=True)
def _take_link(order: I64, tx: F4, x: F4, y: F4, meter: U32) -> tuple[F4, F4, F4, U32]:
    n = order.size
    tx_out = np.empty(n, dtype=np.float32)
    x_out, y_out = np.empty(n, dtype=np.float32), np.empty(n, dtype=np.float32)
    meter_out = np.empty(n, dtype=np.uint32)
    for a in range(n):
        i = order[a]
        tx_out[a], x_out[a], y_out[a], meter_out[a] = tx[i], x[i], y[i], meter[i]
    return tx_out, x_out, y_out, meter_out


def ordered_links(order: I64, tx_dbm: F4, x: F4, y: F4, meter: U32) -> tuple[F4, F4, F4, U32]:
    """Return transmit power (dBm), position (m) and meter of frames ``order[0], ...``."""
    same_size(tx_dbm, x, y, meter)
    for arr, name in ((tx_dbm, "tx_dbm"), (x, "x"), (y, "y")):
        want(arr, np.float32, name)
    want(meter, np.uint32, "meter")
    _check_order(order, tx_dbm.size)
    return _take_link(order, tx_dbm, x, y, meter)


def _check_order(order: I64, n: int) -> None:
    want(order, np.int64, "order")
    if order.size != n or (n and (int(order.min()) < 0 or int(order.max()) >= n)):
        raise ValueError("order must hold one index per frame, each inside the frames")


# -- received power -----------------------------------------------------------------------


@njit(cache=True)
def _crosses_segment(
    ax: float, ay: float, bx: float, by: float, cx: float, cy: float, dx: float, dy: float
) -> bool:
    """Return True when segment AB properly crosses segment CD (touching does not count)."""
    d1 = (dx - cx) * (ay - cy) - (dy - cy) * (ax - cx)
    d2 = (dx - cx) * (by - cy) - (dy - cy) * (bx - cx)
    d3 = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
    d4 = (bx - ax) * (dy - ay) - (by - ay) * (dx - ax)
    return d1 * d2 < 0.0 and d3 * d4 < 0.0


@njit(cache=True)
def _crosses_rect(
    ax: float, ay: float, bx: float, by: float, x0: float, y0: float, x1: float, y1: float
) -> bool:
    """Return True when segment AB has a point inside the rectangle (Liang-Barsky clipping)."""
    lo, hi = 0.0, 1.0
    dx, dy = bx - ax, by - ay
    ps = (-dx, dx, -dy, dy)
    qs = (ax - min(x0, x1), max(x0, x1) - ax, ay - min(y0, y1), max(y0, y1) - ay)
    for k in range(4):
        p, q = ps[k], qs[k]
        if p == 0.0:
            if q < 0.0:
                return False
        elif p < 0.0:
            lo = max(lo, q / p)
        else:
            hi = min(hi, q / p)
    return lo <= hi


@njit(cache=True)
def _obstacle_loss(
    ax: float, ay: float, bx: float, by: float, box: F8, rect: B1, loss: F8
) -> float:
    total = 0.0
    for k in range(loss.size):
        x0, y0, x1, y1 = box[k, 0], box[k, 1], box[k, 2], box[k, 3]
        if rect[k]:
            hit = _crosses_rect(ax, ay, bx, by, x0, y0, x1, y1)
        else:
            hit = _crosses_segment(ax, ay, bx, by, x0, y0, x1, y1)
        if hit:
            total += loss[k]
    return total


@njit(cache=True)
def _rx_power(
    tx: F4, x: F4, y: F4, meter: U32, rx_xyg: F8, box: F8, rect: B1, loss: F8, model: F8, seed: int
) -> F8:
    pl0, n_exp, sigma = model[0], model[1], model[2]
    key0 = np.uint64(seed)
    out = np.empty((rx_xyg.shape[0], tx.size), dtype=np.float64)
    for r in range(rx_xyg.shape[0]):
        rx, ry, gain = rx_xyg[r, 0], rx_xyg[r, 1], rx_xyg[r, 2]
        for i in range(tx.size):
            px, py = float(x[i]), float(y[i])
            d = max(math.sqrt((px - rx) ** 2 + (py - ry) ** 2), 1.0)
            p = float(tx[i]) + gain - (pl0 + 10.0 * n_exp * math.log10(d))
            p -= _obstacle_loss(px, py, rx, ry, box, rect, loss)
            if sigma > 0.0:
                p += sigma * _normal(_hash3(key0, TAG_SHADOW, np.uint64(meter[i]), np.uint64(r)))
            out[r, i] = p
    return out


def received_power_dbm(
    tx_dbm: F4,
    x: F4,
    y: F4,
    meter: U32,
    *,
    receivers: F8,
    obstacles: F8,
    obstacle_is_rect: B1,
    obstacle_loss_db: F8,
    model: F8,
    seed: int,
) -> F8:
    """Return the received power (dBm) of every frame at every receiver, shape (receivers, n).

    Args:
        tx_dbm, x, y, meter: per frame: transmit power (dBm), position (m), meter index.
        receivers: (r, 3) rows of x (m), y (m), antenna gain (dBi).
        obstacles: (o, 4) rows x0, y0, x1, y1 (m) of a segment or a rectangle's corners.
        obstacle_is_rect: (o,) True for rectangles.
        obstacle_loss_db: (o,) attenuation when the line of sight crosses the obstacle, dB.
        model: reference loss at 1 m (dB), path-loss exponent, shadowing sigma (dB).
        seed: draws the log-normal shadowing of each (meter, receiver) link.
    """
    same_size(tx_dbm, x, y, meter)
    for arr, dtype, name in ((tx_dbm, np.float32, "tx_dbm"), (x, np.float32, "x")):
        want(arr, dtype, name)
    want(y, np.float32, "y")
    want(meter, np.uint32, "meter")
    want_2d(receivers, 3, "receivers")
    want_2d(obstacles, 4, "obstacles")
    want(obstacle_is_rect, np.bool_, "obstacle_is_rect")
    same_size(obstacle_is_rect, obstacle_loss_db, obstacles[:, 0])
    want(model, np.float64, "model")
    if model.size != 3 or not 0 <= seed < 2**63:
        raise ValueError("model needs 3 values and seed must be in [0, 2**63)")
    return _rx_power(
        tx_dbm, x, y, meter, receivers, obstacles, obstacle_is_rect, obstacle_loss_db, model, seed
    )


# -- ISM interferers ----------------------------------------------------------------------


@njit(cache=True)
def _burst_hits(start: float, end: float, k: int, burst: float, period: float, seed: int) -> bool:
    first = max(math.floor(start / period) - 1, 0)
    last = math.floor(end / period)
    for q in range(first, last + 1):
        u = _uniform(_hash3(np.uint64(seed), TAG_BURST, np.uint64(k), np.uint64(q)))
        b0 = q * period + u * (period - burst)
        if b0 < end and start < b0 + burst:
            return True
    return False


@njit(cache=True)
def _interference(
    start: F8, end: F8, channel: U8, itf_channel: U8, itf_timing: F8, itf_mw: F8, seed: int
) -> F8:
    out = np.zeros((itf_mw.shape[0], start.size), dtype=np.float64)
    for i in range(start.size):
        for k in range(itf_channel.size):
            if itf_channel[k] != channel[i]:
                continue
            if _burst_hits(start[i], end[i], k, itf_timing[k, 0], itf_timing[k, 1], seed):
                for r in range(itf_mw.shape[0]):
                    out[r, i] += itf_mw[r, k]
    return out


def interferer_power_mw(
    start: F8, end: F8, channel: U8, *, itf_channel: U8, itf_timing: F8, itf_mw: F8, seed: int
) -> F8:
    """Return the ISM interference (mW) each frame meets at each receiver, shape (r, n).

    Interferer ``k`` sends one burst of ``itf_timing[k, 0]`` s per period of ``itf_timing[k, 1]``
    s, starting at ``q * period + u * (period - burst)`` in period ``q`` (``u`` uniform, drawn
    from the seed, ``k`` and ``q``; periods count from t = 0). A burst that overlaps a frame on
    the same channel adds the interferer's received power ``itf_mw[r, k]`` in full.
    """
    same_size(start, end, channel)
    want(start, np.float64, "start")
    want(end, np.float64, "end")
    want(channel, np.uint8, "channel")
    want(itf_channel, np.uint8, "itf_channel")
    want_2d(itf_timing, 2, "itf_timing")
    if (
        itf_mw.ndim != 2
        or itf_mw.shape[1] != itf_channel.size
        or itf_timing.shape[0] != itf_channel.size
    ):
        raise ValueError("itf_mw must be (receivers, interferers) and itf_timing (interferers, 2)")
    if itf_channel.size and float(itf_timing[:, 1].min()) <= 0.0:
        raise ValueError("interferer periods must be > 0")
    return _interference(start, end, channel, itf_channel, itf_timing, itf_mw, seed)


# -- bit errors ---------------------------------------------------------------------------


@njit(cache=True)
def _corrupt(
    data: U8, offsets: U32, frame: I64, ber: F8, meter: U32, t_bits: U64, receiver: U16, seed: int
) -> tuple[U32, U8, U16]:
    out_off = np.zeros(frame.size + 1, dtype=np.uint32)
    for j in range(frame.size):
        f = frame[j]
        out_off[j + 1] = np.int64(out_off[j]) + np.int64(offsets[f + 1]) - np.int64(offsets[f])
    out = np.empty(np.int64(out_off[frame.size]), dtype=np.uint8)
    errors = np.zeros(frame.size, dtype=np.uint16)
    for j in range(frame.size):
        f, o, src = frame[j], np.int64(out_off[j]), np.int64(offsets[frame[j]])
        size = np.int64(offsets[f + 1]) - src
        out[o : o + size] = data[src : src + size]
        key = _hash3(np.uint64(seed), np.uint64(meter[f]), t_bits[f], np.uint64(receiver[j]))
        errors[j] = _flip_bits(out, int(o), int(8 * size), ber[j], key)
    return out_off, out, errors


@njit(cache=True)
def _flip_bits(out: U8, start: int, nbits: int, ber: float, state: np.uint64) -> int:
    """Flip each of ``nbits`` bits with probability ``ber`` (geometric gaps between errors)."""
    if ber <= 0.0:
        return 0
    log_keep = math.log1p(-min(ber, 0.5))
    pos, count = -1, 0
    while True:
        state = state + GOLDEN
        gap = math.log(_uniform(_mix(state))) / log_keep
        if gap >= nbits - pos:
            break
        pos += int(gap) + 1
        if pos >= nbits:
            break
        out[start + (pos >> 3)] ^= np.uint8(0x80 >> (pos & 7))
        count += 1
    return min(count, 65535)


def corrupt(
    data: U8,
    offsets: U32,
    frame: I64,
    ber: F8,
    *,
    meter: U32,
    t_bits: U64,
    receiver: U16,
    seed: int,
) -> tuple[U32, U8, U16]:
    """Copy the delivered frames into a new buffer and flip bits at each one's bit-error rate.

    Bit ``k`` of a frame is bit ``7 - k % 8`` of byte ``k // 8`` (sent MSB first). The draws of
    delivery ``j`` (of batch frame ``frame[j]`` at ``receiver[j]``) come from the seed, the
    meter, the send time's float64 bits and the receiver, so they repeat exactly.

    Returns:
        offsets (m + 1) and data of the delivered frames, and the bit errors of each (capped at
        65535).
    """
    want(data, np.uint8, "data")
    want(offsets, np.uint32, "offsets")
    same_size(meter, t_bits, offsets[1:])
    same_size(frame, ber, receiver)
    want(frame, np.int64, "frame")
    want(ber, np.float64, "ber")
    want(meter, np.uint32, "meter")
    want(t_bits, np.uint64, "t_bits")
    want(receiver, np.uint16, "receiver")
    if frame.size and (int(frame.min()) < 0 or int(frame.max()) >= offsets.size - 1):
        raise ValueError("frame indices outside the batch")
    return _corrupt(data, offsets, frame, ber, meter, t_bits, receiver, seed)
