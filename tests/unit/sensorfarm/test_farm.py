"""One farm window at a time: determinism, decodable frames, columns, corruption, stopping."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.wmbus import Telegram, decode_telegram
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.population import Population, generate
from smtestbed.services.sensorfarm.schema import COUNTER_COLUMNS, MeterKind
from smtestbed.services.sensorfarm.templates import RECORD_SPECS

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
ALL_KINDS = {"electricity": 1.0, "gas": 1.0, "water": 1.0, "heat": 1.0}


def _population(n: int = 24, *, seed: int = 7, security: int = 5) -> Population:
    return generate(
        n, seed=seed, mix=ALL_KINDS, security=security, interval_s=20.0, jitter=0.2, start_s=T0
    )


def _column(batch: FrameBatch, name: str) -> npt.NDArray[Any]:
    return np.asarray(batch.columns[name])


def _run(farm: Farm, windows: int, window_s: float = 10.0) -> list[FrameBatch]:
    return [farm.step(T0 + k * window_s, T0 + (k + 1) * window_s) for k in range(windows)]


def _ident(telegram: Telegram) -> int:
    """Return the meter number of a telegram (its 8 BCD digits read as decimal)."""
    return int(f"{telegram.link.address.ident:08x}")


def _expected_raw(value: float, exponent: int, size: int, *, counter: bool) -> int:
    """Return a record's raw integer by the templates' documented rule (counters round down)."""
    scaled = value * float(10 ** max(0, -exponent)) / float(10 ** max(0, exponent))
    raw = math.floor(scaled) if counter else math.floor(scaled + 0.5)
    half = 1 << (8 * size - 1)
    return (raw + half) % (2 * half) - half


def _frames_of(batches: list[FrameBatch], row: int) -> list[bytes]:
    """Return meter ``row``'s frames over ``batches``, in time order."""
    out: list[tuple[float, bytes]] = []
    for batch in batches:
        meters, starts = _column(batch, "meter"), _column(batch, "t_start")
        out += [(float(starts[j]), bytes(batch[j])) for j in np.flatnonzero(meters == row).tolist()]
    return [frame for _, frame in sorted(out)]


def test_same_seed_and_population_give_byte_identical_batches() -> None:
    """Two farms built alike produce the same frames, columns and metadata for five windows."""
    first = _run(Farm(_population(), seed=3), 5)
    second = _run(Farm(_population(), seed=3), 5)
    assert sum(b.count for b in first) > 20
    for a, b in zip(first, second, strict=True):
        assert a.header() == b.header()
        assert [bytes(x) for x in a.wire_frames()] == [bytes(x) for x in b.wire_frames()]
    other = _run(Farm(_population(), seed=4), 5)
    assert [bytes(b.data) for b in other] != [bytes(b.data) for b in first]


@pytest.mark.parametrize("security", [0, 5, 7])
def test_every_frame_decodes_with_its_key_and_carries_the_held_values(security: int) -> None:
    """Each frame decodes with its meter's key; its records are the meter's values, rounded."""
    pop = _population(security=security)
    farm = Farm(pop, seed=1)
    seen: set[int] = set()
    for k in range(3):
        batch = farm.step(T0 + 10.0 * k, T0 + 10.0 * (k + 1))  # checked before the next step
        for j, row in enumerate(_column(batch, "meter").tolist()):
            telegram = decode_telegram(bytes(batch[j]), key=bytes(pop.key[row]))
            assert _ident(telegram) == int(pop.ident[row])
            assert telegram.security.mode == security
            assert telegram.records is not None
            kind = MeterKind(int(pop.kind[row]))
            # values are advanced once per window, before the window's telegrams are built
            expected = [
                _expected_raw(
                    float(pop.values[row, s.column]),
                    s.exponent,
                    s.size,
                    counter=s.column in COUNTER_COLUMNS[kind],
                )
                for s in RECORD_SPECS[kind]
            ]
            assert [r.raw_value for r in telegram.records.records] == expected
            seen.add(row)
    assert {MeterKind(int(pop.kind[r])) for r in seen} == set(MeterKind)


