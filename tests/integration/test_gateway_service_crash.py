"""Crash safety of the gateway service: SIGKILL during an ingest of 10^5 frames.

A real gateway process (broker, bus, LMN PULL socket, SQLite store in a temporary
folder) is fed 10^5 valid mode-5 frames of 1,000 meters in batches of one frame per
meter (round k carries each meter's access number k + 1, so no frame is a replay of
another). The test collects every ``gateway.frame_accepted`` announcement, SIGKILLs
the gateway while frames are still queued, restarts it on the same folder and reads
the store through a read-only SQLite connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from smtestbed.proto import topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints, Event, Subscription
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    pid_alive,
    random_endpoints,
    service_process,
    wait_until,
)
from smtestbed.services.sensorfarm.schema import N_VALUES, MeterKind
from smtestbed.services.sensorfarm.telegrams import build_telegrams

from tests.integration.gateway_helpers import (
    EMH,
    KEY,
    T0,
    gateway_events,
    gateway_process,
    gw,
    lmn_pusher,
    write_registry,
)

pytestmark = pytest.mark.timeout(60)

METERS = 100
ROUNDS = 1_000  # frames per meter; 10^5 in all
TOTAL = METERS * ROUNDS
ROUNDS_PER_BATCH = 10  # a batch holds 1,000 frames: 10 rounds of every meter, round by round
BATCH = ROUNDS_PER_BATCH * METERS
FIRST_PUSH = 50  # batches pushed before the kill
KILL_AFTER = 20 * BATCH  # announced readings before the kill
IDENT0 = 30_000_000
ROUND_S = 900.0

Key = tuple[int, int]  # (meter index m, round k)


def meter_id(m: int) -> str:
    """Return the 8-digit ID of meter ``m``."""
    return f"{IDENT0 + m:08d}"


def access_number(k: int) -> int:
    """Return the access number of round ``k``: one more than the round before, mod 256."""
    return (k + 1) % 256


def t_rx(m: int, k: int) -> float:
    """Return when gw0 heard meter m's frame of round k, s (simulation time)."""
    return T0 + ROUND_S * k + 0.01 * m


@dataclass(frozen=True, slots=True, kw_only=True)
class Frames:
    """All frames by (meter, round), and which frame each SHA-256 digest belongs to."""

    frames: dict[Key, bytes]
    by_digest: dict[bytes, Key]

    @classmethod
    def build(cls) -> Frames:
        """Build the 10^5 mode-5 frames in one call: energy rises by 1 kWh per round."""
        m = np.tile(np.arange(METERS, dtype=np.int64), ROUNDS)
        k = np.repeat(np.arange(ROUNDS, dtype=np.int64), METERS)
        values = np.zeros((TOTAL, N_VALUES), dtype=np.float64)
        values[:, 0] = 1_000_000.0 + 1_000.0 * k + m  # energy A+, Wh
        values[:, 2] = 500.0  # power, W
        offsets, data = build_telegrams(
            ident=IDENT0 + m,
            manufacturer=np.full(TOTAL, EMH, dtype=np.int64),
            version=np.ones(TOTAL, dtype=np.int64),
            device_type=np.full(TOTAL, 2, dtype=np.int64),
            kind=np.full(TOTAL, int(MeterKind.ELECTRICITY), dtype=np.int64),
            security_mode=np.full(TOTAL, 5, dtype=np.int64),
            key=np.tile(np.frombuffer(KEY, dtype=np.uint8), (TOTAL, 1)),
            access_number=(k + 1) % 256,
            counter=np.zeros(TOTAL, dtype=np.int64),
            values=values,
        )
        frames = {
            (int(m[i]), int(k[i])): data[offsets[i] : offsets[i + 1]].tobytes()
            for i in range(TOTAL)
        }
        by_digest = {hashlib.sha256(f).digest(): key for key, f in frames.items()}
        return cls(frames=frames, by_digest=by_digest)


def in_order(keys: set[Key] | None = None) -> list[Key]:
    """Return the frames (all, or those in ``keys``) in push order: round by round."""
    out = [(m, k) for k in range(ROUNDS) for m in range(METERS)]
    return out if keys is None else [key for key in out if key in keys]


