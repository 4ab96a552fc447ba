"""Benchmark gateway measurement processing against bare AES-CBC and bare SQLite loops.

Run: ``.venv/bin/python benchmarks/gateway_processing.py``. One row per security mode:
frames/s of :class:`~smtestbed.services.gateway.processing.Pipeline` (CRC, registry, mode,
decrypt + verify, replay, records, plausibility; batches of ``BATCH`` frames, the store's
bookkeeping between them not timed) over frames of sensor-farm electricity and heat
meters (records from the farm's templates), in send order, so that a batch holds each meter
once as a receive window of the channel does.

``reference`` is a bare ``cryptography`` AES-128-CBC decrypt loop over the same ciphertexts
(one ``Cipher(...).decryptor()`` per frame; mode 7 with each frame's Kenc derived up front),
``sqlite`` a bare SQLite insert loop of one row per frame (meter, time, digest, first value;
WAL, one transaction per batch). ``target`` is half the slower of the two, the gateway's
acceptance figure. Rates are the best of ``ROUNDS`` interleaved rounds.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from smtestbed.proto.records import encode_records
from smtestbed.proto.wmbus import MeterAddress, decode_telegram, encode_telegram, new_telegram
from smtestbed.proto.wmbus.security import DC_ENC_FROM_METER, ZERO_IV, derive_key, mode5_iv
from smtestbed.services.gateway.processing import Pipeline, Plausibility, next_state
from smtestbed.services.gateway.schema import MeterEntry, MeterState, Reading
from smtestbed.services.sensorfarm.schema import DEVICE_TYPE, MeterKind
from smtestbed.services.sensorfarm.templates import records_for

METERS = 512
TELEGRAMS = 8  # per meter, access numbers 1..TELEGRAMS; a batch holds each meter once
BATCH = 256
ROUNDS = 5
MANUFACTURER = 0x15A8  # EMH


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """The frames of one security mode, the registry, and the bare loops' inputs."""

    mode: int
    frames: list[tuple[bytes, float]]
    registry: dict[str, MeterEntry]
    ciphertexts: list[tuple[bytes, bytes, bytes]]  # (key, IV, ciphertext)


def _key(meter: int) -> bytes:
    return bytes((meter + i) & 0xFF for i in range(16))


def _values(kind: MeterKind, meter: int, step: int) -> list[float]:
    """Return the five value columns of a meter after ``step`` telegrams (counters grow)."""
    base = 1_000_000.0 + 7_919 * meter + 1_013 * step
    if kind is MeterKind.ELECTRICITY:
        return [base, base / 10, 350.0 + step, 0.0, 0.0]
    return [base * 10, base / 1_000, 0.8 + step / 100, 65.0, 40.0 + step / 10]


def _frame(mode: int, meter: int, step: int) -> tuple[bytes, bytes, bytes]:
    """Return the frame of ``meter`` at ``step`` and its (IV, ciphertext) for the AES loop."""
    kind = (MeterKind.ELECTRICITY, MeterKind.HEAT)[meter % 2]
    address = MeterAddress(
        manufacturer=MANUFACTURER,
        ident=int(f"{10_000_000 + meter}", 16),
        version=1,
        device_type=DEVICE_TYPE[kind],
    )
    telegram = new_telegram(
        address=address,
        records=encode_records(records_for(kind, _values(kind, meter, step))),
        access_number=step,
        security_mode=mode,
        counter=step,
    )
    frame = encode_telegram(telegram, key=_key(meter))
    secret = decode_telegram(frame, records=False).payload  # all of it encrypted here
    iv = mode5_iv(address, step) if mode == 5 else ZERO_IV
    return frame, iv, secret


