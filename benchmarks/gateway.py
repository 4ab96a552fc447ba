"""Gateway ingest: accepted frames/s (decrypt + verify + store) against bare loops.

Run: ``.venv/bin/python benchmarks/gateway.py [--frames N] [--instances K] [--rounds R]``.

Every side runs ``R`` times (default 3) in the same process; the table shows the medians
and, for the ratio, each round's own as well.

The frames are real mode-5 telegrams from the sensor farm's builder. The gateway
path is the service's: :class:`~smtestbed.services.gateway.ingest.Committer`
(measurement processing and each batch's rows prepared on the calling thread;
one SQLite transaction per batch in WAL mode with ``synchronous=FULL``, run by
the store writer process, :mod:`~smtestbed.services.gateway.store_writer`; the
signed log entries written on the commit threads; a frame counts once its
transaction has committed and its log entries are written). So the gateway
uses two processes, as the service does, each on its half of the CPUs as the service
puts them (``cpu_split``, :mod:`~smtestbed.services._runtime.cpus`), where each bare
loop is one thread (on any CPU); the
column ``inline/s`` is the same ingest with the stores written on the gateway's own
threads (``store_writer = "inline"``), in the same run. The baselines, run in the
same process on the same data: one ``cryptography`` AES-128-CBC decryption per
frame, and a bare ``sqlite3`` insert of the rows the gateways stored (each reading
with its SHA-256 frame digest under a unique index, and its values; same batches,
one file per instance, WAL, FULL) into two tables without further indexes, built
before the clock starts.

Steady state is measured: every side first runs an untimed warm-up round, one
telegram of every meter, then the clock runs over the timed rounds. The
gateways ingest their warm-up frames as they would the first window after a
start (header memory, record layouts, consumer logs and meter states filled;
the ingest path itself is the same), and then settle their heap with
:func:`~smtestbed.services._runtime.heap.settle_heap` as the service does
once its instances are open; the AES loop decrypts the warm-up frames and the
SQLite loop inserts the warm-up rows, in the same batches, before its clock
starts.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.proto.wmbus.link import strip_crcs_a
from smtestbed.services._runtime import cpus
from smtestbed.services._runtime.heap import settle_heap
from smtestbed.services.gateway.ingest import Committer, Job
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.schema import MeterEntry, Taf
from smtestbed.services.gateway.store_writer import StoreWriter
from smtestbed.services.sensorfarm.population import Population, generate
from smtestbed.services.sensorfarm.rounds import telegram_rounds

BATCH = 2000
METERS_PER_GATEWAY = 50


def make_frames(pop: Population, rounds: int) -> list[tuple[bytes, float, int]]:
    """Return (frame, t_sim, meter row) for ``rounds`` telegrams of every meter, in time order."""
    return telegram_rounds(pop, rounds)


def entry(pop: Population, i: int) -> MeterEntry:
    """Return the registry entry of meter ``i``."""
    return MeterEntry(
        meter=f"{int(pop.ident[i]):08d}",
        manufacturer=decode_manufacturer(int(pop.manufacturer[i])),
        key=bytes(pop.key[i]),
        security=int(pop.security[i]),
        tafs=frozenset({Taf.TAF7}),
        consumer=f"c{i % 10}",
        emt="emt-a",
    )


def gateway_rate(
    pop: Population,
    frames: list[tuple[bytes, float, int]],
    root: Path,
    instances: int,
    *,
    inline: bool = False,
) -> tuple[float, int]:
    """Ingest the frames into ``instances`` gateways; return (frames/s, accepted).

    The first round (one frame per meter) is the untimed warm-up. ``inline`` writes the
    stores on the service's own threads (``store_writer = "inline"``) instead of the
    writer process. With the writer, the CPUs are split between this process and the
    writer as the service splits them (``cpu_split = "auto"``), for the time of the call.
    """
    # as the service with cpu_split = "auto": itself on the lower half of the CPUs, the
    # writer process on the upper half (nothing to split without a writer)
    cut = None if inline else cpus.split(cpus.allowed())
    before = None if cut is None else cpus.pin_threads(cut.service)
    writer = None if inline else StoreWriter(None if cut is None else cut.helper)
    if writer is not None:
        writer.start()
    gws = [GatewayInstance(f"gw{k}", root / f"gw{k}", writer=writer) for k in range(instances)]
    for k, gw in enumerate(gws):
        gw.registry.add_many(entry(pop, i) for i in range(k, len(pop), instances))
    warm = _per_instance(frames[: len(pop)], instances)
    per = _per_instance(frames[len(pop) :], instances)
    with Committer() as committer:
        committer.ingest(_jobs(gws, warm))
        settle_heap()
        start = time.perf_counter()
        accepted = sum(len(r.accepted) for r in committer.ingest(_jobs(gws, per)))
        elapsed = time.perf_counter() - start
    for gw in gws:
        gw.close()
    if writer is not None:
        writer.close()
    if before is not None:
        cpus.pin_threads(before)  # the bare loops run where they would without a gateway
    return accepted / elapsed, accepted


def _per_instance(
    frames: list[tuple[bytes, float, int]], instances: int
) -> list[list[tuple[bytes, float]]]:
    per: list[list[tuple[bytes, float]]] = [[] for _ in range(instances)]
    for frame, t, i in frames:
        per[i % instances].append((frame, t))
    return per


def _jobs(gws: list[GatewayInstance], per: list[list[tuple[bytes, float]]]) -> Iterator[Job]:
    """Yield each instance's frames in batches of BATCH, instance after instance (as the
    service hands a received window to :class:`Committer`)."""
    for gw, rows in zip(gws, per, strict=True):
        for k in range(0, len(rows), BATCH):
            yield gw, rows[k : k + BATCH]


def aes_rate(pop: Population, frames: list[tuple[bytes, float, int]]) -> float:
    """Decrypt each frame's encrypted part with one cryptography call per frame.

    The first round (one frame per meter) is the untimed warm-up.
    """
    jobs = []
    for frame, _, i in frames:
        plain = strip_crcs_a(frame)
        iv = plain[2:10] + bytes([plain[11]]) * 8  # M + A + ACC x 8 (CI 0x7A at 10)
        jobs.append((bytes(pop.key[i]), iv, plain[15 : 15 + (len(plain) - 15) // 16 * 16]))
    _decrypt(jobs[: len(pop)])
    timed = jobs[len(pop) :]
    start = time.perf_counter()
    _decrypt(timed)
    return len(timed) / (time.perf_counter() - start)


def _decrypt(jobs: list[tuple[bytes, bytes, bytes]]) -> None:
    for key, iv, data in jobs:
        d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        d.update(data)
        d.finalize()


def stored_rows(path: Path) -> list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    """Return each reading row of a gateway store with its value rows, in id order."""
    db = sqlite3.connect(path)
    values: dict[int, list[tuple[Any, ...]]] = {}
    for row in db.execute("SELECT * FROM reading_values ORDER BY reading, position"):
        values.setdefault(row[0], []).append(row)
    out = [(r, values.get(r[0], [])) for r in db.execute("SELECT * FROM readings ORDER BY id")]
    db.close()
    return out


def sqlite_rate(root: Path, pop: Population, instances: int) -> float:
    """Insert what each gateway stored with bare sqlite3: one file per instance (WAL, FULL),
    the same readings and value rows in the same batches (warm-up rows untimed), no checks."""
    per = [stored_rows(root / f"gw{k}" / "store.sqlite") for k in range(instances)]
    warm = [len(range(k, len(pop), instances)) for k in range(instances)]
    dbs = [_bare_db(root / f"bare{k}.sqlite") for k in range(instances)]
    for db, rows, n in zip(dbs, per, warm, strict=True):
        _bare_batches(db, rows[:n])
    start = time.perf_counter()
    for db, rows, n in zip(dbs, per, warm, strict=True):
        _bare_batches(db, rows[n:])
    elapsed = time.perf_counter() - start
    for db in dbs:
        db.close()
    return sum(len(rows) - n for rows, n in zip(per, warm, strict=True)) / elapsed


def _bare_batches(
    db: sqlite3.Connection, rows: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]
) -> None:
    for k in range(0, len(rows), BATCH):
        _bare_insert(db, rows[k : k + BATCH])


def _bare_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    db.execute(
        "CREATE TABLE r (id INTEGER PRIMARY KEY, meter TEXT, t REAL, acc INT, mc INT, "
        "digest BLOB UNIQUE)"
    )
    db.execute(
        "CREATE TABLE v (reading INT, pos INT, q TEXT, u TEXT, value REAL, s INT, "
        "t INT, sub INT, f TEXT, PRIMARY KEY (reading, pos)) WITHOUT ROWID"
    )
    return db


def _bare_insert(
    db: sqlite3.Connection, rows: list[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]
) -> None:
    db.execute("BEGIN")
    db.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?)", [r for r, _ in rows])
    db.executemany(
        "INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [v for _, vs in rows for v in vs]
    )
    db.execute("COMMIT")


def run(frames_total: int = 40_000, instances: int = 1000, rounds: int = 3) -> list[dict[str, Any]]:
    """Measure one gateway and ``instances`` gateways against the two bare loops.

    Each case runs ``rounds`` times, every side in every round (the gateway, then inline,
    then the two bare loops, on fresh files); a column shows the median of its rounds and
    the ratio is that of the medians. ``ratios`` lists each round's own ratio.
    """
    rows: list[dict[str, Any]] = []
    cases: list[tuple[str, int, int]] = [
        ("1 gateway", 1, 500),
        (f"{instances} gateways", instances, instances * METERS_PER_GATEWAY),
    ]
    for label, count, meters in cases:
        pop = generate(meters, seed=11, security=5, mix={"electricity": 1.0})
        frames = make_frames(pop, 1 + max(1, frames_total // meters))  # 1 warm-up round
        seen: dict[str, list[float]] = {"rate": [], "inline": [], "aes": [], "sqlite": []}
        accepted = 0
        for _ in range(max(1, rounds)):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                rate, accepted = gateway_rate(pop, frames, root, count)
                seen["rate"].append(rate)
                seen["inline"].append(
                    gateway_rate(pop, frames, root / "inline", count, inline=True)[0]
                )
                seen["aes"].append(aes_rate(pop, frames))
                seen["sqlite"].append(sqlite_rate(root, pop, count))
        row: dict[str, Any] = {k: statistics.median(v) for k, v in seen.items()}
        row["ratio"] = row["rate"] / min(row["aes"], row["sqlite"])
        row["ratios"] = [
            r / min(a, b) for r, a, b in zip(seen["rate"], seen["aes"], seen["sqlite"], strict=True)
        ]
        row["case"] = f"{label}, {len(frames) - meters:,} mode-5 frames ({accepted:,} accepted)"
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40_000)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every side; medians")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"gateway ingest (same run, median of {args.rounds} rounds;"
        " target: >= 0.5 of the slower bare loop)"
    )
    cols: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("case", lambda r: str(r["case"])),
        ("accepted/s", lambda r: f"{r['rate']:,.0f}"),
        ("inline/s", lambda r: f"{r['inline']:,.0f}"),
        ("bare AES-CBC/s", lambda r: f"{r['aes']:,.0f}"),
        ("bare SQLite/s", lambda r: f"{r['sqlite']:,.0f}"),
        ("ratio vs slower", lambda r: f"{r['ratio']:.2f}"),
        ("rounds' ratios", lambda r: " ".join(f"{x:.3f}" for x in r["ratios"])),
    ]
    for name, _ in cols:
        table.add_column(name, justify="left" if name == "case" else "right")
    for row in run(args.frames, args.instances, args.rounds):
        table.add_row(*(fmt(row) for _, fmt in cols))
    Console(width=170).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
