"""Readiness means "answers requests": a service is ready only once the broker routes to it."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import zmq
import zmq.asyncio
from smtestbed.proto import rpc, topics
from smtestbed.proto.envelope import Envelope
from smtestbed.services._runtime.bus import Endpoints
from smtestbed.services._runtime.config import load_config
from smtestbed.services._runtime.lifecycle import ServiceRunner
from smtestbed.services._runtime.testing import endpoint_settings
from smtestbed.services.sample.service import Sample, SampleConfig

pytestmark = pytest.mark.timeout(60)


def _sample(endpoints: Endpoints, instance: str) -> Sample:
    overrides = {**endpoint_settings(endpoints), "instance": instance, "interval_s": "0"}
    return Sample(load_config(SampleConfig, "sample", env={}, overrides=overrides))


def test_a_service_is_ready_only_after_its_own_ping_came_back_through_the_broker(
    endpoints: Endpoints,
) -> None:
    """HELLO, then a ping to itself; ready only when the broker routed that ping back.

    The test's ROUTER socket stands in for the broker's, so each step of the
    registration is seen on the wire and the ping is routed only when the test says so.
    """

    async def scenario() -> tuple[list[bytes], list[bytes], bool, list[bytes]]:
        ctx = zmq.asyncio.Context()
        router = ctx.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.bind(endpoints.rpc)
        runner = ServiceRunner(_sample(endpoints, "early"), signals=False)
        task = asyncio.create_task(runner.run())
        try:
            hello = await asyncio.wait_for(router.recv_multipart(), 10.0)
            ping = await asyncio.wait_for(router.recv_multipart(), 10.0)
            ready_before_routing = runner.ready.is_set()
            assert ping[1:3] == [rpc.TAG, rpc.REQ], f"expected the self-ping, got {ping}"
            peer, client, req_id, wire = ping[0], ping[0], ping[4], ping[5]
            await router.send_multipart([peer, rpc.TAG, rpc.REQ, client, req_id, wire])
            reply = await asyncio.wait_for(router.recv_multipart(), 10.0)
            await router.send_multipart([client, rpc.TAG, rpc.REP, req_id, reply[5]])
            await asyncio.wait_for(runner.ready.wait(), 10.0)
            after = await asyncio.wait_for(router.recv_multipart(), 10.0)
            return hello, ping, ready_before_routing, after
        finally:
            runner.stop("test finished")
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(task, 10.0)
            router.close(0)
            ctx.term()

    hello, ping, ready_before_routing, after = asyncio.run(scenario())
    assert hello[1:4] == [rpc.TAG, rpc.HELLO, b"early"]
    assert ping[1:4] == [rpc.TAG, rpc.REQ, b"early"]
    assert Envelope.from_wire(ping[5]).kind == topics.SERVICE_PING
    assert ready_before_routing is False
    assert after[1:3] in ([rpc.TAG, rpc.HB], [rpc.TAG, rpc.BYE])
