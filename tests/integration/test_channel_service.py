"""The channel service as a real process: batches in and out over PUSH/PULL, events, requests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq.asyncio
from smtestbed.proto import topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import BatchPuller, BatchPusher, Endpoints, Event
from smtestbed.services._runtime.errors import RemoteError
from smtestbed.services._runtime.testing import (
    bus_client,
    free_port,
    service_process,
    wait_for_event,
)

pytestmark = pytest.mark.timeout(90)

T1 = 1


def _batch(starts: list[float], window: int) -> FrameBatch:
    n = len(starts)
    frames = [bytes([i]) * 40 for i in range(n)]
    columns = {
        "t_start": np.array(starts, dtype=np.float64),
        "tx_power_dbm": np.full(n, 14.0, dtype=np.float32),
        "x_m": np.full(n, 20.0, dtype=np.float32),
        "y_m": np.zeros(n, dtype=np.float32),
        "mode": np.full(n, T1, dtype=np.uint8),
        "meter": np.arange(n, dtype=np.uint32),
    }
    return FrameBatch.from_frames(frames, {"window": window}, columns)


def _is_window(n: int) -> Any:
    return lambda e: e.kind == topics.CHANNEL_WINDOW and e.body["window"] == n


@contextlib.asynccontextmanager
async def _sockets(
    frames_ep: str, received_ep: str
) -> AsyncIterator[tuple[BatchPusher, BatchPuller]]:
    ctx = zmq.asyncio.Context()
    puller = BatchPuller(ctx, received_ep, bind=True)
    pusher = BatchPusher(ctx, frames_ep, src="farm")
    try:
        yield pusher, puller
    finally:
        puller.close()
        pusher.close()
        ctx.term()


@contextlib.contextmanager
def _channel(endpoints: Endpoints, tmp_path: Path) -> Iterator[tuple[str, str]]:
    frames_ep = f"tcp://127.0.0.1:{free_port()}"
    received_ep = f"tcp://127.0.0.1:{free_port()}"
    settings = {
        "input_endpoint": frames_ep,
        "output_endpoint": received_ep,
        "capture": "false",
        "noise": "false",
        "shadowing_sigma_db": 0,
        "heartbeat_s": 0.2,
    }
    with service_process("channel", endpoints, settings=settings, log_path=tmp_path / "ch.log"):
        yield frames_ep, received_ep


async def _one_window(
    endpoints: Endpoints, frames_ep: str, received_ep: str
) -> tuple[FrameBatch, Event]:
    async with (
        _sockets(frames_ep, received_ep) as (pusher, puller),
        bus_client(endpoints) as client,
    ):
        sub = client.subscribe(["channel."])
        await sub.wait_connected()
        # frames 1 and 2 overlap (5.28 ms airtime each); 0 and 3 are alone
        await pusher.send(_batch([0.0, 1.0, 1.002, 2.0], 1), t_sim=1.0)
        _env, received = await asyncio.wait_for(puller.recv(), 20)
        event = await wait_for_event(sub, _is_window(1), timeout=10)
        return received, event


def test_channel_process_delivers_survivors_and_publishes_window_counters(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """Of four frames two overlap: the other two arrive with their columns, counted per window."""
    with _channel(endpoints, tmp_path) as (frames_ep, received_ep):
        received, event = asyncio.run(_one_window(endpoints, frames_ep, received_ep))
    airtime = (48 + 12 * 40) / 1e5
    assert [bytes(f) for f in received] == [bytes([0]) * 40, bytes([3]) * 40]
    assert np.frombuffer(received.columns["meter"], np.uint32).tolist() == [0, 3]
    assert np.frombuffer(received.columns["bit_errors"], np.uint16).tolist() == [0, 0]
    assert np.frombuffer(received.columns["receiver"], np.uint16).tolist() == [0, 0]
    t_rx = np.frombuffer(received.columns["t_rx"], np.float64).tolist()
    assert t_rx == pytest.approx([airtime, 2.0 + airtime])
    assert received.meta == {"window": 1, "receivers": ["gw0"]}
    assert event.body["offered"] == 4
    assert event.body["delivered"] == 2
    assert event.body["collided"] == 2
    assert event.body["receivers"]["gw0"]["collided"] == 2


async def _requests(
    endpoints: Endpoints, frames_ep: str, received_ep: str
) -> tuple[str, Any, Event, FrameBatch]:
    async with (
        _sockets(frames_ep, received_ep) as (pusher, puller),
        bus_client(endpoints) as client,
    ):
        sub = client.subscribe([topics.CHANNEL_FAULT])
        await sub.wait_connected()
        with pytest.raises(RemoteError) as bad:
            await client.request(
                "channel", topics.CHANNEL_SET_FAULT, {"receiver": "gw0", "extra_loss_db": "x"}
            )
        reply = await client.request("channel", topics.CHANNEL_FORCE_COLLISION, {"meter": 0})
        event = await wait_for_event(sub, lambda e: e.body["action"] == "force_collision")
        await pusher.send(_batch([5.0, 6.0], 2), t_sim=2.0)
        _env, received = await asyncio.wait_for(puller.recv(), 20)
        return str(bad.value), reply, event, received


def test_bad_request_names_the_field_and_a_forced_collision_then_applies(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """A malformed set_fault is refused naming extra_loss_db; the next request still works."""
    with _channel(endpoints, tmp_path) as (frames_ep, received_ep):
        error, reply, event, received = asyncio.run(_requests(endpoints, frames_ep, received_ep))
    assert "extra_loss_db" in error
    assert reply["pending_meter"] == 1
    assert event.body == reply
    assert np.frombuffer(received.columns["meter"], np.uint32).tolist() == [1]
