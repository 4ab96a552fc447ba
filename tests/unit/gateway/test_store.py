"""Gateway store: batches in one transaction, exactly-once readings, state, queue, digest."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from smtestbed.services._runtime.errors import RequestError
from smtestbed.services.gateway.schema import MeterState, Reading, Taf, Value
from smtestbed.services.gateway.store import CHECKPOINT_MIN, SCHEMA_VERSION, Store, StoreError

OpenStore = Callable[..., Store]


@pytest.fixture
def open_store(tmp_path: Path) -> Iterator[OpenStore]:
    """Open stores on files in a temp dir (default ``gw.db``); close them all afterwards."""
    opened: list[Store] = []

    def factory(name: str = "gw.db", **kwargs: Any) -> Store:
        store = Store(tmp_path / name, **kwargs)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def reading(n: int, *, meter: str = "12345678", energy: float | None = None) -> Reading:
    """Return reading number ``n``: energy counter, volume register 1 and a maximum power."""
    return Reading(
        meter=meter,
        t_sim=900.0 * n,
        access_number=n % 256,
        message_counter=n,
        frame_digest=hashlib.sha256(f"{meter}/{n}".encode()).digest(),
        values=(
            Value(quantity="energy", unit="Wh", value=1000.0 * n if energy is None else energy),
            Value(quantity="volume", unit="m^3", value=0.5 * n, storage_number=1, tariff=2),
            Value(quantity="power", unit="W", value=7.0, function="maximum"),
        ),
    )


def test_readings_round_trip_with_ids(open_store: OpenStore) -> None:
    """Committed readings come back equal, with the ids commit_readings returned."""
    store = open_store()
    batch = [reading(n) for n in range(5)]
    ids = store.commit_readings(batch)
    assert ids == [1, 2, 3, 4, 5]
    assert store.readings("12345678") == list(zip(ids, batch, strict=True))


def test_reading_without_values_round_trips(open_store: OpenStore) -> None:
    """A reading with no data records is stored and read back with an empty tuple."""
    store = open_store()
    empty = dataclasses.replace(reading(1), values=())
    store.commit_readings([empty, reading(2)])
    assert [r for _, r in store.readings("12345678")] == [empty, reading(2)]


def test_integer_numbers_are_stored_as_floats(open_store: OpenStore) -> None:
    """A reading with int t_sim and int values is accepted and read back with floats."""
    store = open_store()
    plain = reading(2)
    ints = dataclasses.replace(
        plain, t_sim=1800, values=(Value(quantity="energy", unit="Wh", value=2000),)
    )
    assert store.commit_batch([]) == []
    store.commit_readings([ints])
    ((_, back),) = store.readings("12345678")
    assert (type(back.t_sim), type(back.values[0].value)) == (float, float)
    assert back == dataclasses.replace(ints, t_sim=1800.0, values=plain.values[:1])


def test_duplicate_frame_digest_is_stored_once(open_store: OpenStore) -> None:
    """A frame seen before or earlier in the batch is skipped: None in commit_batch, no row."""
    store = open_store()
    store.commit_readings([reading(0), reading(1)])
    answer = store.commit_batch([reading(1), reading(2), reading(2), reading(0), reading(3)])
    assert answer == [None, 3, None, None, 4]
    assert store.commit_readings([reading(3), reading(2)]) == []
    assert store.count() == 4


def test_failing_batch_rolls_back_completely(open_store: OpenStore, tmp_path: Path) -> None:
    """A batch failing inside SQLite mid-way leaves readings, values, state and digest as before."""
    store = open_store()
    store.commit_readings([reading(0)])
    before = (store.digest(), store.count(), store.state("12345678"))
    with sqlite3.connect(tmp_path / "gw.db") as raw:
        raw.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON reading_values WHEN NEW.value = -1 "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    raw.close()
    with pytest.raises(StoreError, match="refused"):
        store.commit_readings([reading(1), reading(2), reading(3, energy=-1.0)])
    assert (store.digest(), store.count(), store.state("12345678")) == before
    assert store.commit_readings([reading(1)]) == [2]


BAD_FIELDS: list[tuple[dict[str, Any], str]] = [
    ({"meter": 12345678}, "readings[2].meter"),
    ({"t_sim": "now"}, "readings[2].t_sim"),
    ({"t_sim": float("nan")}, "readings[2].t_sim"),
    ({"access_number": 256}, "readings[2].access_number"),
    ({"message_counter": 1.5}, "readings[2].message_counter"),
    ({"frame_digest": b"short"}, "readings[2].frame_digest"),
    ({"values": [Value(quantity="energy", unit="Wh", value=1.0)]}, "readings[2].values"),
    ({"values": ("energy",)}, "readings[2].values[0]"),
    (
        {"values": (Value(quantity="energy", unit="Wh", value="1"),)},  # type: ignore[arg-type]
        "readings[2].values[0].value",
    ),
    (
        {"values": (Value(quantity="energy", unit="Wh", value=1.0, tariff=-1),)},
        "readings[2].values[0].tariff",
    ),
]


@pytest.mark.parametrize(("change", "field"), BAD_FIELDS)
def test_bad_reading_names_field_and_stores_nothing(
    open_store: OpenStore, change: dict[str, Any], field: str
) -> None:
    """A batch with one ill-typed reading raises RequestError naming it; nothing is stored."""
    store = open_store()
    store.commit_readings([reading(0)])
    before = store.digest()
    bad = dataclasses.replace(reading(9), **change)
    with pytest.raises(RequestError) as caught:
        store.commit_readings([reading(1), reading(2), bad])
    assert caught.value.field == field
    assert store.digest() == before
    assert store.count() == 1


def test_non_reading_in_batch_is_refused(open_store: OpenStore) -> None:
    """Something that is not a Reading in a batch raises RequestError for its index."""
    store = open_store()
    with pytest.raises(RequestError) as caught:
        store.commit_readings([reading(0), {"meter": "12345678"}])  # type: ignore[list-item]
    assert caught.value.field == "readings[1]"
    assert store.count() == 0


def test_processed_readings_have_their_time_stamp_checked(open_store: OpenStore) -> None:
    """commit_processed stores like commit_batch; an integer t_sim is stored as a float and
    a time stamp that is not finite is refused before anything is stored."""
    store = open_store()
    assert store.commit_processed([reading(1), dataclasses.replace(reading(2), t_sim=1800)]) == [
        1,
        2,
    ]
    assert [(i, r.t_sim) for i, r in store.readings("12345678")] == [(1, 900.0), (2, 1800.0)]
    before = store.digest()
    bad = dataclasses.replace(reading(3), t_sim=float("nan"))
    with pytest.raises(RequestError) as caught:
        store.commit_processed([reading(4), bad])
    assert caught.value.field == "readings[1].t_sim"
    assert store.digest() == before


def test_file_is_wal_with_full_sync_and_foreign_keys(open_store: OpenStore) -> None:
    """The store runs in WAL mode, synchronous=FULL and with foreign keys enforced."""
    store = open_store()
    assert store.settings() == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}
    assert open_store("fast.db", synchronous="NORMAL").settings()["synchronous"] == 1


def test_state_is_last_reading_with_merged_counters(open_store: OpenStore) -> None:
    """State holds the last reading's numbers and the latest instantaneous value per register."""
    store = open_store()
    assert store.state("12345678") is None
    only_energy = dataclasses.replace(reading(5), values=reading(5).values[:1])
    store.commit_readings([reading(3), reading(4)])
    store.commit_readings([only_energy])
    assert store.state("12345678") == MeterState(
        t_sim=4500.0,
        access_number=5,
        message_counter=5,
        counters={("energy", "Wh", 0, 0, 0): 5000.0, ("volume", "m^3", 1, 2, 0): 2.0},
    )


