"""Channel kernels against their pure-Python references (tests/unit/channel/reference.py)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from smtestbed.services.channel import kernels, physics, sweep

from tests.unit.channel import reference

RNG_SEED = 20240611

# with NUMBA_DISABLE_JIT=1 the SplitMix64 steps run on numpy uint64 scalars, whose wrap-around
# (intended: arithmetic modulo 2**64) numpy reports as overflow
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")


def _random_frames(n: int, seed: int = RNG_SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "tx": rng.uniform(0, 20, n).astype(np.float32),
        "x": rng.uniform(-300, 300, n).astype(np.float32),
        "y": rng.uniform(-300, 300, n).astype(np.float32),
        "meter": rng.integers(0, 1000, n).astype(np.uint32),
        "mode": rng.integers(0, 3, n).astype(np.uint8),
        "nbytes": rng.integers(12, 120, n).astype(np.int64),
        "start": np.sort(rng.uniform(0, 2.0, n)),
    }


def test_airtime_matches_the_formula_per_mode() -> None:
    """Each frame's airtime equals physics.airtime_s of its mode and size, exactly."""
    f = _random_frames(300)
    got = kernels.airtime(f["mode"], f["nbytes"])
    want = [physics.airtime_s(int(m), int(b)) for m, b in zip(f["mode"], f["nbytes"], strict=True)]
    assert got.tolist() == want


def test_airtime_of_a_50_byte_t1_frame_is_6_48_ms() -> None:
    """A 50-byte T1 frame takes (38 + 10 + 12 * 50) chips at 100 kcps = 6.48 ms."""
    got = kernels.airtime(np.array([1], np.uint8), np.array([50], np.int64))
    assert got[0] == pytest.approx(6.48e-3, rel=1e-12)


def test_received_power_matches_reference_with_obstacles_and_shadowing() -> None:
    """Path loss, obstacle losses and per-link shadowing agree with the reference exactly."""
    f = _random_frames(200)
    receivers = np.array([[0.0, 0.0, 2.0], [150.0, -40.0, 0.0]])
    boxes = np.array([[20.0, -50.0, 40.0, 60.0], [-100.0, -100.0, -80.0, 200.0]])
    is_rect = np.array([True, False])
    loss = np.array([12.0, 7.5])
    model = np.array([31.2, 2.7, 4.0])
    got = kernels.received_power_dbm(
        f["tx"],
        f["x"],
        f["y"],
        f["meter"],
        receivers=receivers,
        obstacles=boxes,
        obstacle_is_rect=is_rect,
        obstacle_loss_db=loss,
        model=model,
        seed=99,
    )
    frames = [
        (float(t), float(x), float(y), int(m))
        for t, x, y, m in zip(f["tx"], f["x"], f["y"], f["meter"], strict=True)
    ]
    obstacles = [
        (tuple(b), bool(r), float(lo)) for b, r, lo in zip(boxes, is_rect, loss, strict=True)
    ]
    want = reference.rx_power(
        frames, [tuple(r) for r in receivers], obstacles, (31.2, 2.7, 4.0), 99
    )
    assert got.tolist() == want


def test_a_wall_between_meter_and_receiver_costs_its_loss() -> None:
    """A segment wall across the line of sight lowers the received power by its loss_db only."""
    args = (
        np.array([14.0], np.float32),
        np.array([100.0], np.float32),
        np.array([0.0], np.float32),
        np.array([0], np.uint32),
    )
    common: dict[str, Any] = {
        "receivers": np.array([[0.0, 0.0, 0.0]]),
        "model": np.array([31.2, 2.0, 0.0]),
        "seed": 1,
    }
    wall = kernels.received_power_dbm(
        *args,
        obstacles=np.array([[50.0, -10.0, 50.0, 10.0]]),
        obstacle_is_rect=np.array([False]),
        obstacle_loss_db=np.array([9.0]),
        **common,
    )
    free = kernels.received_power_dbm(
        *args,
        obstacles=np.zeros((0, 4)),
        obstacle_is_rect=np.zeros(0, np.bool_),
        obstacle_loss_db=np.zeros(0),
        **common,
    )
    assert free[0, 0] == pytest.approx(14.0 - 31.2 - 40.0, abs=1e-9)
    assert free[0, 0] - wall[0, 0] == pytest.approx(9.0, abs=1e-9)


