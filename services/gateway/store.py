"""The gateway's store: one SQLite file per gateway instance, WAL mode.

A reading counts as accepted only after the transaction holding it commits;
:meth:`Store.commit_readings` writes a whole batch (readings and their values)
in one transaction, so a batch is either stored completely or not at all.

Meter state (what replay and plausibility checks compare with) is kept in
memory and follows from the stored readings alone: per meter, its last
reading's time stamp, access number and message counter, and the latest
instantaneous value of each register. The file holds it as a checkpoint:
``meter_state`` is every meter's state as after reading
``state_checkpoint.reading``, written in the same transaction as that reading
once the readings stored since the previous checkpoint are at least
:data:`CHECKPOINT_READINGS` per meter (and at close). Opening the file replays
the readings after the checkpoint on top. So a crash at any point leaves a
consistent state, and a batch does not rewrite the state row of each of its
meters (as many rows as readings when every meter sends once per batch).

Durability: the file runs in WAL mode with ``synchronous=FULL``. With WAL,
``NORMAL`` already survives a killed *process* (a commit is in the WAL file,
in the OS page cache, when ``COMMIT`` returns), but a power loss or kernel
crash can lose the last commits. ``FULL`` syncs the WAL at every commit, so
"a killed gateway loses nothing it acknowledged" also holds when the whole
machine dies; batching (hundreds of readings per commit) keeps the cost of
that one fsync per batch small. ``synchronous="NORMAL"`` can be chosen for
load runs where only process crashes matter.

Readings do not reference the meters table: a meter removed from the
registry keeps its stored readings (billing and legal metrology need them).
``reading_values`` references ``readings`` with foreign keys on.

One :class:`Store` object owns a file at a time (it caches the meter state);
methods may be called from several threads, one at a time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import operator
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from smtestbed.services._runtime.errors import RequestError, TestbedError
from smtestbed.services._runtime.transactions import write_transaction
from smtestbed.services.gateway.schema import MeterState, Reading, Taf, Value, meter_state
from smtestbed.services.gateway.store_checks import (
    MAX_INT,
    check,
    processed_row,
    queue_row,
    reading_row,
)
from smtestbed.services.gateway.store_sql import (
    INSERT_READING,
    INSERT_VALUE,
    NEXT_ID,
    SET_CHECKPOINT,
    UPSERT_STATE,
    copy_positions,
    insert_new,
)
from smtestbed.services.gateway.store_writer import (
    StoreWriter,
    WriterError,
    encode_write,
)

SCHEMA_VERSION = 2
CounterKey = tuple[str, str, int, int, int]

CHECKPOINT_READINGS = 16
"""Meter states are written to the file once the readings stored since the last time are
at least this many per meter with a state (and at least :data:`CHECKPOINT_MIN`)."""
CHECKPOINT_MIN = 1000

_SCHEMA = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
CREATE TABLE meters (
    meter TEXT PRIMARY KEY,
    manufacturer TEXT NOT NULL,
    key BLOB NOT NULL,
    security INTEGER NOT NULL,
    tafs TEXT NOT NULL,
    consumer TEXT NOT NULL,
    emt TEXT NOT NULL
);
CREATE TABLE readings (
    id INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    t_sim REAL NOT NULL,
    access_number INTEGER NOT NULL,
    message_counter INTEGER NOT NULL,
    frame_digest BLOB NOT NULL UNIQUE
);
CREATE INDEX readings_meter_time ON readings (meter, t_sim);
CREATE TABLE reading_values (
    reading INTEGER NOT NULL REFERENCES readings (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    quantity TEXT NOT NULL,
    unit TEXT NOT NULL,
    value REAL NOT NULL,
    storage_number INTEGER NOT NULL,
    tariff INTEGER NOT NULL,
    subunit INTEGER NOT NULL,
    function TEXT NOT NULL,
    PRIMARY KEY (reading, position)
) WITHOUT ROWID;
CREATE TABLE meter_state (
    meter TEXT PRIMARY KEY,
    t_sim REAL NOT NULL,
    access_number INTEGER NOT NULL,
    message_counter INTEGER NOT NULL,
    counters TEXT NOT NULL
);
CREATE TABLE state_checkpoint (reading INTEGER NOT NULL);
INSERT INTO state_checkpoint VALUES (0);
CREATE TABLE emt_queue (
    id INTEGER PRIMARY KEY,
    emt TEXT NOT NULL,
    taf TEXT NOT NULL,
    meter TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    delivered REAL
);
CREATE INDEX emt_queue_pending ON emt_queue (emt, id) WHERE delivered IS NULL;
"""

