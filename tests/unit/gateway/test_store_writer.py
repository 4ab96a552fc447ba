"""Store writer process: same rows as writing inline, batches pipelined, failures contained."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgpack
import pytest
from smtestbed.proto.mbus.header import decode_manufacturer
from smtestbed.services.gateway.ingest import Committer
from smtestbed.services.gateway.instance import GatewayInstance
from smtestbed.services.gateway.keys import load_or_create_key, verify_digest
from smtestbed.services.gateway.schema import MeterEntry, MeterState, Reading, Taf, Value
from smtestbed.services.gateway.store import Store, StoreError
from smtestbed.services.gateway.store_writer import (
    RemoteSigner,
    StoreWriter,
    WriterError,
    WriterLostError,
    encode_sign,
    encode_write,
)
from smtestbed.services.sensorfarm.population import Population, generate
from smtestbed.services.sensorfarm.rounds import telegram_rounds

from tests.unit.gateway.test_store import reading

ANSWER_TIMEOUT = 60.0
Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]


@pytest.fixture
def writer() -> Iterator[StoreWriter]:
    """A store writer; its process is ended afterwards."""
    out = StoreWriter()
    yield out
    out.close()


@pytest.fixture
def stores(writer: StoreWriter) -> Iterator[list[Store]]:
    """Stores opened by a test (append them); closed afterwards, before the writer."""
    opened: list[Store] = []
    yield opened
    for store in opened:
        with contextlib.suppress(StoreError):
            store.close()


def open_store(stores: list[Store], path: Path, writer: StoreWriter | None) -> Store:
    store = Store(path, synchronous="NORMAL", writer=writer)
    stores.append(store)
    return store


def file_rows(path: Path) -> Rows:
    """Return every row of ``readings`` and ``reading_values`` in the file, in key order."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        readings = db.execute("SELECT * FROM readings ORDER BY id").fetchall()
        values = db.execute("SELECT * FROM reading_values ORDER BY reading, position").fetchall()
    return readings, values


def stored_digests(path: Path) -> list[bytes]:
    """Return the frame digests in the file, in id order (a copy stored twice shows twice)."""
    return [row[5] for row in file_rows(path)[0]]


def fresh_states(path: Path, meters: Sequence[str]) -> list[MeterState | None]:
    """Return the meter states a Store opened on a copy of the file (as it is now) finds."""
    copy = path.with_name(f"{path.stem}-copy-{time.monotonic_ns()}.db")
    with (
        contextlib.closing(sqlite3.connect(path)) as src,
        contextlib.closing(sqlite3.connect(copy)) as dst,
    ):
        src.backup(dst)
    fresh = Store(copy)
    try:
        return [fresh.state(m) for m in meters]
    finally:
        fresh.close()


def wait_for_end(writer: StoreWriter) -> None:
    """Wait until the writer noticed its process ended (bounded)."""
    for _ in range(3000):
        if writer.pid is None:
            return
        time.sleep(0.01)
    raise AssertionError("store writer did not notice its process ended")


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# -- 1. same result as writing inline ----------------------------------------------------------

FARM_METERS = 12
ROUNDS = 3
BATCH = 5


def farm_frames(pop: Population, rounds: int) -> list[tuple[bytes, float, int]]:
    """Return (frame, t_sim, meter row): ``rounds`` mode-5 telegrams of every meter."""
    return telegram_rounds(pop, rounds)


def farm_entry(pop: Population, i: int) -> MeterEntry:
    return MeterEntry(
        meter=f"{int(pop.ident[i]):08d}",
        manufacturer=decode_manufacturer(int(pop.manufacturer[i])),
        key=bytes(pop.key[i]),
        security=int(pop.security[i]),
        tafs=frozenset({Taf.TAF7}),
        consumer=f"c{i % 3}",
        emt="emt-a",
    )