def test_interferer_power_matches_reference() -> None:
    """ISM bursts hit exactly the frames the naive period-by-period reference finds."""
    f = _random_frames(400)
    end = f["start"] + kernels.airtime(f["mode"], f["nbytes"])
    channel = kernels.MODE_CHANNEL[f["mode"]]
    itf_channel = np.array([1, 0, 1], np.uint8)
    timing = np.array([[0.02, 0.1], [0.05, 0.3], [0.001, 0.05]])
    itf_mw = np.array([[1e-9, 2e-9, 3e-9], [4e-10, 0.0, 1e-12]])
    got = kernels.interferer_power_mw(
        f["start"],
        end,
        channel,
        itf_channel=itf_channel,
        itf_timing=timing,
        itf_mw=itf_mw,
        seed=5,
    )
    spans = list(zip(f["start"].tolist(), end.tolist(), channel.tolist(), strict=True))
    itfs = [(int(c), float(t[0]), float(t[1])) for c, t in zip(itf_channel, timing, strict=True)]
    want = reference.interference(spans, itfs, itf_mw.tolist(), 5)
    assert got.tolist() == want
    assert np.count_nonzero(got) > 0


def _sweep_inputs(n: int) -> tuple[np.ndarray, ...]:
    f = _random_frames(n, seed=3)
    start = np.random.default_rng(4).uniform(0, 0.5, n)
    end = start + kernels.airtime(f["mode"], f["nbytes"])
    power = np.random.default_rng(5).uniform(1e-12, 1e-8, (2, n))
    return start, end, kernels.MODE_CHANNEL[f["mode"]], power


@pytest.mark.parametrize("echoes", [(), ((2e-5, 0.1), (3e-3, 0.01))])
def test_sweep_matches_reference(echoes: tuple[tuple[float, float], ...]) -> None:
    """Overlap sums and counts per receiver equal the all-pairs reference, echoes or not."""
    start, end, channel, power = _sweep_inputs(300)
    order = np.argsort(start, kind="stable")
    floor = np.array([0.0, 3e-9])
    got = sweep.sweep(
        order,
        start,
        end,
        channel,
        power,
        floor_mw=floor,
        echo_delay=np.array([e[0] for e in echoes]),
        echo_gain=np.array([e[1] for e in echoes]),
    )
    spans = list(zip(start.tolist(), end.tolist(), channel.tolist(), strict=True))
    want = reference.sweep(order.tolist(), spans, power.tolist(), floor.tolist(), echoes)
    assert [g.tolist() for g in got] == [list(w) for w in want]
    assert got[2].sum() > 0


def test_frames_on_different_channels_do_not_overlap() -> None:
    """An S1 frame (868.3 MHz) and a T1 frame (868.95 MHz) at the same time do not interfere."""
    start = np.array([0.0, 0.001])
    end = np.array([0.01, 0.011])
    channel = kernels.MODE_CHANNEL[np.array([0, 1], np.uint8)]
    direct, _echo, count = sweep.sweep(
        np.array([0, 1]),
        start,
        end,
        channel,
        np.ones((1, 2)),
        floor_mw=np.zeros(1),
        echo_delay=np.zeros(0),
        echo_gain=np.zeros(0),
    )
    assert count.tolist() == [[0, 0]]
    assert direct.tolist() == [[0.0, 0.0]]


def _reference_decide(
    power_dbm: np.ndarray,
    inputs: dict[str, np.ndarray],
    rx: np.ndarray,
    noise: np.ndarray,
    ratio: float,
) -> tuple[list[list[int]], list[list[float]]]:
    outcome, ber = [], []
    for r in range(power_dbm.shape[0]):
        o_row, b_row = [], []
        for i in range(power_dbm.shape[1]):
            p = inputs["power_mw"][r, i]
            b = 0.0
            if rx[r, 1]:
                o = sweep.RECEIVER_DOWN
            elif power_dbm[r, i] < rx[r, 0]:
                o = sweep.LOST_TO_NOISE
            elif inputs["forced"][i] or (
                inputs["overlaps"][r, i] > 0 and p < ratio * inputs["direct"][r, i]
            ):
                o = sweep.COLLIDED
            else:
                o, m = sweep.DELIVERED, int(inputs["mode"][i])
                den = inputs["interference"][r, i] + noise[r, m]
                b = physics.ber_fsk_noncoherent(p / den * kernels.BANDWIDTH_OVER_RATE[m])
            o_row.append(o)
            b_row.append(b)
        outcome.append(o_row)
        ber.append(b_row)
    return outcome, ber


