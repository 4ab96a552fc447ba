"""Bus throughput: events and frame batches through the broker vs raw pyzmq.

Run: ``.venv/bin/python benchmarks/bus.py [--events N] [--batches N]``.

Every case sends from a separate process to a subscriber in this process;
the rate is what the subscriber receives per second between its first and
last message. The baseline is raw pyzmq PUB -> SUB between the same two
processes with the same bytes, measured in the same run; the broker cases
add the broker process (XSUB -> envelope validation -> XPUB) in between.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from typing import Any

import zmq
from smtestbed.proto import topics
from smtestbed.proto.batch import FrameBatch
from smtestbed.proto.envelope import pack
from smtestbed.services._runtime.bus import Endpoints, Publisher
from smtestbed.services._runtime.testing import free_port, random_endpoints, service_process

IDLE_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """One measured case."""

    case: str
    messages: int
    seconds: float
    payload_bytes: int

    @property
    def rate(self) -> float:
        """Return messages per second."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def mbps(self) -> float:
        """Return payload megabytes per second."""
        return self.rate * self.payload_bytes / 1e6


def small_event() -> list[bytes]:
    """Return one typical event as frames (topic, ~100-byte envelope)."""
    body = {"meter": "12345678", "value": 1234.567, "unit": "Wh", "status": 0}
    return [topics.SAMPLE_TICK.encode(), pack(topics.SAMPLE_TICK, "bench", 7, 1.7e9, 1.7e9, body)]


def batch_event(frames: int = 1000, size: int = 64) -> list[bytes]:
    """Return a frame batch (envelope, offsets, data) as frames."""
    batch = FrameBatch.from_frames([bytes([i % 256]) * size for i in range(frames)])
    env = pack(topics.FRAME_BATCH, "bench", 0, 1.7e9, 1.7e9, batch.header())
    return [topics.FRAME_BATCH.encode(), env, *(bytes(f) for f in batch.wire_frames())]


def _send_raw(endpoint: str, bind: bool, frames: list[bytes], count: int, start_at: float) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    (sock.bind if bind else sock.connect)(endpoint)
    _send_loop(sock.send_multipart, frames, count, start_at)
    time.sleep(IDLE_S * 2)
    sock.close(0)
    ctx.term()


def _send_bus(endpoint: str, frames: list[bytes], count: int, start_at: float, full: bool) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    pub = Publisher(ctx, endpoint, src="bench", now_sim=time.time, hwm=0)
    while not pub.poll_connected():
        time.sleep(0.01)
    if full:
        body = {"meter": "12345678", "value": 1234.567, "unit": "Wh", "status": 0}
        _wait(start_at)
        for _ in range(count):
            pub.publish(topics.SAMPLE_TICK, body)
    else:
        _send_loop(pub.send_raw, frames, count, start_at)
    time.sleep(IDLE_S * 2)
    pub.close()
    ctx.term()


def _wait(start_at: float) -> None:
    while time.time() < start_at:
        time.sleep(0.001)


def _send_loop(
    send: Callable[[list[bytes]], Any], frames: list[bytes], count: int, start_at: float
) -> None:
    _wait(start_at)
    for _ in range(count):
        send(frames)


def _receive(sock: zmq.Socket[Any], count: int, payload: int, case: str) -> Result:
    got, first, last = 0, 0.0, 0.0
    while got < count:
        if not sock.poll(int(IDLE_S * 1000) if got else 10_000):
            break
        if len(sock.recv_multipart()) == 1:
            continue  # a one-frame broker answer, not part of the measurement
        last = time.perf_counter()
        if got == 0:
            first = last
        got += 1
    # the first message starts the clock, so it is not counted in the rate
    return Result(case=case, messages=max(got - 1, 0), seconds=last - first, payload_bytes=payload)


def _subscriber(ctx: zmq.Context[Any], endpoint: str) -> zmq.Socket[Any]:
    sock: zmq.Socket[Any] = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    return sock


def run_raw(frames: list[bytes], count: int, case: str) -> Result:
    """Measure raw pyzmq PUB -> SUB between two processes."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx: zmq.Context[Any] = zmq.Context()
    sub = _subscriber(ctx, endpoint)
    start_at = time.time() + 1.0
    proc = _spawn(_send_raw, endpoint, True, frames, count, start_at)
    try:
        return _receive(sub, count, sum(map(len, frames)), case)
    finally:
        sub.close(0)
        proc.join(10)
        ctx.term()


def run_broker(
    endpoints: Endpoints, frames: list[bytes], count: int, case: str, full: bool = False
) -> Result:
    """Measure publisher process -> broker process -> subscriber."""
    ctx: zmq.Context[Any] = zmq.Context()
    sub = _subscriber(ctx, endpoints.sub)
    time.sleep(0.3)  # the subscription reaches the broker
    start_at = time.time() + 1.0
    proc = _spawn(_send_bus, endpoints.pub, frames, count, start_at, full)
    try:
        return _receive(sub, count, sum(map(len, frames)), case)
    finally:
        sub.close(0)
        proc.join(10)
        ctx.term()


def _spawn(target: Callable[..., None], *args: Any) -> SpawnProcess:
    proc = multiprocessing.get_context("spawn").Process(target=target, args=args, daemon=True)
    proc.start()
    return proc


def main(argv: list[str] | None = None) -> int:
    """Run every case and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="small events per case")
    parser.add_argument("--batches", type=int, default=3_000, help="batches per case")
    args = parser.parse_args(argv)
    small, batch = small_event(), batch_event()
    endpoints = random_endpoints()
    rows: list[tuple[Result, Result]] = []
    with service_process("broker", endpoints, settings={"log_level": "warning"}):
        raw_small = run_raw(small, args.events, "raw pyzmq PUB->SUB, small event")
        rows.append((run_broker(endpoints, small, args.events, "broker, small event"), raw_small))
        rows.append(
            (
                run_broker(
                    endpoints,
                    small,
                    args.events,
                    "broker, small event, publish() packing",
                    full=True,
                ),
                raw_small,
            )
        )
        raw_batch = run_raw(batch, args.batches, "raw pyzmq PUB->SUB, 64 kB batch")
        rows.append(
            (
                run_broker(endpoints, batch, args.batches, "broker, batch of 1000 x 64 B frames"),
                raw_batch,
            )
        )
    print_table(rows)
    return 0


def print_table(rows: list[tuple[Result, Result]]) -> None:
    """Print each case next to its raw baseline."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="bus throughput (same run; subscriber-side rates)")
    for col in ("case", "msgs/s", "MB/s", "baseline msgs/s", "baseline MB/s", "ratio"):
        table.add_column(col, justify="right" if col != "case" else "left")
    for result, base in rows:
        ratio = result.rate / base.rate if base.rate else 0.0
        table.add_row(
            result.case,
            f"{result.rate:,.0f}",
            f"{result.mbps:,.1f}",
            f"{base.rate:,.0f}",
            f"{base.mbps:,.1f}",
            f"{ratio:.2f}",
        )
    Console(width=120).print(table)


if __name__ == "__main__":
    sys.exit(main())
