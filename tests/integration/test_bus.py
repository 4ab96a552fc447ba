"""The bus across real processes: requests, events, rejection of bad input."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
import zmq.asyncio
from smtestbed.proto import rpc, topics
from smtestbed.proto.envelope import pack
from smtestbed.services._runtime import process
from smtestbed.services._runtime.bus import Endpoints, Event
from smtestbed.services._runtime.errors import (
    RemoteError,
    RequestTimeoutError,
    ServiceUnavailableError,
    UnknownServiceError,
)
from smtestbed.services._runtime.testing import (
    bus_client,
    service_process,
    wait_for_event,
)
from smtestbed.services.broker.cli import fetch_status

pytestmark = pytest.mark.timeout(60)


def _sample(endpoints: Endpoints, tmp_path: Path, name: str = "sample", **settings: Any) -> Any:
    return service_process(
        "sample",
        endpoints,
        instance=name,
        settings={"heartbeat_s": 0.2, **settings},
        log_path=tmp_path / f"{name}.log",
    )


def test_request_reply_crosses_processes(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """A client's request reaches a service in another process and its result comes back."""

    async def scenario() -> tuple[Any, Any]:
        async with bus_client(endpoints) as client:
            added = await client.request("sample", topics.SAMPLE_ADD, {"a": 2, "b": 40})
            echoed = await client.request(
                "sample", topics.SAMPLE_ECHO, {"blob": b"\x00\xff", "n": [1, 2]}
            )
            return added, echoed

    with _sample(endpoints, tmp_path):
        added, echoed = asyncio.run(scenario())
    assert added == 42
    assert echoed == {"blob": b"\x00\xff", "n": [1, 2]}