def test_columns_describe_each_frame_from_the_population() -> None:
    """t_start lies in [t0, t1); meter, mode, position and power are the sender's own."""
    pop = _population()
    farm = Farm(pop, seed=2)
    for k, batch in enumerate(_run(farm, 4)):
        t0, t1 = T0 + 10.0 * k, T0 + 10.0 * (k + 1)
        assert batch.meta == {"t0": t0, "t1": t1, "window": k + 1}
        starts = _column(batch, "t_start")
        assert np.all((starts >= t0) & (starts < t1))
        rows = _column(batch, "meter").astype(np.int64)
        senders = [_ident(decode_telegram(bytes(f), records=False)) for f in batch]
        assert senders == pop.ident[rows].tolist()
        for name in ("mode", "x_m", "y_m", "tx_power_dbm"):
            assert np.array_equal(_column(batch, name), getattr(pop, name)[rows])


def test_frame_lengths_are_the_sizes_of_the_frames_sent() -> None:
    """Farm.frame_bytes holds each meter's real frame size for every kind and security mode."""
    pop = _population(36)
    for kind in MeterKind:  # every kind in all three security modes
        rows = np.flatnonzero(pop.kind == kind)
        pop.security[rows] = np.resize([0, 5, 7], len(rows))
    farm = Farm(pop, seed=5)
    sizes: set[tuple[int, int, int]] = set()
    for batch in _run(farm, 3):
        offsets = np.asarray(batch.offsets, dtype=np.int64)
        for j, row in enumerate(_column(batch, "meter").tolist()):
            assert int(offsets[j + 1] - offsets[j]) == len(batch[j]) == farm.frame_bytes[row]
            sizes.add((int(pop.kind[row]), int(pop.security[row]), len(batch[j])))
    assert {(k, s) for k, s, _ in sizes} == {(k, s) for k in MeterKind for s in (0, 5, 7)}


def test_a_meter_told_to_corrupt_sends_exactly_that_many_bad_crc_frames() -> None:
    """corrupt_next = 3: the meter's next 3 frames fail the link CRC, the ones after decode."""
    pop = _population(8)
    farm = Farm(pop, seed=9)
    row = 4
    pop.corrupt_next[row] = 3
    batches = _run(farm, 12)
    frames = _frames_of(batches, row)
    assert len(frames) >= 5
    reasons = []
    for frame in frames[:3]:
        with pytest.raises(ProtocolError) as info:
            decode_telegram(frame, key=bytes(pop.key[row]))
        reasons.append(info.value.reason)
    assert reasons == ["bad_crc"] * 3
    for frame in frames[3:]:
        assert _ident(decode_telegram(frame, key=bytes(pop.key[row]))) == int(pop.ident[row])
    assert int(pop.corrupt_next[row]) == 0
    assert farm.counters.corrupted == 3


def test_corrupted_counter_counts_frames_corrupted_not_frames_of_corrupting_meters() -> None:
    """One frame to corrupt, three frames in one window: the farm counts 1 corrupted frame."""
    pop = _population(4)
    farm = Farm(pop, seed=9)
    pop.corrupt_next[0] = 1
    batch = farm.step(T0, T0 + 70.0)  # interval 20 s +-20 %: 3 or 4 frames per meter
    rows = _column(batch, "meter")
    bad = 0
    for j in np.flatnonzero(rows == 0).tolist():
        try:
            decode_telegram(bytes(batch[j]), key=bytes(pop.key[0]))
        except ProtocolError:
            bad += 1
    assert int(np.count_nonzero(rows == 0)) >= 3
    assert bad == 1
    assert farm.counters.corrupted == 1
    assert farm.counters.last["corrupted"] == 1


def test_a_stopped_meter_sends_nothing_but_keeps_counting_and_resumes() -> None:
    """While stopped a meter is absent from the batches and its counter grows; then it sends."""
    pop = _population(8)
    farm = Farm(pop, seed=11)
    row = 2
    pop.scale[row] = 50.0  # a large consumer: its counter moves visibly every window
    _run(farm, 1)
    pop.stopped[row] = True
    before = float(pop.values[row, 0])
    stopped = [farm.step(T0 + 10.0 * k, T0 + 10.0 * (k + 1)) for k in range(1, 9)]
    assert _frames_of(stopped, row) == []
    assert sum(b.count for b in stopped) > 0
    assert float(pop.values[row, 0]) > before
    assert float(pop.next_tx[row]) >= T0 + 90.0  # the schedule ran on while silent
    pop.stopped[row] = False
    resumed = [farm.step(T0 + 10.0 * k, T0 + 10.0 * (k + 1)) for k in range(9, 13)]
    assert len(_frames_of(resumed, row)) >= 1