def test_writer_stores_the_same_rows_and_states_as_inline(
    tmp_path: Path, writer: StoreWriter
) -> None:
    """Two instances sharing a writer and two writing inline ingest the same frames in
    several batches each through Committer: equal files (every reading and value row) and
    equal meter states, in memory and in a fresh store."""
    pop = generate(FARM_METERS, seed=7, security=5, mix={"electricity": 1.0})
    frames = farm_frames(pop, ROUNDS)
    meters = [farm_entry(pop, i).meter for i in range(len(pop))]
    sides: dict[str, list[GatewayInstance]] = {}
    for side, w in (("writer", writer), ("inline", None)):
        sides[side] = [
            GatewayInstance(f"gw{k}", tmp_path / side / f"gw{k}", synchronous="NORMAL", writer=w)
            for k in range(2)
        ]
    try:
        per: list[list[tuple[bytes, float]]] = [[], []]
        for frame, t, i in frames:
            per[i % 2].append((frame, t))
        accepted: dict[str, int] = {}
        for side, gws in sides.items():
            for k, gw in enumerate(gws):
                gw.registry.add_many(farm_entry(pop, i) for i in range(k, len(pop), 2))
            # batches of both instances interleaved, so the shared writer has both in flight
            jobs = [
                (gw, rows[s : s + BATCH])
                for s in range(0, len(per[0]), BATCH)
                for gw, rows in zip(gws, per, strict=True)
            ]
            assert len(jobs) >= 6
            with Committer() as committer:
                results = committer.ingest(jobs)
            accepted[side] = sum(len(r.accepted) for r in results)
        assert accepted == {"writer": len(frames), "inline": len(frames)}
        for k in range(2):
            remote, inline = sides["writer"][k], sides["inline"][k]
            got, want = file_rows(remote.store.path), file_rows(inline.store.path)
            assert len(got[0]) == FARM_METERS * ROUNDS // 2
            assert got[1]  # the frames carry values
            assert got == want
            with contextlib.closing(sqlite3.connect(remote.store.path)) as db:
                # every value row the writer wrote belongs to a reading it wrote
                assert db.execute("PRAGMA foreign_key_check").fetchall() == []
            mine = meters[k::2]
            assert [remote.store.state(m) for m in mine] == [inline.store.state(m) for m in mine]
            assert all(inline.store.state(m) is not None for m in mine)
            assert fresh_states(remote.store.path, mine) == [inline.store.state(m) for m in mine]
    finally:
        for gws in sides.values():
            for gw in gws:
                gw.close()


# -- 2. pipelining --------------------------------------------------------------------------


def test_two_batches_in_flight_commit_in_order_with_contiguous_ids(
    tmp_path: Path, writer: StoreWriter, stores: list[Store]
) -> None:
    """The second batch is staged before the first commits; ids follow on, rows in order."""
    store = open_store(stores, tmp_path / "gw.db", writer)
    first = [reading(n) for n in range(3)]
    second = [reading(n, meter="87654321") for n in range(4)] + [reading(3)]
    a = store.stage_processed(first)
    b = store.stage_processed(second)
    assert a.commit() == [1, 2, 3]
    assert b.commit() == [4, 5, 6, 7, 8]
    readings, values = file_rows(store.path)
    assert [r[0] for r in readings] == list(range(1, 9))
    assert [r[5] for r in readings] == [r.frame_digest for r in first + second]
    assert len(values) == 3 * 8
    assert store.state("12345678") == fresh_states(store.path, ["12345678"])[0]
    assert store.state("12345678").t_sim == reading(3).t_sim  # type: ignore[union-attr]


# -- 3. a failed batch breaks the chain -----------------------------------------------------


def test_failed_batch_fails_the_next_one_and_leaves_nothing(
    tmp_path: Path, writer: StoreWriter, stores: list[Store]
) -> None:
    """A batch SQLite refuses in the writer raises at commit; the batch staged after it is
    refused too; neither is in the file, the states are the file's, and a new batch commits."""
    store = open_store(stores, tmp_path / "gw.db", writer)
    meters = ["12345678", "87654321"]
    good = [reading(n, meter=m) for n in range(2) for m in meters]
    assert store.stage_processed(good).commit() == [1, 2, 3, 4]
    with contextlib.closing(sqlite3.connect(store.path)) as raw:
        raw.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON readings WHEN NEW.meter = 'refused' "
            "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        )
        raw.commit()
    bad = [reading(5, meter="12345678"), reading(1, meter="refused")]
    after = [reading(6, meter=m) for m in meters]
    staged_bad = store.stage_processed(bad)
    staged_after = store.stage_processed(after)
    # the store moved its states on with the staged batches
    assert store.state("12345678").t_sim == reading(6).t_sim  # type: ignore[union-attr]
    with pytest.raises(StoreError, match="refused by trigger"):
        staged_bad.commit()
    with pytest.raises(StoreError, match="does not follow"):
        staged_after.commit()
    assert stored_digests(store.path) == [r.frame_digest for r in good]
    expected = [reading(1, meter=m) for m in meters]
    assert [store.state(m) for m in meters] == fresh_states(store.path, meters)
    assert [store.state(m).t_sim for m in meters] == [r.t_sim for r in expected]  # type: ignore[union-attr]
    assert store.state("refused") is None
    assert store.stage_processed(after).commit() == [5, 6]
    assert stored_digests(store.path) == [r.frame_digest for r in good + after]
    assert [store.state(m) for m in meters] == fresh_states(store.path, meters)


