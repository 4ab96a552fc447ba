"""Slow pure-Python versions of the channel kernels, written for clarity, not speed.

Where a kernel adds floats, the reference adds the same terms in the same order (frames in
start-time order), so results match bit for bit; everything else is computed the naive way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def mix(z: int) -> int:
    """SplitMix64 finaliser."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def hash3(seed: int, a: int, b: int, c: int) -> int:
    """Hash a seed and three 64-bit words."""
    h = mix((seed + GOLDEN) & MASK)
    for word in (a, b, c):
        h = mix(h ^ word)
    return h


def uniform(z: int) -> float:
    """Map 64 bits to (0, 1)."""
    return ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0)


def normal(key: int) -> float:
    """Box-Muller standard normal of a key."""
    u1 = uniform(mix((key + GOLDEN) & MASK))
    u2 = uniform(mix((key + 2 * GOLDEN) & MASK))
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _segments_cross(p: Sequence[float], q: Sequence[float]) -> bool:
    """Return True when segment p = (ax, ay, bx, by) properly crosses segment q."""

    def side(ox: float, oy: float, ux: float, uy: float, px: float, py: float) -> float:
        return (ux - ox) * (py - oy) - (uy - oy) * (px - ox)

    d1 = side(q[0], q[1], q[2], q[3], p[0], p[1])
    d2 = side(q[0], q[1], q[2], q[3], p[2], p[3])
    d3 = side(p[0], p[1], p[2], p[3], q[0], q[1])
    d4 = side(p[0], p[1], p[2], p[3], q[2], q[3])
    return (d1 > 0) != (d2 > 0) and (d3 > 0) != (d4 > 0) and 0 not in (d1, d2, d3, d4)


def _inside(px: float, py: float, box: Sequence[float]) -> bool:
    x0, x1 = sorted((box[0], box[2]))
    y0, y1 = sorted((box[1], box[3]))
    return x0 <= px <= x1 and y0 <= py <= y1


def crosses_rect(seg: Sequence[float], box: Sequence[float]) -> bool:
    """Return True when the segment has an end inside the box or crosses one of its edges."""
    if _inside(seg[0], seg[1], box) or _inside(seg[2], seg[3], box):
        return True
    x0, y0, x1, y1 = box
    edges = ((x0, y0, x1, y0), (x1, y0, x1, y1), (x1, y1, x0, y1), (x0, y1, x0, y0))
    return any(_segments_cross(seg, edge) for edge in edges)


def rx_power(
    frames: Sequence[tuple[float, float, float, int]],
    receivers: Sequence[tuple[float, float, float]],
    obstacles: Sequence[tuple[Sequence[float], bool, float]],
    model: tuple[float, float, float],
    seed: int,
) -> list[list[float]]:
    """Received power (dBm) of (tx_dbm, x, y, meter) frames at (x, y, gain) receivers."""
    pl0, n_exp, sigma = model
    out = []
    for r, (rx, ry, gain) in enumerate(receivers):
        row = []
        for tx, px, py, meter in frames:
            d = max(math.sqrt((px - rx) ** 2 + (py - ry) ** 2), 1.0)
            p = tx + gain - (pl0 + 10.0 * n_exp * math.log10(d))
            loss = 0.0
            for box, is_rect, loss_db in obstacles:
                seg = (px, py, rx, ry)
                if crosses_rect(seg, box) if is_rect else _segments_cross(seg, box):
                    loss += loss_db
            p -= loss
            if sigma > 0.0:
                p += sigma * normal(hash3(seed, 1, meter, r))
            row.append(p)
        out.append(row)
    return out


def interference(
    spans: Sequence[tuple[float, float, int]],
    interferers: Sequence[tuple[int, float, float]],
    itf_mw: Sequence[Sequence[float]],
    seed: int,
) -> list[list[float]]:
    """ISM interference (mW) on (start, end, channel) frames from (channel, burst, period)."""
    out = [[0.0] * len(spans) for _ in itf_mw]
    for i, (start, end, channel) in enumerate(spans):
        for k, (itf_channel, burst, period) in enumerate(interferers):
            hit = itf_channel == channel and any(
                q * period + uniform(hash3(seed, 2, k, q)) * (period - burst) < end
                and start < q * period + uniform(hash3(seed, 2, k, q)) * (period - burst) + burst
                for q in range(math.floor(end / period) + 1)
            )
            if hit:
                for r, row in enumerate(itf_mw):
                    out[r][i] += row[k]
    return out


def sweep(
    order: Sequence[int],
    spans: Sequence[tuple[float, float, int]],
    power_mw: Sequence[Sequence[float]],
    floor_mw: Sequence[float],
    echoes: Sequence[tuple[float, float]],
) -> tuple[list[list[float]], list[list[float]], list[list[int]]]:
    """Per receiver: power of overlapping frames, of overlapping echoes, count of overlaps."""
    n = len(spans)
    direct = [[0.0] * n for _ in power_mw]
    echo = [[0.0] * n for _ in power_mw]
    count = [[0] * n for _ in power_mw]
    for r, power in enumerate(power_mw):
        for i in range(n):
            s_i, e_i, ch_i = spans[i]
            if power[i] < floor_mw[r]:
                continue
            for j in order:
                s_j, e_j, ch_j = spans[j]
                if j == i:
                    for delay, gain in echoes:
                        if s_i + delay < e_i:
                            echo[r][i] += power[i] * gain
                    continue
                if ch_j != ch_i or power[j] < floor_mw[r]:
                    continue
                if s_j < e_i and s_i < e_j:
                    direct[r][i] += power[j]
                    count[r][i] += 1
                for delay, gain in echoes:
                    if s_j + delay < e_i and s_i < e_j + delay:
                        echo[r][i] += power[j] * gain
    return direct, echo, count


def flip_bits(frame: bytearray, ber: float, state: int) -> int:
    """Flip bits of ``frame`` at rate ``ber`` (geometric gaps); return how many."""
    if ber <= 0.0:
        return 0
    log_keep = math.log1p(-min(ber, 0.5))
    nbits, pos, count = 8 * len(frame), -1, 0
    while True:
        state = (state + GOLDEN) & MASK
        gap = math.log(uniform(mix(state))) / log_keep
        if gap >= nbits - pos:
            break
        pos += int(gap) + 1
        if pos >= nbits:
            break
        frame[pos // 8] ^= 0x80 >> (pos % 8)
        count += 1
    return count
