"""Gateway store ingest: readings/s of ``Store.commit_readings`` against bare SQLite.

Run: ``.venv/bin/python benchmarks/gateway_store.py [--count N]``.

Each case commits the same readings (two values each, 1,000 meters) in
batches to a fresh file. The reference is a bare ``sqlite3`` loop writing the
same rows in the same run into the same tables (created by ``Store`` and
closed again, so indexes match), with the same journal and sync settings:
one ``executemany`` each for readings and values and one commit per batch; all
rows are built before the clock starts. The store adds validation, the
duplicate check, id assignment, the meter-state merge and its meter-state
checkpoints (a row per meter once there are 16 readings per meter since the
last, and at close), which the loop has no counterpart of.
``tables only`` is the same loop on a file with just the readings and values
tables and no index besides the keys: what the schema itself costs. Rates are
the best of several rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from smtestbed.services.gateway.schema import Reading, Value
from smtestbed.services.gateway.store import Store

ROUNDS = 3
METERS = 1000
TARGET = 0.5
Sync = Literal["FULL", "NORMAL"]

_BARE_SCHEMA = (
    "CREATE TABLE readings (id INTEGER PRIMARY KEY, meter TEXT, t_sim REAL, "
    "access_number INTEGER, message_counter INTEGER, frame_digest BLOB UNIQUE)",
    "CREATE TABLE reading_values (reading INTEGER, position INTEGER, quantity TEXT, unit TEXT, "
    "value REAL, storage_number INTEGER, tariff INTEGER, subunit INTEGER, function TEXT, "
    "PRIMARY KEY (reading, position)) WITHOUT ROWID",
    "CREATE TABLE meter_state (meter TEXT PRIMARY KEY, t_sim REAL, access_number INTEGER, "
    "message_counter INTEGER, counters TEXT)",
)
Rows = list[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]


def readings(count: int) -> list[Reading]:
    """Return ``count`` readings of METERS meters with an energy and a volume value."""
    out = []
    for n in range(count):
        k = n // METERS
        values = (
            Value(quantity="energy", unit="Wh", value=250.0 * k),
            Value(quantity="volume", unit="m^3", value=0.01 * k, storage_number=1),
        )
        digest = hashlib.sha256(n.to_bytes(8, "big")).digest()
        out.append(
            Reading(
                meter=f"{n % METERS:08d}",
                t_sim=900.0 * k,
                access_number=k % 256,
                message_counter=k,
                frame_digest=digest,
                values=values,
            )
        )
    return out


def _best(setup: Callable[[Path], Callable[[], object]], count: int) -> float:
    """Return readings/s of the fastest round; every round writes a fresh file."""
    best = float("inf")
    for r in range(ROUNDS):
        with tempfile.TemporaryDirectory() as tmp:
            work = setup(Path(tmp) / f"round{r}.db")
            start = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - start)
    return count / best


def _store_case(
    data: list[Reading], batch: int, sync: Sync
) -> Callable[[Path], Callable[[], object]]:
    def setup(path: Path) -> Callable[[], object]:
        def work() -> None:
            store = Store(path, synchronous=sync)
            for k in range(0, len(data), batch):
                store.commit_readings(data[k : k + batch])
            store.close()

        return work

    return setup


def _bare_rows(data: list[Reading], batch: int) -> Rows:
    """Return per batch the reading and value rows the store writes."""
    out: Rows = []
    for k in range(0, len(data), batch):
        chunk = list(enumerate(data[k : k + batch], start=k + 1))
        readings = [
            (i, r.meter, r.t_sim, r.access_number, r.message_counter, r.frame_digest)
            for i, r in chunk
        ]
        values = [
            (i, p, v.quantity, v.unit, v.value, v.storage_number, v.tariff, v.subunit, v.function)
            for i, r in chunk
            for p, v in enumerate(r.values)
        ]
        out.append((readings, values))
    return out


def _bare_case(
    rows: Rows, sync: Sync, *, store_schema: bool
) -> Callable[[Path], Callable[[], object]]:
    def setup(path: Path) -> Callable[[], object]:
        if store_schema:
            Store(path).close()

        def work() -> None:
            db = sqlite3.connect(path)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute(f"PRAGMA synchronous = {sync}")
            if not store_schema:
                for statement in _BARE_SCHEMA:
                    db.execute(statement)
            for readings, values in rows:
                db.executemany("INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?)", readings)
                db.executemany(
                    "INSERT INTO reading_values VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", values
                )
                db.commit()
            db.close()

        return work

    return setup


def run(count: int = 100_000) -> list[dict[str, Any]]:
    """Measure every case; return one row per case with the bare SQLite rates beside it."""
    data = readings(count)
    cases: tuple[tuple[int, Sync, int], ...] = (
        (500, "FULL", count),
        (500, "NORMAL", count),
        (50, "FULL", count // 10),
    )
    out = []
    for batch, sync, n in cases:
        rows = _bare_rows(data[:n], batch)
        rate = _best(_store_case(data[:n], batch, sync), n)
        reference = _best(_bare_case(rows, sync, store_schema=True), n)
        tables_only = _best(_bare_case(rows, sync, store_schema=False), n)
        out.append(
            {
                "case": f"commit_readings {n:,}, {batch}/transaction, synchronous={sync}",
                "unit": "readings/s",
                "rate": rate,
                "reference": reference,
                "tables only": tables_only,
                "target": f">= {TARGET:.1f}x bare sqlite3 ({rate / reference:.2f}x)",
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the cases and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="readings per case")
    args = parser.parse_args(argv)
    print(f"{'case':<62} {'rate':>8} {'reference':>10} {'tables only':>12}  target")
    for r in run(args.count):
        rates = f"{r['rate']:>8,.0f} {r['reference']:>10,.0f} {r['tables only']:>12,.0f}"
        print(f"{r['case']:<62} {rates}  {r['target']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
