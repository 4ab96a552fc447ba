"""Factories for channel tests: frame batches and models from a few settings."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from smtestbed.proto.batch import FrameBatch
from smtestbed.services.channel.config import ChannelConfig, scene_from_config
from smtestbed.services.channel.model import ChannelModel


def frames_batch(
    t_start: npt.ArrayLike,
    *,
    size: int = 50,
    mode: int | npt.ArrayLike = 1,
    x: float | npt.ArrayLike = 10.0,
    y: float | npt.ArrayLike = 0.0,
    tx_dbm: float | npt.ArrayLike = 14.0,
    meter: npt.ArrayLike | None = None,
    payload_seed: int = 0,
    frames: list[bytes] | None = None,
) -> FrameBatch:
    """Return a ``sim.frames`` batch: random ``size``-byte frames (or ``frames``) at ``t_start``."""
    t = np.asarray(t_start, dtype=np.float64)
    n = t.size
    if frames is None:
        rng = np.random.default_rng(payload_seed)
        frames = [bytes(rng.integers(0, 256, size, dtype=np.uint8)) for _ in range(n)]
    columns = {
        "t_start": t,
        "tx_power_dbm": np.broadcast_to(np.asarray(tx_dbm, dtype=np.float32), n).copy(),
        "x_m": np.broadcast_to(np.asarray(x, dtype=np.float32), n).copy(),
        "y_m": np.broadcast_to(np.asarray(y, dtype=np.float32), n).copy(),
        "mode": np.broadcast_to(np.asarray(mode, dtype=np.uint8), n).copy(),
        "meter": np.arange(n, dtype=np.uint32) if meter is None else np.asarray(meter, np.uint32),
    }
    return FrameBatch.from_frames(frames, {"window": 0}, columns)


def model(**settings: Any) -> ChannelModel:
    """Return a model of a ChannelConfig with ``settings`` (one receiver at the origin)."""
    return ChannelModel(scene_from_config(ChannelConfig(**settings)))


def ideal(**settings: Any) -> ChannelModel:
    """Return a model without noise, shadowing or capture (pure ALOHA), plus ``settings``."""
    base: dict[str, Any] = {"noise": False, "capture": False, "shadowing_sigma_db": 0.0}
    return model(**{**base, **settings})


def column(batch: FrameBatch, name: str) -> npt.NDArray[Any]:
    """Return a batch column as a numpy array."""
    col = batch.columns[name]
    return np.frombuffer(col, dtype=np.dtype(col.format))
