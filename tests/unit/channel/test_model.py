"""The per-window channel model: determinism, CRC damage, capture, commands and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.wmbus.link import add_crcs_a, strip_crcs_a
from smtestbed.services._runtime.errors import ConfigError, ProtocolError
from smtestbed.services.channel import physics
from smtestbed.services.channel.config import ChannelConfig, scene_from_config
from smtestbed.services.channel.kernels import time_order
from smtestbed.services.channel.model import ChannelInputError

from tests.unit.channel.scenes import column, frames_batch, ideal, model

BUSY = {
    "receivers": (
        {"name": "north", "x": 0.0, "y": 200.0},
        {"name": "south", "x": 0.0, "y": -200.0, "gain_dbi": 3.0},
    ),
    "obstacles": (
        {"kind": "rect", "x0": -50.0, "y0": 50.0, "x1": 50.0, "y1": 60.0, "loss_db": 15.0},
    ),
    "interferers": ({"x": 20.0, "y": 0.0, "power_dbm": -10.0, "burst_s": 0.02, "period_s": 0.2},),
    "echoes": ({"delay_s": 5e-4, "loss_db": 12.0},),
}


def _busy_batch(seed: int = 1) -> tuple[FrameBatch, int]:
    rng = np.random.default_rng(seed)
    n = 3000
    return frames_batch(
        np.sort(rng.uniform(0, 20, n)),
        mode=rng.integers(0, 3, n),
        x=rng.uniform(-600, 600, n),
        y=rng.uniform(-600, 600, n),
        payload_seed=seed,
    ), n


def _wire(batch: FrameBatch) -> list[bytes]:
    return [bytes(f) for f in batch.wire_frames()]


def test_same_seed_and_config_give_byte_identical_output() -> None:
    """Two models with one seed and configuration emit identical batches and counters."""
    batch, _n = _busy_batch()
    first = model(seed=9, **BUSY).process(batch)
    second = model(seed=9, **BUSY).process(batch)
    assert _wire(first.batch) == _wire(second.batch)
    assert first.batch.header() == second.batch.header()
    assert first.counters == second.counters
    assert first.counters["corrupted"] > 0
    assert first.counters["collided"] > 0


def test_another_seed_gives_other_bit_errors() -> None:
    """Changing only the seed changes the output (shadowing and bit errors are seeded)."""
    batch, _n = _busy_batch()
    assert _wire(model(seed=9, **BUSY).process(batch).batch) != _wire(
        model(seed=10, **BUSY).process(batch).batch
    )


def test_counters_account_for_every_frame_at_every_receiver() -> None:
    """Per receiver, delivered + lost_to_noise + collided + receiver_down = offered."""
    batch, n = _busy_batch()
    counters = model(seed=9, **BUSY).process(batch).counters
    assert counters["offered"] == n
    for row in counters["receivers"].values():
        assert row["delivered"] + row["lost_to_noise"] + row["collided"] + row["receiver_down"] == n
        assert 0 < row["corrupted"] <= row["delivered"]


def test_bit_errors_column_counts_the_flipped_bits() -> None:
    """Each delivered frame differs from the sent one in exactly bit_errors bits."""
    batch, _n = _busy_batch()
    out = model(seed=9, **BUSY).process(batch).batch
    meters = column(out, "meter")
    sent = {int(m): bytes(batch[int(m)]) for m in meters}  # meter i sent frame i
    flipped = [
        int(
            np.unpackbits(
                np.frombuffer(bytes(f), np.uint8) ^ np.frombuffer(sent[int(m)], np.uint8)
            ).sum()
        )
        for f, m in zip(out, meters, strict=True)
    ]
    assert flipped == column(out, "bit_errors").tolist()


_DEAF_GW = {"name": "gw", "x": 0.0, "y": 0.0, "sensitivity_dbm": -200.0}  # noise decides


def _telegrams(n: int) -> list[bytes]:
    head = bytes.fromhex("2e442d2c7856341201077a")
    rng = np.random.default_rng(2)
    body = [head + bytes(rng.integers(0, 256, 36, dtype=np.uint8)) for _ in range(n)]
    return [add_crcs_a(b) for b in body]


def test_a_corrupted_frame_fails_the_wmbus_crc() -> None:
    """At 6 dB SNR, frames with bit errors fail the format A CRC; clean ones decode as sent."""
    frames = _telegrams(400)
    tx = physics.noise_floor_dbm(physics.NOISE_BANDWIDTH_HZ[1], 6.0) + 6.0 + 31.2
    batch = frames_batch(np.arange(400) * 0.1, frames=frames, x=1.0, tx_dbm=tx)
    chan = model(seed=4, shadowing_sigma_db=0.0, path_loss_exponent=2.0, receivers=(_DEAF_GW,))
    out = chan.process(batch).batch
    errors = column(out, "bit_errors")
    assert out.count == 400
    assert 50 < np.count_nonzero(errors) < 350
    for frame, meter, bad in zip(out, column(out, "meter"), errors, strict=True):
        if bad:
            with pytest.raises(ProtocolError, match="CRC"):
                strip_crcs_a(bytes(frame))
        else:
            assert strip_crcs_a(bytes(frame)) == strip_crcs_a(frames[meter])


def test_ber_of_a_delivered_frame_follows_the_formula_at_its_snr() -> None:
    """At SNRs of 0, 3 and 6 dB the error fraction over many frames matches 0.5 exp(-Eb/N0/2)."""
    noise_dbm = physics.noise_floor_dbm(physics.NOISE_BANDWIDTH_HZ[1], 6.0)
    for snr_db in (0.0, 3.0, 6.0):
        tx = noise_dbm + snr_db + 31.2  # received at 1 m with PL0 = 31.2 dB and n = 2
        n, size = 4000, 100
        batch = frames_batch(np.arange(n) * 0.02, size=size, x=1.0, tx_dbm=tx, mode=1)
        chan = model(
            seed=1,
            shadowing_sigma_db=0.0,
            path_loss_exponent=2.0,
            receivers=(_DEAF_GW,),
        )
        out = chan.process(batch).batch
        rssi = float(column(out, "rssi_dbm")[0])
        ebn0 = physics.ebn0_from_sinr(physics.db_to_mw(rssi - noise_dbm), 1)
        expected = physics.ber_fsk_noncoherent(ebn0)
        measured = column(out, "bit_errors").sum() / (8 * n * size)
        assert rssi == pytest.approx(noise_dbm + snr_db, abs=1e-4)
        assert measured == pytest.approx(expected, rel=0.05)


def test_capture_lets_the_stronger_frame_survive() -> None:
    """Of two overlapping frames 20 dB apart, the strong one survives with capture, none without."""
    batch = frames_batch([0.0, 0.002], x=[10.0, 100.0])
    settings = {"noise": False, "shadowing_sigma_db": 0.0, "path_loss_exponent": 2.0}
    with_capture = model(capture=True, **settings).process(batch)
    without = model(capture=False, **settings).process(batch)
    assert column(with_capture.batch, "meter").tolist() == [0]
    assert with_capture.counters["collided"] == 1
    assert without.batch.count == 0
    assert without.counters["collided"] == 2


def test_forced_collision_takes_the_next_frames_of_a_meter() -> None:
    """Forcing 2 collisions on meter 3 removes its next 2 frames, then it is heard again."""
    chan = ideal()
    chan.forced.per_meter[3] = 2
    batch = frames_batch([0.0, 1.0, 2.0], meter=[3, 3, 4])
    first = chan.process(batch)
    second = chan.process(frames_batch([5.0], meter=[3]))
    assert column(first.batch, "meter").tolist() == [4]
    assert first.counters["collided"] == 2
    assert column(second.batch, "meter").tolist() == [3]


def test_a_receiver_marked_down_hears_nothing() -> None:
    """With a fault 'down' on one of two receivers only the other one delivers."""
    chan = ideal(receivers=({"name": "a", "x": 0.0, "y": 0.0}, {"name": "b", "x": 5.0, "y": 0.0}))
    chan.faults["a"].down = True
    out = chan.process(frames_batch([0.0, 1.0])).batch
    assert column(out, "receiver").tolist() == [1, 1]


def test_extra_loss_fault_lowers_rssi_by_its_value() -> None:
    """An extra_loss_db fault of 7 dB lowers every RSSI at that receiver by 7 dB."""
    chan = ideal()
    before = column(chan.process(frames_batch([0.0])).batch, "rssi_dbm")[0]
    chan.faults["gw0"].extra_loss_db = 7.0
    after = column(chan.process(frames_batch([0.0])).batch, "rssi_dbm")[0]
    assert before - after == pytest.approx(7.0, abs=1e-4)


def test_a_batch_without_mode_column_is_refused_naming_it() -> None:
    """A batch missing 'mode' raises ChannelInputError that names the column."""
    batch = frames_batch([0.0])
    del batch.columns["mode"]
    with pytest.raises(ChannelInputError, match="'mode'"):
        ideal().process(batch)


def test_a_receiver_without_x_is_a_config_error_naming_the_field() -> None:
    """receivers[1] lacking x is reported as channel.receivers[1].x."""
    cfg = ChannelConfig(receivers=({"name": "a", "x": 0.0, "y": 0.0}, {"name": "b", "y": 1.0}))
    with pytest.raises(ConfigError, match=r"channel\.receivers\[1\]\.x"):
        scene_from_config(cfg)


def test_time_order_keeps_equal_times_in_index_order() -> None:
    """Equal send times sort by frame index, as a stable sort would."""
    times = np.array([3.0, 1.0, 3.0, 0.5, 1.0, 3.0])
    assert time_order(times).tolist() == [3, 1, 4, 0, 2, 5]
    assert time_order(np.array([2.0, 0.0, 1.0])).tolist() == [1, 2, 0]


def _weak_overlap(margin_db: float) -> dict[str, int]:
    """Counters of a near frame overlapped by one 15 dB under the noise floor (no capture)."""
    noise_dbm = physics.noise_floor_dbm(physics.NOISE_BANDWIDTH_HZ[1], 6.0)
    weak_tx = noise_dbm - 15.0 + 31.2 + 20.0  # 15 dB under the noise at 10 m (n = 2)
    batch = frames_batch([0.0, 0.001], x=[1.0, 10.0], tx_dbm=[0.0, weak_tx])
    chan = model(
        seed=1, capture=False, shadowing_sigma_db=0.0, path_loss_exponent=2.0,
        receivers=(_DEAF_GW,), interference_margin_db=margin_db,
    )  # fmt: skip
    counters = chan.process(batch).counters
    return {k: counters[k] for k in ("delivered", "collided")}


def test_signals_under_the_interference_margin_are_cut() -> None:
    """With a 10 dB margin a signal 15 dB under the noise does not collide; with 20 dB it does."""
    assert _weak_overlap(10.0) == {"delivered": 2, "collided": 0}
    assert _weak_overlap(20.0) == {"delivered": 0, "collided": 2}


def test_a_large_margin_gives_the_uncut_model() -> None:
    """With margins of 300 and 900 dB (nothing cut) the busy scene's output is identical."""
    batch, _n = _busy_batch()
    first = model(seed=9, interference_margin_db=300.0, **BUSY).process(batch)
    second = model(seed=9, interference_margin_db=900.0, **BUSY).process(batch)
    assert _wire(first.batch) == _wire(second.batch)
    assert first.counters == second.counters


def test_a_negative_interference_margin_is_a_config_error() -> None:
    """interference_margin_db below 0 is refused naming the field."""
    with pytest.raises(ConfigError, match="interference_margin_db"):
        scene_from_config(ChannelConfig(interference_margin_db=-1.0))


def test_frames_starting_together_are_all_processed_in_time_order() -> None:
    """Equal start times (S1 and T1 side by side) deliver every frame, ordered by end time."""
    batch = frames_batch([0.0, 0.0, 5.0, 5.0], mode=[0, 1, 0, 1])
    out = ideal().process(batch).batch
    assert column(out, "meter").tolist() == [1, 0, 3, 2]  # the T1 frame ends first
