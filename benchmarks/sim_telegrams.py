"""Sensor farm telegram build + encrypt: compiled batch builder against the proto encoder.

Run: ``.venv/bin/python benchmarks/sim_telegrams.py [--scale X]`` (or through ``sim.py``).

Per security mode (0, 5, 7) one row: telegrams/s of ``build_telegrams`` on one core (an
equal mix of the four meter kinds; first compile excluded by a warm-up call, kernels cached)
next to the pure-Python reference, the proto encoder (``new_telegram`` + ``encode_telegram``
with the key, i.e. ``cryptography`` for every AES step) on the same meters with their records
already encoded. ``cryptography`` is the rate of one bare ``cryptography`` AES-CBC call per
telegram (cipher object built per call, as for per-meter keys), the floor the 10x target is
set against. Modes 5 and 7 get a second row with per-meter round keys expanded once
(``round_keys=expand_keys(key)``). The "farm entry" rows run ``telegram_rows.build_rows`` as
``Farm.step`` does: the meters' columns read in place (no per-telegram copies, no value
checks: the population guarantees them) with the farm's kept round keys, on one core; a
last row per encrypted mode runs it with ``parallel=True`` on all of Numba's threads (two
here), reported apart from the one-core target. Rates are the best of several rounds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any

import numba
import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from smtestbed.proto.records import encode_records
from smtestbed.proto.wmbus import MeterAddress, encode_telegram, new_telegram
from smtestbed.services.sensorfarm.aes import expand_keys
from smtestbed.services.sensorfarm.schema import N_VALUES, MeterKind
from smtestbed.services.sensorfarm.telegram_rows import build_rows
from smtestbed.services.sensorfarm.telegrams import build_telegrams
from smtestbed.services.sensorfarm.templates import records_for

ROUNDS = 3
SCALES = np.array([1e6, 1e5, 10.0, 90.0, 60.0])


def meters(count: int, mode: int, seed: int = 7) -> dict[str, Any]:
    """Return ``count`` random meters of all kinds in ``mode`` as builder columns."""
    rng = np.random.default_rng(seed)
    return {
        "ident": rng.integers(0, 100_000_000, count, dtype=np.uint32),
        "manufacturer": rng.integers(0x0400, 0x6B5A, count, dtype=np.uint16),
        "version": rng.integers(0, 256, count, dtype=np.uint8),
        "device_type": rng.integers(2, 8, count, dtype=np.uint8),
        "kind": (np.arange(count) % len(MeterKind)).astype(np.uint8),
        "security_mode": np.full(count, mode, dtype=np.uint8),
        "key": rng.integers(0, 256, (count, 16), dtype=np.uint8),
        "access_number": rng.integers(0, 256, count, dtype=np.uint8),
        "counter": rng.integers(0, 2**31, count, dtype=np.uint32),
        "values": rng.uniform(0.0, 1.0, (count, N_VALUES)) * SCALES,
    }


def _best(work: Callable[[], object], count: int, rounds: int = ROUNDS) -> float:
    """Return items/s of the fastest of ``rounds`` runs of ``work`` over ``count`` items."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return count / best


def _reference(columns: dict[str, Any], count: int) -> Callable[[], object]:
    """Return a run of the proto encoder over the first ``count`` meters."""
    mode = int(columns["security_mode"][0])
    jobs = []
    for i in range(count):
        address = MeterAddress(
            manufacturer=int(columns["manufacturer"][i]),
            ident=int(str(int(columns["ident"][i])), 16),
            version=int(columns["version"][i]),
            device_type=int(columns["device_type"][i]),
        )
        kind = MeterKind(int(columns["kind"][i]))
        records = encode_records(records_for(kind, columns["values"][i].tolist()))
        key = columns["key"][i].tobytes() if mode else None
        acc, mcr = int(columns["access_number"][i]), int(columns["counter"][i])
        jobs.append((address, records, key, acc, mcr))

    def run() -> list[bytes]:
        return [
            encode_telegram(
                new_telegram(
                    address=a, records=r, access_number=acc, security_mode=mode, counter=mcr
                ),
                key=k,
            )
            for a, r, k, acc, mcr in jobs
        ]

    return run