def batch_of(frames: Frames, keys: list[Key]) -> FrameBatch:
    """Return a ``sim.received`` batch of the frames ``keys``, heard by gw0."""
    n = len(keys)
    columns = {
        "receiver": np.zeros(n, dtype=np.uint16),
        "t_rx": np.array([t_rx(m, k) for m, k in keys], dtype=np.float64),
        "rssi_dbm": np.full(n, -70.0, dtype=np.float32),
        "meter": np.array([m for m, _ in keys], dtype=np.uint32),
        "bit_errors": np.zeros(n, dtype=np.uint16),
    }
    data = [frames.frames[key] for key in keys]
    return FrameBatch.from_frames(data, {"receivers": ["gw0"]}, columns)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bed:
    """Broker endpoints, the gateway's LMN endpoint and folders."""

    endpoints: Endpoints
    lmn: str
    data_dir: Path
    folder: Path


@contextlib.contextmanager
def gateway(bed: Bed, log: str) -> Iterator[process.Popen]:
    """Run the gateway (instance gw0) on the bed's data folder with the meters."""
    with gateway_process(
        bed.endpoints,
        bed.data_dir,
        bed.lmn,
        log_path=bed.folder / log,
        registry_file=bed.folder / "registry.csv",
        synchronous="FULL",
        heartbeat_s=1.0,  # a loaded machine must not make the broker think it died
    ) as proc:
        yield proc


def write_meters(path: Path) -> None:
    """Register the meters (EMH, mode 5, KEY) for instance gw0."""
    rows = [
        {
            "gateway": "gw0",
            "meter": meter_id(m),
            "manufacturer": "EMH",
            "key_hex": KEY.hex(),
            "security": "5",
            "tafs": "",
            "consumer": "",
            "emt": "",
        }
        for m in range(METERS)
    ]
    write_registry(path, rows)


WATCHED = (topics.GATEWAY_FRAME_ACCEPTED, topics.GATEWAY_FRAME_REJECTED)


async def _collect(sub: Subscription, into: list[Event]) -> None:
    while True:
        event = await sub.recv()
        if event.kind in WATCHED:
            into.append(event)


def _ok(event: Event) -> bool:
    return event.kind == topics.GATEWAY_FRAME_ACCEPTED


def _announced(events: list[Event]) -> dict[int, tuple[str, float]]:
    """Return id -> (meter, t_sim) of every reading announced as accepted."""
    return {rid: (m, t) for e in events if _ok(e) for m, rid, t in e.body["readings"]}


def ingest_and_kill(bed: Bed, frames: Frames) -> dict[int, tuple[str, float]]:
    """Push FIRST_PUSH batches, SIGKILL the gateway after KILL_AFTER announced readings."""
    order = in_order()

    async def scenario(proc: process.Popen) -> dict[int, tuple[str, float]]:
        events: list[Event] = []
        async with bus_client(bed.endpoints) as client, lmn_pusher(bed.lmn) as pusher:
            collect = asyncio.create_task(_collect(await gateway_events(client), events))
            for b in range(FIRST_PUSH):
                keys = order[b * BATCH : (b + 1) * BATCH]
                await pusher.send(batch_of(frames, keys), t_sim=t_rx(0, keys[0][1]))
            await wait_until(lambda: len(_announced(events)) >= KILL_AFTER, timeout=20)
            writer = (await gw(client, topics.GATEWAY_STATUS, {}))["store_writer_pid"]
            assert pid_alive(writer)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
            # the store writer sees its gateway's end of the socket close and exits
            await wait_until(lambda: not pid_alive(writer), timeout=10)
            await asyncio.sleep(0.5)  # announcements still on their way through the broker
            collect.cancel()
        return _announced(events)

    with gateway(bed, "gw-killed.log") as proc:
        return asyncio.run(scenario(proc))


@dataclass(frozen=True, slots=True, kw_only=True)
class Repush:
    """What the restarted gateway announced, refused and counted."""

    accepted: dict[int, tuple[str, float]]
    rejected: list[dict[str, Any]]
    status: dict[str, Any]
    pushed: int


