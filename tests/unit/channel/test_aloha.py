"""Acceptance: with capture, noise and interferers off the channel is pure ALOHA."""

from __future__ import annotations

import math

import numpy as np
import pytest
from smtestbed.services.channel import physics

from tests.unit.channel.scenes import frames_batch, ideal

FRAMES = 20_000  # standard error of the success fraction <= 0.0035
SIZE = 50


@pytest.mark.parametrize("load", [0.05, 0.1, 0.2, 0.5])
def test_success_fraction_is_exp_minus_2g(load: float) -> None:
    """At offered load G the fraction of frames received is within 0.02 of e^(-2G)."""
    airtime = physics.airtime_s(physics.MODE_T1, SIZE)
    window = FRAMES * airtime / load
    starts = np.sort(np.random.default_rng(int(load * 1000)).uniform(0.0, window, FRAMES))
    result = ideal(seed=3).process(frames_batch(starts, size=SIZE, mode=physics.MODE_T1))
    success = result.counters["delivered"] / FRAMES
    assert result.counters["lost_to_noise"] == 0
    assert result.counters["delivered"] + result.counters["collided"] == FRAMES
    assert success == pytest.approx(math.exp(-2.0 * load), abs=0.02)