_READINGS = """
WITH r AS (
    SELECT * FROM readings WHERE meter = ? AND t_sim >= ? AND t_sim < ?
    ORDER BY t_sim, id LIMIT ?
)
SELECT r.*, v.quantity, v.unit, v.value, v.storage_number, v.tariff, v.subunit, v.function
FROM r LEFT JOIN reading_values v ON v.reading = r.id ORDER BY r.t_sim, r.id, v.position
"""
_SERIES = """
SELECT r.t_sim, v.value FROM readings r JOIN reading_values v ON v.reading = r.id
WHERE r.meter = ? AND r.t_sim >= ? AND r.t_sim < ? AND v.quantity = ? AND v.unit = ?
AND v.storage_number = ? AND v.tariff = ? AND v.subunit = ? AND v.function = ?
ORDER BY r.t_sim, r.id, v.position
"""
_REPLAY = """
SELECT r.id, r.meter, r.t_sim, r.access_number, r.message_counter,
v.quantity, v.unit, v.value, v.storage_number, v.tariff, v.subunit, v.function
FROM readings r LEFT JOIN reading_values v ON v.reading = r.id
WHERE r.id > ? ORDER BY r.id, v.position
"""
_READING_FIELDS = ("meter", "t_sim", "access_number", "message_counter", "frame_digest")
_VALUE_FIELDS = ("quantity", "unit", "value", "storage_number", "tariff", "subunit", "function")
_to_json = json.JSONEncoder(separators=(",", ":")).encode
_COUNTER_FUNCTION = "instantaneous"