def test_state_survives_reopen(open_store: OpenStore) -> None:
    """The meter state read after reopening the file equals the one before closing."""
    store = open_store()
    store.commit_readings([reading(1), reading(7, meter="87654321")])
    before = (store.state("12345678"), store.state("87654321"))
    store.close()
    again = open_store()
    assert (again.state("12345678"), again.state("87654321")) == before


def test_state_copy_cannot_change_the_store(open_store: OpenStore) -> None:
    """Mutating the counters of a returned state does not change the next answer."""
    store = open_store()
    store.commit_readings([reading(1)])
    store.state("12345678").counters.clear()  # type: ignore[union-attr]
    state = store.state("12345678")
    assert state is not None
    assert state.counters[("energy", "Wh", 0, 0, 0)] == 1000.0


def test_counter_series_selects_one_register_in_time_order(open_store: OpenStore) -> None:
    """counter_series returns (t_sim, value) of exactly the asked register, oldest first."""
    store = open_store()
    store.commit_readings([reading(2), reading(0), reading(1), reading(1, meter="87654321")])
    assert store.counter_series("12345678", "energy", "Wh") == [
        (0.0, 0.0),
        (900.0, 1000.0),
        (1800.0, 2000.0),
    ]
    assert store.counter_series("12345678", "volume", "m^3", storage_number=1, tariff=2) == [
        (0.0, 0.0),
        (900.0, 0.5),
        (1800.0, 1.0),
    ]
    assert store.counter_series("12345678", "volume", "m^3") == []
    assert store.counter_series("12345678", "energy", "Wh", t0=900.0, t1=1800.0) == [
        (900.0, 1000.0)
    ]


