"""The EMT's store: accepted TAF records, the signed batches they came in, meter bindings.

One SQLite file in WAL mode (``synchronous=FULL``: a record counts as received
only once its transaction is on disk, and only then is it acknowledged).

- ``records``: one row per (gateway, queue id), the gateway being the signer
  certificate's CN; a resent record is kept once and acknowledged again.
- ``batches``: every accepted delivery as received (content bytes, signature,
  signer chain), so each record can be proven again later.
- ``meter_gateways``: which gateway a meter's data comes from. Rule: a meter
  configured for a gateway (``bindings``) is accepted only from that gateway;
  otherwise the first gateway that delivered it is bound to it, and records of
  it from any other gateway are refused (``meter_not_of_gateway``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding
from smtestbed.proto.delivery import Refusal, canonical
from smtestbed.services._runtime.errors import TestbedError
from smtestbed.services._runtime.transactions import write_transaction
from smtestbed.services.wan.emt_verify import VerifiedBatch

__all__ = ["AcceptOutcome", "EmtStore", "EmtStoreError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY,
    gateway TEXT NOT NULL,
    signer_serial TEXT NOT NULL,
    content BLOB NOT NULL,
    signature BLOB NOT NULL,
    hash TEXT NOT NULL,
    chain TEXT NOT NULL,
    received REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    gateway TEXT NOT NULL,
    id INTEGER NOT NULL,
    taf TEXT NOT NULL,
    meter TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    received REAL NOT NULL,
    batch INTEGER NOT NULL REFERENCES batches (id),
    PRIMARY KEY (gateway, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_meter ON records (meter, taf);
CREATE TABLE IF NOT EXISTS meter_gateways (meter TEXT PRIMARY KEY, gateway TEXT NOT NULL);
"""
_FIELDS = ("gateway", "id", "taf", "meter", "payload", "created", "received", "batch")


class EmtStoreError(TestbedError):
    """The EMT store cannot be opened or written."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptOutcome:
    """What :meth:`EmtStore.accept` did with a batch.

    Attributes:
        accepted: ids the EMT now holds (new and already held ones).
        new: how many of them were stored just now.
        refused: (id, reason) of records not taken.
    """

    accepted: tuple[int, ...]
    new: int
    refused: tuple[tuple[int, str], ...]


class EmtStore:
    """One EMT's SQLite file (created when missing)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise EmtStoreError(f"{self.path}: cannot open EMT store: {exc}") from exc
        self._db: sqlite3.Connection | None = db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db is None:
                raise EmtStoreError(f"{self.path}: store is closed")
            with write_transaction(self._db, path=self.path, error=EmtStoreError) as db:
                yield db

    def accept(
        self, verified: VerifiedBatch, *, received: float, bindings: Mapping[str, str]
    ) -> AcceptOutcome:
        """Store a verified batch and those of its records whose meter is the gateway's.

        Args:
            verified: the batch the checks passed.
            received: time of receipt, s since the epoch.
            bindings: configured meter -> gateway CN (see the module docstring).
        """
        gateway = verified.gateway
        accepted: list[int] = []
        refused: list[tuple[int, str]] = []
        with self._transaction() as db:
            batch = _insert_batch(db, verified, received)
            new = 0
            for record in verified.content.records:
                if not _meter_is_of(db, record.meter, gateway, bindings):
                    refused.append((record.id, str(Refusal.METER_NOT_OF_GATEWAY)))
                    continue
                row = (gateway, record.id, record.taf, record.meter)
                payload = canonical(record.payload).decode()
                cursor = db.execute(
                    "INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (*row, payload, record.created, received, batch),
                )
                new += cursor.rowcount
                accepted.append(record.id)
        return AcceptOutcome(accepted=tuple(accepted), new=new, refused=tuple(refused))

    def records(
        self,
        *,
        gateway: str | None = None,
        meter: str | None = None,
        taf: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Return stored records, by gateway and queue id, filtered by the given fields."""
        where = [f"{k} = ?" for k, v in (("gateway", gateway), ("meter", meter), ("taf", taf)) if v]
        params: list[Any] = [v for v in (gateway, meter, taf) if v]
        sql = "SELECT * FROM records" + (" WHERE " + " AND ".join(where) if where else "")
        with self._transaction() as db:
            rows = db.execute(sql + " ORDER BY gateway, id LIMIT ?", (*params, limit)).fetchall()
        out = [dict(zip(_FIELDS, row, strict=True)) for row in rows]
        for item in out:
            item["payload"] = json.loads(item["payload"])
        return out

    def count(self) -> int:
        """Return the number of stored records."""
        with self._transaction() as db:
            return int(db.execute("SELECT count(*) FROM records").fetchone()[0])

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _insert_batch(db: sqlite3.Connection, verified: VerifiedBatch, received: float) -> int:
    batch = verified.batch
    chain = "".join(c.public_bytes(Encoding.PEM).decode() for c in batch.chain)
    cursor = db.execute(
        "INSERT INTO batches (gateway, signer_serial, content, signature, hash, chain, received)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            verified.gateway,
            verified.signer_serial,
            batch.content,
            batch.signature,
            batch.hash,
            chain,
            received,
        ),
    )
    return int(cursor.lastrowid or 0)


def _meter_is_of(
    db: sqlite3.Connection, meter: str, gateway: str, bindings: Mapping[str, str]
) -> bool:
    configured = bindings.get(meter)
    if configured is not None:
        return configured == gateway
    row = db.execute("SELECT gateway FROM meter_gateways WHERE meter = ?", (meter,)).fetchone()
    if row is not None:
        return bool(row[0] == gateway)
    db.execute("INSERT INTO meter_gateways VALUES (?, ?)", (meter, gateway))
    return True
