"""One simulation window of the sensor farm, without sockets.

:class:`Farm` owns the population and the seeded generator of the kernels.
:meth:`Farm.step` advances every counter over [t0, t1), picks the telegrams
due in the window, builds them (format A, link CRCs included) and returns
them as a frame batch with the per-frame columns the channel needs. The
same seed and configuration give the same batches, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from smtestbed.proto.batch import FrameBatch
from smtestbed.services.sensorfarm.aes import expand_keys
from smtestbed.services.sensorfarm.kernels import advance_counters, select_transmitters
from smtestbed.services.sensorfarm.models import airtime_per_meter, window_rates
from smtestbed.services.sensorfarm.population import Population
from smtestbed.services.sensorfarm.replay import Recorder, ReplayQueue
from smtestbed.services.sensorfarm.telegram_rows import build_rows
from smtestbed.services.sensorfarm.telegrams import build_telegrams

# A corrupted telegram has its last byte inverted: the last block's CRC then fails.
CORRUPT_MASK = 0xFF


@dataclass(slots=True)
class WindowCounters:
    """What the farm did, summed over its windows."""

    windows: int = 0
    sent: int = 0
    skipped_duty_cycle: int = 0
    corrupted: int = 0
    replayed: int = 0
    bytes: int = 0
    last: dict[str, int] = field(default_factory=dict)


class Farm:
    """The population and its per-window kernels."""

    def __init__(self, pop: Population, *, seed: int) -> None:
        self.pop = pop
        self.rng = np.random.default_rng([seed, 0x5EED])
        self.counters = WindowCounters()
        self.frame_bytes = frame_lengths(pop)
        self.airtime = airtime_per_meter(pop.mode, self.frame_bytes)
        # 176 bytes per meter; a meter whose key changed (manipulation.set_key, any write to
        # pop.key) is re-expanded when it next sends, so no caller has to tell the farm
        self.round_keys = expand_keys(pop.key)
        self.recorder = Recorder()  # what an attacker on the radio heard (meter.replay)
        self.replays = ReplayQueue()

    def refresh_airtime(self) -> None:
        """Recompute each meter's telegram air time (after a change of security mode)."""
        self.frame_bytes = frame_lengths(self.pop)
        self.airtime = airtime_per_meter(self.pop.mode, self.frame_bytes)

    def step(self, t0: float, t1: float) -> FrameBatch:
        """Advance the window [t0, t1) and return the telegrams sent in it."""
        pop = self.pop
        advance_counters(pop, window_rates(t0, t1), self.rng)
        tx = select_transmitters(pop, t0, t1, self.airtime, self.rng)
        m = tx.meter
        offsets, data = build_rows(
            pop,
            m,
            access_number=tx.access_number,
            counter=tx.message_counter,
            round_keys=self.round_keys,
        )
        corrupted = self._corrupt(m, offsets, data)
        self.recorder.add(m, tx.time_s, tx.access_number, offsets, data)
        columns: dict[str, npt.NDArray[Any]] = {
            "t_start": np.ascontiguousarray(tx.time_s, dtype=np.float64),
            "tx_power_dbm": pop.tx_power_dbm[m],
            "x_m": pop.x_m[m],
            "y_m": pop.y_m[m],
            "mode": pop.mode[m],
            "meter": m.astype(np.uint32),
        }
        offsets, data, replayed = self._add_replays(t0, t1, offsets, data, columns)
        self._count(len(m), tx.skipped, corrupted, replayed, len(data))
        return FrameBatch.from_buffers(
            offsets,
            data,
            meta={"t0": t0, "t1": t1, "window": self.counters.windows},
            columns=columns,
        )

    def _add_replays(
        self,
        t0: float,
        t1: float,
        offsets: npt.NDArray[np.uint32],
        data: npt.NDArray[np.uint8],
        columns: dict[str, npt.NDArray[Any]],
    ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint8], int]:
        """Append the replayed telegrams due in [t0, t1), sent from their meters' places."""
        due = self.replays.due(t0, t1)
        if not due:
            return offsets, data, 0
        rows = np.array([t.row for _, t in due], dtype=np.int64)
        frames = [t.frame for _, t in due]
        ends = np.cumsum([len(f) for f in frames], dtype=np.uint32) + offsets[-1]
        extra = {
            "t_start": np.array([at for at, _ in due], dtype=np.float64),
            "tx_power_dbm": self.pop.tx_power_dbm[rows],
            "x_m": self.pop.x_m[rows],
            "y_m": self.pop.y_m[rows],
            "mode": self.pop.mode[rows],
            "meter": rows.astype(np.uint32),
        }
        for name, values in extra.items():
            columns[name] = np.concatenate([columns[name], values])
        raw = np.frombuffer(b"".join(frames), dtype=np.uint8)
        return np.concatenate([offsets, ends]), np.concatenate([data, raw]), len(due)

    def _corrupt(
        self, m: npt.NDArray[np.int64], offsets: npt.NDArray[np.uint32], data: npt.NDArray[np.uint8]
    ) -> int:
        corrupted = 0
        for j in np.flatnonzero(self.pop.corrupt_next[m] > 0):  # few: meters told to corrupt
            row = m[j]
            if self.pop.corrupt_next[row] == 0:
                continue  # the same meter twice in one window: its budget ran out
            data[int(offsets[j + 1]) - 1] ^= CORRUPT_MASK
            self.pop.corrupt_next[row] -= 1
            corrupted += 1
        return corrupted

    def _count(self, sent: int, skipped: int, corrupted: int, replayed: int, size: int) -> None:
        c = self.counters
        c.windows += 1
        c.sent += sent
        c.skipped_duty_cycle += skipped
        c.corrupted += corrupted
        c.replayed += replayed
        c.bytes += size
        c.last = {
            "sent": sent,
            "skipped_duty_cycle": skipped,
            "corrupted": corrupted,
            "replayed": replayed,
            "bytes": size,
        }


def frame_lengths(pop: Population) -> npt.NDArray[np.int64]:
    """Return the length in bytes of each meter's telegram (format A, CRCs included).

    The length depends only on the meter's kind and security mode, so one
    telegram of each combination present is built and measured.
    """
    combos = np.unique(np.stack([pop.kind, pop.security], axis=1), axis=0)
    lengths = np.zeros(len(pop), dtype=np.int64)
    for kind, security in combos:
        offsets, _ = build_telegrams(
            ident=[0],
            manufacturer=[0x2C2D],
            version=[1],
            device_type=[2],
            kind=[kind],
            security_mode=[security],
            key=np.zeros((1, 16), np.uint8),
            access_number=[0],
            counter=[0],
            values=np.zeros((1, pop.values.shape[1])),
        )
        lengths[(pop.kind == kind) & (pop.security == security)] = int(offsets[1])
    return lengths