def test_readings_window_and_limit(open_store: OpenStore) -> None:
    """readings() returns t0 <= t_sim < t1 of one meter, oldest first, at most limit."""
    store = open_store()
    store.commit_readings([reading(n) for n in range(10)] + [reading(3, meter="87654321")])
    window = store.readings("12345678", t0=1800.0, t1=5400.0)
    assert [r.message_counter for _, r in window] == [2, 3, 4, 5]
    assert [r.message_counter for _, r in store.readings("12345678", limit=3)] == [0, 1, 2]
    assert store.readings("00000000") == []


def test_queue_survives_reopen_until_acknowledged(open_store: OpenStore) -> None:
    """Undelivered EMT records stay queued across close/reopen; acknowledged ones leave."""
    store = open_store()
    first = store.enqueue("emt-a", Taf.TAF7, "12345678", {"t": 900, "wh": [1, 2]}, created=1.0)
    second = store.enqueue("emt-a", Taf.TAF1, "12345678", [3.5], created=2.0)
    other = store.enqueue("emt-b", Taf.TAF6, "87654321", "x", created=3.0)
    store.close()
    store = open_store()
    pending = store.pending("emt-a")
    assert [(q.id, q.taf, q.payload, q.created) for q in pending] == [
        (first, Taf.TAF7, {"t": 900, "wh": [1, 2]}, 1.0),
        (second, Taf.TAF1, [3.5], 2.0),
    ]
    assert store.ack("emt-a", [first, other]) == 1
    store.close()
    store = open_store()
    assert [q.id for q in store.pending("emt-a")] == [second]
    assert [q.id for q in store.pending("emt-b")] == [other]
    assert store.ack("emt-a", [first]) == 0


def test_pending_respects_limit(open_store: OpenStore) -> None:
    """pending() answers the oldest ``limit`` records of the EMT."""
    store = open_store()
    ids = [store.enqueue("emt-a", Taf.TAF7, "12345678", n) for n in range(5)]
    assert [q.id for q in store.pending("emt-a", limit=2)] == ids[:2]


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("emt-a", Taf.TAF7, "12345678", {1, 2}), "payload"),
        (("emt-a", Taf.TAF7, "12345678", float("inf")), "payload"),
        (("emt-a", "taf99", "12345678", 1), "taf"),
        (("", Taf.TAF7, "12345678", 1), "emt"),
        (("emt-a", Taf.TAF7, 12345678, 1), "meter"),
    ],
)
def test_bad_queue_record_is_refused(
    open_store: OpenStore, args: tuple[Any, ...], field: str
) -> None:
    """enqueue with a bad field raises RequestError naming it and queues nothing."""
    store = open_store()
    with pytest.raises(RequestError) as caught:
        store.enqueue(*args)
    assert caught.value.field == field
    assert store.pending("emt-a") == []


def test_digest_stable_until_something_changes(open_store: OpenStore, tmp_path: Path) -> None:
    """digest() is equal across reopen and duplicates, differs after any added or altered row."""
    store = open_store()
    empty = store.digest()
    store.commit_readings([reading(n) for n in range(3)])
    stored = store.digest()
    assert stored != empty
    store.commit_readings([reading(1)])
    store.enqueue("emt-a", Taf.TAF7, "12345678", 1)
    assert store.digest() == stored
    store.close()
    store = open_store()
    assert store.digest() == stored
    with sqlite3.connect(tmp_path / "gw.db") as raw:
        raw.execute("UPDATE reading_values SET value = 2000.0000001 WHERE value = 2000.0")
    raw.close()
    altered = store.digest()
    assert altered not in (stored, empty)
    store.commit_readings([reading(3)])
    assert store.digest() not in (stored, altered)


