"""Recorder: tap, record to a file, replay; sequence gaps seen by a subscriber."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import zmq
import zmq.asyncio
from smtestbed.proto import topics
from smtestbed.proto.envelope import Envelope, pack
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints, Event
from smtestbed.services._runtime.errors import ProtocolError
from smtestbed.services._runtime.testing import bus_client, service_process
from smtestbed.services.broker import recorder

pytestmark = pytest.mark.timeout(60)


def _key(env: Envelope) -> tuple[object, ...]:
    return (env.kind, env.src, env.seq, env.t_sim, env.t_wall, env.body)


def test_replay_reproduces_the_recorded_sequence(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """Events recorded from a live service come back from replay identical and in order."""
    path = tmp_path / "ticks.smtbrec"

    async def record_live() -> int:
        return await recorder.record(endpoints, path, [topics.SAMPLE_TICK], count=15, seconds=20)

    with service_process(
        "sample", endpoints, settings={"interval_s": 0.01}, log_path=tmp_path / "sample.log"
    ):
        written = asyncio.run(record_live())
    recorded = [Envelope.from_wire(frames[1]) for _, frames in recorder.read_recording(path)]

    async def replay_and_tap() -> list[Event]:
        got: list[Event] = []
        async with bus_client(endpoints) as client:
            sub = client.subscribe([topics.SAMPLE_TICK])
            await sub.wait_connected()
            sent = await recorder.replay(endpoints, path, speed=0)
            assert sent == 15
            while len(got) < 15:
                got.append(await asyncio.wait_for(sub.recv(), 5))
        return got

    replayed = asyncio.run(replay_and_tap())
    assert written == 15
    assert [_key(e.envelope) for e in replayed] == [_key(e) for e in recorded]
    seqs = [e.seq for e in recorded]
    assert seqs == list(range(seqs[0], seqs[0] + 15))


def test_replay_keeps_recorded_timing_scaled_by_speed(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """At speed 2 a recording spanning 0.4 s replays in about 0.2 s."""
    path = tmp_path / "timed.smtbrec"
    frames = [[b"sample.tick", pack(topics.SAMPLE_TICK, "t", i, 0.0, 0.0, i)] for i in range(3)]
    _write_recording(path, [(0.0, frames[0]), (0.2, frames[1]), (0.4, frames[2])])

    async def run() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await recorder.replay(endpoints, path, speed=2.0)
        return loop.time() - start

    elapsed = asyncio.run(run())
    assert 0.19 <= elapsed < 1.5


def _write_recording(path: Path, items: list[tuple[float, list[bytes]]]) -> None:
    import msgpack

    with path.open("wb") as out:
        out.write(msgpack.packb({"format": "smtb-record", "v": 1, "created": 0.0}))
        for t, frames in items:
            out.write(msgpack.packb([t, frames], use_bin_type=True))


def test_broken_recording_is_a_protocol_error(tmp_path: Path) -> None:
    """A file that is not a recording is refused with a clear error, not a traceback."""
    path = tmp_path / "junk.bin"
    path.write_bytes(b"\x00\x01not a recording")
    with pytest.raises(ProtocolError, match="not an smtb recording"):
        list(recorder.read_recording(path))


def test_subscriber_counts_a_sequence_gap(endpoints: Endpoints, broker: process.Popen) -> None:
    """Events numbered 0,1,2,5,6 from one publisher count as one gap of two missed events."""

    async def scenario() -> tuple[int, int, list[int]]:
        ctx = zmq.asyncio.Context.instance()
        async with bus_client(endpoints) as client:
            sub = client.subscribe([topics.SAMPLE_TICK])
            await sub.wait_connected()
            raw = ctx.socket(zmq.XPUB)
            raw.setsockopt(zmq.LINGER, 0)
            raw.connect(endpoints.pub)
            await asyncio.wait_for(raw.recv(), 5)
            for seq in (0, 1, 2, 5, 6):
                wire = pack(topics.SAMPLE_TICK, "gappy", seq, 0.0, 0.0, {"n": seq})
                await raw.send_multipart([b"sample.tick", wire])
            got = [(await asyncio.wait_for(sub.recv(), 5)).envelope.seq for _ in range(5)]
            raw.close(0)
            return sub.gaps.gaps, sub.gaps.missed, got

    gaps, missed, seqs = asyncio.run(scenario())
    assert seqs == [0, 1, 2, 5, 6]
    assert (gaps, missed) == (1, 2)