def repush(bed: Bed, frames: Frames, announced: set[Key]) -> Repush:
    """Push every frame not announced to the restarted gateway, and one round twice.

    The remaining frames go in batches of BATCH in push order. Before the last batch,
    its predecessor's last round is pushed once more: each of those frames is then a copy
    of its meter's last accepted frame. The last batch's announcement says that the
    gateway has processed everything before it (batches are ingested in order).
    """
    remaining = in_order(set(frames.frames) - announced)
    batches = [remaining[i : i + BATCH] for i in range(0, len(remaining), BATCH)]
    assert batches[-1] == in_order()[-BATCH:]
    batches.insert(-1, [(m, ROUNDS - ROUNDS_PER_BATCH - 1) for m in range(METERS)])
    last_t = t_rx(METERS - 1, ROUNDS - 1)

    async def scenario() -> Repush:
        events: list[Event] = []
        async with bus_client(bed.endpoints) as client, lmn_pusher(bed.lmn) as pusher:
            collect = asyncio.create_task(_collect(await gateway_events(client), events))
            for part in batches:
                await pusher.send(batch_of(frames, part), t_sim=t_rx(0, part[0][1]))
            await wait_until(
                lambda: any(t == last_t for _, t in _announced(events).values()),
                timeout=30,
                interval=0.1,
            )
            # gateway.status hashes the whole store (about 2 s at 10^5 readings): asked once.
            reply = await gw(client, topics.GATEWAY_STATUS, {"gateway": "gw0"})
            collect.cancel()
        return Repush(
            accepted=_announced(events),
            rejected=[e.body for e in events if not _ok(e)],
            status=reply,
            pushed=sum(map(len, batches)),
        )

    return asyncio.run(scenario())


Row = tuple[int, str, float, int, bytes]


def store_rows(folder: Path) -> tuple[list[Row], str]:
    """Return (id, meter, t_sim, access_number, frame_digest) of every reading by id, and
    the answer of ``PRAGMA integrity_check``, read through a read-only connection."""
    uri = f"file:{folder / 'store.sqlite'}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
        rows = db.execute(
            "SELECT id, meter, t_sim, access_number, frame_digest FROM readings ORDER BY id"
        ).fetchall()
        check = db.execute("PRAGMA integrity_check").fetchone()[0]
    return rows, str(check)


def expected_row(rid: int, key: Key, frames: Frames) -> Row:
    """Return the row the store must hold for frame ``key`` under id ``rid``."""
    m, k = key
    digest = hashlib.sha256(frames.frames[key]).digest()
    return (rid, meter_id(m), t_rx(m, k), access_number(k), digest)


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[Bed]:
    """Start a broker; the registry file of the meters is written to ``tmp_path``."""
    endpoints = random_endpoints()
    write_meters(tmp_path / "registry.csv")
    with service_process("broker", endpoints, log_path=tmp_path / "broker.log"):
        yield Bed(
            endpoints=endpoints,
            lmn=f"tcp://127.0.0.1:{free_port()}",
            data_dir=tmp_path / "data",
            folder=tmp_path,
        )


def test_sigkilled_gateway_keeps_every_announced_reading_once_and_completes_on_repush(
    bed: Bed,
) -> None:
    """Every reading announced before a SIGKILL is stored exactly once; re-pushing completes.

    After the restart the store verifies and holds each announced id with the announced
    meter and time stamp and the frame's digest, and no digest twice. Re-pushing every
    frame not announced stores exactly the missing ones: frames stored but not announced
    (killed between commit and publish) are refused as replays, and copies of a meter's
    last accepted frame are dropped as duplicates. In the end each of the 10^5 frames is
    stored once.
    """
    frames = Frames.build()
    announced = ingest_and_kill(bed, frames)
    folder = bed.data_dir / "gw0"
    with gateway(bed, "gw-restarted.log"):
        rows, check = store_rows(folder)
        keys = {r[0]: frames.by_digest[r[4]] for r in rows}
        out = repush(bed, frames, {keys[rid] for rid in announced})
        final, final_check = store_rows(folder)
    by_id = {r[0]: r for r in rows}
    assert check == "ok"
    assert KILL_AFTER <= len(announced) < FIRST_PUSH * BATCH
    assert {rid: by_id.get(rid) for rid in announced} == {
        rid: expected_row(rid, keys[rid], frames) for rid in announced
    }
    assert {rid: (by_id[rid][1], by_id[rid][2]) for rid in announced} == announced
    assert len(set(keys.values())) == len(rows)

    unannounced = [keys[r[0]] for r in rows if r[0] not in announced]
    assert out.status["frames"] == out.pushed
    assert out.status["accepted"] == len(out.accepted) == TOTAL - len(rows)
    assert out.status["duplicates"] == METERS
    assert out.status["rejected"] == ({"replay": len(unannounced)} if unannounced else {})
    assert sorted((r["meter"], r["reason"]) for r in out.rejected) == sorted(
        (meter_id(m), "replay") for m, _ in unannounced
    )
    assert final_check == "ok"
    assert out.status["stored"] == len(final) == TOTAL
    assert final[: len(rows)] == rows
    assert [r[0] for r in final[len(rows) :]] == sorted(out.accepted)
    assert sorted(frames.by_digest[r[4]] for r in final) == sorted(frames.frames)