def test_newer_schema_is_refused(open_store: OpenStore, tmp_path: Path) -> None:
    """A file with another schema version raises StoreError naming both versions."""
    open_store().close()
    with sqlite3.connect(tmp_path / "gw.db") as raw:
        raw.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        open_store()


def test_foreign_file_is_refused(open_store: OpenStore, tmp_path: Path) -> None:
    """A file that is not an SQLite database, or another database, raises StoreError."""
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError, match="not a gateway store"):
        open_store("junk.db")
    with sqlite3.connect(tmp_path / "other.db") as raw:
        raw.execute("CREATE TABLE t (x)")
    raw.close()
    with pytest.raises(StoreError, match="schema version none"):
        open_store("other.db")


def test_closed_store_raises_store_error(open_store: OpenStore) -> None:
    """Every call after close() raises StoreError; close() twice is fine."""
    store = open_store()
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.commit_readings([reading(0)])
    with pytest.raises(StoreError, match="closed"):
        store.readings("12345678")


def test_transaction_block_failing_keeps_nothing(open_store: OpenStore) -> None:
    """Rows written in transaction() before the block raises are rolled back."""
    store = open_store()
    row = ("emt-a", "taf7", "12345678", "1", 1.0)
    sql = "INSERT INTO emt_queue (emt, taf, meter, payload, created) VALUES (?, ?, ?, ?, ?)"

    def late_failure() -> None:
        with store.transaction() as db:
            db.execute(sql, row)
            raise KeyError("late failure")

    def sqlite_failure() -> None:
        with store.transaction() as db:
            db.execute(sql, row)
            db.execute("INSERT INTO nowhere VALUES (1)")

    with pytest.raises(KeyError):
        late_failure()
    with pytest.raises(StoreError, match="no such table"):
        sqlite_failure()
    assert store.pending("emt-a") == []


def test_staged_batch_is_stored_only_once_committed_on_another_thread(
    open_store: OpenStore, tmp_path: Path
) -> None:
    """A staged batch is invisible to other connections and locks the store until its commit,
    which may run on another thread; a rollback keeps nothing and unlocks the store."""
    store = open_store()
    staged = store.stage_processed([reading(0), reading(1)])
    with contextlib.closing(sqlite3.connect(tmp_path / "gw.db")) as other:
        assert other.execute("SELECT count(*) FROM readings").fetchone() == (0,)
        counted: list[int] = []
        waiting = threading.Thread(target=lambda: counted.append(store.count()))
        waiting.start()
        waiting.join(0.2)
        assert waiting.is_alive()  # the store is locked until the commit
        committer = threading.Thread(target=staged.commit)
        committer.start()
        committer.join(10)
        waiting.join(10)
        assert counted == [2]
        assert other.execute("SELECT count(*) FROM readings").fetchone() == (2,)
    assert staged.ids == [1, 2]
    assert store.state("12345678") == MeterState(
        t_sim=900.0,
        access_number=1,
        message_counter=1,
        counters={("energy", "Wh", 0, 0, 0): 1000.0, ("volume", "m^3", 1, 2, 0): 0.5},
    )
    before = store.digest()
    dropped = store.stage_processed([reading(2)])
    dropped.rollback()
    with pytest.raises(StoreError, match="already ended"):
        dropped.commit()
    assert (store.digest(), store.state("12345678").t_sim) == (before, 900.0)  # type: ignore[union-attr]


def test_staged_batch_failing_at_commit_keeps_nothing(
    open_store: OpenStore, tmp_path: Path
) -> None:
    """A constraint SQLite checks only at COMMIT fails the commit: StoreError, nothing kept,
    the store unlocked and usable."""
    store = open_store()
    with contextlib.closing(sqlite3.connect(tmp_path / "gw.db")) as raw:
        raw.executescript(
            "CREATE TABLE late (id INTEGER REFERENCES nowhere (id) DEFERRABLE INITIALLY DEFERRED);"
            "CREATE TABLE nowhere (id INTEGER PRIMARY KEY);"
            "CREATE TRIGGER dangle AFTER INSERT ON readings WHEN NEW.meter = 'dangling' "
            "BEGIN INSERT INTO late VALUES (1); END;"
        )
    staged = store.stage_processed([reading(0), reading(1, meter="dangling")])
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        staged.commit()
    assert (store.count(), store.state("12345678"), store.state("dangling")) == (0, None, None)
    assert store.commit_processed([reading(0)]) == [1]