# -- 4. writer killed -----------------------------------------------------------------------


def test_killed_writer_loses_only_unanswered_batches(
    tmp_path: Path, writer: StoreWriter, stores: list[Store]
) -> None:
    """SIGKILL between batches: the next batch starts a new process and commits. SIGKILL
    with a batch in flight: its commit raises, the next batch commits on another process;
    every reading handed out as stored is in the file once, the states are the file's."""
    store = open_store(stores, tmp_path / "gw.db", writer)
    meters = ["12345678", "87654321"]
    committed: list[Reading] = []

    def batch(n: int) -> list[Reading]:
        return [reading(n, meter=m) for m in meters]

    ids = store.stage_processed(batch(0)).commit()
    assert ids == [1, 2]
    committed += batch(0)
    pid0 = writer.pid
    assert pid0 is not None
    # between batches
    os.kill(pid0, signal.SIGKILL)
    wait_for_end(writer)
    assert store.stage_processed(batch(1)).commit() == [3, 4]
    committed += batch(1)
    pid1 = writer.pid
    assert pid1 is not None
    assert pid1 != pid0
    # in flight: the file's write lock is held elsewhere, so the writer cannot answer
    blocker = sqlite3.connect(store.path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        staged = store.stage_processed(batch(2))
        os.kill(pid1, signal.SIGKILL)
        with pytest.raises(StoreError) as lost:
            staged.commit()
        assert isinstance(lost.value.__cause__, WriterLostError)
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    running = writer.pid
    assert running is None
    assert stored_digests(store.path) == [r.frame_digest for r in committed]
    assert [store.state(m) for m in meters] == fresh_states(store.path, meters)
    # the lost batch sent again, and one more behind it
    again = store.stage_processed(batch(2))
    more = store.stage_processed(batch(3))
    assert again.commit() == [5, 6]
    assert more.commit() == [7, 8]
    committed += batch(2) + batch(3)
    pid2 = writer.pid
    assert pid2 not in (None, pid0, pid1)
    assert stored_digests(store.path) == [r.frame_digest for r in committed]
    assert [store.state(m) for m in meters] == fresh_states(store.path, meters)
    assert store.state(meters[1]).t_sim == reading(3).t_sim  # type: ignore[union-attr]


# -- 5. copies of stored frames -------------------------------------------------------------


def test_copy_of_a_stored_frame_is_left_out(
    tmp_path: Path, writer: StoreWriter, stores: list[Store]
) -> None:
    """A reading whose frame digest is stored: None at its position, no second row, the
    stored row unchanged, the others stored; the states are the file's."""
    store = open_store(stores, tmp_path / "gw.db", writer)
    stored = [reading(1, meter="A"), reading(2, meter="A"), reading(1, meter="B")]
    assert store.stage_processed(stored).commit() == [1, 2, 3]
    before = file_rows(store.path)
    # same frame digest as reading 1 of A, other contents
    copy = dataclasses.replace(
        reading(1, meter="A"),
        t_sim=99_999.0,
        values=(Value(quantity="energy", unit="Wh", value=-5.0),),
    )
    batch = [reading(3, meter="A"), copy, reading(2, meter="B")]
    ids = store.stage_processed(batch).commit()
    assert ids[1] is None
    assert ids[0] is not None
    assert ids[2] is not None
    assert ids[0] < ids[2]
    readings, values = file_rows(store.path)
    digests = [r[5] for r in readings]
    assert sorted(digests) == sorted({*digests})
    assert len(readings) == 5
    assert readings[:3] == before[0]
    assert [v for v in values if v[0] <= 3] == before[1]
    by_id = {r[0]: r[5] for r in readings}
    assert (by_id[ids[0]], by_id[ids[2]]) == (batch[0].frame_digest, batch[2].frame_digest)
    assert store.state("A").t_sim == reading(3).t_sim  # type: ignore[union-attr]
    assert [store.state(m) for m in ("A", "B")] == fresh_states(store.path, ["A", "B"])
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []  # no stray value rows
    # the next batch follows on
    nxt = store.stage_processed([reading(4, meter="A")]).commit()
    assert nxt[0] is not None
    assert nxt[0] > ids[2]
    path = store.path
    expected = [store.state(m) for m in ("A", "B")]
    store.close()
    assert fresh_states(path, ["A", "B"]) == expected
    assert expected[0].t_sim == reading(4).t_sim  # type: ignore[union-attr]


def test_copy_in_flight_does_not_reach_a_later_checkpoint(
    tmp_path: Path, writer: StoreWriter, stores: list[Store]
) -> None:
    """A batch with a copy of an older stored frame is still in flight when a batch that
    makes the checkpoint due is staged: the checkpoint holds the meter's state after its
    last stored reading, not after the copy."""
    store = open_store(stores, tmp_path / "gw.db", writer)
    assert store.stage_processed([reading(1, meter="A"), reading(2, meter="A")]).commit() == [
        1,
        2,
    ]
    with_copy = store.stage_processed([reading(1, meter="A")])
    due = store.stage_processed([reading(10 + n, meter="B") for n in range(1000)])
    assert with_copy.commit() == [None]
    assert None not in due.commit()
    assert fresh_states(store.path, ["A"])[0].t_sim == reading(2).t_sim  # type: ignore[union-attr]
    assert store.state("A").t_sim == reading(2).t_sim  # type: ignore[union-attr]


# -- 6. bad requests ------------------------------------------------------------------------


def bad_bodies(path: Path) -> list[bytes]:
    pack = msgpack.packb
    good = encode_write(str(path), "NORMAL", 1, True, [], [], None)
    return [
        b"",
        b"\xc1",  # a byte msgpack never uses
        good[:-3],  # cut short
        b"\xdd\xff\xff\xff\xff",  # an array of 2^32-1 items, none there
        b"\x91" * 100_000 + b"\xc0",  # nested deeper than any unpacker goes
        pack(42),
        pack([]),
        pack(["nope", str(path)]),
        pack(["close"]),
        pack(["write", str(path)]),
        pack(["write", str(path), "NORMAL", 1, True, [], [], None, "extra"]),
        pack(["write", str(path), "OFF", 1, True, [], [], None]),
        pack(["write", str(path) + "-missing", "NORMAL", 1, True, [], [], None]),
        pack(["write", str(path) + "\x00", "NORMAL", 1, True, [], [], None]),
        pack(["write", str(path), "NORMAL", 1, True, [[1, 2]], [], None]),
        pack(["write", str(path), "NORMAL", "one", True, [], [], None]),
        pack(["write", 7, "NORMAL", 1, True, [], [], None]),
    ]


def test_bad_requests_are_answered_and_never_end_the_writer(
    tmp_path: Path, writer: StoreWriter, stores: list[Store]
) -> None:
    """Garbage, unknown operations and wrong arity each get a WriterError; the same process
    then writes a normal batch."""
    store = open_store(stores, tmp_path / "gw.db", writer)
    writer.start()
    pid = writer.pid
    failures: list[BaseException] = []
    for body in bad_bodies(store.path):
        with pytest.raises(WriterError) as refused:
            writer.submit(body).result(timeout=ANSWER_TIMEOUT)
        failures.append(refused.value)
    assert not [f for f in failures if isinstance(f, WriterLostError)]
    assert writer.pid == pid
    assert store.count() == 0
    assert store.stage_processed([reading(0), reading(1)]).commit() == [1, 2]
    assert writer.pid == pid
    assert stored_digests(store.path) == [reading(0).frame_digest, reading(1).frame_digest]


# -- 7. closing -----------------------------------------------------------------------------


def test_store_close_waits_for_batches_in_flight_and_writer_close_ends_the_process(
    tmp_path: Path, writer: StoreWriter
) -> None:
    """Store.close waits until the staged batch committed, then checkpoints it; the
    writer's close ends its process with exit code 0."""
    store = Store(tmp_path / "gw.db", synchronous="NORMAL", writer=writer)
    batch = [reading(n, meter=m) for n in range(3) for m in ("A", "B")]
    blocker = sqlite3.connect(store.path, isolation_level=None)
    closed: list[str] = []
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the writer cannot write the batch yet
        staged = store.stage_processed(batch)

        def close() -> None:
            store.close()
            closed.append("closed")

        closer = threading.Thread(target=close)
        closer.start()
        closer.join(0.2)
        assert closed == []
        blocker.execute("ROLLBACK")
        assert staged.commit() == list(range(1, 7))
        closer.join(ANSWER_TIMEOUT)
        assert closed == ["closed"]
    finally:
        blocker.close()
    with contextlib.closing(sqlite3.connect(store.path)) as raw:
        assert raw.execute("SELECT reading FROM state_checkpoint").fetchone() == (6,)
        assert sorted(r[0] for r in raw.execute("SELECT meter FROM meter_state")) == ["A", "B"]
    assert stored_digests(store.path) == [r.frame_digest for r in batch]
    with pytest.raises(StoreError, match="closed"):
        store.count()
    proc = writer._proc
    assert proc is not None
    pid = proc.pid
    writer.close()
    assert proc.returncode == 0
    assert pid_gone(pid)
    assert writer.pid is None
    with pytest.raises(WriterLostError):
        writer.submit(msgpack.packb(["close", str(store.path)]))


def test_remote_signer_signs_with_the_instance_key_and_falls_back_when_the_writer_is_gone(
    tmp_path: Path,
) -> None:
    """Log digests signed in the writer process verify under the instance's public key;
    a digest of the wrong size is refused; with the writer closed the key here signs."""
    key = load_or_create_key(tmp_path / "keys")
    writer = StoreWriter()
    try:
        local: list[bytes] = []

        def fallback(digest: bytes) -> bytes:
            local.append(digest)
            return key.sign(digest)

        signer = RemoteSigner(writer, str(key.path), fallback)
        digest = hashlib.sha256(b"entry").digest()
        signature = signer(digest)
        assert verify_digest(key.public_key, digest, signature)
        assert not verify_digest(key.public_key, hashlib.sha256(b"other").digest(), signature)
        assert local == []  # signed by the writer process
        with pytest.raises(WriterError, match="32-byte"):
            writer.submit(encode_sign(str(key.path), b"short")).result(ANSWER_TIMEOUT)
        with pytest.raises(WriterError):
            writer.submit(encode_sign(str(tmp_path / "missing.pem"), digest)).result(ANSWER_TIMEOUT)
    finally:
        writer.close()
    assert verify_digest(key.public_key, digest, signer(digest))
    assert local == [digest]


def test_writer_process_runs_on_the_cpus_it_is_given_and_anywhere_when_refused(
    tmp_path: Path,
) -> None:
    """Every thread of the writer runs on the CPU it was given (it sets them before it
    serves); a CPU the machine lacks is reported on stderr and the writer runs where it
    may, answering requests as ever."""
    allowed = frozenset(os.sched_getaffinity(0))
    cpu = max(allowed)
    pinned = StoreWriter(cpus={cpu})
    try:
        store = Store(tmp_path / "store.sqlite", writer=pinned)
        assert store.stage_processed([reading(1)]).commit() == [1]  # the writer is serving
        assert pinned.cpus == frozenset({cpu})
        pid = pinned.pid
        assert pid is not None
        tasks = os.listdir(f"/proc/{pid}/task")
        assert len(tasks) > 1  # the lanes
        assert all(os.sched_getaffinity(int(t)) == {cpu} for t in tasks)
        store.close()
    finally:
        pinned.close()
    refused = StoreWriter(cpus={4096})
    try:
        store = Store(tmp_path / "other.sqlite", writer=refused)
        assert store.stage_processed([reading(1)]).commit() == [1]
        assert refused.cpus == allowed
        store.close()
    finally:
        refused.close()