def case(mode: int) -> Case:
    """Build METERS x TELEGRAMS frames of ``mode``, in send order (all meters per step)."""
    frames, ciphertexts = [], []
    registry = {
        f"{10_000_000 + m}": MeterEntry(
            meter=f"{10_000_000 + m}", manufacturer="EMH", key=_key(m), security=mode
        )
        for m in range(METERS)
    }
    for step in range(1, TELEGRAMS + 1):
        for meter in range(METERS):
            frame, iv, secret = _frame(mode, meter, step)
            key = _key(meter)
            if mode == 7:
                key = derive_key(
                    key,
                    constant=DC_ENC_FROM_METER,
                    counter=step,
                    ident=int(f"{10_000_000 + meter}", 16),
                )
            frames.append((frame, 60.0 * step + meter / 100))
            ciphertexts.append((key, iv, secret))
    return Case(mode=mode, frames=frames, registry=registry, ciphertexts=ciphertexts)


def _process(item: Case) -> float:
    """Return frames/s of a fresh pipeline over the frames; commits between batches untimed.

    After each batch the store's part (meter states after the readings) is done outside the
    clock, then ``commit_done``, as the gateway does once the transaction has committed.
    """
    states: dict[str, MeterState] = {}
    line = Pipeline(item.registry.get, states.get, Plausibility())
    accepted, spent = 0, 0.0
    for start in range(0, len(item.frames), BATCH):
        begin = time.perf_counter()
        outcome = line.process(item.frames[start : start + BATCH])
        spent += time.perf_counter() - begin
        _commit(states, outcome.accepted)
        line.commit_done(outcome.accepted)
        accepted += len(outcome.accepted)
    if accepted != len(item.frames):
        raise RuntimeError(f"mode {item.mode}: {len(item.frames) - accepted} frames refused")
    return accepted / spent


def _commit(states: dict[str, MeterState], readings: Sequence[Reading]) -> None:
    for reading in readings:
        states[reading.meter] = next_state(states.get(reading.meter), reading)


def _aes(item: Case) -> int:
    for key, iv, secret in item.ciphertexts:
        op = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        op.update(secret)
        op.finalize()
    return len(item.ciphertexts)


def _sqlite(item: Case, folder: Path) -> int:
    """Insert one row per frame into a fresh WAL database, one transaction per batch."""
    path = folder / f"bare-{time.perf_counter_ns()}.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE r (meter TEXT, t REAL, digest BLOB UNIQUE, value REAL)")
        rows = [
            (f"{i % METERS}", t, frame[-32:] + i.to_bytes(4, "little"), float(i))
            for i, (frame, t) in enumerate(item.frames)
        ]
        for start in range(0, len(rows), BATCH):
            db.execute("BEGIN")
            db.executemany("INSERT INTO r VALUES (?, ?, ?, ?)", rows[start : start + BATCH])
            db.execute("COMMIT")
    finally:
        db.close()
    return len(item.frames)


def _rate(run: Callable[[], int]) -> float:
    start = time.perf_counter()
    count = run()
    return count / (time.perf_counter() - start)


def run() -> list[dict[str, Any]]:
    """Measure each mode; return rows with rate, references and target (frames/s)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in (5, 7):
            item = case(mode)
            _process(item)  # first layouts decoded, caches warm
            best = [0.0, 0.0, 0.0]
            for _ in range(ROUNDS):
                got = (
                    _process(item),
                    _rate(partial(_aes, item)),
                    _rate(partial(_sqlite, item, Path(tmp))),
                )
                best = [max(old, new) for old, new in zip(best, got, strict=True)]
            rows.append(
                {
                    "case": f"mode {mode} pipeline",
                    "unit": "frames/s",
                    "rate": best[0],
                    "reference": best[1],
                    "sqlite": best[2],
                    "target": 0.5 * min(best[1], best[2]),
                }
            )
    return rows


def main() -> None:
    """Print the table."""
    print(f"{'case':20} {'frames/s':>10} {'AES loop':>10} {'SQLite':>10} {'target':>10} {'met':>4}")
    for row in run():
        met = "yes" if row["rate"] >= row["target"] else "no"
        print(
            f"{row['case']:20} {row['rate']:10.0f} {row['reference']:10.0f}"
            f" {row['sqlite']:10.0f} {row['target']:10.0f} {met:>4}"
        )
    print(f"{METERS} meters (electricity, heat) x {TELEGRAMS} telegrams, batches of {BATCH}")


if __name__ == "__main__":
    main()
