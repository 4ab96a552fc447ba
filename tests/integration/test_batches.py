"""Simulation-plane batches on PUSH/PULL and services run in-process."""

from __future__ import annotations

import array
import asyncio
import time

import pytest
import zmq
import zmq.asyncio
from smtestbed.proto import topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import BatchPuller, BatchPusher, Endpoints
from smtestbed.services._runtime.config import load_config
from smtestbed.services._runtime.testing import (
    bus_client,
    endpoint_settings,
    free_port,
    service_in_process,
)
from smtestbed.services.sample.service import Sample, SampleConfig

pytestmark = pytest.mark.timeout(60)


def test_batches_arrive_whole_and_in_order_with_back_pressure() -> None:
    """200 batches pushed past a high-water mark of 2 all arrive, in order, none lost."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"

    async def scenario() -> tuple[list[list[bytes]], list[list[float]], int, float]:
        ctx = zmq.asyncio.Context()
        puller = BatchPuller(ctx, endpoint, bind=True, hwm=2)
        pusher = BatchPusher(ctx, endpoint, src="farm", hwm=2)
        got: list[list[bytes]] = []
        times: list[list[float]] = []

        async def produce() -> float:
            start = time.monotonic()
            for i in range(200):
                frames = [bytes([i % 256]) * (1 + j) for j in range(i % 7)]
                t = array.array("d", [i + j / 10 for j in range(len(frames))])
                await pusher.send(
                    FrameBatch.from_frames(frames, meta={"i": i}, columns={"t": t}), t_sim=float(i)
                )
            return time.monotonic() - start

        async def consume() -> None:
            for _ in range(200):
                _env, batch = await asyncio.wait_for(puller.recv(), 10)
                got.append([bytes(f) for f in batch])
                times.append([float(x) for x in batch.columns["t"].tolist()])
                await asyncio.sleep(0.001)  # a slow stage: the producer must wait for it

        producing = asyncio.create_task(produce())
        await consume()
        elapsed = await producing
        gaps = puller.gaps.missed
        pusher.close()
        puller.close()
        ctx.term()
        return got, times, gaps, elapsed

    got, times, missed, _elapsed = asyncio.run(scenario())
    assert len(got) == 200
    for i, frames in enumerate(got):
        assert frames == [bytes([i % 256]) * (1 + j) for j in range(i % 7)]
        assert times[i] == [i + j / 10 for j in range(i % 7)]
    assert missed == 0


def test_puller_skips_and_counts_a_malformed_batch() -> None:
    """A message with bad offsets is counted as rejected and the next good batch is returned."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"

    async def scenario() -> tuple[list[bytes], int, list[str]]:
        ctx = zmq.asyncio.Context()
        reasons: list[str] = []
        puller = BatchPuller(ctx, endpoint, on_reject=lambda reason, msg: reasons.append(reason))
        raw = ctx.socket(zmq.PUSH)
        raw.connect(endpoint)
        pusher = BatchPusher(ctx, endpoint, src="farm")
        from smtestbed.proto.envelope import pack

        header = {"count": 2, "meta": {}, "columns": []}
        env = pack(topics.FRAME_BATCH, "evil", 0, 0.0, 0.0, header)
        await raw.send_multipart([topics.FRAME_BATCH.encode(), env, bytes(12), b"abc"])
        await asyncio.sleep(0.1)
        await pusher.send(FrameBatch.from_frames([b"ok"]), t_sim=0.0)
        _env, batch = await asyncio.wait_for(puller.recv(), 5)
        result = [bytes(f) for f in batch], puller.rejected, reasons
        raw.close(0)
        pusher.close()
        puller.close()
        ctx.term()
        return result

    frames, rejected, reasons = asyncio.run(scenario())
    assert frames == [b"ok"]
    assert rejected == 1
    assert reasons == ["batch_offsets"]


def test_service_runs_in_process_and_answers_requests(
    endpoints: Endpoints, broker: process.Popen
) -> None:
    """service_in_process starts a service in the test's loop; it registers and answers."""
    config = load_config(
        SampleConfig,
        "sample",
        env={},
        overrides={**endpoint_settings(endpoints), "instance": "inproc", "interval_s": "0"},
    )

    async def scenario() -> tuple[int, int]:
        async with service_in_process(Sample(config)), bus_client(endpoints) as client:
            sum_ = await client.request("inproc", topics.SAMPLE_ADD, {"a": 20, "b": 22})
            counters = await client.request("inproc", topics.SERVICE_COUNTERS_GET)
            return sum_, counters["requests_served"]

    total, served = asyncio.run(scenario())
    assert total == 42
    assert served >= 1