class StoreError(TestbedError):
    """The store file cannot be opened or written (not a store, newer schema, disk full, closed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QueuedRecord:
    """A record a tariff use case produced for an EMT, waiting for delivery.

    Attributes:
        id: queue id (ascending in enqueue order), used to acknowledge it.
        emt: the market participant that receives it.
        taf: the tariff use case that produced it.
        meter: the meter it is about.
        payload: the record, a JSON value.
        created: when it was queued, s (caller's clock; wall clock by default).
    """

    id: int
    emt: str
    taf: Taf
    meter: str
    payload: Any
    created: float


class StagedBatch:
    """A batch prepared by :meth:`Store.stage_processed` whose transaction is not ended yet.

    Exactly one of :meth:`commit` and :meth:`rollback` ends it, on any thread. Without a
    writer process the rows are written already, in a transaction left open on the store's
    connection, and the store stays locked until then. With one, the batch is on its way
    to the writer, which runs the store's batches one after the other in the order they
    were staged, and :meth:`commit` waits for its answer; the store is not locked
    meanwhile, so the next batch can be staged (see :meth:`Store.stage_processed`).

    Attributes:
        ids: each reading's id, None for a duplicate (valid once committed).
    """

    __slots__ = ("_done", "_remote", "_store", "_written", "ids")

    def __init__(
        self,
        store: Store,
        ids: list[int | None],
        written: _Written,
        remote: _Remote | None = None,
    ) -> None:
        self._store = store
        self._written = written
        self._remote = remote
        self._done = False
        self.ids = ids

    def commit(self) -> list[int | None]:
        """Commit the transaction (the readings are stored now) and unlock the store.

        Raises:
            StoreError: the commit failed; nothing of the batch is kept (with a writer
                process that ended before answering: the batch may have committed, and the
                store reads its meter states from the file again before the next batch).
        """
        self._end(commit=True)
        return self.ids

    def rollback(self) -> None:
        """Drop the transaction and unlock the store."""
        self._end(commit=False)

    def _end(self, *, commit: bool) -> None:
        if self._done:
            raise StoreError(f"{self._store.path}: staged batch already ended")
        self._done = True
        if self._remote is None:
            self._store._finish(self._written, commit)
        else:
            self.ids = self._store._finish_remote(self._remote, commit)


class _Remote(NamedTuple):
    """A batch handed to the writer process."""

    answer: Future[Any] | None  # None: no reading to write
    first: int  # the id of its first reading
    size: int  # its readings


class Store:
    """One gateway instance's SQLite file: registry, readings, meter state, EMT queue.

    Args:
        path: the database file; created with the current schema when missing.
        synchronous: ``"FULL"`` (default: survives power loss) or ``"NORMAL"``
            (survives a killed process only); see the module docstring.
        writer: a writer process that runs the transactions of :meth:`stage_processed`
            (see :mod:`~smtestbed.services.gateway.store_writer`); None writes them on
            this store's own connection.

    Raises:
        StoreError: the file is not a store, or has another schema version.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        writer: StoreWriter | None = None,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise RequestError("must be FULL or NORMAL", field="synchronous")
        self.path = Path(path)
        self._synchronous = synchronous
        self._writer = writer
        self._lock = threading.Lock()
        # With a writer: batches handed over and not yet answered; the states read from
        # the file again once none is (a batch failed or held copies of stored frames);
        # the id of the next batch's first reading (None: the file says).
        self._inflight = 0
        self._quiet = threading.Condition(self._lock)
        self._stale = False
        self._next_id: int | None = None
        try:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open store: {exc}") from exc
        try:
            self._open(db, synchronous)
            self._states, replayed = _load_states(db)
        except sqlite3.Error as exc:
            db.close()
            raise StoreError(f"{self.path}: not a gateway store: {exc}") from exc
        except StoreError:
            db.close()
            raise
        # the meters whose state changed after the checkpoint, and the readings stored since
        self._dirty = {meter for meter, _ in replayed}
        self._since = len(replayed)
        self._db: sqlite3.Connection | None = db

    def _open(self, db: sqlite3.Connection, synchronous: str) -> None:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA synchronous = {synchronous}")
        db.execute("PRAGMA foreign_keys = ON")
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("BEGIN IMMEDIATE")
        try:
            self._check_schema(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _check_schema(self, db: sqlite3.Connection) -> None:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            return
        row = None
        if "schema_version" in tables:
            row = db.execute("SELECT version FROM schema_version").fetchone()
        if row is not None and row[0] == 1:
            # Version 1 wrote every meter's state with each of its readings: the states
            # are those after the last stored reading.
            db.execute("CREATE TABLE state_checkpoint (reading INTEGER NOT NULL)")
            db.execute("INSERT INTO state_checkpoint SELECT coalesce(max(id), 0) FROM readings")
            db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            return
        if row is None or row[0] != SCHEMA_VERSION:
            found = "none" if row is None else row[0]
            raise StoreError(
                f"{self.path}: schema version {found}, this gateway needs {SCHEMA_VERSION}"
            )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one write transaction; roll it back completely on any error.

        For partitions that keep a table in this file (the registry's ``meters``).

        Raises:
            StoreError: SQLite refused a statement or the commit (nothing is kept).
        """
        with (
            self._lock,
            write_transaction(self._live(), path=self.path, error=StoreError) as db,
        ):
            yield db

    def _live(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError(f"{self.path}: store is closed")
        return self._db

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Return all rows of one read statement; SQLite errors raise StoreError."""
        with self._lock:
            try:
                return self._live().execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: query failed: {exc}") from exc

    # -- readings ---------------------------------------------------------------------------

    def commit_readings(self, readings: Sequence[Reading]) -> list[int]:
        """Store a batch of readings in one transaction; return the ids of the new ones.

        A reading whose ``frame_digest`` is already stored (or appears earlier in
        the batch) is skipped, so each frame is stored exactly once. The ids are
        ascending in batch order; a caller that needs to know which readings
        were duplicates uses :meth:`commit_batch`, which answers per reading.

        Raises:
            RequestError: a reading has a wrong type or value (nothing is stored).
            StoreError: the transaction failed (nothing is stored).
        """
        return [i for i in self.commit_batch(readings) if i is not None]

    def commit_batch(self, readings: Sequence[Reading]) -> list[int | None]:
        """Store a batch like :meth:`commit_readings`; answer per reading: its id, or None.

        None marks a duplicate (frame digest stored before or earlier in the batch).
        """
        return self._commit([reading_row(r, i) for i, r in enumerate(readings)], readings)

    def commit_processed(self, readings: Sequence[Reading]) -> list[int | None]:
        """Store readings built by measurement processing like :meth:`commit_batch`.

        The gateway's own entry point: processing built these readings with checked types
        and ranges, so of each reading only its time stamp is checked again.
        """
        return self._commit([processed_row(r, i) for i, r in enumerate(readings)], readings)

    @property
    def pipelined(self) -> bool:
        """True with a writer process: :meth:`stage_processed` hands a batch over and the
        next may be staged before it has committed (the writer refuses every batch after
        one that failed)."""
        return self._writer is not None

    def stage_processed(self, readings: Sequence[Reading]) -> StagedBatch:
        """Write readings built by measurement processing in a transaction left open.

        Like :meth:`commit_processed`, split in two: this call begins the transaction and
        writes the rows; :meth:`StagedBatch.commit` (on any thread) commits it, which is
        when the readings are stored. Until then the store is locked: every other call
        waits, and so does the next :meth:`stage_processed`.

        With a writer process, this call hands the batch over and returns at once: the
        writer runs the store's batches one at a time in this order, each in one
        transaction, and refuses every batch after one that failed (the ids a batch is
        given count on the batches before it). The meter states move on with the batch
        here; when a batch fails (or held a copy of a stored frame, which the writer
        leaves out), the states are read from the file again as soon as no batch of the
        store is under way. Writes of this store's own (registry, queue) still go on
        meanwhile; :meth:`checkpoint`, :meth:`commit_batch` and :meth:`close` wait for
        the batches under way.

        Raises:
            RequestError: a reading has a wrong type or value (nothing is written).
            StoreError: SQLite refused a statement (nothing is kept, the store is unlocked).
        """
        rows = [processed_row(r, i) for i, r in enumerate(readings)]
        if self._writer is not None:
            with self._lock:
                return self._stage_remote(self._live(), self._writer, rows, readings)
        self._lock.acquire()
        try:
            db = self._live()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    ids = _insert_readings(db, rows)
                    written = self._write(db, readings, ids)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreError(f"{self.path}: transaction failed: {exc}") from exc
        except BaseException:
            self._lock.release()
            raise
        return StagedBatch(self, ids, written)

    def _stage_remote(
        self,
        db: sqlite3.Connection,
        writer: StoreWriter,
        rows: list[tuple[Any, ...]],
        readings: Sequence[Reading],
    ) -> StagedBatch:
        """Hand a batch to the writer (under the lock); see :meth:`stage_processed`."""
        if self._stale:
            self._settle_batches(db)
        first = self._next_id
        fresh = first is None  # the writer then checks the id against the file
        if first is None:
            try:
                first = int(db.execute(NEXT_ID).fetchone()[0])
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: query failed: {exc}") from exc
        written, checkpoint = self._plan(readings)
        answer: Future[Any] | None = None
        if rows:
            body = encode_write(
                str(self.path),
                self._synchronous,
                first,
                fresh,
                rows,
                _value_rows(enumerate(readings, first)),
                checkpoint,
            )
            answer = writer.submit(body)
            self._inflight += 1
        self._committed(written)
        self._next_id = first + len(rows)
        return StagedBatch(self, [], written, _Remote(answer, first, len(rows)))

    def _finish(self, written: _Written, commit: bool) -> None:
        """End a staged transaction and unlock the store (see :class:`StagedBatch`)."""
        try:
            db = self._live()
            if not commit:
                db.execute("ROLLBACK")
                return
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreError(f"{self.path}: transaction failed: {exc}") from exc
            self._committed(written)
        finally:
            self._lock.release()

    def _finish_remote(self, remote: _Remote, commit: bool) -> list[int | None]:
        """Wait for the writer's answer to a batch; return its reading ids.

        A rolled-back batch was handed over already: it counts as failed (whether the
        writer wrote it or not, its readings are not handed out as stored).
        """
        if remote.answer is None:
            return []
        failure: BaseException | None = None
        copies: Sequence[int] = ()
        try:
            copies = remote.answer.result()
        except WriterError as exc:
            failure = exc
        with self._lock:
            self._inflight -= 1
            if failure is not None or copies or not commit:
                self._stale = True
                self._next_id = None
            if self._stale and not self._inflight:
                with contextlib.suppress(StoreError):
                    self._settle_batches(self._live())
            self._quiet.notify_all()
        if failure is not None:
            raise StoreError(f"{self.path}: {failure}") from failure
        ids: list[int | None] = list(range(remote.first, remote.first + remote.size))
        for position in copies:
            ids[position] = None
        return ids

    def _settle_batches(self, db: sqlite3.Connection) -> None:
        """Wait (under the lock) until no batch is with the writer; then, when a batch
        failed or was written otherwise than planned, read the states from the file."""
        while self._inflight:
            self._quiet.wait()
        if self._stale:
            self._reload(db)
            self._next_id = None

    def _commit(self, rows: list[tuple[Any, ...]], readings: Sequence[Reading]) -> list[int | None]:
        with self._lock:
            db = self._live()
            self._settle_batches(db)
            self._next_id = None
            with write_transaction(db, path=self.path, error=StoreError):
                ids = _insert_readings(db, rows)
                written = self._write(db, readings, ids)
            self._committed(written)
        return ids

    def _reload(self, db: sqlite3.Connection) -> None:
        """Read the meter states from the file again (a writer may have committed unseen)."""
        try:
            self._states, replayed = _load_states(db)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot read the meter states: {exc}") from exc
        self._dirty = {meter for meter, _ in replayed}
        self._since = len(replayed)
        self._stale = False

    def _plan(self, new: Sequence[Reading]) -> tuple[_Written, list[tuple[Any, ...]] | None]:
        """Return what storing the new readings changes of the meter states, and the
        checkpoint rows to write with them (None when the checkpoint is not due)."""
        states = _next_states(self._states, new)
        since = self._since + len(new)
        due = bool(new) and since >= max(CHECKPOINT_MIN, CHECKPOINT_READINGS * len(self._states))
        return _Written(states, since, due), self._checkpoint_rows(states) if due else None

    def _write(
        self, db: sqlite3.Connection, readings: Sequence[Reading], ids: list[int | None]
    ) -> _Written:
        """Write the values of the new readings and, when due, the meter-state checkpoint."""
        new = [(i, r) for i, r in zip(ids, readings, strict=True) if i is not None]
        db.executemany(INSERT_VALUE, _value_rows(new))
        written, checkpoint = self._plan([r for _, r in new])
        if checkpoint is not None:
            db.executemany(UPSERT_STATE, checkpoint)
            db.execute(SET_CHECKPOINT, (new[-1][0],))
        return written

    def _checkpoint_rows(self, states: dict[str, MeterState]) -> list[tuple[Any, ...]]:
        """Return the state row of every meter changed since the checkpoint, ``states``
        (the batch's meters after it) over the others."""
        changed = {m: self._states[m] for m in self._dirty if m not in states}
        changed.update(states)
        return [_state_row(m, s) for m, s in changed.items()]

    def _committed(self, written: _Written) -> None:
        """Take over the states of a committed transaction (under the lock)."""
        self._states.update(written.states)
        if written.checkpoint:
            self._dirty.clear()
            self._since = 0
        else:
            self._dirty.update(written.states)
            self._since = written.since

    def checkpoint(self) -> None:
        """Write the meter states changed since the last checkpoint (also done at close).

        Raises:
            StoreError: the transaction failed (the states stay derivable from the readings).
        """
        with self._lock:
            self._settle_batches(self._live())
            if not self._dirty:
                return
            with write_transaction(self._live(), path=self.path, error=StoreError) as db:
                last = db.execute("SELECT coalesce(max(id), 0) FROM readings").fetchone()[0]
                db.executemany(UPSERT_STATE, self._checkpoint_rows({}))
                db.execute(SET_CHECKPOINT, (last,))
            self._dirty.clear()
            self._since = 0

    def state(self, meter: str) -> MeterState | None:
        """Return the state after the meter's last stored reading, or None if it has none.

        ``counters`` holds, per (quantity, unit, storage_number, tariff, subunit),
        the latest stored instantaneous value; a key missing from the last frame
        keeps the value of the frame that had it.
        """
        found = self._states.get(meter)
        if found is None:
            return None
        return MeterState(
            t_sim=found.t_sim,
            access_number=found.access_number,
            message_counter=found.message_counter,
            counters=dict(found.counters),
        )

    def last_state(self, meter: str) -> MeterState | None:
        """Return :meth:`state` without copying: the store's own object, not to be changed.

        For measurement processing, which reads a meter's state once per frame.
        """
        return self._states.get(meter)

    def readings(
        self, meter: str, t0: float | None = None, t1: float | None = None, limit: int = 10_000
    ) -> list[tuple[int, Reading]]:
        """Return up to ``limit`` readings of a meter with ``t0 <= t_sim < t1``, oldest first."""
        lo, hi = _bounds(t0, t1)
        out: list[tuple[int, Reading]] = []
        values: list[Value] = []
        rows = self.query(_READINGS, (meter, lo, hi, limit))
        for k, row in enumerate(rows):
            if row[6] is not None:
                values.append(Value(**dict(zip(_VALUE_FIELDS, row[6:], strict=True))))
            if k + 1 == len(rows) or rows[k + 1][0] != row[0]:
                fields = dict(zip(_READING_FIELDS, row[1:6], strict=True))
                out.append((row[0], Reading(**fields, values=tuple(values))))
                values = []
        return out

    def counter_series(
        self,
        meter: str,
        quantity: str,
        unit: str,
        storage_number: int = 0,
        tariff: int = 0,
        subunit: int = 0,
        *,
        function: str = _COUNTER_FUNCTION,
        t0: float | None = None,
        t1: float | None = None,
    ) -> list[tuple[float, float]]:
        """Return (t_sim s, value) of one register of a meter, oldest first (``t0 <= t < t1``)."""
        lo, hi = _bounds(t0, t1)
        params = (meter, lo, hi, quantity, unit, storage_number, tariff, subunit, function)
        return [(r[0], r[1]) for r in self.query(_SERIES, params)]

    def settings(self) -> dict[str, Any]:
        """Return journal_mode, synchronous (2 = FULL, 1 = NORMAL) and foreign_keys in force."""
        names = ("journal_mode", "synchronous", "foreign_keys")
        return {name: self.query(f"PRAGMA {name}")[0][0] for name in names}

    def count(self) -> int:
        """Return the number of stored readings."""
        return int(self.query("SELECT count(*) FROM readings")[0][0])

    def digest(self) -> str:
        """Return a SHA-256 (hex) over all readings and their values in id order.

        Equal digests mean no stored reading or value was added, lost or changed.
        """
        sha = hashlib.sha256()
        with self._lock:
            db = self._live()
            for row in db.execute("SELECT * FROM readings ORDER BY id"):
                sha.update(repr(row).encode())
            for row in db.execute("SELECT * FROM reading_values ORDER BY reading, position"):
                sha.update(repr(row).encode())
        return sha.hexdigest()

    # -- EMT queue --------------------------------------------------------------------------

    def enqueue(
        self, emt: str, taf: Taf, meter: str, payload: Any, *, created: float | None = None
    ) -> int:
        """Queue a JSON-serialisable record for an EMT; return its queue id.

        Raises:
            RequestError: the payload is not JSON-serialisable or a field has a wrong type.
        """
        row = queue_row(emt, taf, meter, payload, time.time() if created is None else created)
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO emt_queue (emt, taf, meter, payload, created) VALUES (?, ?, ?, ?, ?)",
                row,
            )
            return int(cursor.lastrowid or 0)

    def pending(self, emt: str, limit: int = 1000) -> list[QueuedRecord]:
        """Return up to ``limit`` undelivered records of an EMT, oldest first."""
        rows = self.query(
            "SELECT id, emt, taf, meter, payload, created FROM emt_queue "
            "WHERE emt = ? AND delivered IS NULL ORDER BY id LIMIT ?",
            (emt, limit),
        )
        return [
            QueuedRecord(
                id=r[0], emt=r[1], taf=Taf(r[2]), meter=r[3], payload=json.loads(r[4]), created=r[5]
            )
            for r in rows
        ]

    def ack(self, emt: str, ids: Iterable[int]) -> int:
        """Mark records of an EMT delivered; return how many were pending (others are ignored)."""
        now = time.time()
        params = [(now, emt, check(i, MAX_INT, "ids")) for i in ids]
        with self.transaction() as db:
            before = db.total_changes
            db.executemany(
                "UPDATE emt_queue SET delivered = ? WHERE emt = ? AND id = ? AND delivered IS NULL",
                params,
            )
            return db.total_changes - before

    def close(self) -> None:
        """Write the meter-state checkpoint and close the file (idempotent).

        Later calls raise StoreError. A checkpoint that fails here is not raised: the file
        is consistent without it (the next open replays the readings after the last one).
        """
        with contextlib.suppress(StoreError):
            self.checkpoint()
        with self._lock:
            while self._inflight:
                self._quiet.wait()
            if self._db is not None:
                self._db.close()
                self._db = None
        if self._writer is not None:
            self._writer.close_store(str(self.path))


class _Written(NamedTuple):
    """What a transaction changed of the meter states, taken over once it commits."""

    states: dict[str, MeterState]  # the batch's meters after it
    since: int  # readings stored after the checkpoint, this batch's included
    checkpoint: bool  # this transaction wrote the checkpoint


def _load_states(
    db: sqlite3.Connection,
) -> tuple[dict[str, MeterState], list[tuple[str, int]]]:
    """Return every meter's state after the last stored reading, and the (meter, id) of
    each reading stored after the checkpoint.

    ``meter_state`` holds the states as after reading ``state_checkpoint.reading``; the
    readings stored after it are replayed on top, in id (= storing) order.
    """
    rows = db.execute("SELECT * FROM meter_state").fetchall()
    states = {r[0]: MeterState(**_state_fields(r)) for r in rows}
    checkpoint = db.execute("SELECT reading FROM state_checkpoint").fetchone()[0]
    replayed: list[tuple[str, int]] = []
    for row in db.execute(_REPLAY, (checkpoint,)):
        meter = row[1]
        if not replayed or replayed[-1][1] != row[0]:
            replayed.append((meter, row[0]))
            before = states.get(meter)
            states[meter] = MeterState(
                t_sim=row[2],
                access_number=row[3],
                message_counter=row[4],
                counters=dict(before.counters) if before is not None else {},
            )
        if row[11] == _COUNTER_FUNCTION:
            states[meter].counters[(row[5], row[6], row[8], row[9], row[10])] = row[7]
    return states, replayed


def _state_fields(r: Any) -> dict[str, Any]:
    return {
        "t_sim": r[1],
        "access_number": r[2],
        "message_counter": r[3],
        "counters": _counters_from_json(r[4]),
    }


def _bounds(t0: float | None, t1: float | None) -> tuple[float, float]:
    return (-float("inf") if t0 is None else t0, float("inf") if t1 is None else t1)


def _insert_readings(db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[int | None]:
    """Insert the reading rows not stored before; return each one's id, None for a duplicate.

    The common batch holds no duplicate (:func:`~.store_sql.insert_new`). Only when it
    found one are the others inserted, with ids one after the other.
    """
    first = insert_new(db, rows)
    if first is not None:
        return list(range(first, first + len(rows)))
    copies = set(copy_positions(db, rows))
    next_id = db.execute(NEXT_ID).fetchone()[0]
    ids: list[int | None] = []
    for k in range(len(rows)):
        if k in copies:
            ids.append(None)
        else:
            ids.append(next_id)
            next_id += 1
    new = [(i, *row) for i, row in zip(ids, rows, strict=True) if i is not None]
    db.executemany(INSERT_READING, new)
    return ids


_VALUE_FIELDS_OF = operator.attrgetter(*_VALUE_FIELDS)


def _value_rows(new: Iterable[tuple[int, Reading]]) -> list[tuple[Any, ...]]:
    """Return the value rows of (reading id, reading) pairs (or of (position, reading)).

    The value column has REAL affinity: an integer value is stored as a float.
    """
    fields = _VALUE_FIELDS_OF
    return [(rid, pos, *fields(v)) for rid, reading in new for pos, v in enumerate(reading.values)]


_STATE_KEY_OF = operator.attrgetter("quantity", "unit", "storage_number", "tariff", "subunit")


def _next_states(states: dict[str, MeterState], new: Sequence[Reading]) -> dict[str, MeterState]:
    """Return the state of every meter in ``new`` after its readings, in batch order."""
    last: dict[str, Reading] = {}
    counters: dict[str, dict[CounterKey, float]] = {}
    key_of = _STATE_KEY_OF
    for reading in new:
        meter = reading.meter
        merged = counters.get(meter)
        if merged is None:
            before = states.get(meter)
            merged = counters[meter] = dict(before.counters) if before is not None else {}
        for v in reading.values:
            if v.function == _COUNTER_FUNCTION:
                merged[key_of(v)] = float(v.value)
        last[meter] = reading
    return {
        meter: meter_state(float(r.t_sim), r.access_number, r.message_counter, counters[meter])
        for meter, r in last.items()
    }


def _state_row(meter: str, state: MeterState) -> tuple[Any, ...]:
    """Return the meter_state row; counters as JSON [[quantity, unit, sn, tariff, subunit, v]]."""
    items = ",".join(_key_json(k) + repr(v) + "]" for k, v in state.counters.items())
    return (meter, state.t_sim, state.access_number, state.message_counter, f"[{items}]")


@functools.lru_cache(maxsize=4096)
def _key_json(key: CounterKey) -> str:
    """Return ``[quantity,unit,sn,tariff,subunit,`` (a finite float's repr completes the JSON)."""
    return _to_json(list(key))[:-1] + ","


def _counters_from_json(text: str) -> dict[CounterKey, float]:
    return {(q, u, int(s), int(t), int(b)): float(v) for q, u, s, t, b, v in json.loads(text)}
