"""The statements that write a batch of readings into a gateway store.

Shared by :mod:`smtestbed.services.gateway.store` (writing on its own connection) and
:mod:`smtestbed.services.gateway.store_writer` (writing in a separate process), so both
write exactly the same rows. Imports nothing but :mod:`sqlite3`: the writer process loads
this module and little else.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

INSERT_READING = "INSERT INTO readings VALUES (?, ?, ?, ?, ?, ?)"
INSERT_FRESH = INSERT_READING + " ON CONFLICT (frame_digest) DO NOTHING"
INSERT_VALUE = "INSERT INTO reading_values VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
UPSERT_STATE = """
INSERT INTO meter_state VALUES (?, ?, ?, ?, ?) ON CONFLICT (meter) DO UPDATE SET
t_sim = excluded.t_sim, access_number = excluded.access_number,
message_counter = excluded.message_counter, counters = excluded.counters
"""
SET_CHECKPOINT = "UPDATE state_checkpoint SET reading = ?"
NEXT_ID = "SELECT coalesce(max(id), 0) + 1 FROM readings"


def insert_new(
    db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], first: int | None = None
) -> int | None:
    """Insert reading rows (without id) as ids ``first, first + 1, ...``; return ``first``.

    ``first`` defaults to the next free id; a caller that counted on another one (its
    value rows carry those ids) gets None and nothing is written. The common batch holds
    no frame digest stored before: all rows go in with one statement whose unique digest
    index finds any. When it finds one, nothing of the statement is kept and None is
    returned (the caller decides row by row). Runs inside the caller's transaction.
    """
    start: int = db.execute(NEXT_ID).fetchone()[0]
    if first is not None and first != start:
        return None
    db.execute("SAVEPOINT fresh")
    before = db.total_changes
    db.executemany(INSERT_FRESH, [(start + k, *row) for k, row in enumerate(rows)])
    if db.total_changes - before == len(rows):
        db.execute("RELEASE fresh")
        return start
    db.execute("ROLLBACK TO fresh")
    db.execute("RELEASE fresh")
    return None


DIGEST_CHUNK = 900
"""Bound parameters per ``IN (...)`` query."""


def stored_digests(db: sqlite3.Connection, digests: Sequence[bytes]) -> set[bytes]:
    """Return the frame digests of ``digests`` that are stored already."""
    found: set[bytes] = set()
    for k in range(0, len(digests), DIGEST_CHUNK):
        chunk = digests[k : k + DIGEST_CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT frame_digest FROM readings WHERE frame_digest IN ({marks})"
        found.update(r[0] for r in db.execute(sql, chunk))
    return found


def copy_positions(db: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Return the positions of reading rows (without id) whose frame digest is stored
    already or comes earlier in the batch: the copies, stored once only."""
    seen = stored_digests(db, [row[4] for row in rows])
    copies: list[int] = []
    for k, row in enumerate(rows):
        if row[4] in seen:
            copies.append(k)
        else:
            seen.add(row[4])
    return copies