def _cryptography_call(count: int) -> float:
    """Return calls/s of one cryptography AES-128-CBC call (2 blocks) per telegram."""
    rng = np.random.default_rng(11)
    keys = [rng.bytes(16) for _ in range(count)]
    iv, plain = bytes(16), rng.bytes(32)

    def run() -> None:
        for key in keys:
            op = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
            op.update(plain)
            op.finalize()

    return _best(run, count)


def _row(
    case: str, rate: float, reference: float, crypto: float, cores: int = 1
) -> dict[str, object]:
    if cores == 1:
        target = ">= 1 M/s on one core; >= 10x one cryptography call"
    else:
        target = f"(not a target: {cores} cores) one cryptography call"
    return {
        "case": case,
        "unit": "telegrams/s",
        "rate": rate,
        "reference": reference,
        "numpy": None,
        "target": f"{target} ({crypto:,.0f}/s: {rate / crypto:.1f}x)",
        "cryptography": crypto,
    }


def _farm_entry(columns: dict[str, Any], *, parallel: bool) -> Callable[[], object]:
    """Return a run of build_rows over all meters as a table, with their kept round keys."""
    table = SimpleNamespace(
        ident=columns["ident"],
        manufacturer=columns["manufacturer"],
        version=columns["version"],
        device_type=columns["device_type"],
        kind=columns["kind"],
        security=columns["security_mode"],
        key=columns["key"],
        values=np.ascontiguousarray(columns["values"]),
    )
    rows = np.arange(table.ident.size, dtype=np.int64)
    round_keys = expand_keys(table.key)
    run = partial(
        build_rows,
        table,
        rows,
        access_number=columns["access_number"],
        counter=columns["counter"],
        round_keys=round_keys,
        parallel=parallel,
    )
    reference = build_telegrams(**columns)[1]
    if not np.array_equal(run()[1], reference):  # also loads or compiles the kernels
        raise AssertionError("build_rows differs from build_telegrams")
    return run


def run(scale: float = 1.0) -> list[dict[str, object]]:
    """Measure modes 0, 5 and 7: the public builder, kept round keys, the farm's entry."""
    count = max(1000, int(200_000 * scale))
    ref_count = max(200, int(5_000 * scale))
    crypto = _cryptography_call(ref_count * 4)
    rows: list[dict[str, object]] = []
    for mode in (0, 5, 7):
        columns = meters(count, mode)
        build_telegrams(**meters(64, mode, seed=1))  # warm-up: load or compile the kernels
        rate = _best(partial(build_telegrams, **columns), count)
        reference = _best(_reference(columns, ref_count), ref_count)
        rows.append(_row(f"telegram build + encrypt, mode {mode}", rate, reference, crypto))
        if mode:
            keys = expand_keys(columns["key"])
            kept = _best(partial(build_telegrams, **columns, round_keys=keys), count)
            case = f"telegram build + encrypt, mode {mode}, kept round keys"
            rows.append(_row(case, kept, reference, crypto))
        farm = _best(_farm_entry(columns, parallel=False), count)
        case = f"telegram build + encrypt, mode {mode}, farm entry (build_rows)"
        rows.append(_row(case, farm, reference, crypto))
        if mode:
            threads = numba.get_num_threads()
            both = _best(_farm_entry(columns, parallel=True), count)
            case = f"telegram build + encrypt, mode {mode}, farm entry, prange on {threads} cores"
            rows.append(_row(case, both, reference, crypto, cores=threads))
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the rows as a plain table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="problem size factor")
    args = parser.parse_args(argv)
    for row in run(args.scale):
        rate, ref = float(str(row["rate"])), float(str(row["reference"]))
        print(
            f"{row['case']:<66} {rate:>14,.0f} {row['unit']}  reference {ref:>10,.0f}"
            f"  ({rate / ref:,.0f}x)  target {row['target']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