def test_decide_matches_reference() -> None:
    """Fates and bit-error rates per receiver equal the reference's rule by rule."""
    rng = np.random.default_rng(8)
    n = 400
    power_dbm = rng.uniform(-115, -60, (3, n))
    inputs: dict[str, Any] = {
        "power_mw": 10.0 ** (power_dbm / 10.0),
        "interference": rng.uniform(0, 1e-10, (3, n)),
        "overlaps": rng.integers(0, 3, (3, n)).astype(np.int32),
        "direct": rng.uniform(0, 1e-9, (3, n)),
        "mode": rng.integers(0, 3, n).astype(np.uint8),
        "forced": rng.uniform(size=n) < 0.05,
    }
    rx = np.array([[-105.0, 0.0], [-100.0, 0.0], [-105.0, 1.0]])
    noise = np.array([[1e-12, 2e-12, 2e-12], [0.0, 0.0, 0.0], [1e-12, 1e-12, 1e-12]])
    outcome, ber = sweep.decide(
        power_dbm,
        inputs["power_mw"],
        inputs["interference"],
        inputs["overlaps"],
        inputs["direct"],
        mode=inputs["mode"],
        forced=inputs["forced"],
        rx=rx,
        noise_mw=noise,
        capture_ratio=4.0,
    )
    want_outcome, want_ber = _reference_decide(power_dbm, inputs, rx, noise, 4.0)
    assert outcome.tolist() == want_outcome
    assert ber.tolist() == want_ber
    assert set(outcome.ravel().tolist()) == {0, 1, 2, 3}


def test_corrupt_matches_reference_bit_for_bit() -> None:
    """The delivered bytes and per-frame error counts equal the reference's draws."""
    rng = np.random.default_rng(11)
    sizes = rng.integers(10, 80, 50)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.uint32)
    data = rng.integers(0, 256, int(offsets[-1])).astype(np.uint8)
    meter = rng.integers(0, 100, 50).astype(np.uint32)
    t_start = rng.uniform(0, 100, 50)
    frame = rng.integers(0, 50, 80).astype(np.int64)
    ber = np.concatenate([np.zeros(10), 10.0 ** rng.uniform(-5, -0.5, 70)])
    receiver = rng.integers(0, 4, 80).astype(np.uint16)
    out_off, out, errors = kernels.corrupt(
        data,
        offsets,
        frame,
        ber,
        meter=meter,
        t_bits=t_start.view(np.uint64),
        receiver=receiver,
        seed=42,
    )
    want_frames, want_errors = [], []
    for j, f in enumerate(frame.tolist()):
        buf = bytearray(data[offsets[f] : offsets[f + 1]].tobytes())
        key = reference.hash3(42, int(meter[f]), int(t_start.view(np.uint64)[f]), int(receiver[j]))
        want_errors.append(reference.flip_bits(buf, float(ber[j]), key))
        want_frames.append(bytes(buf))
    got_frames = [out[out_off[j] : out_off[j + 1]].tobytes() for j in range(frame.size)]
    assert got_frames == want_frames
    assert errors.tolist() == want_errors
    assert sum(want_errors) > 0


def test_bit_error_fraction_follows_the_rate() -> None:
    """Over 2 million bits at BER 1e-2 the flipped fraction is within 3 % of 1e-2."""
    n, size = 1000, 250
    offsets = (np.arange(n + 1) * size).astype(np.uint32)
    data = np.zeros(n * size, np.uint8)
    _off, out, errors = kernels.corrupt(
        data,
        offsets,
        np.arange(n, dtype=np.int64),
        np.full(n, 1e-2),
        meter=np.arange(n, dtype=np.uint32),
        t_bits=np.zeros(n, np.uint64),
        receiver=np.zeros(n, np.uint16),
        seed=3,
    )
    flipped = int(np.unpackbits(out).sum())
    assert flipped == int(errors.sum())
    assert flipped / (8 * n * size) == pytest.approx(1e-2, rel=0.03)


def test_wrappers_reject_wrong_dtypes() -> None:
    """A float64 mode column is refused with a message naming it."""
    with pytest.raises(ValueError, match="mode must be a 1-D uint8 array"):
        kernels.airtime(np.array([1.0]), np.array([20], np.int64))