def test_service_error_comes_back_as_remote_error(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """A handler's TestbedError reaches the caller with its class name and message."""

    async def scenario() -> RemoteError:
        async with bus_client(endpoints) as client:
            with pytest.raises(RemoteError) as info:
                await client.request("sample", topics.SAMPLE_ADD, {"a": 1})
            return info.value

    with _sample(endpoints, tmp_path):
        error = asyncio.run(scenario())
    assert error.code == "BadParamsError"
    assert "needs numbers a and b" in str(error)


def test_unknown_service_fails_fast_with_clear_error(
    endpoints: Endpoints, broker: process.Popen
) -> None:
    """A request to a name nobody registered fails at once, not after the timeout."""

    async def scenario() -> float:
        async with bus_client(endpoints) as client:
            start = time.monotonic()
            with pytest.raises(UnknownServiceError, match="no service named 'ghost'"):
                await client.request("ghost", topics.SERVICE_PING, timeout=5.0)
            return time.monotonic() - start

    assert asyncio.run(scenario()) < 2.5


def test_dead_service_is_reported_and_refused(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """After SIGKILL and missed heartbeats the broker marks a service dead and refuses requests."""

    async def scenario(proc: process.Popen) -> dict[str, Any]:
        async with bus_client(endpoints) as client:
            sub = client.subscribe([topics.BROKER_SERVICE_DEAD])
            await sub.wait_connected()
            os.kill(proc.pid, signal.SIGKILL)
            event = await wait_for_event(sub, lambda e: e.body["name"] == "victim", timeout=5)
            with pytest.raises(ServiceUnavailableError, match="dead"):
                await client.request("victim", topics.SERVICE_PING, timeout=5.0)
            status = await fetch_status(endpoints, 3.0)
            states = {s["name"]: s["state"] for s in status["services"]}
            return {"event": event.body, "state": states["victim"]}

    with _sample(endpoints, tmp_path, "victim") as proc:
        result = asyncio.run(scenario(proc))
    assert result["event"]["name"] == "victim"
    assert result["state"] == "dead"


def test_silent_service_times_out_within_the_timeout(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """A request without reply raises RequestTimeoutError after its timeout, retries included."""

    async def scenario() -> float:
        async with bus_client(endpoints) as client:
            start = time.monotonic()
            with pytest.raises(RequestTimeoutError, match=r"within 0\.6 s"):
                await client.request(
                    "sample", topics.SAMPLE_SLEEP, {"seconds": 3}, timeout=0.6, retries=2
                )
            return time.monotonic() - start

    with _sample(endpoints, tmp_path):
        elapsed = asyncio.run(scenario())
    assert 0.55 <= elapsed < 1.5


def test_events_flow_from_service_to_subscriber(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """Ticks published by a sample process arrive in order with consecutive numbers."""

    async def scenario() -> list[Event]:
        async with bus_client(endpoints) as client:
            sub = client.subscribe([topics.SAMPLE_TICK])
            await sub.wait_connected()
            got = [await asyncio.wait_for(sub.recv(), 5) for _ in range(5)]
            assert sub.gaps.gaps == 0
            return got

    with _sample(endpoints, tmp_path, interval_s=0.02):
        events = asyncio.run(scenario())
    seqs = [e.envelope.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    assert all(e.envelope.src == "sample" for e in events)
    assert [e.body["n"] for e in events] == [s + 1 for s in seqs]


async def _raw_publisher(ctx: zmq.asyncio.Context, endpoint: str) -> zmq.asyncio.Socket:
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    await asyncio.wait_for(sock.recv(), 5)  # the broker's subscriptions arrived
    return sock


def test_broker_drops_and_reports_malformed_events(
    endpoints: Endpoints, broker: process.Popen
) -> None:
    """Garbage, wrong version, unknown kind: dropped, counted, reported; the broker lives on."""
    good = pack(topics.SAMPLE_TICK, "raw", 0, 1.0, 1.0, {"n": 1})
    wrong_version = msgpack.packb({**msgpack.unpackb(good), "v": 99})
    unknown_kind = pack(topics.SAMPLE_TICK, "raw", 1, 1.0, 1.0, None).replace(
        b"sample.tick", b"sample.tock"
    )
    bad = [
        [b"sample.tick", b"\xc1\xc1garbage"],
        [b"sample.tick", wrong_version],
        [b"sample.tock", unknown_kind],
        [b"sample.one-frame-only"],
    ]

    async def scenario() -> tuple[list[str], list[str], dict[str, Any]]:
        ctx = zmq.asyncio.Context.instance()
        async with bus_client(endpoints) as client:
            sub = client.subscribe(["bus.rejected", "sample."])
            await sub.wait_connected()
            raw = await _raw_publisher(ctx, endpoints.pub)
            for frames in [*bad, [b"sample.tick", good]]:
                await raw.send_multipart(frames)
            reasons: list[str] = []
            kinds: list[str] = []
            while len(reasons) < 4 or topics.SAMPLE_TICK not in kinds:
                event = await asyncio.wait_for(sub.recv(), 5)
                kinds.append(event.kind)
                if event.kind == topics.BUS_REJECTED:
                    reasons.append(event.body["reason"])
            raw.close(0)
            return reasons, kinds, await fetch_status(endpoints, 3.0)

    reasons, kinds, status = asyncio.run(scenario())
    assert reasons == ["not_msgpack", "version", "unknown_kind", "frames"]
    assert kinds.count(topics.SAMPLE_TICK) == 1
    assert sum(status["broker"]["events_rejected"].values()) == 4
    assert broker.poll() is None


def test_service_rejects_malformed_request_and_keeps_serving(
    endpoints: Endpoints, broker: process.Popen, tmp_path: Path
) -> None:
    """A request with a broken envelope gets a bad_request reply and a bus.rejected event."""

    async def scenario() -> tuple[dict[str, Any], Event, Any]:
        ctx = zmq.asyncio.Context.instance()
        async with bus_client(endpoints) as client:
            sub = client.subscribe([topics.BUS_REJECTED])
            await sub.wait_connected()
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(endpoints.rpc)
            await dealer.send_multipart(
                [rpc.TAG, rpc.REQ, b"sample", b"id-1", msgpack.packb([1, 2, 3])]
            )
            frames = await asyncio.wait_for(dealer.recv_multipart(), 5)
            dealer.close(0)
            reply = msgpack.unpackb(frames[3])["body"]
            event = await wait_for_event(sub, lambda e: e.envelope.src == "sample")
            still = await client.request("sample", topics.SAMPLE_ADD, {"a": 1, "b": 1})
            return reply, event, still

    with _sample(endpoints, tmp_path) as proc:
        reply, event, still = asyncio.run(scenario())
        assert proc.poll() is None
    assert reply == {"ok": False, "code": "bad_request", "message": reply["message"]}
    assert "not a map" in reply["message"]
    assert event.body["reason"] == "not_a_map"
    assert still == 2
