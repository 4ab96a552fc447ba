"""Overlapped ingest (Committer): same outcome as one batch at a time, failures contained."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from smtestbed.proto.wmbus import MeterAddress, encode_telegram, new_telegram
from smtestbed.services.gateway.ingest import Committer
from smtestbed.services.gateway.instance import GatewayInstance, IngestResult
from smtestbed.services.gateway.schema import MeterEntry, Reason
from smtestbed.services.gateway.store import StoreError
from smtestbed.services.gateway.store_writer import StoreWriter

from tests.unit.gateway.test_processing import KEY, records

METERS = ("12345678", "12345679")


def frame(meter: str, access: int, energy: float) -> bytes:
    """Return a mode-5 frame of ``meter`` with its energy register at ``energy`` Wh."""
    address = MeterAddress(manufacturer=0x15A8, ident=int(meter, 16), version=1, device_type=2)
    telegram = new_telegram(
        address=address,
        records=records(energy=energy),
        access_number=access,
        security_mode=5,
        counter=0,
    )
    return encode_telegram(telegram, key=KEY)


def batches() -> list[list[tuple[bytes, float]]]:
    """Return three batches of both meters; batch 2 repeats an access number of batch 1 and
    sends a counter below batch 1's, which only the not yet committed batch 1 shows."""
    first = [(frame(m, 10, 1000.0), 60.0) for m in METERS]
    second = [(frame(METERS[0], 10, 1500.0), 120.0), (frame(METERS[1], 11, 900.0), 120.0)]
    third = [(frame(m, 12, 2000.0), 180.0) for m in METERS]
    return [first, second, third]


def _pair(folder: Path, writer: StoreWriter | None) -> list[GatewayInstance]:
    """Two instances with both meters registered (synchronous=NORMAL)."""
    out = [
        GatewayInstance(f"gw{k}", folder / f"gw{k}", synchronous="NORMAL", writer=writer)
        for k in (0, 1)
    ]
    for inst in out:
        for meter in METERS:
            inst.registry.add(MeterEntry(meter=meter, manufacturer="EMH", key=KEY, security=5))
    return out


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[list[GatewayInstance]]:
    """Two instances (:func:`_pair`) writing their own stores."""
    out = _pair(tmp_path, None)
    yield out
    for inst in out:
        inst.close()


@pytest.fixture
def writer_instances(tmp_path: Path) -> Iterator[list[GatewayInstance]]:
    """Two instances (:func:`_pair`) whose stores a writer process writes."""
    writer = StoreWriter()
    out = _pair(tmp_path, writer)
    yield out
    for inst in out:
        inst.close()
    writer.close()


def _summary(result: IngestResult) -> tuple[list[tuple[str, int]], list[Reason]]:
    return [(r.meter, rid) for r, rid in result.accepted], [r.reason for r in result.rejected]


def test_overlapped_ingest_stores_and_refuses_what_one_batch_at_a_time_does(
    instances: list[GatewayInstance],
) -> None:
    """Batches checked against uncommitted earlier ones give the sequential results."""
    sequential, overlapped = instances
    expected = [_summary(sequential.ingest(b)) for b in batches()]
    with Committer() as committer:
        got = [_summary(r) for r in committer.ingest((overlapped, b) for b in batches())]
    assert got == expected
    assert got[1][1] == [Reason.REPLAY, Reason.COUNTER_BACKWARDS]
    assert overlapped.store.digest() == sequential.store.digest()
    assert overlapped.counters.to_map() == sequential.counters.to_map()
    assert overlapped.logs.consumer_ids() == sequential.logs.consumer_ids()


def test_results_are_handed_over_in_batch_order_after_their_commit(
    instances: list[GatewayInstance],
) -> None:
    """on_result sees each batch once, in order, with its readings already in the store."""
    seen: list[tuple[str, int]] = []
    stored: dict[str, int] = {"gw0": 0, "gw1": 0}

    def on_result(inst: GatewayInstance, result: IngestResult) -> None:
        seen.append((inst.name, len(result.accepted)))
        stored[inst.name] += len(result.accepted)
        # Later batches may have committed too, never fewer than those handed over.
        assert inst.store.count() >= stored[inst.name]

    jobs = [(inst, b) for b in batches() for inst in instances]
    with Committer() as committer:
        committer.ingest(jobs, on_result)
    assert seen == [("gw0", 2), ("gw1", 2), ("gw0", 0), ("gw1", 0), ("gw0", 2), ("gw1", 2)]


REFUSALS = {
    # SQLite refuses the rows as they are written (on the processing thread)
    "write": "CREATE TRIGGER refuse BEFORE INSERT ON readings BEGIN SELECT RAISE(ABORT, 'full'); "
    "END",
    # ... or only the COMMIT, on a commit thread: a deferred foreign key left dangling
    "commit": "CREATE TABLE nowhere (id INTEGER PRIMARY KEY); "
    "CREATE TABLE late (id INTEGER REFERENCES nowhere (id) DEFERRABLE INITIALLY DEFERRED); "
    "CREATE TRIGGER refuse AFTER INSERT ON readings BEGIN INSERT INTO late VALUES (1); END",
}


@pytest.mark.parametrize(
    ("store_writer", "when", "match"),
    [(False, "write", "full"), (False, "commit", "FOREIGN KEY"), (True, "write", "full")],
)
def test_a_failed_commit_stops_its_instance_only_and_leaves_nothing_behind(
    request: pytest.FixtureRequest, store_writer: bool, when: str, match: str
) -> None:
    """A transaction SQLite refuses: later batches of that instance are not committed, the
    other instance's are, the error is raised, and re-sent frames are accepted afterwards.

    With a writer process the instance's second batch is handed over before the first
    one's answer is in, and the writer refuses it (its connections skip the foreign-key
    check, so only the refusal of the rows applies there)."""
    pair = "writer_instances" if store_writer else "instances"
    failing, healthy = request.getfixturevalue(pair)
    assert failing.store.pipelined is store_writer
    blocker = sqlite3.connect(failing.store.path)
    blocker.executescript(REFUSALS[when])
    blocker.commit()
    first, _, third = batches()
    seen: list[str] = []
    with Committer() as committer:
        jobs = [(failing, first), (failing, third), (healthy, first), (healthy, third)]
        with pytest.raises(StoreError, match=match):
            committer.ingest(jobs, lambda inst, _: seen.append(inst.name))
        assert seen == ["gw1", "gw1"]
        assert (failing.store.count(), healthy.store.count()) == (0, 4)
        assert failing.counters.frames == 0
        blocker.execute("DROP TRIGGER refuse")
        blocker.commit()
        again = committer.ingest([(failing, first), (failing, third)])
    blocker.close()
    assert [len(r.accepted) for r in again] == [2, 2]
    assert failing.store.digest() == healthy.store.digest()