def test_ber_is_half_exp_of_half_ebn0() -> None:
    """physics.ber_fsk_noncoherent(x) is 0.5 * exp(-x / 2) (e.g. 10 dB Eb/N0 -> 3.37e-3)."""
    assert physics.ber_fsk_noncoherent(10.0) == pytest.approx(0.5 * math.exp(-5.0), rel=1e-15)
    assert physics.ber_fsk_noncoherent(10.0) == pytest.approx(3.369e-3, rel=1e-3)


def test_ordered_frames_sorts_stably_and_adds_airtime() -> None:
    """Order, start, start + airtime and mode equal a stable argsort and a per-frame loop."""
    f = _random_frames(300)
    offsets = np.concatenate([[0], np.cumsum(f["nbytes"])]).astype(np.uint32)
    start = np.round(np.random.default_rng(7).uniform(0, 2.0, 300), 2)  # with equal times
    order, t, end, mode = kernels.ordered_frames(start, offsets, f["mode"])
    want = np.argsort(start, kind="stable")
    want_end = [start[i] + physics.airtime_s(int(f["mode"][i]), int(f["nbytes"][i])) for i in want]
    assert order.tolist() == want.tolist()
    assert t.tolist() == start[want].tolist()
    assert end.tolist() == want_end
    assert mode.tolist() == f["mode"][want].tolist()


@pytest.mark.parametrize(
    "times",
    [
        np.random.default_rng(8).uniform(0, 3e4, 5000),
        5.0 + np.random.default_rng(9).uniform(0, 1e-9, 3000),  # keys tie on their high bits
        np.array([0.0, -0.0, 1.5, -2.0, 0.0, -1e-300, 1e-300, -0.0, 3.0, 3.0]),
        np.zeros(0),
        np.ones(1),
    ],
)
def test_time_order_equals_a_stable_argsort(times: np.ndarray) -> None:
    """time_order equals np.argsort(kind="stable"), also for times closer than the key bits."""
    assert kernels.time_order(times).tolist() == np.argsort(times, kind="stable").tolist()


def test_time_order_refuses_nan() -> None:
    """A NaN time raises ValueError."""
    with pytest.raises(ValueError, match="NaN"):
        kernels.time_order(np.array([1.0, math.nan]))


def test_ordered_links_gathers_power_position_and_meter() -> None:
    """Transmit power, x, y and meter come out in the given order."""
    f = _random_frames(200)
    order = np.random.default_rng(3).permutation(200)
    got = kernels.ordered_links(order, f["tx"], f["x"], f["y"], f["meter"])
    for column, name in zip(got, ("tx", "x", "y", "meter"), strict=True):
        assert column.tolist() == f[name][order].tolist()


@pytest.mark.parametrize("echoes", [(), ((2e-5, 0.1), (3e-3, 0.01))])
def test_sweep_of_sorted_frames_matches_reference(echoes: tuple[tuple[float, float], ...]) -> None:
    """sweep_sorted on frames in start order equals the all-pairs reference."""
    start, end, channel, power = _sweep_inputs(300)
    order = np.argsort(start, kind="stable")
    start, end, channel = start[order], end[order], channel[order]
    power = np.ascontiguousarray(power[:, order])
    floor = np.array([0.0, 3e-9])
    got = sweep.sweep_sorted(
        start,
        end,
        channel,
        power,
        floor_mw=floor,
        echo_delay=np.array([e[0] for e in echoes]),
        echo_gain=np.array([e[1] for e in echoes]),
    )
    spans = list(zip(start.tolist(), end.tolist(), channel.tolist(), strict=True))
    want = reference.sweep(list(range(300)), spans, power.tolist(), floor.tolist(), echoes)
    assert [g.tolist() for g in got] == [list(w) for w in want]


def test_sweep_sorted_refuses_frames_out_of_order() -> None:
    """Start times going backwards raise ValueError."""
    with pytest.raises(ValueError, match="start-time order"):
        sweep.sweep_sorted(
            np.array([1.0, 0.0]),
            np.array([1.1, 0.1]),
            np.zeros(2, np.uint8),
            np.ones((1, 2)),
            floor_mw=np.zeros(1),
            echo_delay=np.zeros(0),
            echo_gain=np.zeros(0),
        )
