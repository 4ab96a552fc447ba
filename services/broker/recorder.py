"""Tap, record and replay bus events.

A recording is a msgpack stream: first a header map
``{"format": "smtb-record", "v": 1, "created": <unix s>}``, then one array
``[t_offset_s, [frame, ...]]`` per event, ``t_offset_s`` counted from the
first event. Replay publishes the recorded frames unchanged (same ``src``,
``seq`` and body), spaced as recorded divided by ``speed``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import zmq
import zmq.asyncio
from smtestbed.proto.envelope import EnvelopeError, check_event_frames
from smtestbed.services._runtime.bus import Endpoints, Event, Publisher, Subscription
from smtestbed.services._runtime.errors import ConfigError, ProtocolError

FORMAT = "smtb-record"
FORMAT_VERSION = 1


async def _until(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


async def tap(
    endpoints: Endpoints,
    prefixes: Sequence[str],
    sink: Callable[[Event], None],
    *,
    count: int | None = None,
    seconds: float | None = None,
) -> Subscription:
    """Pass live events to ``sink`` until ``count`` events or ``seconds`` have passed."""
    ctx = zmq.asyncio.Context.instance()
    sub = Subscription(ctx, endpoints.sub, prefixes)
    deadline = None if seconds is None else time.monotonic() + seconds
    seen = 0
    try:
        while count is None or seen < count:
            left = await _until(deadline)
            if left is not None and left <= 0:
                break
            try:
                event = await asyncio.wait_for(sub.recv(), left)
            except TimeoutError:
                break
            sink(event)
            seen += 1
    finally:
        sub.close()
    return sub


async def record(
    endpoints: Endpoints,
    path: Path,
    prefixes: Sequence[str] = (),
    *,
    count: int | None = None,
    seconds: float | None = None,
    on_event: Callable[[int], None] | None = None,
) -> int:
    """Write every valid event to ``path``; return how many were written."""
    ctx = zmq.asyncio.Context.instance()
    sub = Subscription(ctx, endpoints.sub, prefixes)
    deadline = None if seconds is None else time.monotonic() + seconds
    written, t0 = 0, None
    try:
        with path.open("wb") as out:
            out.write(
                msgpack.packb({"format": FORMAT, "v": FORMAT_VERSION, "created": time.time()})
            )
            while count is None or written < count:
                left = await _until(deadline)
                if left is not None and left <= 0:
                    break
                try:
                    frames = await asyncio.wait_for(sub.recv_raw(), left)
                except TimeoutError:
                    break
                if not _valid(frames):
                    continue
                now = time.monotonic()
                t0 = now if t0 is None else t0
                out.write(msgpack.packb([round(now - t0, 6), frames], use_bin_type=True))
                out.flush()
                written += 1
                if on_event is not None:
                    on_event(written)
    finally:
        sub.close()
    return written


def _valid(frames: list[bytes]) -> bool:
    try:
        check_event_frames(frames)
    except EnvelopeError:
        return False
    return True


def read_recording(path: Path) -> Iterator[tuple[float, list[bytes]]]:
    """Yield ``(t_offset_s, frames)`` from a recording; raise on a broken file."""
    try:
        handle: BinaryIO = path.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot open recording {path}: {exc}") from exc
    with handle:
        unpacker = msgpack.Unpacker(handle, raw=False, max_buffer_size=64 * 1024 * 1024)
        header = _next(unpacker, path)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ProtocolError(f"{path} is not an smtb recording", reason="not_a_recording")
        if header.get("v") != FORMAT_VERSION:
            raise ProtocolError(
                f"{path}: recording version {header.get('v')!r} unsupported", reason="version"
            )
        for index, item in enumerate(unpacker):
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[0], int | float)
                or not isinstance(item[1], list)
            ):
                raise ProtocolError(f"{path}: entry {index} is malformed", reason="bad_entry")
            yield float(item[0]), [bytes(f) for f in item[1]]


def _next(unpacker: Any, path: Path) -> Any:
    try:
        return next(unpacker)
    except StopIteration:
        raise ProtocolError(f"{path} is empty", reason="empty") from None
    except Exception as exc:
        raise ProtocolError(f"{path} is not msgpack: {exc}", reason="not_msgpack") from exc


async def replay(
    endpoints: Endpoints, path: Path, *, speed: float = 1.0, connect_timeout: float = 2.0
) -> int:
    """Publish a recording again, in order; ``speed`` 0 means as fast as possible."""
    if speed < 0:
        raise ConfigError("speed must be >= 0", key="speed")
    ctx: zmq.Context[Any] = zmq.Context.instance()
    pub = Publisher(ctx, endpoints.pub, src="replay", now_sim=time.time)
    sent = 0
    try:
        await pub.wait_connected(connect_timeout)
        start = time.monotonic()
        for t_offset, frames in read_recording(path):
            if speed > 0:
                delay = start + t_offset / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            pub.send_raw(frames)
            sent += 1
        await asyncio.sleep(0.05)  # let the last frames leave before the socket closes
    finally:
        pub.close()
    return sent
