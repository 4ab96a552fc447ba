"""meter.replay: a meter's recorded telegrams sent again byte-identical, the meter unchanged."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.wmbus import decode_telegram
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.sensorfarm import manipulation
from smtestbed.services.sensorfarm.farm import Farm
from smtestbed.services.sensorfarm.population import generate
from smtestbed.services.sensorfarm.replay import GUARD_S, Recorder

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
W = 10.0


def _farm() -> Farm:
    pop = generate(
        6, seed=4, mix={"electricity": 1.0, "gas": 1.0}, security=5, interval_s=20.0, start_s=T0
    )
    return Farm(pop, seed=4)


def _step(farm: Farm, k: int) -> FrameBatch:
    return farm.step(T0 + k * W, T0 + (k + 1) * W)


def _rows(batch: FrameBatch) -> list[tuple[int, float, bytes]]:
    meters, starts = np.asarray(batch.columns["meter"]), np.asarray(batch.columns["t_start"])
    return [(int(meters[j]), float(starts[j]), bytes(batch[j])) for j in range(batch.count)]


def _ident(farm: Farm, row: int) -> str:
    return f"{int(farm.pop.ident[row]):08d}"


def _last_frames(batches: list[FrameBatch], row: int) -> list[bytes]:
    return [
        frame for b in batches for m, _, frame in sorted(_rows(b), key=lambda r: r[1]) if m == row
    ]


def test_the_last_telegram_is_sent_again_in_the_next_window_and_the_meter_goes_on() -> None:
    """The replayed frame equals the meter's last sent frame byte for byte, starts at the
    request's time and is added to what a twin farm without the replay sends in that window."""
    farm, twin = _farm(), _farm()
    before = [_step(farm, k) for k in range(4)]
    for k in range(4):
        _step(twin, k)
    row = 2
    reply = manipulation.replay(farm, {"meter": _ident(farm, row)}, T0 + 4 * W)
    batch, plain = _step(farm, 4), _step(twin, 4)
    expected = _last_frames(before, row)[-1]
    replayed = [r for r in _rows(batch) if r not in _rows(plain)]
    assert replayed == [(row, T0 + 4 * W, expected)]
    assert sorted(_rows(plain)) == sorted(r for r in _rows(batch) if r not in replayed)
    assert reply["replays"][0]["frame"] == expected.hex()
    tpl = decode_telegram(expected, records=False).tpl
    assert tpl is not None
    assert reply["replays"][0]["access_number"] == tpl.access_number
    assert farm.counters.replayed == 1
    assert farm.counters.last["replayed"] == 1
    assert farm.pop.access_number[row] == twin.pop.access_number[row]
    assert _rows(_step(farm, 5)) == _rows(_step(twin, 5))  # once only


def test_count_and_at_pick_the_last_telegrams_oldest_first_and_delay_them() -> None:
    """count=2 sends the meter's two last frames in their order, from ``at`` on, one air time
    plus a guard apart; nothing of them goes before the window holding ``at``."""
    farm = _farm()
    before = [_step(farm, k) for k in range(6)]
    row = 1
    at = T0 + 7 * W + 3.0
    manipulation.replay(farm, {"meter": _ident(farm, row), "count": 2, "at": at}, T0 + 6 * W)
    early, due = _step(farm, 6), _step(farm, 7)
    assert farm.counters.replayed == 2
    assert all(frame not in _last_frames(before, row) for _, _, frame in _rows(early))
    frames = [r for r in _rows(due) if r[2] in _last_frames(before, row)]
    assert [f for _, _, f in frames] == _last_frames(before, row)[-2:]
    gap = at + float(farm.airtime[row]) + GUARD_S
    assert [t for _, t, _ in frames] == [at, gap]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"meter": "99999999"}, "meter"),
        ({"meter": None, "count": 0}, "count"),
        ({"meter": None, "count": 17}, "count"),
        ({"meter": None, "count": True}, "count"),
        ({"meter": None, "at": T0}, "at"),
        ({"meter": None, "at": float("nan")}, "at"),
        ({"meter": None, "at": "soon"}, "at"),
    ],
)
def test_a_bad_replay_request_names_the_field_and_queues_nothing(
    params: dict[str, Any], field: str
) -> None:
    """Unknown meter, count outside 1..16, an ``at`` in the past or not a number: refused."""
    farm = _farm()
    for k in range(3):
        _step(farm, k)
    if params["meter"] is None:
        params = {**params, "meter": _ident(farm, 0)}
    with pytest.raises(RequestError) as info:
        manipulation.replay(farm, params, T0 + 3 * W)
    assert info.value.field == field
    assert len(farm.replays) == 0


def test_a_meter_not_heard_yet_cannot_be_replayed() -> None:
    """Before any window there is nothing recorded: the request names the meter."""
    farm = _farm()
    with pytest.raises(RequestError) as info:
        manipulation.replay(farm, {"meter": _ident(farm, 0)}, T0)
    assert info.value.field == "meter"
    assert "keeps" in str(info.value)


def test_the_recorder_drops_old_windows_beyond_its_budget_but_keeps_the_newest() -> None:
    """With a budget below one window only the newest window's frames can be replayed."""
    rec = Recorder(budget=1)
    offsets = np.array([0, 3], dtype=np.uint32)
    for k in range(3):
        data = np.full(3, k, dtype=np.uint8)
        rec.add(np.array([0]), np.array([float(k)]), np.array([k], np.uint8), offsets, data)
    assert rec.windows == 1
    assert [(r.t_sent, r.frame) for r in rec.last(0, 5)] == [(2.0, b"\x02\x02\x02")]
    assert rec.last(1, 5) == []