def crash_copy(store: Store, folder: Path) -> Path:
    """Copy a store's file and WAL as they are while it is open (what a killed gateway
    leaves: every committed transaction, no close-time checkpoint); return the copy."""
    folder.mkdir()
    for suffix in ("", "-wal"):
        source = Path(f"{store.path}{suffix}")
        (folder / (store.path.name + suffix)).write_bytes(source.read_bytes())
    return folder / store.path.name


def file_states(path: Path) -> tuple[int, dict[str, tuple[Any, ...]]]:
    """Return the checkpoint's reading id and the meter_state rows of a store file."""
    with contextlib.closing(sqlite3.connect(path)) as raw:
        (checkpoint,) = raw.execute("SELECT reading FROM state_checkpoint").fetchone()
        rows = {r[0]: r[1:] for r in raw.execute("SELECT * FROM meter_state")}
    return checkpoint, rows


METERS = [f"{10000000 + k}" for k in range(5)]


def test_state_after_a_crash_is_replayed_from_the_readings(
    open_store: OpenStore, tmp_path: Path
) -> None:
    """Without a checkpoint since, the state is rebuilt from the readings after it, equal to
    the state the store had; a later checkpoint also writes the meters replayed."""
    store = open_store()
    store.commit_readings([reading(n, meter=m) for n in range(3) for m in METERS])
    store.commit_readings([reading(5, meter=METERS[0], energy=1e9)])
    assert file_states(store.path) == (0, {})  # nothing written but the readings
    copy = Store(crash_copy(store, tmp_path / "crash"))
    try:
        assert [copy.state(m) for m in METERS] == [store.state(m) for m in METERS]
        assert copy.state(METERS[0]).counters[("energy", "Wh", 0, 0, 0)] == 1e9  # type: ignore[union-attr]
        # enough readings of one other meter to make a checkpoint due
        copy.commit_readings([reading(10 + n, meter="20000000") for n in range(1000)])
        checkpoint, rows = file_states(copy.path)
        assert checkpoint == copy.count()
        assert sorted(rows) == sorted([*METERS, "20000000"])
        again = Store(crash_copy(copy, tmp_path / "crash2"))
        try:
            assert [again.state(m) for m in METERS] == [store.state(m) for m in METERS]
        finally:
            again.close()
    finally:
        copy.close()


def test_checkpoint_is_written_when_due_and_at_close(open_store: OpenStore) -> None:
    """A checkpoint comes with the batch that makes the readings since the last one at least
    CHECKPOINT_MIN (and 16 per meter); close writes one too, so a reopen replays nothing."""
    store = open_store()
    store.commit_readings([reading(n, meter=METERS[n % 5]) for n in range(CHECKPOINT_MIN - 1)])
    assert file_states(store.path) == (0, {})
    store.commit_readings([reading(CHECKPOINT_MIN, meter=METERS[0])])
    checkpoint, rows = file_states(store.path)
    assert checkpoint == CHECKPOINT_MIN
    assert rows[METERS[0]][:3] == (900.0 * CHECKPOINT_MIN, CHECKPOINT_MIN % 256, CHECKPOINT_MIN)
    assert len(rows) == 5
    store.commit_readings([reading(2000, meter=METERS[1])])
    expected = store.state(METERS[1])
    path = store.path
    store.close()
    checkpoint, rows = file_states(path)
    assert checkpoint == CHECKPOINT_MIN + 1
    assert rows[METERS[1]][0] == 900.0 * 2000
    assert open_store().state(METERS[1]) == expected


def test_version_1_file_is_taken_over(open_store: OpenStore, tmp_path: Path) -> None:
    """A version 1 store (states written with every reading) opens with the same states, its
    checkpoint at the last reading."""
    store = open_store()
    store.commit_readings([reading(n, meter=METERS[n % 2]) for n in range(6)])
    before = [store.state(m) for m in METERS[:2]]
    store.close()
    with contextlib.closing(sqlite3.connect(tmp_path / "gw.db")) as raw:
        raw.executescript("DROP TABLE state_checkpoint; UPDATE schema_version SET version = 1;")
    reopened = open_store()
    assert [reopened.state(m) for m in METERS[:2]] == before
    assert file_states(reopened.path)[0] == 6
    assert reopened.query("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
